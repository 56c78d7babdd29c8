"""Per-document curation steps, datatrove style: each is a small class with one pure method.

    from smoledge.data.filters import build_pipeline
    pipeline = build_pipeline(recipe.curate, recipe.data.languages)
    result = pipeline.process(docs)          # kept docs, (index, reason) drops, stats

A `Filter` implements `filter(doc) -> bool | (bool, reason)`; a `Transform`
implements `transform(text) -> text` (and drops a page it empties). The
base class owns everything else: iterating a batch, counting, and
recording exclusions as "<step>:<reason>". The order is FineWeb's:

  boilerplate lines (C4-style, multilingual) -> language ID -> Gopher repetition
  -> Gopher quality -> C4 quality (English) -> FineWeb quality -> PII

The four quality steps run datatrove's reference filters, the code FineWeb
ran, with FineWeb's settings for English and FineWeb2's stop words, word
tokenizers and (optionally) thresholds for fr/es/de/it/pt
(smoledge.data.fineweb_settings). A drop reason is datatrove's own, e.g.
"gopher_quality:gopher_enough_stop_words" or "fineweb_quality:line_punct_ratio".

A worker builds its pipeline once and calls `pipeline.preload()` before its first
page, which loads the language-ID model and every language's word tokenizer. The
steps give datatrove's decisions faster than datatrove (issue 21,
tests/test_filter_speed.py): a page is tokenized once for all quality filters, the
tokenizer is spaCy's without the per-call costs datatrove pays, and Gopher
repetition's n-gram counts are computed in C.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import logging
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

from smoledge.data import fineweb_settings as fw
from smoledge.data.config import CurateConfig
from smoledge.data.langid import identifier, identify
from smoledge.data.pii import scrub
from smoledge.data.readers import Doc

log = logging.getLogger(__name__)


class Filter(abc.ABC):
    """Base of every step: runs `filter` over documents, counts, records exclusions."""

    name = "filter"

    def __init__(self) -> None:
        self.stats: Counter = Counter()

    @abc.abstractmethod
    def filter(self, doc: Doc) -> bool | tuple[bool, str]:
        """True to keep `doc`; False or (False, reason) to drop it. May annotate `doc`."""

    def preload(self, languages: Iterable[str]) -> None:
        """Load now what filtering pages in `languages` needs (models, tokenizers); default: nothing."""

    def check(self, doc: Doc) -> str | None:
        """The drop reason as "<name>:<reason>", or None to keep."""
        out = self.filter(doc)
        keep, reason = (out, "") if isinstance(out, bool) else out
        return None if keep else f"{self.name}:{reason or 'dropped'}"

    def run(self, docs: Iterable[tuple[int, Doc]], excluded: list[tuple[int, str]]) -> Iterator[tuple[int, Doc]]:
        """Pass kept (index, doc) pairs on; append (index, reason) of dropped ones to `excluded`."""
        for i, doc in docs:
            self.stats[f"{self.name}:seen"] += 1
            reason = self.check(doc)
            if reason is None:
                yield i, doc
            else:
                self.stats[f"dropped:{reason}"] += 1
                excluded.append((i, reason))


class Transform(Filter):
    """A step that rewrites the text; a page left empty is dropped."""

    @abc.abstractmethod
    def transform(self, text: str) -> str:
        """The rewritten text ("" drops the page)."""

    def filter(self, doc: Doc) -> bool | tuple[bool, str]:
        doc.text = self.transform(doc.text)
        return (True, "") if doc.text.strip() else (False, "empty")


# ----------------------------------------------------------------------------- C4 line rules

# Navigation bars and link lists: 3+ short items between separators.
_NAV_SPLIT = re.compile(r"\s+[|•·»›/]\s+")
# Consent wording next to "cookie" (plain "used" is not enough: recipes use cookie cutters).
_COOKIE_CONSENT = re.compile(
    r"\b(accept\w*|agree|(?:uses?|using|use of) cookies|policy|settings|consent|accepter|acceptez|utilise\w*|gestion|"
    r"aceptar|aceptas|usamos|pol[ií]tica|configuraci[oó]n|akzeptieren|verwendet|verwendung|einstellungen|"
    r"zustimm\w*|stimmen|accett\w*|utilizza|impostazioni|aceitar|aceita|utiliza|defini[cç][oõ]es)\b",
    re.IGNORECASE,
)
_RIGHTS = re.compile(
    r"©|\bcopyright\b|all rights reserved|tous droits réservés|todos los derechos reservados|"
    r"alle rechte vorbehalten|tutti i diritti riservati|todos os direitos reservados",
    re.IGNORECASE,
)
# Short call-to-action lines, as prefixes (case-insensitive).
_CALLS_TO_ACTION = (
    "read more", "skip to main content", "skip to content", "subscribe to our newsletter", "follow us on",
    "share on", "sign up for our newsletter", "lire la suite", "aller au contenu", "abonnez-vous",
    "suivez-nous", "partager sur", "leer más", "saltar al contenido", "suscríbete", "síguenos",
    "compartir en", "weiterlesen", "zum hauptinhalt", "zum inhalt springen", "abonnieren sie", "folgen sie uns",
    "teilen auf", "leggi di più", "leggi tutto", "vai al contenuto", "iscriviti alla", "seguici su",
    "condividi su", "ler mais", "saltar para o conteúdo", "subscreva a", "siga-nos", "partilhar no",
)
MAX_BOILERPLATE_LINE_WORDS = 30


def is_boilerplate_line(line: str) -> bool:
    """C4-style rules for one line (FineWeb keeps lines without terminal punctuation)."""
    low = line.strip().lower()
    if not low:
        return False
    n_words = len(low.split())
    if "javascript" in low or "lorem ipsum" in low:
        return True
    if n_words <= MAX_BOILERPLATE_LINE_WORDS:
        if "cookie" in low and _COOKIE_CONSENT.search(low):
            return True
        if _RIGHTS.search(low):
            return True
    items = _NAV_SPLIT.split(low)
    if len(items) >= 3 and all(len(item.split()) <= 4 for item in items):
        return True
    return n_words <= 8 and low.startswith(_CALLS_TO_ACTION)


class BoilerplateLines(Transform):
    """Drop navigation, cookie, share and footer lines before the document filters."""

    name = "boilerplate"

    def transform(self, text: str) -> str:
        lines = text.split("\n")
        kept = [line for line in lines if not is_boilerplate_line(line)]
        self.stats["boilerplate:lines_removed"] += len(lines) - len(kept)
        return "\n".join(kept).strip("\n")


# ----------------------------------------------------------------------------- language

class LanguageFilter(Filter):
    """Keep documents identified as one of `languages` with a score >= that language's threshold."""

    name = "language"

    def __init__(self, languages: Iterable[str], min_score: float, thresholds: dict[str, float] | None = None):
        super().__init__()
        self.languages = set(languages)
        self.min_score = min_score
        self.thresholds = dict(thresholds or {})

    def preload(self, languages: Iterable[str]) -> None:
        identifier()

    def filter(self, doc: Doc) -> bool | tuple[bool, str]:
        doc.lang, doc.lang_score = identify(doc.text)
        if doc.lang not in self.languages:
            return False, "unwanted_language"
        if doc.lang_score < self.thresholds.get(doc.lang, self.min_score):
            return False, "low_confidence"
        return True


