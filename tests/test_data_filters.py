"""Each curation step's drop reason, on real multilingual prose and on constructed bad pages."""

from __future__ import annotations

from pathlib import Path

import pytest

from smoledge.data.config import CurateConfig
from smoledge.data.filters import (
    BoilerplateLines,
    GopherQuality,
    GopherRepetition,
    LanguageFilter,
    PIIScrubber,
    build_pipeline,
    duplicate_line_fraction,
    is_boilerplate_line,
    top_ngram_char_fraction,
)
from smoledge.data.readers import Doc

PROSE_FILES = {
    "en": "leipzig-wikipedia.en.txt", "fr": "leipzig-wikipedia.fr.txt", "es": "leipzig-wikipedia.es.txt",
    "de": "leipzig-wikipedia.de.txt", "it": "leipzig-wikipedia.it.txt", "pt": "lingua-leipzig-sentences.pt.txt",
}


@pytest.fixture(scope="module")
def real_pages(shared_data: Path) -> dict[str, list[str]]:
    """Per language, a few pages of ~15 real sentences each (Leipzig corpora)."""
    pages = {}
    for lang, name in PROSE_FILES.items():
        lines = [ln.strip() for ln in (shared_data / "prose" / name).read_text(encoding="utf-8").splitlines()
                 if len(ln.strip()) > 60]
        pages[lang] = [" ".join(lines[k:k + 15]) for k in range(200, 200 + 4 * 15, 15)]
    return pages


def doc(text: str, lang: str = "") -> Doc:
    return Doc(id="x", text=text, source="test", lang=lang)


def test_boilerplate_lines_removed_and_prose_kept(real_pages):
    for line in [
        "Home | News | Weather | Sport | Contact", "Accueil | À propos | Blog | Boutique | Contact",
        "We use cookies to improve your experience. Accept cookies",
        "Diese Website verwendet Cookies, um Ihr Erlebnis zu verbessern. Cookies akzeptieren",
        "© 2021 www.example.com. All rights reserved.", "Copyright 2020 El Diario - Todos los derechos reservados",
        "Tutti i diritti riservati", "Please enable JavaScript to view this page", "Read more",
        "Partilhar no Facebook | Twitter | WhatsApp | Email", "Subscribe to our newsletter", "Síguenos en Instagram",
    ]:
        assert is_boilerplate_line(line), line
    for line in [
        "My grandmother baked cookies every Sunday, and the whole house smelled wonderful.",
        "We used cookie cutters to shape the dough, then baked the cookies for twelve minutes.",
        "Sauces, soups and stews",                          # no terminal punctuation: FineWeb keeps it
        "Chapter 1 | The beginning",                       # two items are not a navigation bar
    ] + [p for pages in real_pages.values() for p in pages]:
        assert not is_boilerplate_line(line), line

    step = BoilerplateLines()
    body = real_pages["fr"][0]
    page = doc(f"Accueil | Actualités | Météo | Sport | Contact\nAccepter les cookies\n{body}\n"
               f"Lire la suite\n© 2023 journal.fr. Tous droits réservés.")
    assert step.check(page) is None
    assert page.text == body
    assert step.stats["boilerplate:lines_removed"] == 4
    only_chrome = doc("Home | About | Blog | Contact\nAll rights reserved")
    assert step.check(only_chrome) == "boilerplate:empty"


def test_language_filter_on_real_prose(real_pages):
    f = LanguageFilter(["en", "fr", "es", "de", "it", "pt"], min_score=0.65)
    for lang, pages in real_pages.items():
        for text in pages:
            d = doc(text)
            assert f.check(d) is None, (lang, d.lang, d.lang_score)
            assert d.lang == lang and d.lang_score > 0.9
    assert f.check(doc("Rosjanie sugerują natychmiastowe odcięcie Polski od gazu. Ministerstwo zapowiada, że "
                       "dostawy zostaną wstrzymane w przyszłym tygodniu, a ceny energii znowu wzrosną.")) \
        == "language:unwanted_language"
    only_en = LanguageFilter(["en"], min_score=0.65)
    assert only_en.check(doc(real_pages["de"][0])) == "language:unwanted_language"
    strict = LanguageFilter(["en"], min_score=0.999)
    assert strict.check(doc("ok, fine")) in ("language:low_confidence", "language:unwanted_language")


