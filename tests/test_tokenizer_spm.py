"""SentencePiece tokenizers of real model families through smoledge's llama.cpp mapping (tokenizer/spm.py).

The vocabularies are llama.cpp's own (models/ggml-vocab-*.gguf from the llama-cpp-python sdist,
smoledge.pypi_assets) with their .inp/.out files: the ids the family's real HF tokenizer gives for each
input, without BOS, as llama.cpp's test-tokenizer-0 compares them (llama.cpp tokenizes with
add_special=false, parse_special=true, and its add_space_prefix adds the '▁' HF's normalizer prepends).
Of those files, llama-spm (Llama 2) and phi-3 are `tokenizer.ggml.model = llama`; gemma-4 is llama.cpp's
own `gemma4` BPE over the same kind of pieces (checked in its slow test).

For each family: the HF tokenizer rebuilt from the GGUF (smoledge.tokenizer.from_gguf_spm) gives the
expected ids, so it is the family's tokenizer; smoledge's mapping of that tokenizer.json, written as a
vocab-only GGUF, makes llama.cpp give the expected ids too; and gguf_vocab's own gate passes on it.
"""

from __future__ import annotations

import copy
import functools
import json
import random
from pathlib import Path

import pytest

from smoledge.errors import SmoledgeError
from smoledge.pypi_assets import llama_cpp_source
from smoledge.tokenizer import llama_cpp as L
from smoledge.tokenizer.gguf_fields import gguf_tokenizer_fields
from smoledge.tokenizer.from_gguf_spm import spm_tokenizer_json, spm_tokenizer_json_from_gguf
from smoledge.tokenizer.spm import spm_vocab

pytest.importorskip("llama_cpp")
from gguf import TokenType  # noqa: E402

SPM_FAMILIES = ("llama-spm", "phi-3")
SPACE = "\u2581"
REPLACE_SPACE = {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}


def vocab_file(name: str) -> Path:
    return llama_cpp_source() / "models" / f"ggml-vocab-{name}.gguf"


def cases(path: Path) -> list[tuple[str, list[int]]]:
    """llama.cpp's test cases for a vocab file: (input text, the family's HF token ids, no BOS)."""
    sep = "\n__ggml_vocab_test__\n"  # after every input, except in gemma-4's file after the last
    texts = path.with_suffix(".gguf.inp").read_text(encoding="utf-8").removesuffix(sep).split(sep)
    ids = path.with_suffix(".gguf.out").read_text(encoding="utf-8").removesuffix("\n").split("\n")
    assert len(ids) == len(texts) > 40
    return [(t, [int(x) for x in i.split()]) for t, i in zip(texts, ids)]


def specials_cfg(fields: dict) -> dict[str, str]:
    """tokenizer_config.json's special tokens, as the family publishes them."""
    return {key: fields["tokens"][fields[k]] for key, k in (("bos_token", "bos"), ("eos_token", "eos"),
                                                            ("unk_token", "unk")) if fields[k] is not None}


@functools.lru_cache(maxsize=None)
def rebuilt(name: str) -> tuple[dict, dict, dict]:
    """(GGUF fields, tokenizer.json rebuilt from them, tokenizer_config specials) of a vocab file, read once
    (parsing a GGUF's token arrays takes seconds). Callers copy before changing them."""
    fields = gguf_tokenizer_fields(vocab_file(name))
    return fields, spm_tokenizer_json(fields, name), specials_cfg(fields)


@pytest.fixture(scope="module", params=SPM_FAMILIES)
def family(request, tmp_path_factory):
    """(name, GGUF fields, rebuilt tokenizer.json, config, smoledge's GGUFVocab, llama.cpp on its file)."""
    fields, spec, cfg = rebuilt(request.param)
    vocab = spm_vocab(spec, cfg, len(fields["tokens"]), request.param)
    path = L.write_vocab_only(vocab, tmp_path_factory.mktemp(request.param) / "smoledge-vocab.gguf")
    return request.param, fields, spec, cfg, vocab, L.llama_vocab(path)


@pytest.fixture
def llama2() -> tuple[dict, dict]:
    """Llama 2's rebuilt tokenizer.json (the published Sequence[Prepend, Replace] shape) and config."""
    _, spec, cfg = rebuilt("llama-spm")
    return copy.deepcopy(spec), cfg


def test_rebuilt_tokenizer_gives_the_familys_ids(family) -> None:
    name, _, spec, _, _, _ = family
    tk = L.hf_tokenizer(spec)
    for text, expected in cases(vocab_file(name)):
        assert tk.encode(text, add_special_tokens=False).ids == expected, (name, text)
    assert tk.encode("Hello", add_special_tokens=True).ids[0] == 1  # the family's <s>


