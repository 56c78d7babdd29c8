"""Exact and MinHash-LSH deduplication on real prose."""

from __future__ import annotations

import random

import pytest

from smoledge.data.dedup import deduplicate, normalize, shingles

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