# ----------------------------------------------------------------------------- word tokenizers

# A reusable tokenizer reloads its blank pipeline once its vocabulary holds this
# many lexemes, which frees the strings spaCy interned meanwhile (memory stays
# bounded on a long stream; ~100 bytes each).
TOKENIZER_RELOAD_LEXEMES = 300_000
# Whitespace-delimited pieces whose tokens spaCy's tokenizer caches (spaCy's default: 10,000, which
# a few dozen pages fill); the cache goes with the pipeline at each reload.
TOKENIZER_CACHE_PIECES = 200_000
# Texts whose words a tokenizer remembers: the quality filters of one page ask
# for the words of the same text (Gopher repetition, Gopher quality, and FineWeb
# quality unless C4 rewrote the page before it), so each text is tokenized once.
WORD_MEMO_TEXTS = 2


# Patterns at least this long that spaCy compiles while loading a language are
# kept compiled on disk (see spacy_regex_cache).
REGEX_CACHE_MIN_CHARS = 100_000
REGEX_CACHE_STATS: Counter = Counter()
"""'seeded': cached patterns offered to `re` in this process; 'recorded': patterns compiled and cached."""
_REGEX_CACHE_LANGUAGES: set[str] = set()
"""Languages whose spaCy data this process has loaded (and so compiled): later loads compile nothing."""


