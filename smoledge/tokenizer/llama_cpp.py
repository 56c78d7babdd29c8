"""The tokenizer as llama.cpp reads it: an HF tokenizer.json mapped onto GGUF's tokenizer keys, with the
pre-tokenizer chosen by how llama.cpp actually tokenizes.

    from smoledge.tokenizer.llama_cpp import gguf_vocab_for_dir
    vocab = gguf_vocab_for_dir("runs/q/export/hf", vocab_size=49152)   # raises if llama.cpp would differ
    smoledge.tokenizer.gguf_vocab.add_vocab(gguf_writer, vocab)        # its tokenizer.* keys

Why the pre-tokenizer is decided by behaviour. llama.cpp does not read a tokenizer's split regex; it
reads a name (`tokenizer.ggml.pre`) and runs its own hand-written splitter for that name. Mapping
regex strings to names breaks on the first family that spells an equivalent regex differently, or
splits digits with a `Digits` step (SmolLM2's `smollm`), and llama.cpp's own converter recognises a
tokenizer by a hash of one sample's tokens, which no freshly trained vocabulary can match. So each
candidate name from llama.cpp's table is tried for real: the vocabulary is written as a vocab-only
GGUF with that name, llama.cpp tokenizes PROBE_TEXTS (several languages, digits, code, whitespace
runs, emoji, specials inside text) and detokenizes them back, and the first name whose ids equal
the HF tokenizer's on every text wins. The HF pre-tokenizer's structure only orders the candidates,
so the usual case costs one try (~0.2 s for a 49k vocabulary); a tokenizer no name reproduces is
refused with the first difference of the likeliest candidate.

What this does not do: it does not make llama.cpp apply an HF normalizer. A byte-level BPE whose
normalizer is anything but NFC is refused, since llama.cpp would tokenize the raw text. NFC (Qwen2's)
is kept: the gate compares on NFC text, and GGUFVocab.normalizer_nfc says that text reaching
llama.cpp must already be NFC, as it does not compose characters itself.
"""

from __future__ import annotations

import json
import tempfile
import unicodedata
from pathlib import Path
from typing import Any, Sequence

from smoledge.errors import SmoledgeError
from smoledge.io import read_json
from smoledge.tokenizer.gguf_vocab import (BPE_MODEL, VOCAB_ONLY_CONTEXT, GGUFVocab, fill_specials, hf_tokenizer,
                                           normalizes_nfc, padded_tokens, special_tokens, vocab_by_id,
                                           write_vocab_only)
from smoledge.tokenizer.spm import spm_probe_texts, spm_vocab

MODEL_FILES_MISSING = ("a model directory holds config.json, its weights and its tokenizer "
                       "(model.save_pretrained(dir) and tokenizer.save_pretrained(dir))")
# llama.cpp's byte-level BPE pre-tokenizers, one name per distinct splitter (src/llama-vocab.cpp of the
# llama.cpp that llama-cpp-python 0.3.36 vendors), most used first. The value: whether llama.cpp runs
# it with ignore_merges (a pre-token that is itself in the vocabulary is taken whole), which HF's
# BPE `ignore_merges` must match, since the probe texts cannot always show the difference.
PRE_TOKENIZERS: dict[str, bool] = {
    "gpt-2": False, "llama-bpe": True, "smollm": False, "qwen2": False, "qwen35": False, "starcoder": False,
    "refact": False, "falcon": False, "mpt": False, "olmo": False, "deepseek-llm": False,
    "deepseek-coder": False, "deepseek-v3": False, "command-r": False, "stablelm2": False, "dbrx": False,
    "smaug-bpe": False, "poro-chat": False, "chatglm-bpe": False, "glm4": True, "viking": False,
    "jais": False, "jais-2": False, "tekken": True, "codeshell": False, "bloom": False,
    "gpt3-finnish": False, "exaone": False, "exaone-moe": False, "chameleon": False, "minerva-7b": False,
    "gpt-4o": False, "superbpe": False, "trillion": False, "bailingmoe": False, "seed-coder": False,
    "hunyuan": False, "hunyuan-dense": False, "kimi-k2": False, "grok-2": False, "afmoe": False,
    "minimax-m2": False, "gemma4": False, "sarvam-moe": False, "tiny_aya": False, "granite-docling": False,
    "youtu": True, "spark2_5": False, "minicpm5": True, "whitespace": False, "default": False,
}

# Split regexes as families spell them in tokenizer.json -> the llama.cpp name to try first.
GPT2_SPLIT_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_SPLIT_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                      r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                     r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
REGEX_HINTS: dict[str, str] = {GPT2_SPLIT_REGEX: "gpt-2", LLAMA3_SPLIT_REGEX: "llama-bpe", QWEN2_SPLIT_REGEX: "qwen2"}

