"""A model's existing tokenizer, borrowed for training (tokenizer.pretrained) and checked once, up front,
against what the GGUF export can reproduce.

    from smoledge.tokenizer.pretrained import load_pretrained
    tok = load_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")   # or a local directory

Any tokenizer llama.cpp implements is accepted: byte-level BPE with any of llama.cpp's pre-tokenizers
(gpt-2, llama-bpe, smollm, qwen2, ...), decided by how it tokenizes, and SentencePiece models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smoledge.errors import SmoledgeError
from smoledge.io import sha256_file
from smoledge.tokenizer.llama_cpp import gguf_vocab

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

# The files that make up a saved HF tokenizer; every stage that copies a tokenizer copies these.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def pretrained_inputs(name: str | None) -> dict[str, Any]:
    """A local pretrained tokenizer by content (editing it must re-tokenize); a hub id is in the recipe."""
    if name is None or not Path(name).is_dir():
        return {}
    files = sorted(p for p in Path(name).iterdir() if p.is_file() and p.name in TOKENIZER_FILES)
    return {"pretrained": {p.name: sha256_file(p) for p in files}}


def load_pretrained(name: str) -> "PreTrainedTokenizerFast":
    """An existing tokenizer (directory or hub id) that smoledge can shard with and export to GGUF."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise SmoledgeError(
            f"cannot load tokenizer.pretrained '{name}' ({str(exc).strip().splitlines()[0]}); give a local "
            f"directory holding tokenizer.json, or a hub id with network access (or one already in the HF cache: "
            f"huggingface-cli download {name} --include 'tokenizer*' --local-dir DIR, then pretrained: DIR)"
        ) from None
    if not tok.is_fast:
        raise SmoledgeError(f"tokenizer.pretrained '{name}' has no tokenizer.json (a slow, Python-only tokenizer); "
                            "smoledge needs a fast tokenizer (tokenizer.json) to shard and export")
    if tok.eos_token_id is None:
        raise SmoledgeError(f"tokenizer.pretrained '{name}' has no EOS token; documents are separated by EOS in "
                            "the shards. Use a tokenizer that defines eos_token")
    # Refuse now, not after days of distillation, a tokenizer the GGUF export could not reproduce.
    gguf_vocab(json.loads(tok.backend_tokenizer.to_str()), _tokenizer_config(tok), len(tok), name)
    return tok


def _tokenizer_config(tok: "PreTrainedTokenizerFast") -> dict[str, Any]:
    """The special-token names and chat template tokenizer_config.json would hold for `tok`."""
    cfg: dict[str, Any] = {k: getattr(tok, k) for k in ("bos_token", "eos_token", "pad_token", "unk_token")}
    cfg["chat_template"] = tok.chat_template
    return cfg