def _regex_cache_file(lang: str) -> Path:
    import spacy

    from smoledge.pypi_assets import cache_root

    v = sys.version_info
    return cache_root() / "spacy-regex" / f"py{v.major}{v.minor}{v.micro}-spacy{spacy.__version__}-{lang}.json"


@contextlib.contextmanager
def spacy_regex_cache(lang: str) -> Iterator[None]:
    """Around loading spaCy's `lang`: its very long regexes come compiled from a disk cache.

    spaCy's French data compiles a 1.4 MB token_match pattern on import, ~2.5 s of every
    worker's start (all six other languages together: 0.4 s). Python's `re` compiles a
    pattern to a list of opcodes and builds the Pattern from that list; this keeps the
    list (with the groups) of every pattern of REGEX_CACHE_MIN_CHARS or more in
    $SMOLEDGE_CACHE/spacy-regex/ (else ~/.cache/smoledge), one file per Python version,
    spaCy version and language, and before the next load puts the Pattern built from it
    into `re`'s own cache under the same pattern and flags, where spaCy's re.compile finds
    it. The opcodes are what `re` computes for that pattern on that Python, so the
    Pattern, and spaCy's tokens, are the same (CPython validates the opcodes too). Only on
    CPython 3.11 (the cache's layout is its `re` internals); any problem with the cache
    file means compiling as usual.
    """
    import re._compiler as sre_compile
    import re._parser as sre_parse

    import _sre

    if sys.implementation.name != "cpython" or sys.version_info[:2] != (3, 11) or lang in _REGEX_CACHE_LANGUAGES:
        yield
        return
    _REGEX_CACHE_LANGUAGES.add(lang)
    path = _regex_cache_file(lang)
    try:
        entries = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
        for e in entries:
            body = json.dumps([e["pattern"], e["flags"], e["code"]])
            if hashlib.sha256(body.encode()).hexdigest() != e["sha256"]:
                raise ValueError("checksum")
            compiled = _sre.compile(e["pattern"], e["final_flags"], e["code"], e["groups"], e["groupindex"],
                                    tuple(e["indexgroup"]))
            re._cache[str, e["pattern"], e["flags"]] = compiled  # type: ignore[attr-defined]
            REGEX_CACHE_STATS["seeded"] += 1
    except Exception as exc:  # a damaged or foreign cache file: compile as usual
        log.debug("spaCy regex cache %s unusable: %r", path, exc)
        entries = []
    recorded: list[dict[str, Any]] = []
    compile_ = sre_compile.compile

    def recording_compile(p: Any, flags: int = 0) -> Any:
        if not (isinstance(p, str) and len(p) >= REGEX_CACHE_MIN_CHARS) or flags & re.DEBUG:
            return compile_(p, flags)
        # re._compiler.compile, keeping what it builds the Pattern from.
        parsed = sre_parse.parse(p, flags)
        code = sre_compile._code(parsed, flags)
        groupindex = parsed.state.groupdict
        indexgroup = [None] * parsed.state.groups
        for k, i in groupindex.items():
            indexgroup[i] = k
        entry = {"pattern": p, "flags": flags, "final_flags": flags | parsed.state.flags, "code": code,
                 "groups": parsed.state.groups - 1, "groupindex": dict(groupindex), "indexgroup": indexgroup}
        recorded.append(entry)
        return _sre.compile(p, entry["final_flags"], code, entry["groups"], groupindex, tuple(indexgroup))

    sre_compile.compile = recording_compile
    try:
        yield
    finally:
        sre_compile.compile = compile_
    if recorded:
        REGEX_CACHE_STATS["recorded"] += len(recorded)
        for e in recorded:
            e["sha256"] = hashlib.sha256(json.dumps([e["pattern"], e["flags"], e["code"]]).encode()).hexdigest()
        try:
            from smoledge.io import atomic_path

            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(recorded), encoding="utf-8")
        except OSError as exc:  # a read-only home: the next worker compiles again, that is all
            log.debug("spaCy regex cache %s not written: %r", path, exc)


