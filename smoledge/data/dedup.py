"""Exact and near-duplicate removal: normalized-text hashing, then MinHash LSH.

    from smoledge.data.dedup import deduplicate
    result = deduplicate(texts, num_perm=112, bands=14, rows=8, ngram=5)
    result.keep            # [True, False, ...] in input order
    result.cluster_size    # pages each kept one stands for (itself included)

It runs in two halves so the costly one can be spread over workers:

  Signer(num_perm, ngram)(text) -> (exact key, MinHash signature)   per document, anywhere
  cluster(keys, signatures, bands, rows) -> DedupResult              once, over all documents

Signatures are datasketch's MinHashes (fixed seed, sha1 hashing, affine32),
computed without importing datasketch (see Signer), of the document's word
n-gram shingles. The LSH step puts two documents in the same
bucket when one band (`rows` consecutive signature values) is equal, exactly
as datasketch.MinHashLSH does (a test checks the clusters are the same), but
over one (n, num_perm) uint32 matrix with numpy instead of 14 dictionaries of
Python objects. For 100k documents the matrix is 45 MB and banding it adds
~5 MB and 0.5 s; a datasketch MinHashLSH over the same signatures adds
~480 MB and 6 s (measured on the 2-core dev machine).

Order decides: the first page of a cluster (in input order) is kept, so the
result is deterministic. Clusters are the connected components of the LSH
candidate graph (union-find, as datatrove's minhash stage builds them), so a
chain of near copies is one cluster even when its ends are less alike.

Rehydration (FineWeb2): dedup keeps one page per cluster but records the
cluster's size, so training can upsample pages by it later.
`rehydration_weights(sizes, table)` maps each size to a sampling weight.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

# Fixed, so signatures (and therefore the kept set) never change between runs.
MINHASH_SEED = 1
# datasketch's default permutation scheme: 32-bit hash values.
MINHASH_SCHEME = "affine32"

_DIGIT = re.compile(r"\d")
# Anything that is not a letter or digit: punctuation, symbols, underscores, whitespace.
_NON_WORD = re.compile(r"[\W_]+")


def normalize(text: str) -> str:
    """Lowercase, digits -> 0, punctuation and symbols -> space, whitespace collapsed (datatrove's
    simplified text): copies that differ only in case, spacing, punctuation or numbers compare equal."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _DIGIT.sub("0", text)
    return _NON_WORD.sub(" ", text).strip()


def shingles(normalized: str, n: int) -> list[bytes]:
    """Distinct word n-grams of a normalized text (one shingle of all words if shorter than n)."""
    words = normalized.split()
    grams = {" ".join(words[i:i + n]) for i in range(max(len(words) - n + 1, 1))}
    return sorted(g.encode("utf-8") for g in grams)


class Signer:
    """The exact-duplicate key and the MinHash signature of a text. Build one per worker:
    the permutations are drawn once and shared by every signature.

    The signature is datasketch's MinHash(num_perm, seed=MINHASH_SEED, scheme="affine32") of the
    shingles, value for value (tests/test_data_dedup.py): SHA-1's first 4 bytes of each shingle,
    MurmurHash3's 32-bit finalizer, then a * h + b mod 2^32 per permutation, drawn as datasketch
    draws them. Computed here, because importing datasketch imports scipy (0.46 s of every curate
    worker's start, measured) for LSH code the workers never run, and hashing the shingles in one
    join is ~2x datasketch's per-shingle struct.unpack."""

    def __init__(self, num_perm: int, ngram: int):
        self.num_perm = num_perm
        self.ngram = ngram
        gen = np.random.RandomState(MINHASH_SEED)
        self._a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)  # (P,) odd
        self._b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)  # (P,)

    def __call__(self, text: str) -> tuple[bytes, np.ndarray]:
        norm = normalize(text)
        key = hashlib.sha1(norm.encode("utf-8")).digest()
        sha1 = hashlib.sha1
        digests = b"".join([sha1(gram).digest()[:4] for gram in shingles(norm, self.ngram)])
        hv = _fmix32(np.frombuffer(digests, dtype="<u4").astype(np.uint32))  # (S,)
        return key, (hv[:, None] * self._a + self._b).min(axis=0)  # (S, P) -> (P,) uint32


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer (an avalanching bijection), as datasketch's affine32 pre-mixes."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


