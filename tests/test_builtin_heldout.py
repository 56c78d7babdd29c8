"""The built-in held-out text: every curated language is there, long and varied enough to score, identified
as its language, free of duplicates within and across languages, and exactly the text SOURCES.md records."""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from itertools import combinations

import pytest

from smoledge.data.config import LANGUAGES
from smoledge.data.dedup import deduplicate, normalize, shingles
from smoledge.data.langid import identify
from smoledge.errors import SmoledgeError
from smoledge.evaluate.builtin_text import builtin_documents, builtin_languages, split_documents

HELDOUT = resources.files("smoledge.evaluate").joinpath("heldout")
# A file's row in SOURCES.md: | `en.txt` | 10 | 2,280 | 12,465 | `<sha256>` |
ROW = re.compile(r"\|\s*`?(\w+\.txt)`?\s*\|\s*(\d+)\s*\|\s*([\d,]+)\s*\|\s*([\d,]+)\s*\|\s*`?([0-9a-f]{64})`?\s*\|")


def words(docs: list[str]) -> int:
    return sum(len(d.split()) for d in docs)


def test_every_curated_language_loads_with_enough_text() -> None:
    assert builtin_languages() == sorted(LANGUAGES)
    docs = builtin_documents()
    assert list(docs) == sorted(LANGUAGES)
    for lang, ds in docs.items():
        assert len(ds) >= 8, lang
        assert words(ds) >= 1500, (lang, words(ds))
        # Independent documents, none a stub: each long enough to be scored on its own.
        assert min(len(d.split()) for d in ds) >= 150, lang
        assert all("\n---" not in d and not d.startswith("---") for d in ds)


def test_languages_are_chosen_in_order_and_unknown_ones_named() -> None:
    assert list(builtin_documents(["pt", "en", "pt"])) == ["pt", "en"]
    with pytest.raises(SmoledgeError, match=r"held-out text for 'nl', 'xx'; it covers de, en, es, fr, it, pt"):
        builtin_documents(["en", "nl", "xx"])


def test_split_documents() -> None:
    assert split_documents("a\n\nb\n---\n\nc\n  ---  \n---\n") == ["a\n\nb", "c"]


def test_each_document_is_identified_as_its_language() -> None:
    for lang, ds in builtin_documents().items():
        for i, d in enumerate(ds):
            got, p = identify(d)
            assert (got, lang) == (lang, lang) and p > 0.9, (lang, i, got, p)


def test_no_document_is_duplicated_within_or_across_languages() -> None:
    docs = [(lang, d) for lang, ds in builtin_documents().items() for d in ds]
    texts = [d for _, d in docs]
    # smoledge's own curation dedup (exact, then MinHash LSH at its default settings) keeps every document.
    result = deduplicate(texts, num_perm=112, bands=14, rows=8, ngram=5)
    assert all(result.keep), [(docs[i][0], r) for i, r in enumerate(result.reason) if r]
    # And directly: no two documents share more than a few word 5-grams (stock phrases, names).
    grams = [set(shingles(normalize(t), 5)) for t in texts]
    worst = max(len(a & b) / len(a | b) for a, b in combinations(grams, 2))
    assert worst < 0.05, worst


def sources_table() -> dict[str, dict[str, str]]:
    """The per-file rows of SOURCES.md: | file | documents | words | bytes | sha256 |."""
    rows = {}
    for line in HELDOUT.joinpath("SOURCES.md").read_text(encoding="utf-8").splitlines():
        m = ROW.fullmatch(line.strip())
        if m:
            rows[m.group(1)] = {"documents": m.group(2), "words": m.group(3).replace(",", ""),
                                "bytes": m.group(4).replace(",", ""), "sha256": m.group(5)}
    return rows


def test_sources_record_matches_the_files() -> None:
    rows = sources_table()
    assert sorted(rows) == sorted(f"{lang}.txt" for lang in LANGUAGES)
    for lang, ds in builtin_documents().items():
        raw = HELDOUT.joinpath(f"{lang}.txt").read_bytes()
        raw.decode("utf-8")  # strict: the files are UTF-8
        row = rows[f"{lang}.txt"]
        # An edit to a file must update its record (and say why in SOURCES.md).
        assert row == {"documents": str(len(ds)), "words": str(words(ds)), "bytes": str(len(raw)),
                       "sha256": hashlib.sha256(raw).hexdigest()}, lang
