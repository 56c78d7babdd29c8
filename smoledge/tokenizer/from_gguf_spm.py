"""The HF tokenizer.json of a SentencePiece GGUF (`tokenizer.ggml.model` = llama, or Gemma 4's
`gemma4`), in the form the family publishes it, so a user who brings only a GGUF gets the model's
tokenizer back.

    from smoledge.tokenizer.from_gguf_spm import spm_tokenizer_json_from_gguf
    spec = spm_tokenizer_json_from_gguf("phi-3-mini.Q4_0.gguf")     # a tokenizer.json dict

Two published shapes, told apart by the file's add_space_prefix (llama.cpp's default for SPM is on):
Llama 2 / TinyLlama / Phi-3 prepend '▁' to the text and spell spaces '▁' with a normalizer
(Sequence[Prepend, Replace]); Gemma spells spaces '▁' only (Replace). Both are an HF BPE model with
byte_fallback over the pieces, which is what transformers' own converter makes of a SentencePiece BPE
model: its merges are every split of a piece into two pieces, ranked by the piece's score, then by the
halves' ids. That ranking is llama.cpp's SPM algorithm (merge the adjacent pair whose concatenation has
the highest score), so the rebuild tokenizes as llama.cpp does with the same file. A `gemma4` file
(llama.cpp's BPE over the same kind of pieces) carries Gemma 4's merges themselves, which are used as
they are, in Gemma's shape.

Token types map back as llama.cpp reads them: CONTROL and UNKNOWN tokens are special added tokens,
USER_DEFINED ones are non-special added tokens (both split out of the text before the pieces, as
llama.cpp does), BYTE tokens are the <0xXX> fallback pieces. Added tokens get lstrip/rstrip off: GGUF
has no key for them (llama.cpp strips after Phi-3's specials only when general.name says phi-3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smoledge.errors import SmoledgeError
from smoledge.tokenizer.gguf_fields import gguf_tokenizer_fields, template_processing
from smoledge.tokenizer.gguf_vocab import SPM_MODEL

# llama.cpp's tokenizer model for Gemma 4: BPE with merges over '▁'-spelled text and <0xXX> byte pieces.
GEMMA4_MODEL = "gemma4"

SPACE = "\u2581"  # '▁', SentencePiece's spelling of a space
_REPLACE_SPACE = {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}
_PREPEND_SPACE = {"type": "Prepend", "prepend": SPACE}
_DECODE_PIECES = [{"type": "Replace", "pattern": {"String": SPACE}, "content": " "}, {"type": "ByteFallback"},
                  {"type": "Fuse"}]
# Llama 2's decoder also drops the space its normalizer prepended.
_STRIP_PREFIX = {"type": "Strip", "content": " ", "start": 1, "stop": 0}


def spm_tokenizer_json_from_gguf(path: str | Path) -> dict[str, Any]:
    """tokenizer.json (as a dict) for the SentencePiece vocabulary of the GGUF at `path`."""
    f = gguf_tokenizer_fields(path)
    if f["model"] not in (SPM_MODEL, GEMMA4_MODEL):
        raise SmoledgeError(f"GGUF {path} has tokenizer model {f['model']!r}, not SentencePiece ({SPM_MODEL!r} or "
                            f"{GEMMA4_MODEL!r}); rebuild it with smoledge.tokenizer.from_gguf.tokenizer_from_gguf")
    return spm_tokenizer_json(f, str(path))


def spm_tokenizer_json(f: dict[str, Any], where: str = "") -> dict[str, Any]:
    """tokenizer.json for SentencePiece GGUF fields (gguf_fields.gguf_tokenizer_fields' output)."""
    from gguf import TokenType

    tokens, types, scores = f["tokens"], [int(t) for t in f["types"]], f["scores"]
    pieces = [i for i, t in enumerate(types) if t == TokenType.NORMAL]
    if f["model"] == GEMMA4_MODEL:
        merges = [m.split(" ", 1) for m in f["merges"]]
    elif not scores or len(scores) != len(tokens):
        raise SmoledgeError(f"GGUF {where} has a SentencePiece vocabulary without a score per token; the merge "
                            "order is lost, so the tokenizer cannot be rebuilt. Use the model's original HF directory")
    elif len({scores[i] for i in pieces if len(tokens[i]) > 1}) < 2:
        raise SmoledgeError(
            f"GGUF {where} gives every SentencePiece piece the same score (a placeholder, as llama.cpp's converter "
            "writes for HF files without scores); llama.cpp then merges pieces left to right, which no HF tokenizer "
            "reproduces. Use the model's original HF directory instead of the GGUF")
    else:
        merges = piece_merges({tokens[i]: i for i in pieces}, {tokens[i]: scores[i] for i in pieces})
    vocab: dict[str, int] = {}
    added: list[dict[str, Any]] = []
    for i, (tok, kind) in enumerate(zip(tokens, types)):
        if kind in (TokenType.CONTROL, TokenType.UNKNOWN, TokenType.USER_DEFINED):
            added.append({"id": i, "content": tok, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": kind != TokenType.USER_DEFINED})
        vocab.setdefault(tok, i)
    prefix = f["add_space_prefix"] is not False
    normalizer = ({"type": "Sequence", "normalizers": [_PREPEND_SPACE, _REPLACE_SPACE]} if prefix
                  else _REPLACE_SPACE)
    unk = f["unk"] if f["unk"] is not None else next((i for i, t in enumerate(types) if t == TokenType.UNKNOWN), None)
    spec: dict[str, Any] = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": normalizer, "pre_tokenizer": None, "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": _DECODE_PIECES + ([_STRIP_PREFIX] if prefix else [])},
        "model": {"type": "BPE", "dropout": None, "unk_token": tokens[unk] if unk is not None else None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
                  "byte_fallback": True, "ignore_merges": False, "vocab": vocab,
                  "merges": merges},
    }
    if f["add_bos"] or f["add_eos"]:
        spec["post_processor"] = template_processing(f)
    return spec


def piece_merges(ids: dict[str, int], scores: dict[str, float]) -> list[list[str]]:
    """BPE merges equivalent to SentencePiece's scores: every split of a multi-character piece into two
    pieces, the highest-scoring piece's splits first (equal scores by piece id), a piece's splits by the
    halves' ids, as transformers' SentencePieceExtractor orders them."""
    merges: list[tuple[float, int, int, int, str, str]] = []
    for piece, pid in ids.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in ids and right in ids:
                merges.append((-scores[piece], pid, ids[left], ids[right], left, right))
    merges.sort()
    return [[left, right] for *_, left, right in merges]