@dataclass
class DedupResult:
    keep: list[bool]
    """Per input text: survives dedup."""
    reason: list[str | None]
    """"exact_duplicate", "near_duplicate" or None."""
    dup_of: list[int | None]
    """Index of the kept text this one duplicates."""
    cluster_size: list[int]
    """Per kept text: how many inputs (itself included) it stands for; 0 for dropped ones."""


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # The smaller index (earlier page) is the root: it is the one kept.
            lo, hi = min(ra, rb), max(ra, rb)
            self.parent[hi] = lo


def band_leaders(signatures: np.ndarray, bands: int, rows: int) -> list[np.ndarray]:
    """Per band: for each row of `signatures` (n, bands*rows), the first row with the same band values."""
    n = signatures.shape[0]
    out = []
    for b in range(bands):
        band = np.ascontiguousarray(signatures[:, b * rows:(b + 1) * rows])  # (n, rows)
        # One opaque value per row: equal iff every hash value in the band is equal.
        keys = band.view(np.dtype((np.void, band.dtype.itemsize * rows))).reshape(n)  # (n,)
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        out.append(first[inverse.reshape(n)])  # (n,) first occurrence of each row's bucket
    return out


def cluster(
    keys: Sequence[bytes],
    signatures: np.ndarray | None,
    bands: int,
    rows: int,
    exact: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> DedupResult:
    """Exact duplicates by `keys`, then near duplicates by LSH over `signatures` (n, bands*rows);
    signatures=None skips the near step."""
    n = len(keys)
    keep = [True] * n
    reason: list[str | None] = [None] * n
    dup_of: list[int | None] = [None] * n

    if exact:
        first: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key in first:
                keep[i], reason[i], dup_of[i] = False, "exact_duplicate", first[key]
            else:
                first[key] = i

    if signatures is not None and n:
        if signatures.shape != (n, bands * rows):
            raise ValueError(f"signatures must be ({n}, {bands * rows}), got {signatures.shape}")
        survivors = np.flatnonzero(keep)  # (m,) exact copies never enter the LSH
        uf = _UnionFind()
        leaders = band_leaders(signatures[survivors], bands, rows)
        for b, leader in enumerate(leaders):
            for a in np.flatnonzero(leader != np.arange(len(survivors))):
                uf.union(int(survivors[a]), int(survivors[leader[a]]))
            if progress is not None:
                progress(b + 1, bands)
        for i in survivors.tolist():
            root = uf.find(i)
            if root != i:
                keep[i], reason[i], dup_of[i] = False, "near_duplicate", root

    # Exact copies count towards the cluster of the page they copy.
    cluster_size = [0] * n
    for i in range(n):
        target = i
        while not keep[target]:
            target = dup_of[target]  # type: ignore[assignment]
        cluster_size[target] += 1
        if not keep[i]:
            dup_of[i] = target  # point at the page that was kept
    return DedupResult(keep=keep, reason=reason, dup_of=dup_of, cluster_size=cluster_size)


def deduplicate(
    texts: Sequence[str],
    num_perm: int,
    bands: int,
    rows: int,
    ngram: int,
    exact: bool = True,
    near: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> DedupResult:
    """Sign every text in this process, then cluster (see the module docstring)."""
    if bands * rows != num_perm:
        raise ValueError(f"bands x rows must equal num_perm, got {bands} x {rows} != {num_perm}")
    signer = Signer(num_perm, ngram)
    signed = [signer(t) for t in texts]
    keys = [k for k, _ in signed]
    sigs = np.stack([s for _, s in signed]) if (near and signed) else None  # (n, num_perm)
    return cluster(keys, sigs, bands, rows, exact=exact, progress=progress)


def rehydration_weights(cluster_sizes: Sequence[int], table: Mapping[int, float]) -> list[float]:
    """FineWeb2 rehydration: a page whose cluster had `size` members weighs table[k] for the
    largest key k <= size (a step function; sizes below the smallest key weigh 1.0).

    FineWeb2 observed that pages with very few or very many copies are filtered more often
    (lower quality) than pages with a middling number of copies, and upsamples the latter."""
    steps = sorted(table.items())
    bounds = np.array([k for k, _ in steps], dtype=np.int64)
    values = np.array([1.0] + [float(w) for _, w in steps], dtype=np.float64)
    # searchsorted(side="right") counts the keys <= size: 0 -> below every key.
    return values[np.searchsorted(bounds, np.asarray(cluster_sizes, dtype=np.int64), side="right")].tolist()