# Texts where tokenizer implementations tend to disagree: specials inside text, whitespace runs,
# contractions in both cases, digit runs of every length, accents, non-Latin scripts, emoji and ZWJ
# sequences, code. The tokenization gate of every export runs these too.
PROBE_TEXTS = (
    "The quick brown fox jumps over the lazy dog. Don't, won't, they'll, I'd've. DON'T SHOUT, I'LL GO.",
    "Le renard brun saute par-dessus le chien paresseux — à l'été, ça coûte 3,50 €.",
    "El zorro marrón: ¿dónde está? ¡Aquí! Niño, pingüino, acción.",
    "Der braune Fuchs springt über den faulen Hund. Größe: 12½ Straße.",
    "Il gatto è sul tavolo; perché non lo sai? Così è.",
    "O rato roeu a roupa do rei de Roma. Ação, coração, pão.",
    "<|im_start|>user\nBonjour, comment ça va ?<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more text<|im_end|><|im_start|>",
    "  two leading spaces,\tthen a tab,\n\n\nthree newlines,    four spaces   \n end",
    "Emoji: 🦊🐶 👩‍👩‍👧 ✨ and CJK 日本語の文章 한국어 Ελληνικά Русский текст",
    "Numbers 1234567890 3.14159 1e-5 0x1F 7 42 333 4444 55555 and code: def f(x): return x**2  # ok",
    "Caf\u00e9 vs Cafe\u0301 (NFC vs NFD), \u00a0non-breaking\u2009thin space, soft\u00adhyphen",
    "\n =\n\n\t\t  \r\n\r\nindent:\n    if x:\n\t\treturn [1, 2]  // (x) {y} <z/>",
    " Hello World! Hello, world!  Hello   world\n Hello",
)


def gguf_vocab_for_dir(hf_dir: str | Path, vocab_size: int) -> GGUFVocab:
    """The GGUF vocabulary of the tokenizer saved in `hf_dir`, padded to the model's `vocab_size`."""
    hf_dir = Path(hf_dir)
    tok_json = read_json(hf_dir / "tokenizer.json", MODEL_FILES_MISSING)
    tok_cfg = read_json(hf_dir / "tokenizer_config.json", MODEL_FILES_MISSING) if (hf_dir / "tokenizer_config.json").exists() else {}
    if not tok_cfg.get("chat_template") and (hf_dir / "chat_template.jinja").exists():
        tok_cfg = {**tok_cfg, "chat_template": (hf_dir / "chat_template.jinja").read_text(encoding="utf-8")}
    return gguf_vocab(tok_json, tok_cfg, vocab_size, hf_dir / "tokenizer.json")


def gguf_vocab(tok_json: dict[str, Any], tok_cfg: dict[str, Any], vocab_size: int,
               where: Path | str = "") -> GGUFVocab:
    """Map a tokenizer.json (+ tokenizer_config.json's fields) onto GGUF, proving the pre-tokenizer by
    running llama.cpp; raises SmoledgeError, naming the fix, for anything llama.cpp would tokenize
    differently."""
    where = str(where)
    model = (tok_json.get("model") or {}).get("type")
    nfc = _check_normalizer(tok_json, where)
    if model == "BPE" and not tok_json["model"].get("byte_fallback"):
        vocab = _bpe_vocab(tok_json, tok_cfg, vocab_size, where)
        vocab.normalizer_nfc = nfc
        vocab.pre = decide_pre(vocab, tok_json, where)
        return vocab
    vocab = spm_vocab(tok_json, tok_cfg, vocab_size, where)
    vocab.normalizer_nfc = nfc
    check_vocab(vocab, tok_json, where, [*PROBE_TEXTS, *spm_probe_texts(tok_json)])
    return vocab


def _check_normalizer(tok_json: dict[str, Any], where: str) -> bool:
    """True for an NFC normalizer (kept, with the gate run on NFC text); None passes; byte-level BPE with
    any other normalizer is refused. SentencePiece normalizers are spm.py's to judge."""
    norm = tok_json.get("normalizer")
    if norm is None:
        return False
    if normalizes_nfc(tok_json):
        return True
    if (tok_json.get("model") or {}).get("type") == "BPE" and not tok_json["model"].get("byte_fallback"):
        raise SmoledgeError(f"tokenizer has a normalizer {norm.get('type')!r} ({where}); llama.cpp's byte-level BPE "
                            "applies none, so text would tokenize differently. Use the tokenizer without it")
    return False


