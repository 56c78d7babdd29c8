"""Language ID: py3langid (the choice, see smoledge/data/langid.py) on real prose in the six languages."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from smoledge.data.config import LANGUAGES
from smoledge.data.langid import MAX_CHARS, identifier, identify

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def chunks(shared_data: Path) -> list[tuple[str, str, str, str]]:
    """(language, short|paragraph, source, text): the chunks benchmarks/langid_compare.py measures on."""
    spec = importlib.util.spec_from_file_location("langid_compare", REPO / "benchmarks" / "langid_compare.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench.make_chunks(shared_data / "prose", per_class=30)


def test_real_paragraphs_identified_confidently(chunks):
    paragraphs = [c for c in chunks if c[1] == "paragraph"]
    assert {c[0] for c in paragraphs} == set(LANGUAGES)
    for lang, _, source, text in paragraphs:
        got, score = identify(text)
        assert got == lang and score >= 0.9, (lang, source, got, score, text[:80])
    short = [c for c in chunks if c[1] == "short"]
    right = sum(identify(text)[0] == lang for lang, _, _, text in short)
    assert right / len(short) >= 0.95


def test_other_languages_are_named_not_forced_into_the_six():
    # The model is never restricted to the target languages: a Dutch page must not become "de".
    for lang, text in {
        "nl": "De gemeente heeft besloten om de nieuwe brug pas volgend jaar te openen, omdat de kosten hoger "
              "uitvallen dan verwacht en de aannemer meer tijd nodig heeft.",
        "pl": "Rosjanie sugerują natychmiastowe odcięcie Polski od gazu. Ministerstwo zapowiada, że dostawy "
              "zostaną wstrzymane w przyszłym tygodniu.",
        "sv": "Kommunen har beslutat att den nya bron ska öppna först nästa år, eftersom kostnaderna blev högre "
              "än väntat och entreprenören behöver mer tid.",
    }.items():
        got, score = identify(text)
        assert got == lang and score > 0.9, (lang, got, score)


def test_empty_text_and_long_pages(chunks):
    assert identify("") == ("und", 0.0)
    assert identify(" \n\t ") == ("und", 0.0)
    en = next(text for lang, kind, _, text in chunks if lang == "en" and kind == "paragraph")
    de = next(text for lang, kind, _, text in chunks if lang == "de" and kind == "paragraph")
    assert identify(de)[0] == "de"
    # Only the first MAX_CHARS characters are read: a page that turns German after them stays English,
    # although most of it is German.
    english, german = (en + "\n") * (MAX_CHARS // len(en) + 1), (de + "\n") * (3 * MAX_CHARS // len(de))
    assert len(german) > 2 * len(english)
    assert identify(english + german)[0] == "en"


def test_langid_choice_py3langid_matches_lingua_on_page_sized_text(chunks):
    """The choice in smoledge/data/langid.py: on paragraph-size text py3langid is as accurate as lingua."""
    from py3langid.langid import LanguageIdentifier

    assert isinstance(identifier(), LanguageIdentifier)
    lingua = pytest.importorskip("lingua")
    # Low-accuracy mode loads in ~1 s (high accuracy needs ~11 s and 1.3 GB); the benchmark compares both.
    detector = (lingua.LanguageDetectorBuilder.from_languages(*lingua.Language.all())
                .with_low_accuracy_mode().build())
    paragraphs = [c for c in chunks if c[1] == "paragraph"]
    ours = sum(identify(text)[0] == lang for lang, _, _, text in paragraphs)
    theirs = sum(detector.detect_language_of(text).iso_code_639_1.name.lower() == lang
                 for lang, _, _, text in paragraphs)
    assert ours >= theirs and ours == len(paragraphs)