def test_gopher_quality_keeps_real_prose_and_names_each_failure(real_pages):
    f = GopherQuality(CurateConfig())
    for lang, pages in real_pages.items():
        for text in pages:
            assert f.check(doc(text, lang)) is None, lang
    cases = {
        "too_few_words": doc("The cat sat on the mat and that was it.", "en"),
        "mean_word_length": doc(" ".join(["a b c d of to in it is"] * 10), "en"),
        "symbol_ratio": doc("the best deals of the year #sale #deal #cheap #free #buy #now " * 8, "en"),
        "bullet_lines": doc("\n".join(f"- the item number {w} is on the list" for w in "abcdefghijkl"), "en"),
        "ellipsis_lines": doc("\n".join(f"and then the long story of {w} goes on in the next chapter of the book..."
                                        for w in "abcdefghij"), "en"),
        "alpha_words": doc("the price list of 2023: " + " ".join(f"{i} {i * 7} 3.50 12:30" for i in range(20)), "en"),
        "stop_words": doc(" ".join(["cheap watches online discount shipping"] * 10), "en"),
    }
    for reason, d in cases.items():
        assert f.check(d) == f"gopher_quality:{reason}", reason
    assert f.check(doc(" ".join(["word"] * 200), "en")) is not None
    long_doc = doc(" ".join(["the house"] * 60), "en")
    assert GopherQuality(CurateConfig(max_words=100)).check(long_doc) == "gopher_quality:too_many_words"


def test_gopher_repetition(real_pages):
    f = GopherRepetition(CurateConfig())
    for lang, pages in real_pages.items():
        assert f.check(doc("\n".join(pages), lang)) is None
    spam_lines = "\n".join(["Buy cheap watches online!", "Best price guaranteed!", "Click here now!"] * 5)
    assert duplicate_line_fraction(spam_lines) == pytest.approx(12 / 15)
    assert f.check(doc(spam_lines)) == "gopher_repetition:duplicate_lines"
    stuffing = " ".join(["cheap flights", "to the sea", "cheap flights", "for you", "cheap flights now"] * 8)
    words = stuffing.split()
    assert top_ngram_char_fraction(words, 2) > 0.2
    assert f.check(doc(stuffing)) == "gopher_repetition:top_2gram"
    assert top_ngram_char_fraction(["a", "b", "c"], 2) == 0.0


def test_pii_step_counts_replacements():
    step = PIIScrubber()
    d = doc("Write to ana.silva@sapo.pt or visit 84.23.117.9 from 192.168.1.4.")
    assert step.check(d) is None
    assert "ana.silva" not in d.text and "email@example.com" in d.text and "192.168.1.4" in d.text
    assert step.stats["pii:emails_replaced"] == 1 and step.stats["pii:ips_replaced"] == 1


def test_pipeline_order_stats_and_exclusions(real_pages):
    pipeline = build_pipeline(CurateConfig(), ["en", "de"])
    pages = [
        (0, doc("Home | News | Sport | Contact\n" + real_pages["en"][0] + " Mail me at x.y@mail.com.")),
        (1, doc(real_pages["fr"][0])),                                 # not a wanted language
        (2, doc("\n".join([real_pages["de"][0]] * 4))),                # repeated lines
        (3, doc(real_pages["de"][1])),
    ]
    res = pipeline.process(pages)
    assert [i for i, _ in res.kept] == [0, 3]
    assert res.excluded == [(1, "language:unwanted_language"), (2, "gopher_repetition:duplicate_lines")]
    first = res.kept[0][1]
    assert first.lang == "en" and not first.text.startswith("Home") and "email@example.com" in first.text
    assert res.stats["dropped:language:unwanted_language"] == 1
    assert res.stats["boilerplate:lines_removed"] == 1 and res.stats["pii:emails_replaced"] == 1
    # Steps can be switched off in the recipe.
    names = [s.name for s in build_pipeline(CurateConfig(remove_boilerplate_lines=False, scrub_pii=False),
                                            ["en"]).steps]
    assert names == ["language", "gopher_quality", "gopher_repetition"]