@lru_cache(maxsize=None)
def _reusable_spacy_class() -> type:
    # Defined on first use: importing datatrove's tokenizers (and spaCy) takes seconds.
    from datatrove.utils.word_tokenizers import SpaCyTokenizer
    from spacy.attrs import IS_PUNCT

    class ReusableSpaCyTokenizer(SpaCyTokenizer):
        """datatrove's spaCy tokenizer, same words, sentences and spans, made for a stream of pages.

        - No per-call `memory_zone`: the zone forgets every string spaCy interned during
          the call, so the next page interns them again (~90% of datatrove's tokenizing
          time: 170 vs 1300 French pages/s). The blank pipeline is reloaded instead once
          its vocabulary reaches TOKENIZER_RELOAD_LEXEMES.
        - New words skip spaCy's lexical attributes (shape, prefix, suffix, lower, norm,
          like_url... ~25% of tokenizing new text), which nothing here reads: the
          tokenizer never does, and the sentencizer reads a token's text and is_punct,
          which is kept.
        - Words are made line by line. The tokens are the same: spaCy cuts a text at
          whitespace first and handles each piece on its own, a newline always leaves a
          whitespace token between two lines' tokens (so no special case matches across
          it), and whitespace tokens are what datatrove strips away. But spaCy caches a
          piece's tokens only until the first special case of the text it is in, and "\n"
          is one: on a whole page it caches almost nothing, line by line its cache
          (TOKENIZER_CACHE_PIECES) serves the frequent words.
        - datatrove's quality filters each split the page into words themselves: asked
          again for one of its last WORD_MEMO_TEXTS texts, this tokenizer answers from
          memory, and for a new text it reuses the previous text's lines (C4 rewrites a
          page by dropping and stripping lines). Callers get a copy of the list.
        """

        def __init__(self, language: str, config: Any = None):
            super().__init__(language, config)
            self._words: dict[str, list[str]] = {}
            self._lines: dict[str, list[str]] = {}
            self.loads = 0
            """How many times the blank pipeline was (re)loaded."""

        @property
        def tokenizer(self) -> Any:
            if self._tokenizer is not None and len(self._tokenizer.vocab) > TOKENIZER_RELOAD_LEXEMES:
                self._tokenizer = None
            if self._tokenizer is None:
                with spacy_regex_cache(self.language):
                    nlp = super().tokenizer
                nlp.tokenizer.max_cache_size = TOKENIZER_CACHE_PIECES
                getters = nlp.vocab.lex_attr_getters
                nlp.vocab.lex_attr_getters = {IS_PUNCT: getters[IS_PUNCT]} if IS_PUNCT in getters else {}
                self.loads += 1
            return self._tokenizer

        def word_tokenize(self, text: str) -> list[str]:
            words = self._words.get(text)
            if words is None:
                words = self._word_tokenize(text)
                if len(self._words) >= WORD_MEMO_TEXTS:
                    del self._words[next(iter(self._words))]  # the oldest
                self._words[text] = words
            return list(words)

        def _word_tokenize(self, text: str) -> list[str]:
            # The tokenizer alone: the sentencizer datatrove also runs here does not change the tokens.
            nlp = self.tokenizer
            nlp.max_length = len(text) + 10
            known, lines = self._lines, {}
            words: list[str] = []
            try:
                for line in text.split("\n"):
                    line = line.strip()  # the ends are whitespace tokens, stripped anyway
                    if not line:
                        continue
                    got = lines.get(line) or known.get(line)
                    if got is None:
                        got = [w for w in (tok.text.strip() for tok in nlp.make_doc(line)) if w]
                    lines[line] = got
                    words += got
            except Exception:
                # datatrove's way: the whole text again, without the one string it knows to break spaCy.
                if "IS_ALPHA" not in text:
                    raise
                self._lines = {}
                return strip_strings([tok.text for tok in nlp.make_doc(text.replace("IS_ALPHA", ""))])
            self._lines = lines
            return words

        def sent_tokenize(self, text: str) -> list[str]:
            return strip_strings([sent.text for chunk in self._do_tokenize(text) for sent in chunk.sents])

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            spans: list[tuple[int, int]] = []
            for chunk in self._do_tokenize(text):
                start = spans[-1][1] if spans else 0
                spans += [(start + sent.start_char, start + sent.end_char) for sent in chunk.sents]
            return spans

    return ReusableSpaCyTokenizer


def strip_strings(els: list[str]) -> list[str]:
    """datatrove's strip_strings: the stripped non-blank strings."""
    return [s for s in (el.strip() for el in els) if s]


