"""A tokenizer's GGUF vocabulary as data: what the tokenizer.* keys hold (GGUFVocab), built from a
tokenizer.json's pieces, added tokens and special tokens, and written into a GGUF file.

Shared by the byte-level BPE mapping (smoledge.tokenizer.llama_cpp) and the SentencePiece one
(smoledge.tokenizer.spm); which llama.cpp pre-tokenizer or scores a vocabulary gets is theirs to decide.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smoledge.errors import SmoledgeError

# tokenizer.ggml.model: byte-level BPE (GPT-2 style) and SentencePiece (llama.cpp calls it `llama`).
BPE_MODEL = "gpt2"
SPM_MODEL = "llama"
# A vocab-only file still gets a context llama.cpp checks against the trained one; any size will do.
VOCAB_ONLY_CONTEXT = 64
# End-of-turn tokens of the chat formats families ship (ChatML, Llama 3, Gemma, Phi-3): written as EOT
# when the tokenizer has one as a control token, so llama.cpp stops a chat turn there.
EOT_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


@dataclass
class GGUFVocab:
    """What GGUF's tokenizer.* keys hold for one tokenizer (see add_vocab)."""

    model: str
    """tokenizer.ggml.model: BPE_MODEL or SPM_MODEL."""
    tokens: list[str]
    types: list[int]
    """gguf.TokenType per token."""
    merges: list[str] = field(default_factory=list)
    """BPE merges as 'left right' (empty for SentencePiece)."""
    scores: list[float] | None = None
    """SentencePiece piece scores (None for BPE)."""
    pre: str = "default"
    """tokenizer.ggml.pre: llama.cpp's pre-tokenizer, decided by decide_pre for BPE."""
    bos: int | None = None
    eos: int | None = None
    pad: int | None = None
    unk: int | None = None
    eot: int | None = None
    add_bos: bool = False
    add_eos: bool = False
    add_space_prefix: bool | None = None
    """SentencePiece: whether a space is prepended to the text first (None: not written)."""
    chat_template: str | None = None
    normalizer_nfc: bool = False
    """The HF tokenizer NFC-normalizes text, which llama.cpp does not: callers must send NFC text."""


def vocab_by_id(tok_json: dict[str, Any], vocab_size: int, where: str) -> tuple[dict[int, str], dict[int, int]]:
    """Every token by id (model vocabulary and added tokens) and the gguf.TokenType of the added ones."""
    from gguf import TokenType

    vocab = tok_json["model"]["vocab"]
    pairs = vocab.items() if isinstance(vocab, dict) else ((piece, i) for i, (piece, _score) in enumerate(vocab))
    by_id: dict[int, str] = {int(i): t for t, i in pairs}
    types: dict[int, int] = {}
    for added in tok_json.get("added_tokens", []):
        by_id[int(added["id"])] = added["content"]
        types[int(added["id"])] = int(TokenType.CONTROL if added.get("special") else TokenType.USER_DEFINED)
    n_tok = max(by_id) + 1
    if n_tok > vocab_size:
        raise SmoledgeError(f"tokenizer has {n_tok} tokens but the model's vocab_size is {vocab_size} ({where}); "
                            "the model was trained with a different tokenizer")
    missing = [i for i in range(n_tok) if i not in by_id]
    if missing:
        raise SmoledgeError(f"tokenizer ids have holes (e.g. {missing[:5]}) in {where}; re-save the tokenizer")
    return by_id, types


def padded_tokens(by_id: dict[int, str], types: dict[int, int], vocab_size: int) -> tuple[list[str], list[int]]:
    """Tokens and types for ids 0..vocab_size-1: rows of a padded embedding no text maps to are UNUSED."""
    from gguf import TokenType

    n_tok = max(by_id) + 1
    tokens = [by_id[i] if i < n_tok else f"[PAD{i}]" for i in range(vocab_size)]
    token_types = [types.get(i, int(TokenType.NORMAL)) if i < n_tok else int(TokenType.UNUSED)
                   for i in range(vocab_size)]
    return tokens, token_types


