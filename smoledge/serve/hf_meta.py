"""What serving reads from an HF-style model directory: chat template, special tokens, end-of-turn ids,
context length. Torch- and transformers-free: plain JSON, so that it runs on a board.

    from smoledge.serve.hf_meta import read_tokenizer_meta
    meta = read_tokenizer_meta(Path("SmolLM2-135M-Instruct"))
    meta.chat_template, meta.bos_token, meta.eos_token, meta.stop_tokens, meta.n_ctx_train

An HF directory, an optimum ONNX export and a bundle's ONNX device all carry these files
(tokenizer_config.json, chat_template.jinja, generation_config.json, config.json, tokenizer.json).
An instruct model often ends its turn on more than its tokenizer's EOS: Llama 3 lists <|eot_id|> and
<|end_of_text|> in generation_config.json's eos_token_id, which is what transformers' `generate`
stops on, so every id listed there (and config.json's) is an end of turn here too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smoledge.errors import SmoledgeError

TOKENIZER_CONFIG, TOKENIZER_JSON, CHAT_TEMPLATE = "tokenizer_config.json", "tokenizer.json", "chat_template.jinja"
GENERATION_CONFIG, MODEL_CONFIG = "generation_config.json", "config.json"
# config.json keys that hold the trained context length, by model family (Llama/Qwen, GPT-2, others).
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file; {} when it is absent, an error naming the file when it is not a JSON object."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SmoledgeError(f"{path} is not readable JSON ({exc}); restore it from the model's source") from None
    if not isinstance(data, dict):
        raise SmoledgeError(f"{path} holds a JSON {type(data).__name__}, not an object; restore it from the "
                            "model's source")
    return data


def token_text(value: Any) -> str:
    """tokenizer_config.json stores a special token as a string or as {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else ""


def chat_template(directory: Path, tok_config: dict[str, Any]) -> str | None:
    """The tokenizer's chat template: tokenizer_config.json's, or chat_template.jinja (transformers >= 4.50)."""
    template = tok_config.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    if not template and (directory / CHAT_TEMPLATE).is_file():
        template = (directory / CHAT_TEMPLATE).read_text(encoding="utf-8")
    return template if isinstance(template, str) and template else None


def end_ids(directory: Path) -> list[int]:
    """Every eos_token_id generation_config.json and config.json list (an int or a list of ints)."""
    ids: list[int] = []
    for name in (GENERATION_CONFIG, MODEL_CONFIG):
        value = read_json(directory / name).get("eos_token_id")
        for i in value if isinstance(value, list) else [value]:
            if isinstance(i, int) and i not in ids:
                ids.append(i)
    return ids


def id_texts(tokenizer_json: dict[str, Any], ids: list[int]) -> list[str]:
    """The text of each token id in a tokenizer.json (special tokens are its added_tokens); unknown ids skipped."""
    by_id = {int(t["id"]): t["content"] for t in tokenizer_json.get("added_tokens", [])}
    vocab = (tokenizer_json.get("model") or {}).get("vocab")
    if isinstance(vocab, dict):
        for text, i in vocab.items():
            by_id.setdefault(i, text)
    return [by_id[i] for i in ids if i in by_id]


def context_length(config: dict[str, Any]) -> int | None:
    """The trained context length config.json states, or None."""
    for key in CONTEXT_KEYS:
        if isinstance(config.get(key), int) and config[key] > 0:
            return config[key]
    return None


@dataclass
class TokenizerMeta:
    chat_template: str | None = None
    bos_token: str = ""
    eos_token: str = ""
    stop_tokens: list[str] = field(default_factory=list)
    """Texts of the end-of-turn tokens: the tokenizer's EOS and every id in eos_token_id lists."""
    n_ctx_train: int | None = None


def read_tokenizer_meta(directory: Path) -> TokenizerMeta:
    """The serving metadata of an HF-style directory (tokenizer files read from `directory` itself)."""
    tok_config = read_json(directory / TOKENIZER_CONFIG)
    eos = token_text(tok_config.get("eos_token"))
    texts = id_texts(read_json(directory / TOKENIZER_JSON), end_ids(directory))
    stops = [t for t in dict.fromkeys([eos, *texts]) if t]
    return TokenizerMeta(chat_template=chat_template(directory, tok_config),
                         bos_token=token_text(tok_config.get("bos_token")), eos_token=eos, stop_tokens=stops,
                         n_ctx_train=context_length(read_json(directory / MODEL_CONFIG)))
