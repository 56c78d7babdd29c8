"""SentencePiece tokenizers (Llama 2, Phi-3, Gemma) as llama.cpp's `llama` tokenizer model."""

from __future__ import annotations

from typing import Any

from smoledge.errors import SmoledgeError


def spm_vocab(tok_json: dict[str, Any], tok_cfg: dict[str, Any], vocab_size: int, where: str):
    model = tok_json.get("model") or {}
    raise SmoledgeError(f"tokenizer model is {model.get('type')!r}"
                        f"{' with byte_fallback' if model.get('byte_fallback') else ''} ({where}): a SentencePiece-"
                        "style tokenizer, which smoledge does not export to GGUF yet; use a byte-level BPE tokenizer")
