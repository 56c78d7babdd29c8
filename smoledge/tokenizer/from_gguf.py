"""An HF tokenizer rebuilt from a GGUF file's vocabulary, with the model family's real pre-tokenizer.

    from smoledge.tokenizer.from_gguf import tokenizer_from_gguf
    tok = tokenizer_from_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")    # a PreTrainedTokenizerFast
    tok.save_pretrained("smollm2/")

Why not transformers' own GGUF loader: it rebuilds every byte-level BPE as a byte-fallback
LlamaTokenizerFast, which is not the tokenizer the model was trained with (SmolLM2's splits digits one
by one first; Qwen2's NFC-normalizes), so ids drift from what llama.cpp gives on the same file. Here
the GGUF's `tokenizer.ggml.pre` picks the HF pre-tokenizer that family publishes (FAMILIES), the
tokens, merges and token types come from the file, and the result is checked against llama.cpp on the
GGUF itself before it is returned: a family this table does not know is refused, not guessed.

SentencePiece files (`tokenizer.ggml.model` = llama, or Gemma 4's gemma4) are rebuilt by
smoledge.tokenizer.from_gguf_spm.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smoledge.errors import SmoledgeError
from smoledge.tokenizer.gguf_vocab import BPE_MODEL, SPM_MODEL, special_tokens
from smoledge.tokenizer.llama_cpp import (LLAMA3_SPLIT_REGEX, PRE_TOKENIZERS, PROBE_TEXTS, QWEN2_SPLIT_REGEX,
                                          first_difference, llama_vocab)
from smoledge.tokenizer.from_gguf_spm import GEMMA4_MODEL, spm_tokenizer_json
from smoledge.tokenizer.gguf_fields import gguf_tokenizer_fields, template_processing

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
_BYTE_LEVEL_NO_REGEX = {**_BYTE_LEVEL, "use_regex": False}


def _split(regex: str) -> dict[str, Any]:
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


# llama.cpp pre-tokenizer -> (HF normalizer, HF pre_tokenizer) as the family's tokenizer.json has them.
FAMILIES: dict[str, tuple[dict[str, Any] | None, dict[str, Any]]] = {
    "gpt-2": (None, _BYTE_LEVEL),
    # SmolLM/SmolLM2 and StarCoder: every digit its own pre-token, then GPT-2's regex.
    "smollm": (None, {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, _BYTE_LEVEL]}),
    "starcoder": (None, {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, _BYTE_LEVEL]}),
    "llama-bpe": (None, {"type": "Sequence", "pretokenizers": [_split(LLAMA3_SPLIT_REGEX), _BYTE_LEVEL_NO_REGEX]}),
    "qwen2": ({"type": "NFC"}, {"type": "Sequence", "pretokenizers": [
        _split(QWEN2_SPLIT_REGEX), _BYTE_LEVEL_NO_REGEX]}),
}
_DECODER = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}


def bpe_tokenizer_json(f: dict[str, Any], where: str = "") -> dict[str, Any]:
    """tokenizer.json for a byte-level BPE GGUF vocabulary (gguf_tokenizer_fields' output)."""
    from gguf import TokenType

    if f["pre"] not in FAMILIES:
        raise SmoledgeError(
            f"GGUF {where} uses llama.cpp's '{f['pre']}' pre-tokenizer, whose HF form smoledge does not know, so its "
            f"tokenizer cannot be rebuilt faithfully (known: {', '.join(FAMILIES)}); use the model's original HF "
            "directory (with tokenizer.json) instead of the GGUF, or add the family to FAMILIES in "
            "smoledge/tokenizer/from_gguf.py with a test against llama.cpp's vocab files")
    normalizer, pre_tokenizer = FAMILIES[f["pre"]]
    vocab, added = {}, []
    for i, (tok, kind) in enumerate(zip(f["tokens"], f["types"])):
        if kind in (TokenType.CONTROL, TokenType.USER_DEFINED):
            added.append({"id": i, "content": tok, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": kind == TokenType.USER_DEFINED, "special": kind == TokenType.CONTROL})
        vocab[tok] = i
    spec: dict[str, Any] = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": normalizer, "pre_tokenizer": pre_tokenizer, "post_processor": None, "decoder": _DECODER,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": PRE_TOKENIZERS[f["pre"]], "vocab": vocab,
                  "merges": [m.split(" ", 1) for m in f["merges"]]},
    }
    if f["add_bos"] or f["add_eos"]:
        spec["post_processor"] = template_processing(f)
    return spec


def tokenizer_from_gguf(path: str | Path) -> "PreTrainedTokenizerFast":
    """The GGUF's tokenizer as an HF fast tokenizer, proven against llama.cpp on the same file."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    f = gguf_tokenizer_fields(path)
    if f["model"] == BPE_MODEL:
        spec = bpe_tokenizer_json(f, str(path))
    elif f["model"] in (SPM_MODEL, GEMMA4_MODEL):
        spec = spm_tokenizer_json(f, str(path))
    else:
        raise SmoledgeError(f"GGUF {path} has tokenizer model {f['model']!r}; smoledge rebuilds byte-level BPE "
                            f"({BPE_MODEL}) and SentencePiece ({SPM_MODEL}, {GEMMA4_MODEL}) tokenizers only")
    problem = first_difference(spec, llama_vocab(path), PROBE_TEXTS, spec.get("normalizer") is not None,
                               special_tokens(spec))
    if problem:
        raise SmoledgeError(f"the tokenizer rebuilt from {path} does not tokenize like llama.cpp does with the same "
                            f"file: {problem}; use the model's original HF directory instead")

    def name(i: int | None) -> str | None:
        return f["tokens"][i] if i is not None and 0 <= i < len(f["tokens"]) else None

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)), bos_token=name(f["bos"]), eos_token=name(f["eos"]),
        pad_token=name(f["pad"]), unk_token=name(f["unk"]), clean_up_tokenization_spaces=False,
        model_input_names=["input_ids", "attention_mask"])
    if f["chat_template"]:
        tok.chat_template = f["chat_template"]
    return tok
