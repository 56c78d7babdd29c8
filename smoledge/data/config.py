"""Config sections for the data stages: sources and curation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from smoledge.config import Section

LANGUAGES = ("en", "fr", "es", "de", "it", "pt")


# Per-source filter policies (SourceConfig.filters) and the steps a list may name.
FILTER_POLICIES = ("fineweb", "none")
POLICY_STEPS = ("boilerplate", "gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality")
# The curate keys a source may override (SourceConfig.filter_settings): thresholds, not the run's mechanics.
THRESHOLD_KEYS = (
    "min_language_score", "language_thresholds", "fineweb2_thresholds", "min_words", "max_words",
    "max_duplicate_line_fraction", "max_top_ngram_fraction", "min_alpha_word_fraction", "min_mean_word_length",
    "max_mean_word_length", "max_symbol_word_ratio", "max_bullet_line_fraction", "max_ellipsis_line_fraction",
    "min_stop_words",
)


@dataclass
class SourceConfig(Section):
    name: str = "sample"
    """Short name of the source; used in metadata and mixture weights."""
    kind: Literal["sample", "jsonl", "parquet", "hf", "warc", "html", "pdf", "text"] = "sample"
    """`sample`: the built-in synthetic web dump (`smoledge sample`); `jsonl`/`parquet`:
    local files (a file, a directory or a glob); `hf`: a Hugging Face dataset id, streamed;
    `warc`: web archives (.warc, .warc.gz, .arc, .arc.gz), main text of their HTML and PDF
    responses; `html`: saved pages (.html, .htm), main text; `pdf`: PDFs with a text layer;
    `text`: plain UTF-8 .txt files, each file one document (a book, a corpus file)."""
    path: str | None = None
    """File, directory or glob for jsonl/parquet/warc/html/pdf/text; dataset id for hf. Unused for sample."""
    text_field: str = "text"
    """Field holding the document text."""
    subset: str | None = None
    """hf only: the dataset config name (e.g. a FineWeb2 language subset)."""
    split: str = "train"
    """hf only: the split to stream."""
    max_docs: int | None = None
    """Stop reading this source after this many records (documents, kept or dropped; null: all)."""
    weight: float = 1.0
    """Relative weight of this source in the training mixture."""
    sample_docs: int = 2400
    """sample only: how many raw documents to generate (before defects are removed)."""
    max_doc_bytes: int = 10_000_000
    """Skip (and count as skipped:too_large) any raw document, page or PDF bigger than this."""
    pdf_extractor: Literal["pypdfium2", "pdfminer", "pypdf", "pymupdf"] = "pypdfium2"
    """pdf/warc: text-layer extractor. pypdfium2 (PDFium; Apache-2.0/BSD-3-Clause) is the
    fastest permissive one, with pypdf, then pdfminer.six, as second opinions on PDFs it
    cannot read or garbles (see smoledge/data/pdf.py); pdfminer and pypdf alone are slower.
    pymupdf is opt-in: AGPL-3.0, installed by `pip install 'smoledge[pdf-agpl]'`."""
    max_garbled_fraction: float = 0.1
    """pdf/warc: a PDF whose text has more garbled characters than this (U+FFFD, private-use,
    control characters, words mixing scripts) is treated as having no text layer: needs OCR."""
    ocr: bool = False
    """pdf/warc: hand PDFs without a usable text layer to `ocr_hook`; off: they are skipped
    and counted as skipped:pdf:needs_ocr."""
    ocr_hook: str | None = None
    """'module:function' of a callable(pdf: bytes, doc_id: str) -> str | None that returns
    the text of a scanned PDF (see smoledge/data/pdf.py). Required when ocr is true."""
    refetch: bool = False
    """warc only: fetch a record's URL again when its payload is truncated (WARC-Truncated,
    or the file ends inside it) or its PDF does not parse, as FinePDFs does. Needs network."""
    refetch_timeout_s: float = 10.0
    """Socket timeout of one refetch attempt."""
    refetch_retries: int = 2
    """Further attempts after a timeout, connection error or HTTP 5xx/429/408."""
    refetch_max_bytes: int = 10_000_000
    """Largest refetched body (also capped by max_doc_bytes); a bigger one is not read and
    counted as refetch:too_large, and the record is handled as if not refetched."""
    refetch_allow_private: bool = False
    """Allow refetching URLs on loopback, private or link-local addresses (off: a crawled URL
    can never make curation reach an intranet or a cloud metadata service)."""
    filters: str | list[str] = "fineweb"
    """Which curate steps this source's documents go through. `fineweb`: the curate section's web
    pipeline (boilerplate lines, Gopher, C4, FineWeb quality), the default for every kind; `none`: trusted
    text (books, an encyclopedia, your own corpus), only language ID, PII scrubbing and dedup; or a list
    of steps from boilerplate, gopher_repetition, gopher_quality, c4_quality, fineweb_quality (language ID,
    PII and dedup always run)."""
    filter_settings: dict[str, Any] = field(default_factory=dict)
    """This source's overrides of curate thresholds, e.g. {min_words: 20, min_language_score: 0.5}: any
    curate key that sets a threshold (see the curate section); the rest of curate applies as is."""

    def __post_init__(self) -> None:
        if self.kind in ("jsonl", "parquet", "hf", "warc", "html", "pdf", "text") and not self.path:
            self.fail("path", f"a '{self.kind}' source needs a path (file, dir or glob; hf: dataset id)")
        if self.max_doc_bytes <= 0:
            self.fail("max_doc_bytes", f"must be > 0, got {self.max_doc_bytes}")
        if not 0.0 <= self.max_garbled_fraction <= 1.0:
            self.fail("max_garbled_fraction", f"must be a fraction in [0, 1], got {self.max_garbled_fraction}")
        if self.ocr and self.kind not in ("pdf", "warc"):
            self.fail("ocr", f"only pdf and warc sources have PDFs to OCR, this source is '{self.kind}'")
        if self.ocr and not self.ocr_hook:
            self.fail("ocr_hook", "ocr is true but no hook is set; name one as 'module:function'")
        if self.ocr_hook is not None:
            module, sep, func = self.ocr_hook.partition(":")
            if not (sep and module and func.isidentifier()):
                self.fail("ocr_hook", f"expected 'module:function', got {self.ocr_hook!r}")
        if self.refetch and self.kind != "warc":
            self.fail("refetch", f"only warc records carry the URL to fetch again, this source is '{self.kind}'")
        if self.refetch_timeout_s <= 0:
            self.fail("refetch_timeout_s", f"must be > 0, got {self.refetch_timeout_s}")
        if not 0 <= self.refetch_retries <= 10:
            self.fail("refetch_retries", f"must be in [0, 10], got {self.refetch_retries}")
        if self.refetch_max_bytes <= 0:
            self.fail("refetch_max_bytes", f"must be > 0, got {self.refetch_max_bytes}")
        if self.weight <= 0:
            self.fail("weight", f"must be > 0, got {self.weight}")
        if self.max_docs is not None and self.max_docs <= 0:
            self.fail("max_docs", f"must be > 0 or null, got {self.max_docs}")
        if self.sample_docs < 60:
            self.fail("sample_docs", f"must be >= 60 so every language gets documents, got {self.sample_docs}")
        if isinstance(self.filters, str):
            if self.filters not in FILTER_POLICIES:
                self.fail("filters", f"{self.filters!r} is not a policy; use {' or '.join(FILTER_POLICIES)}, or a "
                          f"list of steps from {', '.join(POLICY_STEPS)}")
        else:
            bad = [s for s in self.filters if s not in POLICY_STEPS]
            if bad or len(set(self.filters)) != len(self.filters):
                self.fail("filters", f"got {self.filters}; list each of {', '.join(POLICY_STEPS)} at most once "
                          "(language ID, PII and dedup always run)")
        bad = sorted(set(self.filter_settings) - set(THRESHOLD_KEYS))
        if bad:
            self.fail("filter_settings", f"{bad} cannot be set per source; per-source keys are the curate "
                      f"thresholds: {', '.join(THRESHOLD_KEYS)}")
        # Types and ranges, checked now, with errors that name this source's key.
        where = getattr(self, "_where", "")
        CurateConfig.from_dict(self.filter_settings, prefix=f"{where + '.' if where else ''}filter_settings")

    @property
    def policy(self) -> str:
        """The filter policy's name, as excluded.jsonl reports it: fineweb, none or custom."""
        return self.filters if isinstance(self.filters, str) else "custom"


