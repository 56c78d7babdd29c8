"""Language identification with py3langid, as normalized probabilities.

    from smoledge.data.langid import identify
    identify("Der Zug fuhr um 7 Uhr ab.")   # ("de", 0.99...)

The model covers 97 languages; it is never restricted to the target ones,
otherwise a Dutch page would be forced into "de" or "en" with a confident
score instead of being recognised as foreign.
"""

from __future__ import annotations

from typing import Any

# Scoring is linear in length; the first characters decide as well as the
# whole of a very long page, so long pages are cut (cost stays bounded).
MAX_CHARS = 20_000

_IDENTIFIER: Any = None


def identifier() -> Any:
    """The py3langid identifier with normalized probabilities (loaded once per process)."""
    global _IDENTIFIER
    if _IDENTIFIER is None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        _IDENTIFIER = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _IDENTIFIER


def identify(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, probability in [0, 1]) of the most likely language."""
    # Newlines become spaces (as FineWeb does before language ID).
    flat = " ".join(text[:MAX_CHARS].split())
    if not flat:
        return "und", 0.0
    lang, score = identifier().classify(flat)
    return str(lang), float(score)
