"""Exact and MinHash-LSH deduplication on real prose."""

from __future__ import annotations

import random

import pytest

import numpy as np

from smoledge.data.dedup import (
    MINHASH_SCHEME, MINHASH_SEED, Signer, cluster, deduplicate, normalize, rehydration_weights, shingles,
)

PARAMS = dict(num_perm=112, bands=14, rows=8, ngram=5)


@pytest.fixture(scope="module")
def pages(prose_texts) -> list[str]:
    """Distinct real pages: 24 consecutive sentences each."""
    lines = prose_texts[:24 * 30]
    return [" ".join(lines[k:k + 24]) for k in range(0, len(lines), 24)]


def near_copy(text: str, seed: int, edits: int = 2) -> str:
    rng = random.Random(seed)
    words = text.split()
    for _ in range(edits):
        words[rng.randrange(len(words))] = rng.choice(["river", "mountain", "garden", "window"])
    return " ".join(words) + " Updated on Monday."


def test_normalize_matches_case_space_punctuation_and_digits():
    assert normalize("Hello,  World!\n2023 — café") == "hello world 0000 café"
    assert normalize("HELLO world 1999.") == normalize("hello\tworld, 2024")
    assert shingles("a b c", 5) == [b"a b c"]
    assert len(shingles(normalize("one two three four five six"), 5)) == 2


def test_exact_duplicates_removed_first_kept(pages):
    texts = [pages[0], pages[1], pages[0].upper().replace(" ", "  "), pages[2], pages[1] + "\n"]
    res = deduplicate(texts, **PARAMS)
    assert res.keep == [True, True, False, True, False]
    assert res.reason[2] == res.reason[4] == "exact_duplicate"
    assert res.dup_of[2] == 0 and res.dup_of[4] == 1
    assert res.cluster_size == [2, 2, 0, 1, 0]


def test_planted_near_duplicate_removed_distinct_pages_kept(pages):
    planted = near_copy(pages[5], seed=1)
    a, b = set(shingles(normalize(pages[5]), 5)), set(shingles(normalize(planted), 5))
    assert 0.8 < len(a & b) / len(a | b) < 0.95  # a real near copy, not an exact one
    texts = pages + [planted]
    res = deduplicate(texts, **PARAMS)
    assert res.keep[-1] is False and res.reason[-1] == "near_duplicate" and res.dup_of[-1] == 5
    assert all(res.keep[:-1]), [i for i, k in enumerate(res.keep[:-1]) if not k]
    assert res.cluster_size[5] == 2


def test_chains_cluster_and_exact_copies_count(pages):
    base = pages[0]
    v1 = near_copy(base, seed=2, edits=2)
    v2 = near_copy(v1, seed=3, edits=2)
    texts = [pages[1], base, v1, v2, base, pages[2]]
    res = deduplicate(texts, **PARAMS)
    assert res.keep == [True, True, False, False, False, True]
    assert res.reason[4] == "exact_duplicate" and res.dup_of[4] == 1
    assert res.cluster_size[1] == 4
    assert sum(res.cluster_size) == len(texts)


def test_deterministic_and_switchable(pages):
    texts = pages + [near_copy(p, seed=i) for i, p in enumerate(pages[:6])] + pages[:3]
    a = deduplicate(texts, **PARAMS)
    b = deduplicate(texts, **PARAMS)
    assert a == b
    assert sum(not k for k in a.keep) == 9
    only_exact = deduplicate(texts, **PARAMS, near=False)
    assert sum(not k for k in only_exact.keep) == 3
    nothing = deduplicate(texts, **PARAMS, exact=False, near=False)
    assert all(nothing.keep) and nothing.cluster_size == [1] * len(texts)


def components(n: int, pairs) -> list[int]:
    """Root (smallest member) of each index's connected component."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    return [find(i) for i in range(n)]


def test_numpy_banding_finds_the_clusters_datasketch_lsh_finds(pages):
    """cluster() buckets signatures with numpy; datasketch's MinHashLSH must group them the same way."""
    from datasketch import LeanMinHash, MinHashLSH

    rng = random.Random(0)
    texts = list(pages)
    for k in range(40):  # near copies at several distances, chains included
        texts.append(near_copy(texts[rng.randrange(len(texts))], seed=k, edits=rng.choice([1, 3, 8, 20])))
    signer = Signer(112, 5)
    signed = [signer(t) for t in texts]
    sigs = np.stack([s for _, s in signed])  # (n, 112)
    res = cluster([k for k, _ in signed], sigs, bands=14, rows=8, exact=False)

    lsh = MinHashLSH(num_perm=112, params=(14, 8))
    pairs = []
    for i, sig in enumerate(sigs):
        m = LeanMinHash(seed=MINHASH_SEED, hashvalues=sig, scheme=MINHASH_SCHEME)
        pairs += [(i, j) for j in lsh.query(m)]
        lsh.insert(i, m)
    roots = components(len(texts), pairs)
    assert [i if k else res.dup_of[i] for i, k in enumerate(res.keep)] == roots
    assert 10 < sum(not k for k in res.keep) < 40  # some copies found, the most edited ones not


@pytest.mark.parametrize("num_perm,ngram", [(112, 5), (64, 3), (1, 1)])
def test_signer_matches_a_plain_datasketch_minhash(pages, num_perm, ngram):
    from datasketch import MinHash

    signer = Signer(num_perm, ngram)
    for text in [*pages[:10], "", "one", "Ünïcödé wörds, 12 of them!"]:
        key, sig = signer(text)
        m = MinHash(num_perm=num_perm, seed=MINHASH_SEED, scheme=MINHASH_SCHEME)
        m.update_batch(shingles(normalize(text), ngram))
        assert sig.dtype == np.uint32 and sig.shape == (num_perm,) and (sig == m.hashvalues).all()
    assert key == signer("Ünïcödé  wörds 12, of them")[0]


def test_rehydration_weights_follow_the_step_table():
    table = {1: 1.0, 2: 3.0, 5: 6.0, 17: 10.0, 145: 1.0}
    sizes = [1, 2, 3, 4, 5, 16, 17, 100, 144, 145, 10_000]
    assert rehydration_weights(sizes, table) == [1.0, 3.0, 3.0, 3.0, 6.0, 6.0, 10.0, 10.0, 10.0, 1.0, 1.0]
    assert rehydration_weights([1, 2], {3: 2.0}) == [1.0, 1.0]  # below the smallest key: 1.0
    assert rehydration_weights([], table) == []
