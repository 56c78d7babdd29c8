"""A GGUF file's tokenizer keys read back as Python values, and the post-processor they imply: what the
HF tokenizer rebuilds (smoledge.tokenizer.from_gguf for byte-level BPE, from_gguf_spm for SentencePiece)
start from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smoledge.errors import SmoledgeError


def read_fields(path: str | Path) -> dict[str, Any]:
    """A GGUF file's key/value fields; a file that is not a whole GGUF gets an error naming it."""
    import gguf

    try:
        return gguf.GGUFReader(str(path)).fields
    except (ValueError, IndexError, OSError) as exc:  # bad magic, truncated arrays, unreadable file
        raise SmoledgeError(f"{path} is not a readable GGUF file ({type(exc).__name__}: {exc}); it may be truncated "
                            "or not a GGUF at all: download it again, or give the model's HF directory") from None


def gguf_tokenizer_fields(path: str | Path) -> dict[str, Any]:
    """The tokenizer.* keys of a GGUF file as Python values (tokens, merges, types, ids, template)."""
    fields = read_fields(path)

    def get(key: str, default: Any = None) -> Any:
        f = fields.get(f"tokenizer.{key}")
        return f.contents() if f is not None else default

    return {
        "model": get("ggml.model"), "pre": get("ggml.pre", "default"), "tokens": get("ggml.tokens", []),
        "types": get("ggml.token_type", []), "merges": get("ggml.merges", []), "scores": get("ggml.scores"),
        "bos": get("ggml.bos_token_id"), "eos": get("ggml.eos_token_id"), "pad": get("ggml.padding_token_id"),
        "unk": get("ggml.unknown_token_id"), "add_bos": bool(get("ggml.add_bos_token", False)),
        "add_eos": bool(get("ggml.add_eos_token", False)), "add_space_prefix": get("ggml.add_space_prefix"),
        "chat_template": get("chat_template"),
    }


def template_processing(f: dict[str, Any]) -> dict[str, Any]:
    """The TemplateProcessing that adds BOS/EOS around text as the GGUF's add_bos/add_eos say."""
    def part(seq: str, type_id: int) -> list[dict[str, Any]]:
        bos = [{"SpecialToken": {"id": f["tokens"][f["bos"]], "type_id": type_id}}] if f["add_bos"] else []
        eos = [{"SpecialToken": {"id": f["tokens"][f["eos"]], "type_id": type_id}}] if f["add_eos"] else []
        return bos + [{"Sequence": {"id": seq, "type_id": type_id}}] + eos

    used = [i for i, on in ((f["bos"], f["add_bos"]), (f["eos"], f["add_eos"])) if on]
    return {"type": "TemplateProcessing", "single": part("A", 0), "pair": part("A", 0) + part("B", 1),
            "special_tokens": {f["tokens"][i]: {"id": f["tokens"][i], "ids": [i], "tokens": [f["tokens"][i]]}
                               for i in used}}


def gguf_tokenizer_kind(path: str | Path) -> dict[str, str]:
    """tokenizer.ggml.model and .pre of a GGUF file."""
    fields = read_fields(path)
    return {k: fields[f"tokenizer.ggml.{k}"].contents() if f"tokenizer.ggml.{k}" in fields else None
            for k in ("model", "pre")}