def test_llama_cpp_on_smoledges_vocab_gives_the_familys_ids(family) -> None:
    name, fields, _, _, vocab, llm = family
    for text, expected in cases(vocab_file(name)):
        assert llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) == expected, (name, text)
    # A whole text detokenizes without the space add_space_prefix put first; a streamed piece keeps it.
    ids = llm.tokenize(b"Hello world", add_bos=False, special=True)
    assert L.llama_detokenize(llm, ids, whole_text=True) == b"Hello world"
    assert L.llama_detokenize(llm, ids[:1]) == b" Hello"
    assert (vocab.model, vocab.add_space_prefix, vocab.add_bos, vocab.add_eos) == ("llama", True, True, False)
    assert (vocab.bos, vocab.eos, vocab.unk) == (fields["bos"], fields["eos"], fields["unk"])
    assert vocab.types[vocab.unk] == TokenType.UNKNOWN and vocab.types[vocab.bos] == TokenType.CONTROL
    assert [t == TokenType.BYTE for t in vocab.types] == [t.startswith("<0x") for t in vocab.tokens]


def test_scores_derived_from_merges_order_pieces_as_the_real_sentencepiece_model(family) -> None:
    """The HF file has no scores; the derived ones rank every merged piece as Llama 2's tokenizer.model does."""
    _, fields, spec, _, vocab, _ = family
    merged = {left + right for left, right in spec["model"]["merges"]}
    ids = [i for i, t in enumerate(fields["tokens"]) if t in merged]
    assert len(ids) > 29000
    assert sorted(ids, key=lambda i: (-vocab.scores[i], i)) == sorted(ids, key=lambda i: (-fields["scores"][i], i))


def test_gguf_vocab_passes_its_own_gate(family) -> None:
    name, fields, spec, cfg, vocab, _ = family
    gated = L.gguf_vocab(spec, cfg, len(fields["tokens"]), name)
    assert (gated.tokens, gated.types, gated.scores) == (vocab.tokens, vocab.types, vocab.scores)


@pytest.mark.parametrize("plant", ["reversed", "shuffled"])
def test_a_planted_wrong_score_table_fails_the_gate(family, plant: str) -> None:
    name, _, spec, _, vocab, _ = family
    merged = {left + right for left, right in spec["model"]["merges"]}
    ids = [i for i, t in enumerate(vocab.tokens) if t in merged]
    table = [vocab.scores[i] for i in ids]
    table = table[::-1] if plant == "reversed" else random.Random(0).sample(table, len(table))
    wrong = copy.copy(vocab)
    wrong.scores = list(vocab.scores)
    for i, score in zip(ids, table):
        wrong.scores[i] = score
    with pytest.raises(SmoledgeError, match=r"tokenizes differently from HF on .* at token \d+: HF \[.*vs llama.cpp"):
        L.check_vocab(wrong, spec, name)


def test_padding_rows_are_unused_and_past_every_token(llama2) -> None:
    spec, cfg = llama2
    vocab = spm_vocab(spec, cfg, 32064, "llama-spm")
    assert len(vocab.tokens) == len(vocab.scores) == 32064
    assert set(vocab.types[32000:]) == {TokenType.UNUSED} and TokenType.UNUSED not in vocab.types[:32000]


def test_gemma_and_metaspace_shapes_map_to_no_space_prefix_and_pass_the_gate(llama2) -> None:
    """Gemma's shape (spaces spelled '▁', nothing prepended; its Split at ' ' never cuts after that) and a
    Metaspace that prepends nothing, on Llama 2's real pieces: llama.cpp agrees with HF without the prefix."""
    spec, cfg = llama2
    gemma = {**spec, "normalizer": REPLACE_SPACE,
             "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious",
                               "invert": False}}
    for shape in (gemma, {**spec, **_metaspace("never")}):
        vocab = L.gguf_vocab(shape, cfg, 32000, "shape")
        assert vocab.add_space_prefix is False
    hf = L.hf_tokenizer(gemma).encode("Hello world", add_special_tokens=False).tokens
    assert hf == ["Hello", f"{SPACE}world"]


# ---------------------------------------------------------------- refusals