@lru_cache(maxsize=None)
def word_tokenizer(lang: str) -> Any:
    """The word/sentence tokenizer datatrove assigns to `lang` (spaCy's, made reusable); one per process."""
    import importlib.metadata  # noqa: F401  (datatrove's dependency check uses it without importing it)

    from datatrove.utils.word_tokenizers import SpaCyTokenizer, load_word_tokenizer

    assigned = load_word_tokenizer(lang)
    if type(assigned) is SpaCyTokenizer and assigned.language != "ja":  # datatrove chunks Japanese its own way
        return _reusable_spacy_class()(assigned.language, assigned.config)
    return assigned


def preload_tokenizers(languages: Iterable[str]) -> None:
    """Load the word tokenizers of `languages` now (spaCy's French one alone takes ~2.5 s), so that the
    first page of each language does not pay for it."""
    for lang in languages:
        word_tokenizer(lang).word_tokenize("Preload.")


# ----------------------------------------------------------------------------- quality (datatrove)

def reference_kwargs(step: str, cfg: CurateConfig, lang: str) -> dict[str, Any] | None:
    """datatrove constructor arguments of quality filter `step` for `lang`; None: not run on `lang`.

    English gets FineWeb's settings (datatrove's defaults, with the recipe's Gopher
    fields); fr/es/de/it/pt get their stop words and, with cfg.fineweb2_thresholds,
    FineWeb2's pipeline changes and tuned thresholds on top.
    """
    fineweb2 = cfg.fineweb2_thresholds and lang in fw.FINEWEB2_THRESHOLDS
    if step == "gopher_repetition":
        kwargs: dict[str, Any] = {
            "dup_line_frac": cfg.max_duplicate_line_fraction,
            "top_n_grams": ((2, cfg.max_top_ngram_fraction), *fw.TOP_3_4_GRAMS),
        }
        if fineweb2:
            kwargs.update(fw.GOPHER_REPETITION_FINEWEB2)
    elif step == "gopher_quality":
        kwargs = {
            "min_doc_words": cfg.min_words, "max_doc_words": cfg.max_words,
            "min_avg_word_length": cfg.min_mean_word_length, "max_avg_word_length": cfg.max_mean_word_length,
            "max_symbol_word_ratio": cfg.max_symbol_word_ratio, "max_bullet_lines_ratio": cfg.max_bullet_line_fraction,
            "max_ellipsis_lines_ratio": cfg.max_ellipsis_line_fraction,
            "max_non_alpha_words_ratio": cfg.min_alpha_word_fraction, "min_stop_words": cfg.min_stop_words,
        }
        if lang in fw.STOP_WORDS:  # English: datatrove's default list, the one FineWeb used
            kwargs["stop_words"] = list(fw.STOP_WORDS[lang])
    elif step == "c4_quality":
        if fineweb2:  # FineWeb2 does not run C4
            return None
        kwargs = dict(fw.C4_FINEWEB)
    elif step == "fineweb_quality":
        kwargs = dict(fw.FINEWEB_QUALITY_FINEWEB2) if fineweb2 else {}
    else:
        raise ValueError(f"unknown quality filter {step!r}; expected one of {fw.QUALITY_FILTERS}")
    if fineweb2:
        kwargs.update({k: v for k, v in fw.FINEWEB2_THRESHOLDS[lang].items() if fw.THRESHOLD_FILTER[k] == step})
    return kwargs


def top_ngram_chars(words: list[str], n: int) -> int | None:
    """datatrove's find_top_duplicate(get_n_grams(words, n)), or None where there is no n-gram.

    The same n-grams (" "-joined) in the same order, counted by Counter in C, so
    most_common breaks ties the same way."""
    if len(words) < n:
        return None
    gram, count = Counter(map(" ".join, zip(*(words[k:] for k in range(n))))).most_common(1)[0]
    return len(gram) * count


def repeated_ngram_chars(words: list[str], n: int) -> int:
    """datatrove's find_all_duplicate(words, n): characters of the "".join-ed n-grams met again, left to
    right, skipping the n words of each repeat. The n-grams are built in C; a page with no repeated
    one (most pages, for n >= 5) is settled by one set."""
    grams = list(map("".join, zip(*(words[k:] for k in range(n)))))
    if len(set(grams)) == len(grams):
        return 0
    seen: set[str] = set()
    repeated, idx, end = 0, 0, len(grams)
    while idx < end:
        gram = grams[idx]
        if gram in seen:
            repeated += len(gram)
            idx += n
        else:
            seen.add(gram)
            idx += 1
    return repeated


