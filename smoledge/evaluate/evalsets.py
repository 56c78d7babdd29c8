"""User evaluation sets: the user's own held-out text, scored per language like the curated valid split.

A set is a JSONL file, one document per line: {"text": str, "lang": str (optional)}; rows
without "lang" take the set's `lang`. The ids come out exactly as the evaluate stage's
held-out ids do (each document's ids followed by EOS, as in training, capped per language),
so `perplexity.score()` reads them the same way.

    from smoledge.evaluate.evalsets import load_eval_set
    by_lang = load_eval_set("support_tickets.jsonl", tok, max_tokens=8192, default_lang="fr")
    s = score(TorchScorer(hf_dir), by_lang["fr"], token_byte_lengths(tok), seq_len=256)
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from smoledge.errors import SmoledgeError
from smoledge.io import read_jsonl


def pack_documents(docs: Iterable[tuple[str, str]], tok, max_tokens: int) -> dict[str, list[int]]:
    """Per language, the (lang, text) documents' ids, each followed by EOS (as in training), in
    order, until a language holds max_tokens ids; cut to max_tokens. Languages with fewer than
    2 ids (nothing to predict) are left out. The evaluate stage packs the curated valid split
    with it too, so both are scored alike."""
    eos = tok.eos_token_id
    out: dict[str, list[int]] = {}
    for lang, text in docs:
        if not text:
            continue
        ids = out.setdefault(lang, [])
        if len(ids) >= max_tokens:
            continue
        ids.extend(tok.encode(text, add_special_tokens=False) + ([eos] if eos is not None else []))
    return {lang: ids[:max_tokens] for lang, ids in sorted(out.items()) if len(ids) >= 2}


def read_documents(path: str | Path, default_lang: str | None = None) -> list[tuple[str, str]]:
    """(lang, text) of every row of a JSONL eval set, each row checked."""
    path = Path(path)
    if not path.is_file():
        raise SmoledgeError(f"eval set {path} does not exist; fix evaluate.eval_sets[].path")
    docs = []
    for where, row in read_jsonl(path):
        if "text" not in row:
            raise SmoledgeError(f"{where}: missing key 'text'; each row is {{\"text\": ..., \"lang\": ...}}")
        if not isinstance(row["text"], str):
            raise SmoledgeError(f"{where}: 'text' must be a string, got {row['text']!r}")
        lang = row.get("lang")
        if lang is not None and (not isinstance(lang, str) or not lang.strip()):
            raise SmoledgeError(f"{where}: 'lang' must be a non-empty string, got {lang!r}")
        lang = lang or default_lang
        if lang is None:
            raise SmoledgeError(f"{where}: missing key 'lang' and the eval set names no default; add "
                                "\"lang\" to the row or set the eval set's lang")
        docs.append((lang, row["text"]))
    return docs


def load_eval_set(path: str | Path, tok, max_tokens: int, default_lang: str | None = None) -> dict[str, list[int]]:
    """Per language, the set's ids packed like the curated held-out split (see pack_documents)."""
    out = pack_documents(read_documents(path, default_lang), tok, max_tokens)
    if not out:
        raise SmoledgeError(f"eval set {path} has no text to score (every row is empty, or a language has "
                            "fewer than 2 tokens); add documents")
    return out
