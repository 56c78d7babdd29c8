"""Config sections for the data stages: sources, curation, tokenizer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from smoledge.config import Section

LANGUAGES = ("en", "fr", "es", "de", "it", "pt")


@dataclass
class SourceConfig(Section):
    name: str = "sample"
    """Short name of the source; used in metadata and mixture weights."""
    kind: Literal["sample", "jsonl", "parquet", "hf"] = "sample"
    """`sample`: the built-in synthetic web dump (`smoledge sample`); `jsonl`/`parquet`:
    local files (a file, a directory or a glob); `hf`: a Hugging Face dataset id, streamed."""
    path: str | None = None
    """File, directory or glob for jsonl/parquet; dataset id for hf. Unused for sample."""
    text_field: str = "text"
    """Field holding the document text."""
    subset: str | None = None
    """hf only: the dataset config name (e.g. a FineWeb2 language subset)."""
    split: str = "train"
    """hf only: the split to stream."""
    max_docs: int | None = None
    """Stop reading this source after this many documents (null: all)."""
    weight: float = 1.0
    """Relative weight of this source in the training mixture."""
    sample_docs: int = 2400
    """sample only: how many raw documents to generate (before defects are removed)."""

    def __post_init__(self) -> None:
        if self.kind in ("jsonl", "parquet", "hf") and not self.path:
            self.fail("path", f"a '{self.kind}' source needs a path (file, dir or glob; hf: dataset id)")
        if self.weight <= 0:
            self.fail("weight", f"must be > 0, got {self.weight}")
        if self.max_docs is not None and self.max_docs <= 0:
            self.fail("max_docs", f"must be > 0 or null, got {self.max_docs}")
        if self.sample_docs < 60:
            self.fail("sample_docs", f"must be >= 60 so every language gets documents, got {self.sample_docs}")


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
    """Drop documents whose language-ID confidence is below this."""
    min_words: int = 20
    """Drop documents with fewer words (Gopher quality)."""
    max_words: int = 100_000
    """Drop documents with more words (Gopher quality)."""
    max_duplicate_line_fraction: float = 0.3
    """Drop documents where this fraction of lines are repeats (Gopher repetition)."""
    max_top_ngram_fraction: float = 0.2
    """Drop documents where the most frequent word 2-gram covers this fraction of characters."""
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
    """Drop documents with fewer stop words of their language ('the', 'de', 'und'...) (Gopher quality)."""
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
    """Processes for the per-document filters (0: all local cores)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_language_score <= 1.0:
            self.fail("min_language_score", f"must be in [0, 1], got {self.min_language_score}")
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


@dataclass
class TokenizerConfig(Section):
    vocab_size: int = 4096
    """Size of the byte-level BPE vocabulary, special tokens included."""
    min_frequency: int = 2
    """Minimum pair frequency for a BPE merge."""
    dtype: Literal["auto", "uint16", "uint32"] = "auto"
    """Token id dtype of the packed shards (auto: uint16 when the vocab fits)."""

    def __post_init__(self) -> None:
        if not 300 <= self.vocab_size <= 1_000_000:
            self.fail("vocab_size", f"must be in [300, 1000000] (256 bytes + merges), got {self.vocab_size}")
        if self.dtype == "uint16" and self.vocab_size > 65536:
            self.fail("dtype", f"uint16 cannot hold vocab_size {self.vocab_size}; use uint32 or auto")