def fill_specials(vocab: GGUFVocab, by_id: dict[int, str], types: dict[int, int], tok_json: dict[str, Any],
                  tok_cfg: dict[str, Any]) -> None:
    """BOS/EOS/PAD/UNK/EOT ids, whether HF adds BOS/EOS around text, and the chat template."""
    from gguf import TokenType

    ids = {t: i for i, t in by_id.items()}

    def special_id(name: str) -> int | None:
        v = tok_cfg.get(name)
        v = v.get("content") if isinstance(v, dict) else v
        return ids.get(v) if v else None

    vocab.bos, vocab.eos = special_id("bos_token"), special_id("eos_token")
    vocab.pad, vocab.unk = special_id("pad_token"), special_id("unk_token")
    # Whether HF adds BOS/EOS around plain text: llama.cpp must do the same.
    vocab.add_bos, vocab.add_eos = _post_processor_adds(tok_json, vocab.bos, vocab.eos)
    eot = next((ids[t] for t in EOT_TOKENS if t in ids), None)
    vocab.eot = eot if eot is not None and types.get(eot) == int(TokenType.CONTROL) else None
    template = tok_cfg.get("chat_template")
    vocab.chat_template = template if isinstance(template, str) else None


def _post_processor_adds(tok_json: dict[str, Any], bos: int | None, eos: int | None) -> tuple[bool, bool]:
    """(adds BOS first, adds EOS last) for a single sequence, read from tokenizer.json."""
    tk = hf_tokenizer(tok_json)
    plain = tk.encode("a", add_special_tokens=False).ids
    full = tk.encode("a", add_special_tokens=True).ids
    if full == plain:
        return False, False
    add_bos = bos is not None and full[:1] == [bos] and full[1:1 + len(plain)] == plain
    add_eos = eos is not None and full[-1:] == [eos]
    if len(full) != len(plain) + add_bos + add_eos:
        raise SmoledgeError(f"the tokenizer's post-processor adds {full} around {plain}; GGUF can only express "
                            "an optional BOS and EOS. Remove the post-processor")
    return add_bos, add_eos


def hf_tokenizer(tok_json: dict[str, Any]):
    from tokenizers import Tokenizer

    return Tokenizer.from_str(json.dumps(tok_json))


def special_tokens(tok_json: dict[str, Any]) -> list[str]:
    """The special added tokens' strings (text containing one does not detokenize back to itself)."""
    return [a["content"] for a in tok_json.get("added_tokens", []) if a.get("special")]


def normalizes_nfc(tok_json: dict[str, Any]) -> bool:
    return (tok_json.get("normalizer") or {}).get("type") == "NFC"


def add_vocab(w: Any, vocab: GGUFVocab) -> None:
    """Write `vocab` as the tokenizer.* keys of a gguf.GGUFWriter."""
    w.add_tokenizer_model(vocab.model)
    w.add_tokenizer_pre(vocab.pre)
    w.add_token_list(vocab.tokens)
    w.add_token_types(vocab.types)
    if vocab.scores is not None:
        w.add_token_scores(vocab.scores)
    if vocab.merges:
        w.add_token_merges(vocab.merges)
    for value, adder in ((vocab.bos, w.add_bos_token_id), (vocab.eos, w.add_eos_token_id),
                         (vocab.pad, w.add_pad_token_id), (vocab.unk, w.add_unk_token_id),
                         (vocab.eot, w.add_eot_token_id)):
        if value is not None:
            adder(value)
    w.add_add_bos_token(vocab.add_bos)
    w.add_add_eos_token(vocab.add_eos)
    if vocab.add_space_prefix is not None:
        w.add_add_space_prefix(vocab.add_space_prefix)
    if vocab.chat_template:
        w.add_chat_template(vocab.chat_template)


def write_vocab_only(vocab: GGUFVocab, path: Path) -> Path:
    """A GGUF holding only `vocab` (as llama.cpp's models/ggml-vocab-*.gguf files do)."""
    import gguf

    w = gguf.GGUFWriter(path, "llama")
    w.add_name("vocab")
    w.add_context_length(VOCAB_ONLY_CONTEXT)
    w.add_vocab_size(len(vocab.tokens))
    add_vocab(w, vocab)
    w.write_header_to_file(path=path)
    w.write_kv_data_to_file()
    w.close()
    return path
