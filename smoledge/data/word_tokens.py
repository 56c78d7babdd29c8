"""datatrove's word tokenizers (spaCy's), made for a stream of pages: same words, sentences and spans.

    from smoledge.data.word_tokens import word_tokenizer, preload_tokenizers
    preload_tokenizers(["en", "fr"])           # load now, not on the first page
    word_tokenizer("fr").word_tokenize(text)   # what datatrove's quality filters split a page into

The quality filters (smoledge.data.filters) call datatrove's reference filters with these.
A page is tokenized once for all of them, line by line so spaCy's cache works, without the
lexical attributes nothing reads, and spaCy's French data compiles its 1.4 MB regex once per
machine (spacy_regex_cache). tests/test_filter_speed.py checks the tokens against datatrove's
own tokenizers on real pages in all six languages.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import sys
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

log = logging.getLogger(__name__)


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
    from spacy.attrs import IDX, IS_PUNCT, LENGTH

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
                        got = strip_strings(token_texts(nlp.make_doc(line), line))
                    lines[line] = got
                    words += got
            except Exception:
                # datatrove's way: the whole text again, without the one string it knows to break spaCy.
                if "IS_ALPHA" not in text:
                    raise
                self._lines = {}
                text = text.replace("IS_ALPHA", "")
                return strip_strings(token_texts(nlp.make_doc(text), text))
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

    def token_texts(doc: Any, text: str) -> list[str]:
        """[tok.text for tok in doc], sliced from `text` by the tokens' offsets: spaCy's tokens are verbatim
        spans of the text, and reading them as an array makes no Token object per word (4x faster)."""
        return [text[i:i + n] for i, n in doc.to_array([IDX, LENGTH]).tolist()]

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
