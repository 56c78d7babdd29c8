"""Language identification with py3langid, as normalized probabilities.

    from smoledge.data.langid import identify
    identify("Der Zug fuhr um 7 Uhr ab.")   # ("de", 0.99...)

The model covers 97 languages; it is never restricted to the target ones,
otherwise a Dutch page would be forced into "de" or "en" with a confident
score instead of being recognised as foreign.

Why py3langid (benchmarks/langid_compare.py, real prose in the six languages):
on paragraph-size text it and lingua-language-detector are both 100% right
and confident; on 1-3 sentences py3langid is right 99.3% of the time against
lingua's 99.4% (high-accuracy mode), while lingua is ~10x slower, loads in
~20 s and holds ~1.3 GB in each curate worker (py3langid: ~1 s, ~0.1 GB).
Both ship their model inside the PyPI package, so both run offline.
"""

from __future__ import annotations

from typing import Any

# Scoring is linear in length; the first characters decide as well as the
# whole of a very long page, so long pages are cut (cost stays bounded).
MAX_CHARS = 20_000

_IDENTIFIER: Any = None


def identifier() -> Any:
    """The py3langid identifier with normalized probabilities (loaded once per process).

    Its feature-by-language table is held as float32 instead of the model's float16:
    scoring multiplied a float16 slice, which numpy first copied to float32 on every
    call (half of identify's time); the float32 values are the same, so are the
    scores, bit for bit (tests/test_filter_speed.py). It costs ~28 MB more per process.
    """
    global _IDENTIFIER
    if _IDENTIFIER is None:
        import numpy as np
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        if ident.nb_ptc.dtype == np.float16:
            ident.nb_ptc = ident.nb_ptc.astype(np.float32)
            ident._full_model = (ident.nb_ptc, *ident._full_model[1:])  # drops the float16 copy
        _IDENTIFIER = ident
    return _IDENTIFIER


def identify(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, probability in [0, 1]) of the most likely language."""
    # Newlines become spaces (as FineWeb does before language ID).
    flat = " ".join(text[:MAX_CHARS].split())
    if not flat:
        return "und", 0.0
    lang, score = identifier().classify(flat)
    return str(lang), float(score)
