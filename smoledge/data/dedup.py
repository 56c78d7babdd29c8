"""Exact and near-duplicate removal: normalized-text hashing, then MinHash LSH (datasketch).

    from smoledge.data.dedup import deduplicate
    result = deduplicate(texts, num_perm=112, bands=14, rows=8, ngram=5)
    result.keep            # [True, False, ...] in input order
    result.cluster_size    # pages each kept one stands for (itself included)

Order decides: the first page of a cluster (in input order) is kept, so the
result is deterministic, and so is the MinHash (fixed seed, sha1 hashing).
Clusters are the connected components of the LSH candidate graph (union-find,
as datatrove's minhash stage builds them), so a chain of near copies is one
cluster even when its ends are less alike.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Callable, Sequence

# Fixed, so signatures (and therefore the kept set) never change between runs.
MINHASH_SEED = 1

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
    from datasketch import MinHash, MinHashLSH

    n = len(texts)
    keep = [True] * n
    reason: list[str | None] = [None] * n
    dup_of: list[int | None] = [None] * n
    normalized = [normalize(t) for t in texts]

    if exact:
        first: dict[bytes, int] = {}
        for i, norm in enumerate(normalized):
            key = hashlib.sha1(norm.encode("utf-8")).digest()
            if key in first:
                keep[i], reason[i], dup_of[i] = False, "exact_duplicate", first[key]
            else:
                first[key] = i

    uf = _UnionFind()
    if near:
        lsh = MinHashLSH(num_perm=num_perm, params=(bands, rows))
        survivors = [i for i in range(n) if keep[i]]
        for k, i in enumerate(survivors):
            m = MinHash(num_perm=num_perm, seed=MINHASH_SEED)
            m.update_batch(shingles(normalized[i], ngram))
            uf.find(i)
            for j in sorted(lsh.query(m)):
                uf.union(i, j)
            lsh.insert(i, m)
            if progress is not None and (k % 200 == 0 or k == len(survivors) - 1):
                progress(k + 1, len(survivors))
        for i in survivors:
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
