"""smoledge's built-in multilingual held-out text: about 2,000 words of original prose per language, so a
build that starts from an existing model (no data configured) still has per-language perplexity.

    from smoledge.evaluate.builtin_text import builtin_documents
    docs = builtin_documents(["en", "fr"])   # {"en": [10 documents], "fr": [10 documents]}

The files are package data (smoledge/evaluate/heldout/<lang>.txt, one per language smoledge curates):
independent documents of varied registers (a news report, a how-to, a story, a letter, a review, an
encyclopedic entry about an invented place, a dialogue, a recipe, minutes, an essay), each written
directly in its language, so no language's text is a translation of another's. They were written for
smoledge after the training cutoff of every model it supports and were not on the web before, so no
model can have been tuned on them: heldout/SOURCES.md says where they come from, with their sizes and
sha256. Torch-free.
"""

from __future__ import annotations

from importlib import resources

from smoledge.errors import SmoledgeError

# A document ends at a line holding only this; blank lines inside a document separate its paragraphs.
SEPARATOR = "---"


def _folder():
    return resources.files("smoledge.evaluate").joinpath("heldout")


def builtin_languages() -> list[str]:
    """Languages the built-in text covers (one <lang>.txt each), sorted."""
    return sorted(p.name.removesuffix(".txt") for p in _folder().iterdir() if p.name.endswith(".txt"))


def split_documents(text: str) -> list[str]:
    """The documents of one file: split at SEPARATOR lines, each stripped, empty ones dropped."""
    docs, lines = [], []
    for line in text.splitlines():
        if line.strip() == SEPARATOR:
            docs.append("\n".join(lines).strip())
            lines = []
        else:
            lines.append(line)
    docs.append("\n".join(lines).strip())
    return [d for d in docs if d]


def builtin_documents(languages: list[str] | None = None) -> dict[str, list[str]]:
    """lang -> its documents, for `languages` (None: every built-in language), in the order asked."""
    available = builtin_languages()
    wanted = available if languages is None else list(dict.fromkeys(languages))
    unknown = [lang for lang in wanted if lang not in available]
    if unknown:
        raise SmoledgeError(f"no built-in held-out text for {', '.join(repr(u) for u in unknown)}; it covers "
                            f"{', '.join(available)}: drop the others or give them an evaluate.eval_sets file")
    return {lang: split_documents(_folder().joinpath(f"{lang}.txt").read_text(encoding="utf-8")) for lang in wanted}
