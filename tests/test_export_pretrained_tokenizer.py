"""Export of a model built on a pretrained (teacher's) tokenizer: SmolLM3-style, EOS not 0, padded vocab.

The pre-tokenizer mapping (smoledge/export/gguf_constants.PRE_TOKENIZERS) is proven here:
a Llama-3-regex tokenizer written as `llama-bpe` tokenizes in llama.cpp exactly like HF,
and the same file labelled `gpt-2` does not.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import pytest
from standin import IM_END, IM_START, llama3_style_tokenizer, padded, save_teacher

from smoledge.errors import SmoledgeError
from smoledge.export import gguf_constants as C
from smoledge.export.gguf import write_gguf
from smoledge.export.parity import check_greedy, check_parity, check_tokenization

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def standin_model(tmp_path_factory, prose_texts) -> Path:
    tok = llama3_style_tokenizer(prose_texts, 1000)
    return save_teacher(tmp_path_factory.mktemp("standin") / "model", tok)


@pytest.fixture(scope="module")
def standin_gguf(tmp_path_factory, standin_model: Path) -> Path:
    return write_gguf(standin_model, tmp_path_factory.mktemp("gguf") / "model-f32.gguf", "f32")


def field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents() if key in reader.fields else None


def test_gguf_carries_the_pretrained_tokenizer(standin_model: Path, standin_gguf: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(standin_model)
    cfg = json.loads((standin_model / "config.json").read_text())
    assert len(tok) == 1000 and cfg["vocab_size"] == padded(1000) == 1024
    r = gguf.GGUFReader(standin_gguf)
    eos = tok.convert_tokens_to_ids(IM_END)
    assert field(r, "tokenizer.ggml.pre") == "llama-bpe"
    assert field(r, "tokenizer.ggml.eos_token_id") == eos == cfg["eos_token_id"] != 0
    assert field(r, "tokenizer.ggml.eot_token_id") == eos
    assert field(r, "tokenizer.ggml.bos_token_id") is None and field(r, "tokenizer.ggml.add_bos_token") is False
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type")
    assert field(r, "smollm3.vocab_size") == len(tokens) == 1024
    # The tokenizer's specials sit after its merges; the padded rows no text maps to come last.
    assert tokens[eos] == IM_END and types[eos] == gguf.TokenType.CONTROL
    assert tokens[1000:] == [f"[PAD{i}]" for i in range(1000, 1024)]
    assert set(types[1000:]) == {gguf.TokenType.UNUSED}


def test_llama_bpe_tokenizes_decodes_and_scores_like_pytorch(standin_model: Path, standin_gguf: Path) -> None:
    assert check_tokenization(standin_model, standin_gguf)["identical"]
    stats = check_parity(standin_model, standin_gguf, "Le renard brun saute par-dessus le chien.", 1e-3)
    assert stats["top1_agreement"] == 1.0
    assert check_greedy(standin_model, standin_gguf, "The quick brown fox", 12, tie_tol=2e-3)["matching_prefix"] == 12


def test_evaluate_scores_a_padded_vocab_alike_in_both_runtimes(standin_model: Path, standin_gguf: Path,
                                                               prose_texts) -> None:
    from transformers import AutoTokenizer

    from smoledge.evaluate.perplexity import GGUFScorer, TorchScorer, score, token_byte_lengths

    tok = AutoTokenizer.from_pretrained(standin_model)
    ids = tok.encode(" ".join(prose_texts[:12]), add_special_tokens=False) + [tok.eos_token_id]
    token_bytes = token_byte_lengths(tok)
    assert token_bytes[tok.eos_token_id] == 0 and len(token_bytes) == 1000
    ref = score(TorchScorer(standin_model), ids, token_bytes, 64)
    got = score(GGUFScorer(standin_gguf, 64), ids, token_bytes, 64)
    assert ref.tokens == got.tokens == len(ids) - 1
    assert got.ppl == pytest.approx(ref.ppl, rel=1e-4)


def test_the_mapping_matters_gpt2_would_tokenize_differently(standin_model: Path, tmp_path: Path,
                                                              monkeypatch) -> None:
    monkeypatch.setitem(C.PRE_TOKENIZERS, C.LLAMA3_SPLIT_REGEX, ("gpt-2", True))
    wrong = write_gguf(standin_model, tmp_path / "wrong.gguf", "f32")
    with pytest.raises(SmoledgeError, match="GGUF tokenizer disagrees with HF"):
        check_tokenization(standin_model, wrong)


def _with_tokenizer_json(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    spec = json.loads((dst / "tokenizer.json").read_text())
    edit(spec)
    (dst / "tokenizer.json").write_text(json.dumps(spec))
    return dst


def test_ignore_merges_must_match_llama_cpp(standin_model: Path, tmp_path: Path) -> None:
    model = _with_tokenizer_json(standin_model, tmp_path / "m",
                                 lambda spec: spec["model"].update(ignore_merges=False))
    with pytest.raises(SmoledgeError, match=r"ignore_merges=False but llama.cpp's 'llama-bpe'.*ignore_merges=True"):
        write_gguf(model, tmp_path / "m.gguf", "f32")
    assert not (tmp_path / "m.gguf").exists()


def test_unmapped_regex_is_named_with_the_fix(standin_model: Path, tmp_path: Path) -> None:
    qwen2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
             r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")  # Qwen2's: one digit at a time
    model = _with_tokenizer_json(standin_model, tmp_path / "m",
                                 lambda spec: spec["pre_tokenizer"]["pretokenizers"][0]["pattern"].update(Regex=qwen2))
    with pytest.raises(SmoledgeError) as exc:
        write_gguf(model, tmp_path / "m.gguf", "f32")
    msg = str(exc.value)
    assert repr(qwen2) in msg and "llama-bpe" in msg and "gpt-2" in msg
    assert "PRE_TOKENIZERS in smoledge/export/gguf_constants.py" in msg


def test_chat_prompt_specials_are_single_tokens_in_llama_cpp(standin_model: Path, standin_gguf: Path) -> None:
    from transformers import AutoTokenizer

    from smoledge.export.parity import load_llama

    tok = AutoTokenizer.from_pretrained(standin_model)
    llm = load_llama(standin_gguf, n_ctx=64, vocab_only=True)
    prompt = f"{IM_START}user\nBonjour{IM_END}\n"
    ids = llm.tokenize(prompt.encode(), add_bos=True, special=True)  # add_bos: the GGUF says there is none
    assert ids == tok.encode(prompt, add_special_tokens=True)
    assert ids[0] == tok.convert_tokens_to_ids(IM_START) and tok.convert_tokens_to_ids(IM_END) in ids
    assert llm.token_eos() == tok.eos_token_id
