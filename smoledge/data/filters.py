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
repetition's n-gram counts are computed in C (smoledge.data.repetition).
"""

from __future__ import annotations

import abc
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from smoledge.data import fineweb_settings as fw
from smoledge.data.config import CurateConfig
from smoledge.data.langid import identifier, identify, probability_of
from smoledge.data.pii import scrub
from smoledge.data.repetition import fast_gopher_repetition_class
from smoledge.data.readers import Doc
from smoledge.data.web import SCREEN_TEXT_CHARS
from smoledge.data.word_tokens import preload_tokenizers, word_tokenizer

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

# Screening a page before extraction (curate's workers, Pipeline.screen): language ID on the first
# SCREEN_TEXT_CHARS characters of its visible text (what smoledge.data.web hands the screen); a page
# with at least SCREEN_MIN_CHARS of text whose probability of being in any kept language is below
# SCREEN_MAX_KEPT_PROBABILITY is dropped as unwanted_language without paying for its main text
# (trafilatura: ~17 ms a page, 2/3 of a page's cost) or the steps before language ID. The probability summed over the kept languages, not the top
# language's score: CJK pages split theirs between zh, wuu, ja... (0.8-0.97 for zh) with ~0 left for
# en-pt. On the 163 HTML pages and WARC responses of shared/data it screens out 48 (Polish, Finnish,
# Chinese, Russian, Dutch pages...), each of which extraction and the filters drop too
# (tests/test_curate_screening.py), for ~1.5 ms a page.
SCREEN_MIN_CHARS = 200
SCREEN_MAX_KEPT_PROBABILITY = 1e-3
# A screened page's drop reason and counters: the language step's own, plus how many were screened.
SCREENED_REASON = "language:unwanted_language"
SCREENED_STATS = Counter({"language:seen": 1, f"dropped:{SCREENED_REASON}": 1,
                          "language:screened_before_extraction": 1})


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

    def screens_out(self, visible: str) -> bool:
        """True when a page's visible text (before extraction) is confidently in a language not kept."""
        if len(visible) < SCREEN_MIN_CHARS:
            return False
        return probability_of(visible[:SCREEN_TEXT_CHARS], self.languages) < SCREEN_MAX_KEPT_PROBABILITY

    def filter(self, doc: Doc) -> bool | tuple[bool, str]:
        doc.lang, doc.lang_score = identify(doc.text)
        if doc.lang not in self.languages:
            return False, "unwanted_language"
        if doc.lang_score < self.thresholds.get(doc.lang, self.min_score):
            return False, "low_confidence"
        return True


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
        return fast_gopher_repetition_class()


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

    def screen(self, visible: str) -> bool:
        """True when a page's visible text (before extraction) is confidently in a language the language
        step does not keep (LanguageFilter.screens_out): the page is dropped unextracted, with
        SCREENED_REASON and SCREENED_STATS as process() would have counted it."""
        return any(isinstance(step, LanguageFilter) and step.screens_out(visible) for step in self.steps)

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