@dataclass
class DataConfig(Section):
    sources: list[SourceConfig] = field(default_factory=lambda: [SourceConfig()])
    """Where raw documents come from."""
    languages: list[str] = field(default_factory=lambda: list(LANGUAGES))
    """Languages to keep; documents identified as anything else are dropped."""
    language_weights: dict[str, float] = field(default_factory=dict)
    """Optional mixture weight per language (missing languages weigh 1.0)."""
    valid_fraction: float = 0.05
    """Fraction of curated documents held out (by a hash of their id) for validation."""

    def __post_init__(self) -> None:
        if not self.sources:
            self.fail("sources", "needs at least one source")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            self.fail("sources", f"source names must be unique, got {names}")
        bad = [lang for lang in self.languages if lang not in LANGUAGES]
        if bad:
            self.fail("languages", f"unsupported {bad}; choose from {', '.join(LANGUAGES)}")
        for lang, w in self.language_weights.items():
            if lang not in self.languages:
                self.fail("language_weights", f"'{lang}' is not in data.languages {self.languages}")
            if w < 0:
                self.fail("language_weights", f"weight of '{lang}' must be >= 0, got {w}")
        if not 0.0 < self.valid_fraction < 0.5:
            self.fail("valid_fraction", f"must be in (0, 0.5), got {self.valid_fraction}")


