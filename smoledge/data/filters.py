"""Per-document curation steps, datatrove style: each is a small class with one pure method.

    from smoledge.data.filters import build_pipeline
    pipeline = build_pipeline(recipe.curate, recipe.data.languages)
    result = pipeline.process(docs)          # kept docs, (index, reason) drops, stats

A `Filter` implements `filter(doc) -> bool | (bool, reason)`; a `Transform`
implements `transform(text) -> text` (and drops a page it empties). The
base class owns everything else: iterating a batch, counting, and
recording exclusions as "<step>:<reason>". The order is FineWeb's:

  boilerplate lines (C4 rules) -> language -> Gopher quality -> Gopher repetition -> PII

Thresholds follow datatrove's Gopher defaults; the recipe's `curate`
section can change them.
"""

from __future__ import annotations

import abc
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from smoledge.data.config import CurateConfig
from smoledge.data.readers import Doc


class Filter(abc.ABC):
    """Base of every step: runs `filter` over documents, counts, records exclusions."""

    name = "filter"

    def __init__(self) -> None:
        self.stats: Counter = Counter()

    @abc.abstractmethod
    def filter(self, doc: Doc) -> bool | tuple[bool, str]:
        """True to keep `doc`; False or (False, reason) to drop it. May annotate `doc`."""

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
    """Keep documents identified as one of `languages` with probability >= min_score."""

    name = "language"

    def __init__(self, languages: Iterable[str], min_score: float):
        super().__init__()
        self.languages = set(languages)
        self.min_score = min_score

    def filter(self, doc: Doc) -> bool | tuple[bool, str]:
        from smoledge.data.langid import identify

        doc.lang, doc.lang_score = identify(doc.text)
        if doc.lang not in self.languages:
            return False, "unwanted_language"
        if doc.lang_score < self.min_score:
            return False, "low_confidence"
        return True


# ----------------------------------------------------------------------------- Gopher

# Short, frequent function words; Gopher needs at least a couple per page.
STOP_WORDS = {
    "en": frozenset("the be to of and that have with a in is it for on was are this".split()),
    "fr": frozenset("le la les de des et à un une est que dans pour en du il ne pas au".split()),
    "es": frozenset("el la los las de y que en un una es por con para del se no".split()),
    "de": frozenset("der die das und ist nicht ein eine zu mit den von im auf sich es".split()),
    "it": frozenset("il la le di e che un una per non con è del della in si".split()),
    "pt": frozenset("o a os as de e que em um uma do da não para com se no na".split()),
}
_ALL_STOP_WORDS = frozenset().union(*STOP_WORDS.values())
_PUNCT = string.punctuation + "¿¡«»“”„‘’…–—·•"
_HAS_LETTER = re.compile(r"[^\W\d_]")
_BULLETS = ("•", "-", "*", "‣", "▪", "●", "◦", "–")


def words_of(text: str) -> list[str]:
    """Whitespace tokens with surrounding punctuation removed (punctuation-only tokens dropped)."""
    return [w for w in (t.strip(_PUNCT) for t in text.split()) if w]


class GopherQuality(Filter):
    """Gopher's quality heuristics (Rae et al. 2021, as in datatrove)."""

    name = "gopher_quality"

    def __init__(self, cfg: CurateConfig):
        super().__init__()
        self.cfg = cfg

    def filter(self, doc: Doc) -> bool | tuple[bool, str]:
        cfg, text = self.cfg, doc.text
        words = words_of(text)
        n = len(words)
        if n < cfg.min_words:
            return False, "too_few_words"
        if n > cfg.max_words:
            return False, "too_many_words"
        mean_len = sum(len(w) for w in words) / n
        if not cfg.min_mean_word_length <= mean_len <= cfg.max_mean_word_length:
            return False, "mean_word_length"
        symbols = text.count("#") + text.count("...") + text.count("…")
        if symbols / n > cfg.max_symbol_word_ratio:
            return False, "symbol_ratio"
        lines = [line.strip() for line in text.split("\n") if line.strip()]
        if lines and sum(line.startswith(_BULLETS) for line in lines) / len(lines) > cfg.max_bullet_line_fraction:
            return False, "bullet_lines"
        if lines and sum(line.endswith(("...", "…")) for line in lines) / len(lines) > cfg.max_ellipsis_line_fraction:
            return False, "ellipsis_lines"
        if sum(_HAS_LETTER.search(w) is not None for w in words) / n < cfg.min_alpha_word_fraction:
            return False, "alpha_words"
        stop = STOP_WORDS.get(doc.lang, _ALL_STOP_WORDS)
        if sum(w.lower() in stop for w in words) < cfg.min_stop_words:
            return False, "stop_words"
        return True


def top_ngram_char_fraction(words: list[str], n: int) -> float:
    """Characters covered by the most frequent word n-gram (counted once per occurrence) / all characters."""
    if len(words) < n:
        return 0.0
    counts = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    gram, count = counts.most_common(1)[0]
    if count <= 1:
        return 0.0
    total = sum(len(w) for w in words)
    return count * sum(len(w) for w in gram) / max(total, 1)


def duplicate_line_fraction(text: str) -> float:
    """Fraction of non-empty lines that repeat an earlier line."""
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if not lines:
        return 0.0
    return (len(lines) - len(set(lines))) / len(lines)


class GopherRepetition(Filter):
    """Gopher's repetition heuristics: repeated lines and a dominant word 2-gram."""

    name = "gopher_repetition"

    def __init__(self, cfg: CurateConfig):
        super().__init__()
        self.cfg = cfg

    def filter(self, doc: Doc) -> bool | tuple[bool, str]:
        if duplicate_line_fraction(doc.text) > self.cfg.max_duplicate_line_fraction:
            return False, "duplicate_lines"
        words = [w.lower() for w in words_of(doc.text)]
        if top_ngram_char_fraction(words, 2) > self.cfg.max_top_ngram_fraction:
            return False, "top_2gram"
        return True


# ----------------------------------------------------------------------------- PII

class PIIScrubber(Transform):
    """E-mails and public IPv4s replaced by placeholders (smoledge.data.pii)."""

    name = "pii"

    def transform(self, text: str) -> str:
        from smoledge.data.pii import scrub

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

    def __init__(self, steps: list[Filter]):
        self.steps = steps

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
    steps: list[Filter] = []
    if cfg.remove_boilerplate_lines:
        steps.append(BoilerplateLines())
    steps += [LanguageFilter(languages, cfg.min_language_score), GopherQuality(cfg), GopherRepetition(cfg)]
    if cfg.scrub_pii:
        steps.append(PIIScrubber())
    return Pipeline(steps)
