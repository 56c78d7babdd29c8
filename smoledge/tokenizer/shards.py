"""Packed token shards: a flat memmap of token ids plus per-document metadata.

For a split `train` in directory D:
  D/train.bin          token ids, uint16 or uint32, documents back to back,
                       each followed by EOS
  D/train.index.npz    offsets (int64, n_docs+1), lang (int16 index into
                       meta.languages), source (int16 index into meta.sources),
                       weight (float32 sampling weight, e.g. rehydration; 1.0 by default)
  D/train.meta.json    dtype, n_tokens, n_docs, languages, sources, vocab_size

The trainer streams `tokens[offsets[i]:offsets[i+1]]` per document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from smoledge.io import atomic_path, atomic_write_json


def pick_dtype(vocab_size: int, requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    return "uint16" if vocab_size <= 65536 else "uint32"


def write_split(
    out_dir: Path,
    split: str,
    docs: Iterable[tuple[list[int], str, str] | tuple[list[int], str, str, float]],
    vocab_size: int,
    dtype: str = "auto",
) -> list[Path]:
    """Write one split from (token ids incl. trailing EOS, lang, source[, sampling weight]) tuples."""
    out_dir.mkdir(parents=True, exist_ok=True)
    np_dtype = np.dtype(pick_dtype(vocab_size, dtype))
    offsets = [0]
    langs: list[str] = []
    sources: list[str] = []
    lang_idx: list[int] = []
    src_idx: list[int] = []
    weights: list[float] = []
    bin_path = out_dir / f"{split}.bin"
    with atomic_path(bin_path) as tmp, open(tmp, "wb") as f:
        for ids, lang, source, *weight in docs:
            arr = np.asarray(ids, dtype=np.int64)
            if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
                raise ValueError(f"token id out of range for vocab_size {vocab_size}")
            f.write(arr.astype(np_dtype).tobytes())
            offsets.append(offsets[-1] + arr.size)
            if lang not in langs:
                langs.append(lang)
            if source not in sources:
                sources.append(source)
            lang_idx.append(langs.index(lang))
            src_idx.append(sources.index(source))
            weights.append(weight[0] if weight else 1.0)
    index_path = out_dir / f"{split}.index.npz"
    with atomic_path(index_path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                offsets=np.asarray(offsets, dtype=np.int64),
                lang=np.asarray(lang_idx, dtype=np.int16),
                source=np.asarray(src_idx, dtype=np.int16),
                weight=np.asarray(weights, dtype=np.float32),
            )
    meta_path = out_dir / f"{split}.meta.json"
    atomic_write_json(meta_path, {
        "dtype": np_dtype.name, "n_tokens": offsets[-1], "n_docs": len(offsets) - 1,
        "languages": langs, "sources": sources, "vocab_size": vocab_size,
    })
    return [bin_path, index_path, meta_path]


@dataclass
class Shard:
    """A read-only view of one split."""

    tokens: np.ndarray
    offsets: np.ndarray
    lang: np.ndarray
    source: np.ndarray
    languages: list[str]
    sources: list[str]
    vocab_size: int
    weight: np.ndarray | None = None
    """Per-document sampling weight (float32); None for shards written before it existed."""

    @classmethod
    def open(cls, directory: str | Path, split: str) -> "Shard":
        directory = Path(directory)
        meta = json.loads((directory / f"{split}.meta.json").read_text())
        n = meta["n_tokens"]
        tokens = (
            np.memmap(directory / f"{split}.bin", dtype=meta["dtype"], mode="r", shape=(n,))
            if n else np.zeros(0, dtype=meta["dtype"])
        )
        # allow_pickle=False: the index is plain arrays, never objects.
        with np.load(directory / f"{split}.index.npz", allow_pickle=False) as idx:
            offsets, lang, source = idx["offsets"], idx["lang"], idx["source"]
            weight = idx["weight"] if "weight" in idx.files else None
        return cls(tokens, offsets, lang, source, meta["languages"], meta["sources"], meta["vocab_size"], weight)

    @property
    def num_docs(self) -> int:
        return len(self.offsets) - 1

    def doc(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i]: self.offsets[i + 1]]