@dataclass
class CurateConfig(Section):
    min_language_score: float = 0.65
    """Drop documents whose language-ID confidence is below this (languages not in language_thresholds)."""
    language_thresholds: dict[str, float] = field(default_factory=dict)
    """Language-ID confidence threshold per language, e.g. {fr: 0.8}; missing languages use min_language_score."""
    quality_filters: list[str] = field(
        default_factory=lambda: ["gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality"])
    """datatrove's reference filters to run, always in FineWeb's order (where FineWeb2's thresholds apply,
    C4 is skipped, as in FineWeb2)."""
    fineweb2_thresholds: bool = True
    """fr/es/de/it/pt use FineWeb2's tuned thresholds (smoledge/data/fineweb_settings.py), which take precedence
    over the Gopher fields below for those languages; false: FineWeb's English thresholds for every language.
    Stop words and word tokenizer are always the document's language's."""
    min_words: int = 50
    """Drop documents with fewer words (Gopher quality)."""
    max_words: int = 100_000
    """Drop documents with more words (Gopher quality)."""
    max_duplicate_line_fraction: float = 0.3
    """Drop documents where this fraction of lines are repeats (Gopher repetition)."""
    max_top_ngram_fraction: float = 0.2
    """Drop documents where the most frequent word 2-gram covers this fraction of characters (Gopher repetition)."""
    min_alpha_word_fraction: float = 0.8
    """Drop documents where fewer words than this contain a letter (Gopher quality)."""
    min_mean_word_length: float = 3.0
    """Drop documents whose mean word length (characters) is below this (Gopher quality)."""
    max_mean_word_length: float = 10.0
    """Drop documents whose mean word length (characters) is above this (Gopher quality)."""
    max_symbol_word_ratio: float = 0.1
    """Drop documents with more '#' and ellipses per word than this (Gopher quality)."""
    max_bullet_line_fraction: float = 0.9
    """Drop documents where more lines than this start with a bullet (Gopher quality)."""
    max_ellipsis_line_fraction: float = 0.3
    """Drop documents where more lines than this end with an ellipsis (Gopher quality)."""
    min_stop_words: int = 2
    """Drop documents with fewer distinct stop words of their language ('the', 'de', 'und'...) (Gopher quality)."""
    remove_boilerplate_lines: bool = True
    """Drop navigation/cookie/footer lines before the document filters (C4 line rules)."""
    scrub_pii: bool = True
    """Replace e-mail addresses and public IPs, as FineWeb does."""
    dedup_exact: bool = True
    """Remove documents whose normalized text is identical."""
    minhash_num_perm: int = 112
    """MinHash permutations (must equal bands x rows)."""
    minhash_bands: int = 14
    """LSH bands."""
    minhash_rows: int = 8
    """Rows per LSH band."""
    minhash_ngram: int = 5
    """Word n-gram size of the MinHash shingles."""
    write_exclusions: bool = True
    """Write dropped documents with their reason to excluded.jsonl."""
    workers: int = 0
    """Processes for extraction and the per-document filters (0: all local cores, or this process alone
    below a few hundred documents; with executor ray: all cluster CPUs)."""
    executor: Literal["local", "ray"] = "local"
    """Where the per-document filters run: `local` (this machine's cores) or `ray` (a Ray cluster,
    `pip install ray`; dedup stays one global step on this machine). Same output either way."""
    ray_address: str | None = None
    """executor ray: the cluster to join ("auto", "ray://head:10001", ...); null starts a local one."""
    rehydrate: bool = False
    """Weight each kept document by its duplicate-cluster size (FineWeb2 rehydration) in the trainer's
    sampling; off: every document weighs 1.0."""
    rehydrate_weights: dict[int, float] = field(default_factory=lambda: {
        1: 1.0, 2: 3.0, 3: 4.0, 4: 5.0, 5: 6.0, 7: 7.0, 8: 8.0, 11: 9.0, 17: 10.0, 26: 9.0, 31: 8.0,
        46: 7.0, 52: 6.0, 63: 5.0, 75: 4.0, 96: 3.0, 118: 2.0, 145: 1.0,
    })
    """Rehydration step function: cluster size (at least this many copies) -> weight. Default: FineWeb2's
    published up-to-10-repetitions weights for ita_Latn, less a one-off blip at size 123 (singletons 1,
    clusters of 17-25 weigh 10, huge ones 1)."""

    def for_source(self, source: SourceConfig) -> CurateConfig:
        """The steps and thresholds `source`'s documents are curated with (its `filters` policy and
        `filter_settings` over this section)."""
        changes: dict[str, Any] = dict(source.filter_settings)
        if source.filters == "none":
            changes.update(quality_filters=[], remove_boilerplate_lines=False)
        elif isinstance(source.filters, list):
            changes.update(quality_filters=[s for s in source.filters if s != "boilerplate"],
                           remove_boilerplate_lines="boilerplate" in source.filters)
        return dataclasses.replace(self, **changes) if changes else self

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_language_score <= 1.0:
            self.fail("min_language_score", f"must be in [0, 1], got {self.min_language_score}")
        for lang, score in self.language_thresholds.items():
            if lang not in LANGUAGES:
                self.fail("language_thresholds", f"unsupported language '{lang}'; choose from {', '.join(LANGUAGES)}")
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
                self.fail("language_thresholds", f"threshold of '{lang}' must be a number in [0, 1], got {score!r}")
        from smoledge.data.fineweb_settings import QUALITY_FILTERS

        bad = [name for name in self.quality_filters if name not in QUALITY_FILTERS]
        if bad or len(set(self.quality_filters)) != len(self.quality_filters):
            self.fail("quality_filters",
                      f"got {self.quality_filters}; use each of {', '.join(QUALITY_FILTERS)} at most once")
        if self.min_words < 0 or self.max_words <= self.min_words:
            self.fail("max_words", f"need 0 <= min_words < max_words, got {self.min_words}, {self.max_words}")
        for key in ("max_duplicate_line_fraction", "max_top_ngram_fraction", "min_alpha_word_fraction",
                    "max_bullet_line_fraction", "max_ellipsis_line_fraction"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                self.fail(key, f"must be a fraction in [0, 1], got {getattr(self, key)}")
        if not 0.0 <= self.min_mean_word_length < self.max_mean_word_length:
            self.fail(
                "max_mean_word_length",
                f"need 0 <= min_mean_word_length < max_mean_word_length, got "
                f"{self.min_mean_word_length}, {self.max_mean_word_length}",
            )
        if self.max_symbol_word_ratio < 0:
            self.fail("max_symbol_word_ratio", f"must be >= 0, got {self.max_symbol_word_ratio}")
        if self.min_stop_words < 0:
            self.fail("min_stop_words", f"must be >= 0, got {self.min_stop_words}")
        if self.minhash_bands < 1 or self.minhash_rows < 1:
            self.fail("minhash_bands", f"bands and rows must be >= 1, got {self.minhash_bands}, {self.minhash_rows}")
        if self.minhash_bands * self.minhash_rows != self.minhash_num_perm:
            self.fail(
                "minhash_num_perm",
                f"must equal minhash_bands x minhash_rows = {self.minhash_bands * self.minhash_rows}, "
                f"got {self.minhash_num_perm}",
            )
        if self.minhash_ngram < 1:
            self.fail("minhash_ngram", f"must be >= 1, got {self.minhash_ngram}")
        if self.workers < 0:
            self.fail("workers", f"must be >= 0 (0 means all cores), got {self.workers}")
        if self.ray_address is not None and self.executor != "ray":
            self.fail("ray_address", "is only used with executor: ray; set curate.executor: ray or remove it")
        if not self.rehydrate_weights or 1 not in self.rehydrate_weights:
            self.fail("rehydrate_weights", f"needs a weight for cluster size 1, got {self.rehydrate_weights}")
        for size, w in self.rehydrate_weights.items():
            if size < 1 or w <= 0:
                self.fail("rehydrate_weights", f"needs sizes >= 1 and weights > 0, got {size}: {w}")
