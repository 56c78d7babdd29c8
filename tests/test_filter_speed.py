"""The curation filters' speed-ups change nothing: same words, sentences, scores and decisions as datatrove's.

Every faster path in smoledge.data.filters and smoledge.data.langid is checked here
against the code it replaces, on the real pages of ../shared/data in all six
languages: the reusable word tokenizer (line by line, lexical attributes off, words
remembered) against datatrove's own spaCy tokenizer, the Gopher repetition filter's
n-gram statistics against datatrove's, py3langid's scores with the float32 table
against the stock identifier's, and the spaCy regex cache against a plain compile.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from smoledge.data.config import LANGUAGES, CurateConfig
from smoledge.data.filters import build_pipeline, reference_kwargs
from smoledge.data.repetition import joined_ngrams, repeated_ngram_chars, top_ngram_chars
from smoledge.data.word_tokens import REGEX_CACHE_STATS, word_tokenizer
from smoledge.data.langid import MAX_CHARS, identifier, identify

PROSE = {
    "en": ["leipzig-wikipedia.en.txt", "gutenberg-alice.en.txt", "lingua-leipzig-sentences.en.txt"],
    "fr": ["leipzig-wikipedia.fr.txt", "gutenberg-alice.fr.txt", "lingua-leipzig-sentences.fr.txt"],
    "es": ["leipzig-wikipedia.es.txt", "lingua-leipzig-sentences.es.txt"],
    "de": ["leipzig-wikipedia.de.txt", "gutenberg-alice.de.txt", "lingua-leipzig-sentences.de.txt"],
    "it": ["leipzig-wikipedia.it.txt", "gutenberg-alice.it.txt", "lingua-leipzig-sentences.it.txt"],
    "pt": ["lingua-leipzig-sentences.pt.txt"],
}
PAGES_PER_FILE = 12

# Lines that exercise spaCy's whitespace and special-case handling at line ends.
EDGE_CASES = [
    "  Leading spaces\tand a tab\nTrailing spaces   \n\n\n\xa0Non-breaking space\xa0\nWindows\r\nline\r\nends",
    "Los EE. UU. firmaron.\nEE.\nUU. en dos líneas; EE. UU. en una.",
    "Smile :)\n:) at the start\nend with :(\n(:\nC++ and e.g. and i.e.\n'\n''\n\"quoted\"",
    "l'homme\nd'\naujourd'hui\nL'\n  \n -\n—\n…\n...",
    "https://example.com/a?b=c\nwww.example.org/x-y_z\nmail@example.com.\n#hashtag @user\n1,000.50 € 3/4 ½ ²",
]


@pytest.fixture(scope="module")
def pages(shared_data: Path) -> dict[str, list[str]]:
    """Per language: prose pages of 2-40 lines (every file of the language) and the language's real web pages
    (trafilatura's main text, as FineWeb and smoledge extract it)."""
    import trafilatura

    rng = random.Random(0)
    out: dict[str, list[str]] = {lang: [] for lang in LANGUAGES}
    for lang, names in PROSE.items():
        for name in names:
            lines = (shared_data / "prose" / name).read_text(encoding="utf-8", errors="replace").splitlines()
            start = len(lines) // 3
            for _ in range(PAGES_PER_FILE):
                n = rng.randint(2, 40)
                out[lang].append("\n".join(lines[start:start + n]))
                start += n
    for path in sorted((shared_data / "html" / "trafilatura").glob("*.html")):
        text = trafilatura.extract(path.read_text(encoding="utf-8", errors="replace"), favor_precision=True,
                                   include_comments=False, deduplicate=True)
        if text and identify(text)[0] in out:
            out[identify(text)[0]].append(text)
    return out


# ----------------------------------------------------------------------------- word tokenizer

def test_words_sentences_and_spans_are_datatrove_s_in_six_languages(pages):
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    for lang in LANGUAGES:
        ours, theirs = word_tokenizer(lang), load_word_tokenizer(lang)
        assert type(ours) is not type(theirs)  # the reusable one, not datatrove's itself
        assert len(pages[lang]) >= 12, lang
        for text in pages[lang] + EDGE_CASES:
            assert ours.word_tokenize(text) == theirs.word_tokenize(text), (lang, text[:80])
        for text in pages[lang][:6] + EDGE_CASES:
            assert ours.span_tokenize(text) == theirs.span_tokenize(text), (lang, text[:80])
            assert ours.sent_tokenize(text) == theirs.sent_tokenize(text), (lang, text[:80])
            for line in text.splitlines()[:20]:  # C4 splits each line into sentences
                assert ours.span_tokenize(line) == theirs.span_tokenize(line), (lang, line)


def test_remembered_words_are_a_copy_and_follow_a_rewrite(pages):
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    ours, theirs = word_tokenizer("en"), load_word_tokenizer("en")
    text = pages["en"][0]
    first = ours.word_tokenize(text)
    first.append("EDITED")
    assert ours.word_tokenize(text) == theirs.word_tokenize(text)  # the caller's edit changed nothing here
    # C4 rewrites a page (lines dropped, stripped, citations removed): FineWeb quality then asks for the new text.
    lines = text.splitlines()
    rewritten = "\n".join(f"  {line.strip()} [1]" if i % 3 == 0 else line for i, line in enumerate(lines) if i % 4)
    assert ours.word_tokenize(rewritten) == theirs.word_tokenize(rewritten)


def test_tokenizer_reload_keeps_the_words(pages, monkeypatch):
    import smoledge.data.word_tokens as word_tokens
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    tok = word_tokens._reusable_spacy_class()("de")
    monkeypatch.setattr(word_tokens, "TOKENIZER_RELOAD_LEXEMES", 2000)
    theirs = load_word_tokenizer("de")
    for text in pages["de"]:
        assert tok.word_tokenize(text) == theirs.word_tokenize(text)
    assert tok.loads > 2  # reloaded as the vocabulary grew


# ----------------------------------------------------------------------------- Gopher repetition

def test_datatrove_gopher_repetition_is_the_version_copied():
    """FastGopherRepetitionFilter.filter copies datatrove 0.9.0's; a new datatrove needs the copy checked."""
    from datatrove.pipeline.filters import GopherRepetitionFilter

    source = inspect.getsource(GopherRepetitionFilter.filter)
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == "63b79d589889fb73", "datatrove's filter changed"


def test_ngram_statistics_are_datatrove_s_on_random_words():
    from datatrove.pipeline.filters.gopher_repetition_filter import (
        find_all_duplicate,
        find_top_duplicate,
        get_n_grams,
    )

    rng = random.Random(1)
    # Few short words: many repeats, and "".join collisions between different word sequences ("ab"+"c", "a"+"bc").
    alphabet = ["a", "b", "ab", "c", "bc", "abc", "the", "of", "cat", "d"]
    for _ in range(1500):
        words = [rng.choice(alphabet[:rng.randint(2, len(alphabet))]) for _ in range(rng.randint(0, 60))]
        for n in (1, 2, 3, 4):
            grams = get_n_grams(words, n)
            assert top_ngram_chars(words, n) == (find_top_duplicate(grams) if grams else None), (words, n)
        sizes = [1, 2, 3, 5, 6, 7, 8, 9, 10, 11]  # built afresh (1, 5) and from the size before
        for n, grams in joined_ngrams(words, sizes):
            assert grams == ["".join(words[i:i + n]) for i in range(len(words) - n + 1)]
            assert repeated_ngram_chars(grams, n) == find_all_duplicate(words, n), (words, n)


def test_gopher_repetition_decisions_are_datatrove_s(pages):
    import datatrove.pipeline.filters as dt
    from datatrove.data import Document

    steps = {s.name: s for s in build_pipeline(CurateConfig(), LANGUAGES).steps}
    fineweb2 = CurateConfig(fineweb2_thresholds=True)
    decided = set()
    for lang in LANGUAGES:
        for cfg in (CurateConfig(), fineweb2):
            ours = steps["gopher_repetition"].reference_type()(**reference_kwargs("gopher_repetition", cfg, lang),
                                                               language=word_tokenizer(lang))
            theirs = dt.GopherRepetitionFilter(**reference_kwargs("gopher_repetition", cfg, lang),
                                               language=word_tokenizer(lang))
            for text in pages[lang] + ["\n".join(pages[lang][:3] * 3), " ".join(pages[lang][1].split()[:40] * 4)]:
                got = ours.filter(Document(text=text, id="x"))
                assert got == theirs.filter(Document(text=text, id="x")), (lang, text[:80])
                decided.add(got if isinstance(got, bool) else got[1])
    assert True in decided and {"top_2_gram", "dup_line_frac"} <= decided, decided


# ----------------------------------------------------------------------------- the whole pipeline

@pytest.mark.parametrize("fineweb2", [False, True])
def test_pipeline_decisions_are_those_of_datatrove_s_own_filters_and_tokenizers(pages, fineweb2):
    """The pipeline as built, against the same pipeline whose quality steps run datatrove's classes with
    datatrove's own (memory-zone) tokenizers: the same drops, reasons and texts, page for page."""
    import dataclasses

    import datatrove.pipeline.filters as dt
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    from smoledge.data.readers import Doc

    cfg = CurateConfig(fineweb2_thresholds=fineweb2)
    fast, plain = build_pipeline(cfg, LANGUAGES), build_pipeline(cfg, LANGUAGES)
    for step in plain.steps:
        if hasattr(step, "_by_lang"):
            for lang in LANGUAGES:
                kwargs = reference_kwargs(step.name, cfg, lang)
                step._by_lang[lang] = None if kwargs is None else getattr(dt, step.reference_class)(
                    **kwargs, language=load_word_tokenizer(lang))
    docs = [(i, Doc(id=str(i), text=t, source="test")) for i, t in enumerate(
        [t for lang in LANGUAGES for t in pages[lang]] + EDGE_CASES)]
    got = fast.process([(i, dataclasses.replace(d)) for i, d in docs])
    want = plain.process([(i, dataclasses.replace(d)) for i, d in docs])
    assert got.excluded == want.excluded
    assert [(i, d.text, d.lang, d.lang_score) for i, d in got.kept] == \
        [(i, d.text, d.lang, d.lang_score) for i, d in want.kept]
    assert got.stats == want.stats
    assert len(got.kept) > 20 and len({r for _, r in got.excluded}) > 4


# ----------------------------------------------------------------------------- language ID

def test_language_scores_are_stock_py3langid_s_bit_for_bit(pages):
    import numpy as np
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    assert identifier().nb_ptc.dtype == np.float32
    stock = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    assert stock.nb_ptc.dtype == np.float16
    texts = [t for lang in LANGUAGES for t in pages[lang]] + EDGE_CASES + ["Elle chante bien.", "ok", "12345"]
    for text in texts:
        flat = " ".join(text[:MAX_CHARS].split())
        lang, score = stock.classify(flat)
        assert identify(text) == (str(lang), float(score)), text[:80]


def test_windowed_feature_counts_are_py3langid_s_walk(pages):
    import random

    from py3langid.langid import visit_counts

    ident = identifier()
    assert ident.depth == 6  # this model's automaton; any window shorter than it would miscount
    rng = random.Random(0)
    texts = [t.encode("utf-8") for lang in LANGUAGES for t in pages[lang]] + [b"", b"a", b"ab", b"abcde"]
    for _ in range(2000):  # short texts cross the head/window boundary; stray bytes reach odd states
        texts.append(bytes(rng.randrange(256) if rng.random() < 0.3 else rng.choice(b"etaoin shrdlu\xc3\xa9")
                           for _ in range(rng.randrange(0, 40))))
    for text in texts:
        want = visit_counts(ident.tk_nextmove, ident._rowbase, ident.tk_output, text)
        got = ident.visits(text)
        assert (None if want is None else list(want.items())) == (None if got is None else list(got.items()))


_IDENTIFY = """
import json, sys
from smoledge.data.langid import identifier, identify
texts = json.loads(sys.stdin.read())
print(json.dumps({"scores": [identify(t) for t in texts], "mapped": type(identifier().nb_ptc).__name__}))
"""


def test_language_model_cache_gives_the_same_scores(pages, tmp_path):
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    stock = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    texts = [t for lang in LANGUAGES for t in pages[lang][:5]] + EDGE_CASES + ["Elle chante bien."]
    want = [list(map(lambda x: x if isinstance(x, str) else float(x), stock.classify(" ".join(t.split()))))
            for t in texts]
    env = {**os.environ, "SMOLEDGE_CACHE": str(tmp_path)}
    runs = [json.loads(subprocess.run([sys.executable, "-c", _IDENTIFY], input=json.dumps(texts), env=env,
                                      capture_output=True, text=True, check=True).stdout) for _ in range(2)]
    assert runs[0]["mapped"] == "ndarray" and runs[1]["mapped"] == "memmap"  # packaged model, then the cache
    assert runs[0]["scores"] == want and runs[1]["scores"] == want
    assert len(list((tmp_path / "py3langid").iterdir())) == 1


# ----------------------------------------------------------------------------- loading

def test_preload_loads_every_language_s_tokenizer():
    pipeline = build_pipeline(CurateConfig(), LANGUAGES)
    pipeline.preload()
    for lang in LANGUAGES:
        assert word_tokenizer(lang)._tokenizer is not None, lang
    assert {lang for step in pipeline.steps if hasattr(step, "_by_lang") for lang in step._by_lang} == set(LANGUAGES)


_LOAD_FRENCH = """
import json, sys, time
import smoledge.data.word_tokens as F
t = time.perf_counter()
tok = F.word_tokenizer("fr")
words = [tok.word_tokenize(text) for text in json.loads(sys.stdin.read())]
print(json.dumps({"words": words, "stats": dict(F.REGEX_CACHE_STATS), "seconds": time.perf_counter() - t}))
"""


def _load_french(cache: Path, texts: list[str]) -> dict:
    env = {**os.environ, "SMOLEDGE_CACHE": str(cache)}
    out = subprocess.run([sys.executable, "-c", _LOAD_FRENCH], input=json.dumps(texts), env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_spacy_regex_cache_gives_the_same_tokens(pages, tmp_path):
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    texts = pages["fr"][:8] + EDGE_CASES
    expected = [load_word_tokenizer("fr").word_tokenize(t) for t in texts]
    first = _load_french(tmp_path, texts)  # compiles French's token_match and keeps it
    assert first["stats"] == {"recorded": 1} and first["words"] == expected
    cached = list((tmp_path / "spacy-regex").glob("*-fr.json"))
    assert len(cached) == 1
    second = _load_french(tmp_path, texts)  # builds it from the cache
    assert second["stats"] == {"seeded": 1} and second["words"] == expected
    assert second["seconds"] < first["seconds"]
    entry = json.loads(cached[0].read_text())[0]
    entry["code"][5] += 1  # damaged: the checksum refuses it, French compiles as usual
    cached[0].write_text(json.dumps([entry]))
    third = _load_french(tmp_path, texts)
    assert third["stats"] == {"recorded": 1} and third["words"] == expected
    assert REGEX_CACHE_STATS is not None