def _metaspace(scheme: str, split: bool = False) -> dict:
    return {"normalizer": None,
            "pre_tokenizer": {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": scheme, "split": split}}


def _first_step(spec: dict, step: dict) -> dict:
    """`spec` with `step` before its normalizer's Prepend and Replace."""
    return {**spec, "normalizer": {"type": "Sequence", "normalizers": [step, *spec["normalizer"]["normalizers"]]}}


def _with_added(spec: dict, **flags) -> dict:
    spec = copy.deepcopy(spec)
    spec["added_tokens"][1].update(flags)  # <s>
    return spec


NMT_NFKC_START = "ALQCAACEAAAAAACAAQAAgMz8AgC4BQAAhyIAgMzk"  # SentencePiece's nmt_nfkc charsmap, cut short
REFUSALS = {
    "nfkc": (lambda s: _first_step(s, {"type": "NFKC"}),
             r"normalizes or pre-tokenizes text in a way llama.cpp's SentencePiece tokenizer does not "
             r"\(\{\"normalizer\": \{\"type\": \"Sequence\", \"normalizers\": \[\{\"type\": \"NFKC\"\}"
             r".*Supported: .*Use the tokenizer"),
    "charsmap": (lambda s: _first_step(s, {"type": "Precompiled", "precompiled_charsmap": NMT_NFKC_START}),
                 r"\"type\": \"Precompiled\", \"precompiled_charsmap\": \"ALQ.*Supported:"),
    "metaspace-first": (lambda s: {**s, **_metaspace("first")},
                        r"Metaspace\(prepend_scheme='first'\).*only at its very start.*Prepend\('▁'\), Replace"),
    "metaspace-always": (lambda s: {**s, **_metaspace("always")},
                         r"Metaspace\(prepend_scheme='always'\).*text starting with a space.*Prepend\('▁'\)"),
    "metaspace-split": (lambda s: {**s, **_metaspace("never", split=True)},
                        r"Metaspace\(split=true\).*pieces with '▁' inside.*split=false"),
    "rstrip": (lambda s: _with_added(s, rstrip=True), r"added token '<s>' has rstrip=true.*Set rstrip false"),
    "normalized": (lambda s: _with_added(s, normalized=True), r"'<s>' has normalized=true.*Set normalized false"),
    "dropout": (lambda s: {**s, "model": {**s["model"], "dropout": 0.1}}, r"dropout=0.1.*no such option"),
    "no-byte-pieces": (lambda s: {**s, "model": {**s["model"], "vocab": {  # newline a piece, not a byte
                           "\n" if t == "<0x0A>" else t: i for t, i in s["model"]["vocab"].items()}}},
                       r"lacks 1 byte pieces \(e.g. <0x0A>\).*byte_fallback=True"),
    "unigram": (lambda s: {**s, "model": {"type": "Unigram", "unk_id": 0, "byte_fallback": True,
                                          "vocab": [[t, -1.0] for t in s["model"]["vocab"]]}},
                r"Unigram.*merges pieces greedily by score.*model_type=bpe and byte_fallback=True"),
    "wordpiece": (lambda s: {**s, "model": {"type": "WordPiece", "vocab": s["model"]["vocab"]}},
                  r"'WordPiece'.*SentencePiece BPE \(byte_fallback\) tokenizers only"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_what_llama_cpp_would_run_differently_is_refused_naming_the_fix(llama2, case: str) -> None:
    spec, cfg = llama2
    change, message = REFUSALS[case]
    with pytest.raises(SmoledgeError, match=message):
        L.gguf_vocab(change(spec), cfg, 32000, "tokenizer.json")


def test_a_bpe_trained_by_hf_tokenizers_with_byte_fallback_is_refused() -> None:
    """Its merges list one way to build each piece; llama.cpp merges any two pieces that make one."""
    from tokenizers import Tokenizer, models, normalizers, trainers

    tk = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tk.normalizer = normalizers.Sequence([normalizers.Prepend(SPACE), normalizers.Replace(" ", SPACE)])
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    corpus = [line for text in L.PROBE_TEXTS for line in text.splitlines()] * 4
    corpus += Path(L.__file__).read_text(encoding="utf-8").splitlines()
    tk.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=1200, special_tokens=pieces))
    spec = json.loads(tk.to_str())
    spec["added_tokens"] = [a for a in spec["added_tokens"] if not a["content"].startswith("<0x")]
    with pytest.raises(SmoledgeError, match=r"merges are not SentencePiece-shaped: \d+ pairs of pieces that form a "
                                            r"piece are not merges.*Train the tokenizer with sentencepiece"):
        L.gguf_vocab(spec, {"bos_token": "<s>", "eos_token": "</s>"}, 1200, "hf-bpe")


def test_a_gguf_with_placeholder_scores_is_not_rebuilt(tmp_path: Path, llama2) -> None:
    """llama.cpp's converter writes -1000 for every piece of an HF BPE file; no HF tokenizer matches that."""
    spec, cfg = llama2
    vocab = spm_vocab(spec, cfg, 32000, "x")
    keep = 1024  # Llama 2's specials, bytes and first pieces: enough to show it, quick to read back
    vocab.tokens, vocab.types, vocab.scores = vocab.tokens[:keep], vocab.types[:keep], [-1000.0] * keep
    path = L.write_vocab_only(vocab, tmp_path / "placeholder.gguf")
    with pytest.raises(SmoledgeError, match=r"same score \(a placeholder.*original HF directory"):
        spm_tokenizer_json_from_gguf(path)


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_phi3(tmp_path_factory) -> Path:
    """A tiny random Llama model with Phi-3's real tokenizer, rebuilt from its GGUF and saved as HF."""
    import torch
    from tokenizers import Tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    fields, spec, cfg = rebuilt("phi-3")
    out = tmp_path_factory.mktemp("tiny-spm") / "hf"
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
                                  **cfg, clean_up_tokenization_spaces=False)
    tok.save_pretrained(out)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(fields["tokens"]), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=True, bos_token_id=fields["bos"], eos_token_id=fields["eos"])
    LlamaForCausalLM(cfg).save_pretrained(out, safe_serialization=True)
    return out