@lru_cache(maxsize=None)
def _gopher_repetition_class() -> type:
    from datatrove.pipeline.filters import GopherRepetitionFilter
    from datatrove.pipeline.filters.gopher_repetition_filter import find_duplicates
    from datatrove.utils.text import split_into_words

    class FastGopherRepetitionFilter(GopherRepetitionFilter):
        """datatrove's GopherRepetitionFilter (0.9.0) with its n-gram statistics computed faster:
        `filter` is datatrove's line for line, with top_ngram_chars and repeated_ngram_chars
        for its get_n_grams/find_top_duplicate and find_all_duplicate (the same numbers, so the
        same decisions and reasons; tests/test_filter_speed.py compares them, and pins the
        datatrove source this copies). They were 60% of the filter's own time."""

        def filter(self, doc: Any) -> bool | tuple[bool, str]:
            text = doc.text

            paragraphs = self.paragraph_exp.split(text.strip())
            paragraphs_duplicates, char_duplicates = find_duplicates(paragraphs)
            if self.dup_para_frac and paragraphs_duplicates / len(paragraphs) > self.dup_para_frac:
                return False, "dup_para_frac"
            if self.dup_para_char_frac and char_duplicates / len(text) > self.dup_para_char_frac:
                return False, "dup_para_char_frac"

            lines = self._line_splitter.split(text)
            line_duplicates, char_duplicates = find_duplicates(lines)
            if self.dup_line_frac and line_duplicates / len(lines) > self.dup_line_frac:
                return False, "dup_line_frac"
            if self.dup_line_char_frac and char_duplicates / len(text) > self.dup_line_char_frac:
                return False, "dup_line_char_frac"

            words = split_into_words(text, self.language)

            for n, n_frac in self.top_n_grams:
                top_char_length = top_ngram_chars(words, n)
                if top_char_length is None:
                    continue
                if top_char_length / len(text) > n_frac:
                    return False, f"top_{n}_gram"

            for n, n_frac in self.dup_n_grams:
                n_duplicates_char = repeated_ngram_chars(words, n)
                if n_duplicates_char / len(text) > n_frac:
                    return False, f"duplicated_{n}_n_grams"

            return True

    return FastGopherRepetitionFilter


class DatatroveFilter(Filter):
    """One of datatrove's reference filters, built per document language, called on a datatrove Document.

    The reference filter may rewrite the text (C4 drops lines); the rewrite is kept,
    as it is in FineWeb, and the removed lines are counted.
    """

    reference_class = ""
    """datatrove.pipeline.filters class name."""

    def reference_type(self) -> type:
        """The class `reference` builds: datatrove's `reference_class`, or a faster equivalent."""
        import datatrove.pipeline.filters as dt_filters

        return getattr(dt_filters, self.reference_class)

    def __init__(self, cfg: CurateConfig):
        super().__init__()
        from datatrove.data import Document

        self.cfg = cfg
        self._by_lang: dict[str, Any] = {}
        self._document = Document

    def reference(self, lang: str) -> Any:
        """The configured datatrove filter for `lang` (None: this step does not apply to `lang`)."""
        if lang not in self._by_lang:
            kwargs = reference_kwargs(self.name, self.cfg, lang)
            if kwargs is None:
                self._by_lang[lang] = None
            else:
                self._by_lang[lang] = self.reference_type()(**kwargs, language=word_tokenizer(lang))
        return self._by_lang[lang]

    def preload(self, languages: Iterable[str]) -> None:
        preload_tokenizers([lang for lang in languages if self.reference(lang) is not None])

    def filter(self, doc: Doc) -> bool | tuple[bool, str]:
        # Steps run after language ID; a document that skipped it is treated as English.
        lang = doc.lang or "en"
        ref = self._by_lang[lang] if lang in self._by_lang else self.reference(lang)
        if ref is None:
            self.stats[f"{self.name}:not_applied"] += 1
            return True
        page = self._document(text=doc.text, id=doc.id, metadata={"language": doc.lang, "url": doc.url})
        out = ref.filter(page)
        if page.text != doc.text:
            lines_before = sum(1 for line in doc.text.splitlines() if line.strip())
            self.stats[f"{self.name}:lines_removed"] += lines_before - len(page.text.splitlines())
            doc.text = page.text
        return out