def _bpe_vocab(tok_json: dict[str, Any], tok_cfg: dict[str, Any], vocab_size: int, where: str) -> GGUFVocab:
    by_id, types = vocab_by_id(tok_json, vocab_size, where)
    tokens, token_types = padded_tokens(by_id, types, vocab_size)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok_json["model"].get("merges", [])]
    vocab = GGUFVocab(model=BPE_MODEL, tokens=tokens, types=token_types, merges=merges)
    fill_specials(vocab, by_id, types, tok_json, tok_cfg)
    return vocab


# ---------------------------------------------------------------- writing and running


def llama_vocab(path: str | Path):
    """llama.cpp with only the vocabulary of `path` loaded (tokenize/detokenize, no weights)."""
    from llama_cpp import Llama

    return Llama(model_path=str(path), vocab_only=True, n_ctx=VOCAB_ONLY_CONTEXT, verbose=False)


def llama_detokenize(llm: Any, tokens: Sequence[int], special: bool = False, whole_text: bool = False) -> bytes:
    """The bytes of `tokens` as llama.cpp spells them (control tokens only with `special`).

    Not llama-cpp-python's Llama.detokenize: it reads each piece into a fixed 32-byte buffer and drops
    the piece when it is longer (llama_token_to_piece answers with the size it needs, which it ignores),
    so a vocabulary with long tokens (SmolLM2's runs of 40 spaces after a newline) loses text silently.
    The buffer here grows to the size llama.cpp asks for. With `whole_text` (the tokens of one text
    from its start), the space a SentencePiece vocabulary's add_space_prefix put before the text is
    dropped from the first piece, as llama.cpp's own llama_detokenize does, so text comes back as it
    went in; pieces streamed one at a time keep it."""
    import ctypes

    import llama_cpp

    vocab = llm._model.vocab
    size = 64
    buf = (ctypes.c_char * size)()
    out = bytearray()
    lstrip = int(whole_text and space_prefixed(llm))
    for k, token in enumerate(tokens):
        strip = lstrip if k == 0 else 0
        n = llama_cpp.llama_token_to_piece(vocab, llama_cpp.llama_token(token), buf, size, strip, special)
        if n < 0:
            size = -n
            buf = (ctypes.c_char * size)()
            n = llama_cpp.llama_token_to_piece(vocab, llama_cpp.llama_token(token), buf, size, strip, special)
        out += bytes(buf[:n])
    return bytes(out)


def space_prefixed(llm: Any) -> bool:
    """Whether llama.cpp prepends a space to text before tokenizing it: tokenizer.ggml.add_space_prefix,
    which llama.cpp defaults to on for SentencePiece vocabularies and off for the others."""
    import llama_cpp

    key = llm.metadata.get("tokenizer.ggml.add_space_prefix")
    if key is not None:
        return key == "true"
    return llama_cpp.llama_vocab_type(llm._model.vocab) == llama_cpp.LLAMA_VOCAB_TYPE_SPM


def first_difference(tok_json: dict[str, Any], llm: Any, texts: Sequence[str], nfc: bool = False,
                     specials: Sequence[str] = ()) -> str | None:
    """None when llama.cpp tokenizes every text like HF (specials parsed) and detokenizes texts without
    specials back to their bytes; else what differed first."""
    tk = hf_tokenizer(tok_json)
    for text in texts:
        text = unicodedata.normalize("NFC", text) if nfc else text
        ref = tk.encode(text, add_special_tokens=False).ids
        got = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if ref != got:
            at = next((i for i, (a, b) in enumerate(zip(ref, got)) if a != b), min(len(ref), len(got)))
            return (f"on {text!r} at token {at}: HF {ref[at:at + 5]} {[tk.id_to_token(i) for i in ref[at:at + 5]]} "
                    f"vs llama.cpp {got[at:at + 5]}")
        if not any(s in text for s in specials):
            back = llama_detokenize(llm, got, whole_text=True)
            if back != text.encode("utf-8"):
                return f"llama.cpp detokenizes {text!r} to {back!r}"
    return None


def check_vocab(vocab: GGUFVocab, tok_json: dict[str, Any], where: str, texts: Sequence[str] = PROBE_TEXTS) -> None:
    """Raise unless llama.cpp, given `vocab`, tokenizes `texts` exactly like the HF tokenizer."""
    with tempfile.TemporaryDirectory(prefix="smoledge-vocab-") as tmp:
        llm = llama_vocab(write_vocab_only(vocab, Path(tmp) / "vocab.gguf"))
        problem = first_difference(tok_json, llm, texts, vocab.normalizer_nfc, special_tokens(tok_json))
    if problem:
        raise SmoledgeError(f"llama.cpp, given this tokenizer's GGUF vocabulary ({where}), tokenizes differently "
                            f"from HF {problem}; the exported vocabulary would not be the model's tokenizer")