@pytest.mark.slow
def test_a_model_with_a_sentencepiece_tokenizer_exports_and_passes_the_gates(tiny_phi3: Path, tmp_path: Path) -> None:
    from smoledge.export.gguf import write_gguf
    from smoledge.export.parity import check_parity, check_tokenization

    out = write_gguf(tiny_phi3, tmp_path / "model-f32.gguf", "f32")
    tokens = check_tokenization(tiny_phi3, out)
    assert tokens["identical"] and (tokens["model"], tokens["pre"]) == ("llama", "default")
    stats = check_parity(tiny_phi3, out, "Le renard brun saute par-dessus le chien paresseux.<|end|>", 1e-3)
    assert stats["max_abs_diff"] <= 1e-3 and stats["tokens"] > 10


def test_a_refused_tokenizer_writes_no_gguf(tmp_path: Path, llama2) -> None:
    """The tokenizer is decided before any weight is read, so the model directory needs no weights here."""
    from smoledge.export.gguf import write_gguf

    spec, cfg = llama2
    model = tmp_path / "hf"
    model.mkdir()
    config = {"model_type": "llama", "vocab_size": 32000, "hidden_size": 64, "intermediate_size": 128,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}
    (model / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (model / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    (model / "tokenizer.json").write_text(json.dumps(_first_step(spec, {"type": "NFKC"})), encoding="utf-8")
    with pytest.raises(SmoledgeError, match=r"\"type\": \"NFKC\".*Supported:"):
        write_gguf(model, tmp_path / "model.gguf", "f32")
    assert list(tmp_path.iterdir()) == [model]


# ---------------------------------------------------------------- Gemma 4 (262k pieces, 515k merges)


@pytest.mark.slow
def test_gemma4_tokenizer_in_gemmas_shape_exports_as_sentencepiece(tmp_path: Path) -> None:
    """llama.cpp runs Gemma 4 as its own `gemma4` BPE; its pieces and merges, rebuilt in Gemma's HF shape,
    give the real ids, and written as a `llama` SentencePiece vocabulary llama.cpp gives them too, although
    some of its merges (runs of whitespace) are scattered in rank."""
    path = vocab_file("gemma-4")
    fields = gguf_tokenizer_fields(path)
    assert fields["model"] == "gemma4"
    spec = spm_tokenizer_json(fields, "gemma-4")
    assert spec["normalizer"] == REPLACE_SPACE
    tk = L.hf_tokenizer(spec)
    vocab = L.gguf_vocab(spec, specials_cfg(fields), len(fields["tokens"]), "gemma-4")
    llm = L.llama_vocab(L.write_vocab_only(vocab, tmp_path / "gemma4-spm.gguf"))
    assert vocab.add_space_prefix is False
    for text, expected in cases(path):
        assert tk.encode(text, add_special_tokens=False).ids == expected, text
        assert llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) == expected, text


def test_bits_per_byte_counts_sentencepiece_pieces_as_the_text_they_spell(family) -> None:
    # The evaluate stage's bits-per-byte needs every token's byte count; SentencePiece spells a space
    # '\u2581' and unknown characters as <0xXX> byte pieces.
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from smoledge.evaluate.perplexity import token_byte_lengths

    name, _, spec, cfg, _, _ = family
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)), **cfg)
    lengths = token_byte_lengths(tok)
    for text, ids in cases(vocab_file(name)):
        if text:  # Llama 2's normalizer puts one '\u2581' before the text
            assert int(lengths[ids].sum()) == len(text.encode("utf-8")) + 1, text
