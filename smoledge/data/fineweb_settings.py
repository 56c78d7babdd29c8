"""FineWeb's quality-filter settings and FineWeb2's per-language overrides, as plain values.

smoledge.data.filters runs datatrove's reference filters (the code FineWeb
itself ran) with these arguments. English follows FineWeb:

  GopherRepetitionFilter()  GopherQualityFilter()
  C4QualityFilter(filter_no_terminal_punct=False)  FineWebQualityFilter()

(datatrove's defaults, some of them exposed in the recipe's `curate`
section). fr/es/de/it/pt follow FineWeb2 (huggingface/fineweb-2,
fineweb-2-pipeline.py and configs/<lang>_Latn.yml): the language's own
word tokenizer and stop words always, and with `curate.fineweb2_thresholds`
FineWeb2's pipeline changes (no C4, no paragraph or short-line rules, a 10x
looser duplicated-line-characters ratio) and its tuned thresholds. Those are
looser than FineWeb's for mean word length (all five) and for the share of
lines ending in punctuation (all but es), and stricter for duplicated lines,
newlines per word and most top n-gram shares (pt's 2-gram share is looser);
the alphabetic-word floor is stricter for all but de.

Each configs/*.yml exists in three revisions (the first without
`language_score`, the second adding it, the third re-tuning the thresholds);
the numbers here are the third. FineWeb2's language-score floors (GlotLID:
fr 0.824, es 0.84, de 0.821, it 0.817, pt 0.799) are not used as defaults for
curate.language_thresholds: py3langid's probabilities are on another scale.
"""

from __future__ import annotations

from typing import Any

# Order in which the quality filters run: FineWeb's (after language ID, before dedup and PII).
QUALITY_FILTERS = ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality")

# Gopher's top 3- and 4-gram character shares (datatrove's defaults); the 2-gram one is
# the recipe's curate.max_top_ngram_fraction.
TOP_3_4_GRAMS = ((3, 0.18), (4, 0.16))

# FineWeb ran C4's rules without the terminal-punctuation line filter: on its
# ablations that rule removed a large share of tokens for little gain.
C4_FINEWEB = {"filter_no_terminal_punct": False}

# FineWeb2 changed these for every language: trafilatura output has almost no
# paragraphs, so the paragraph checks go; the duplicated-line-characters check
# moves to FineWeb quality with a looser ratio; the short-line rule is off.
GOPHER_REPETITION_FINEWEB2 = {"dup_para_frac": 0, "dup_line_char_frac": 0, "dup_para_char_frac": 0}
FINEWEB_QUALITY_FINEWEB2 = {"short_line_thr": 999, "char_duplicates_ratio": 0.1}
# (FineWeb2 does not run the C4 filter at all; FineWeb, English, does.)

# Gopher stop words per language (FineWeb2 configs/<lang>_Latn.yml `stopwords`).
# English uses datatrove's own list (the one FineWeb ran), so it is not repeated here.
# Elided articles ("l'", "d'") are tokens of their own under the French/Italian tokenizers.
STOP_WORDS: dict[str, tuple[str, ...]] = {
    "fr": ("de", "la", "le", "et", "à", "en", "l'", "des", "du", "les", "est", "d'", "un", "une", "il", "dans",
           "par", "au"),
    "es": ("de", "la", "en", "el", "y", "a", "que", "del", "los", "se", "por", "un", "con", "una", "las", "su"),
    "de": ("der", "und", "die", "in", "von", "im", "den", "des", "mit", "das", "er", "dem", "als", "wurde", "für"),
    "it": ("di", "e", "il", "la", "in", "a", "del", "che", "è", "della", "un", "per", "nel", "l'", "con", "da", "i",
           "una"),
    "pt": ("de", "a", "e", "o", "em", "do", "da", "que", "um", "no", "uma", "com", "para", "na", "é", "foi"),
}

# FineWeb2's tuned thresholds per language (configs/<lang>_Latn.yml).
FINEWEB2_THRESHOLDS: dict[str, dict[str, Any]] = {
    "fr": {
        "dup_line_frac": 0.264,
        "top_n_grams": ((2, 0.161), (3, 0.149), (4, 0.134)),
        "dup_n_grams": ((5, 0.15), (6, 0.141), (7, 0.131), (8, 0.121), (9, 0.111), (10, 0.1)),
        "line_punct_thr": 0.1, "new_line_ratio": 0.185,
        "min_avg_word_length": 2, "max_avg_word_length": 11, "max_non_alpha_words_ratio": 0.812,
    },
    "es": {
        "dup_line_frac": 0.252,
        "top_n_grams": ((2, 0.156), (3, 0.14), (4, 0.125)),
        "dup_n_grams": ((5, 0.145), (6, 0.136), (7, 0.127), (8, 0.117), (9, 0.108), (10, 0.099)),
        "line_punct_thr": 0.182, "new_line_ratio": 0.138,
        "min_avg_word_length": 3, "max_avg_word_length": 14, "max_non_alpha_words_ratio": 0.825,
    },
    "de": {
        "dup_line_frac": 0.263,
        "top_n_grams": ((2, 0.169), (3, 0.153), (4, 0.137)),
        "dup_n_grams": ((5, 0.141), (6, 0.134), (7, 0.126), (8, 0.117), (9, 0.108), (10, 0.098)),
        "line_punct_thr": 0.0, "new_line_ratio": 0.152,
        "min_avg_word_length": 0, "max_avg_word_length": 15, "max_non_alpha_words_ratio": 0.774,
    },
    "it": {
        "dup_line_frac": 0.246,
        "top_n_grams": ((2, 0.198), (3, 0.156), (4, 0.133)),
        "dup_n_grams": ((5, 0.144), (6, 0.136), (7, 0.127), (8, 0.118), (9, 0.109), (10, 0.1)),
        "line_punct_thr": 0.025, "new_line_ratio": 0.2,
        "min_avg_word_length": 3, "max_avg_word_length": 21, "max_non_alpha_words_ratio": 0.807,
    },
    "pt": {
        "dup_line_frac": 0.287,
        "top_n_grams": ((2, 0.371), (3, 0.191), (4, 0.163)),
        "dup_n_grams": ((5, 0.163), (6, 0.153), (7, 0.141), (8, 0.13), (9, 0.119), (10, 0.108)),
        "line_punct_thr": 0.077, "new_line_ratio": 0.186,
        "min_avg_word_length": 3, "max_avg_word_length": 13, "max_non_alpha_words_ratio": 0.814,
    },
}

# Which filter each FineWeb2 threshold belongs to.
THRESHOLD_FILTER = {
    "dup_line_frac": "gopher_repetition", "top_n_grams": "gopher_repetition", "dup_n_grams": "gopher_repetition",
    "line_punct_thr": "fineweb_quality", "new_line_ratio": "fineweb_quality",
    "min_avg_word_length": "gopher_quality", "max_avg_word_length": "gopher_quality",
    "max_non_alpha_words_ratio": "gopher_quality",
}
