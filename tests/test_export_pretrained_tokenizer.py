"""Export of a model built on a pretrained (teacher's) tokenizer: SmolLM3-style, EOS not 0, padded vocab.

The pre-tokenizer is decided by behaviour (smoledge.tokenizer.llama_cpp.decide_pre): a Llama-3-regex
tokenizer comes out as `llama-bpe` and tokenizes in llama.cpp exactly like HF, the same file planted
with `gpt-2` fails the tokenization gate, and a Qwen2-regex one comes out as `qwen2`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import pytest
from standin import IM_END, IM_START, llama3_style_tokenizer, padded, save_teacher

from smoledge.errors import SmoledgeError
from smoledge.tokenizer import llama_cpp
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


def test_a_planted_wrong_pre_tokenizer_fails_the_gate(standin_model: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(llama_cpp, "decide_pre", lambda vocab, tok_json, where="", texts=(): "gpt-2")
    wrong = write_gguf(standin_model, tmp_path / "wrong.gguf", "f32")
    assert field(gguf.GGUFReader(wrong), "tokenizer.ggml.pre") == "gpt-2"
    with pytest.raises(SmoledgeError, match="GGUF tokenizer disagrees with HF on .* at token"):
        check_tokenization(standin_model, wrong)


def _with_tokenizer_json(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    spec = json.loads((dst / "tokenizer.json").read_text())
    edit(spec)
    (dst / "tokenizer.json").write_text(json.dumps(spec))
    return dst


def test_ignore_merges_is_part_of_the_behaviour(standin_model: Path, tmp_path: Path) -> None:
    # Llama 3's regex without ignore_merges is not llama.cpp's llama-bpe (which takes any pre-token in the
    # vocabulary whole): another splitter llama.cpp runs without it must be proven to tokenize alike.
    model = _with_tokenizer_json(standin_model, tmp_path / "m",
                                 lambda spec: spec["model"].update(ignore_merges=False))
    out = write_gguf(model, tmp_path / "m.gguf", "f32")
    pre = field(gguf.GGUFReader(out), "tokenizer.ggml.pre")
    assert pre != "llama-bpe" and llama_cpp.PRE_TOKENIZERS[pre] is False
    assert check_tokenization(model, out)["identical"]


def test_a_qwen2_regex_is_recognised_by_behaviour(standin_model: Path, tmp_path: Path) -> None:
    model = _with_tokenizer_json(standin_model, tmp_path / "m", lambda spec: (
        spec["pre_tokenizer"]["pretokenizers"][0]["pattern"].update(Regex=llama_cpp.QWEN2_SPLIT_REGEX),
        spec["model"].update(ignore_merges=False)))
    out = write_gguf(model, tmp_path / "m.gguf", "f32")
    assert field(gguf.GGUFReader(out), "tokenizer.ggml.pre") == "qwen2"
    assert check_tokenization(model, out)["identical"]


def test_an_unknown_split_is_refused_naming_the_likeliest_and_the_fix(standin_model: Path, tmp_path: Path) -> None:
    odd = r"\p{L}{1,2}|\p{N}|[^\p{L}\p{N}]"  # two letters at a time: no llama.cpp splitter does this
    model = _with_tokenizer_json(standin_model, tmp_path / "m",
                                 lambda spec: spec["pre_tokenizer"]["pretokenizers"][0]["pattern"].update(Regex=odd))
    with pytest.raises(SmoledgeError) as exc:
        write_gguf(model, tmp_path / "m.gguf", "f32")
    msg = str(exc.value)
    assert "no llama.cpp pre-tokenizer reproduces" in msg and "the likeliest, 'gpt-2', differs on" in msg
    assert "PRE_TOKENIZERS in smoledge/tokenizer/llama_cpp.py" in msg
    assert not (tmp_path / "m.gguf").exists()


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