class GopherRepetition(DatatroveFilter):
    """Repeated lines, paragraphs and n-grams (Gopher, Rae et al. 2021)."""

    name, reference_class = "gopher_repetition", "GopherRepetitionFilter"

    def reference_type(self) -> type:
        return _gopher_repetition_class()


class GopherQuality(DatatroveFilter):
    """Length, word length, symbols, bullets, ellipses, alphabetic words, stop words (Gopher)."""

    name, reference_class = "gopher_quality", "GopherQualityFilter"


class C4Quality(DatatroveFilter):
    """C4's rules (short/javascript/policy lines out; lorem ipsum, '{', < 5 sentences drop), FineWeb's way."""

    name, reference_class = "c4_quality", "C4QualityFilter"


class FineWebQuality(DatatroveFilter):
    """FineWeb's own rules: lines ending in punctuation, short lines, duplicated line characters, newlines."""

    name, reference_class = "fineweb_quality", "FineWebQualityFilter"


QUALITY_STEPS: dict[str, type[DatatroveFilter]] = {
    "gopher_repetition": GopherRepetition, "gopher_quality": GopherQuality,
    "c4_quality": C4Quality, "fineweb_quality": FineWebQuality,
}


# ----------------------------------------------------------------------------- PII

class PIIScrubber(Transform):
    """E-mails and public IPv4s replaced by placeholders (smoledge.data.pii)."""

    name = "pii"

    def transform(self, text: str) -> str:
        text, emails, ips = scrub(text)
        self.stats["pii:emails_replaced"] += emails
        self.stats["pii:ips_replaced"] += ips
        return text


# ----------------------------------------------------------------------------- pipeline

@dataclass
class BatchResult:
    kept: list[tuple[int, Doc]] = field(default_factory=list)
    """(read index, document) of the survivors, in order."""
    excluded: list[tuple[int, str]] = field(default_factory=list)
    """(read index, "<step>:<reason>") of the dropped documents."""
    stats: Counter = field(default_factory=Counter)


class Pipeline:
    """The per-document steps in order; `process` runs one batch through all of them."""

    def __init__(self, steps: list[Filter], languages: Iterable[str] = ()):
        self.steps = steps
        self.languages = list(languages)
        """The languages language ID keeps: what `preload` loads for."""

    def preload(self) -> None:
        """Load every model and word tokenizer the steps use for `languages`, once per process.

        A worker calls this before its first page: otherwise the first page in each language
        pays for its tokenizer (French: ~2.5 s of compiling spaCy's tokenizer exceptions).
        """
        for step in self.steps:
            step.preload(self.languages)

    def process(self, docs: Iterable[tuple[int, Doc]]) -> BatchResult:
        result = BatchResult()
        for step in self.steps:
            step.stats.clear()
        stream: Iterable[tuple[int, Doc]] = docs
        for step in self.steps:
            stream = step.run(stream, result.excluded)
        result.kept = list(stream)
        for step in self.steps:
            result.stats.update(step.stats)
        result.excluded.sort()
        return result


def build_pipeline(cfg: CurateConfig, languages: Iterable[str]) -> Pipeline:
    languages = list(languages)
    steps: list[Filter] = []
    if cfg.remove_boilerplate_lines:
        steps.append(BoilerplateLines())
    steps.append(LanguageFilter(languages, cfg.min_language_score, cfg.language_thresholds))
    steps += [QUALITY_STEPS[name](cfg) for name in fw.QUALITY_FILTERS if name in cfg.quality_filters]
    if cfg.scrub_pii:
        steps.append(PIIScrubber())
    return Pipeline(steps, languages)


def filter_metrics(stats: Counter) -> dict[str, dict[str, Any]]:
    """Per step: documents seen, dropped, dropped per reason, and the step's own counters.

    `stats` is a (merged) BatchResult.stats; the curate stage reports this as its
    per-filter metrics.
    """
    out: dict[str, dict[str, Any]] = {}
    for key, n in sorted(stats.items()):
        if key.startswith("dropped:"):
            step, reason = key.removeprefix("dropped:").split(":", 1)
            entry = out.setdefault(step, {"seen": 0, "dropped": 0, "reasons": {}})
            entry["dropped"] += n
            entry["reasons"][reason] = n
        else:
            step, counter = key.split(":", 1)
            entry = out.setdefault(step, {"seen": 0, "dropped": 0, "reasons": {}})
            entry[counter] = entry.get(counter, 0) + n
    return out