# ---------------------------------------------------------------- the pre-tokenizer


def pre_tokenizer_hint(pre: Any) -> str | None:
    """The llama.cpp name a byte-level pre-tokenizer's structure suggests (only orders the candidates)."""
    if not isinstance(pre, dict):
        return None
    if pre.get("type") == "ByteLevel":
        return "gpt-2" if pre.get("use_regex", True) else None
    if pre.get("type") != "Sequence":
        return None
    parts = pre.get("pretokenizers") or []
    kinds = [p.get("type") for p in parts]
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits") and parts[1].get("use_regex", True):
        return "smollm"  # single digits, then GPT-2's regex
    if kinds == ["Split", "ByteLevel"]:
        return REGEX_HINTS.get((parts[0].get("pattern") or {}).get("Regex", ""))
    return None


def vocabulary_probes(tok_json: dict[str, Any], per_text: int = 64, max_tokens: int = 4096) -> list[str]:
    """Texts made of the vocabulary's own tokens that cross character classes (digit runs, spaces before
    digits or punctuation, newlines, letters glued to symbols): such a token exists only because the HF
    splitter let its characters share a pre-token, so a splitter that cuts elsewhere shows on it.
    Deterministic: every such token in id order, up to `max_tokens`."""
    import re

    tk = hf_tokenizer(tok_json)
    cross = re.compile(r"\d\d|\s\d|\s[^\w\s]|\n|\w[^\w\s]|[^\w\s]\w|\s\s")
    special = set(special_tokens(tok_json))
    picked: list[str] = []
    for i in range(tk.get_vocab_size()):
        piece = tk.id_to_token(i)
        if piece is None or piece in special:
            continue
        text = tk.decode([i], skip_special_tokens=False)
        if "\ufffd" not in text and cross.search(text):
            picked.append(text)
            if len(picked) == max_tokens:
                break
    return ["a" + "a ".join(picked[k:k + per_text]) for k in range(0, len(picked), per_text)]


def decide_pre(vocab: GGUFVocab, tok_json: dict[str, Any], where: str = "",
               texts: Sequence[str] | None = None) -> str:
    """The first llama.cpp pre-tokenizer under which llama.cpp tokenizes PROBE_TEXTS and the vocabulary's
    own cross-class tokens (vocabulary_probes) exactly like HF (`texts` replaces both)."""
    texts = list(texts) if texts is not None else [*PROBE_TEXTS, *vocabulary_probes(tok_json)]
    hint = pre_tokenizer_hint(tok_json.get("pre_tokenizer"))
    order = ([hint] if hint else []) + [name for name in PRE_TOKENIZERS if name != hint]
    ignore_merges = bool(tok_json["model"].get("ignore_merges", False))
    specials = special_tokens(tok_json)
    first_problem: tuple[str, str] | None = None
    merges_mismatch: str | None = None
    with tempfile.TemporaryDirectory(prefix="smoledge-pre-") as tmp:
        for name in order:
            vocab.pre = name
            try:
                llm = llama_vocab(write_vocab_only(vocab, Path(tmp) / f"{name}.gguf"))
            except ValueError as exc:  # a name this llama.cpp build does not know
                first_problem = first_problem or (name, f"llama.cpp refused it ({exc})")
                continue
            problem = first_difference(tok_json, llm, texts, vocab.normalizer_nfc, specials)
            llm.close()
            if problem is None and PRE_TOKENIZERS[name] != ignore_merges:
                merges_mismatch = merges_mismatch or name
                continue
            if problem is None:
                return name
            first_problem = first_problem or (name, problem)
    if merges_mismatch:
        raise SmoledgeError(
            f"tokenizer ({where}) has ignore_merges={ignore_merges} but llama.cpp's '{merges_mismatch}' "
            f"pre-tokenizer, the one that splits its text alike, runs with ignore_merges={PRE_TOKENIZERS[merges_mismatch]}; "
            "words in the vocabulary would split differently. Use the tokenizer as its model family publishes it")
    name, problem = first_problem or ("-", "no candidate")
    pre_json = json.dumps(tok_json.get("pre_tokenizer"))[:300]
    raise SmoledgeError(
        f"no llama.cpp pre-tokenizer reproduces this tokenizer ({where}, pre-tokenizer {pre_json}): all "
        f"{len(order)} of llama.cpp's were tried and each tokenizes differently; the likeliest, '{name}', "
        f"differs {problem}. The GGUF would tokenize differently from the model, so it is not written. Use a "
        "tokenizer from a family llama.cpp supports (or smoledge's own BPE), or, if llama.cpp gains a "
        "pre-tokenizer for it, add that name to PRE_TOKENIZERS in smoledge/tokenizer/llama_cpp.py")
