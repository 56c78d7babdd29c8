"""Text from PDFs that have a text layer; scanned or garbled ones go to an OCR hook (off by default).

    from smoledge.data.pdf import pdf_text
    res = pdf_text(open("paper.pdf", "rb").read())
    if res.reason is None:
        print(res.pages, res.text[:200])
    else:
        print("skipped:", res.reason)   # encrypted | corrupt | needs_ocr

Extractor: PyMuPDF by default, with pypdf as a second opinion on the PDFs
it cannot read or reads as garbage; pypdf alone on request
(SourceConfig.pdf_extractor). `benchmarks/pdf_extractors.py` measured them
on the 33 PDFs of shared/data/pdf (2 cores shared with other jobs, load ~3.5,
best of 5, 2026-11-28; timings include the garbled-text check):

    extractor               docs/s  pages/s  failed  needs OCR  sane   trunc 60% sane
    pymupdf                   51.8      399    1/33       2/33  30/33   8/33
    pypdf                      4.9       38    1/33       2/33  30/33   0/33
    pymupdf+pypdf fallback    52.6      405    1/33       0/33  32/33   8/33

Why PyMuPDF: about 10x faster per page; it maps Japanese CID fonts
(jo.pdf, kampo.pdf) that pypdf turns into mixed-script garbage; it repairs
more cut-off files (8 of 33 copies cut at 60% still read, pypdf: 0). Its
weak spot in the set, an Arabic font (015-arabic, garbled fraction 0.71), is
exactly what pypdf reads cleanly, hence the second opinion: 32/33 sane, the
33rd being the password-protected file. PyMuPDF is AGPL-3.0; pick
`pdf_extractor: pypdf` (BSD) to keep it out, at 10x the time.

A PDF yields text only when it has a usable text layer. It is routed to OCR
(`needs_ocr`) when its text layer is missing, too thin for its images (a
scan), or garbled: `garbled_fraction` counts characters that are U+FFFD,
private-use, unassigned or control characters, plus every letter of a word
mixing letters of several scripts (what a broken font encoding produces,
e.g. "Θͨ͘͠ͱ͍;ݱ"). Such PDFs are never emitted as text; with `ocr: true`
and an `ocr_hook` they are handed to that hook:

    # mypkg/ocr.py, referenced from the recipe as  ocr_hook: "mypkg.ocr:run"
    def run(pdf: bytes, doc_id: str) -> str | None:
        '''Return the text of the whole PDF, or None when OCR found none.'''

The hook's text goes through the same garbled-text check.
"""

from __future__ import annotations

import functools
import importlib
import io
import re
import unicodedata
from dataclasses import dataclass
from typing import Callable

from smoledge.errors import SmoledgeError

EXTRACTORS = ("pymupdf", "pypdf")
DEFAULT_MAX_GARBLED = 0.1
# A page counts as text-bearing from this many non-space characters; a PDF
# whose pages average less and that holds images is taken for a scan.
MIN_CHARS_PER_PAGE = 16

OcrHook = Callable[[bytes, str], "str | None"]


@dataclass
class PdfText:
    """What one PDF yielded. `reason` is None when `text` is usable."""

    text: str = ""
    pages: int = 0
    image_pages: int = 0
    garbled: float = 0.0
    reason: str | None = None
    """encrypted | corrupt | needs_ocr"""
    extractor: str = ""
    """Which extractor produced `text`."""


class PdfError(Exception):
    """The PDF cannot be read at all; `reason` is 'encrypted' or 'corrupt'."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# ----------------------------------------------------------------------------- garbled text

# Letters of these scripts mix inside one word in normal writing.
_SCRIPT_GROUPS = {"HIRAGANA": "CJK", "KATAKANA": "CJK", "HALFWIDTH": "CJK", "FULLWIDTH": "CJK",
                  "IDEOGRAPHIC": "CJK", "CJK": "CJK"}
_BAD_CATEGORIES = {"Co", "Cn", "Cs", "Cc"}


@functools.lru_cache(maxsize=65536)
def _script(ch: str) -> str:
    """A letter's script, from the first word of its Unicode name ('LATIN', 'GREEK', 'CJK', ...)."""
    first = unicodedata.name(ch, "UNKNOWN").split(" ", 1)[0]
    return _SCRIPT_GROUPS.get(first, first)


def garbled_fraction(text: str) -> float:
    """Fraction of non-space characters that look like a broken text layer (0: clean, 1: all garbage)."""
    total = bad = 0
    for word in text.split():
        total += len(word)
        word_bad = 0
        scripts = set()
        letters = 0
        for ch in word:
            cat = unicodedata.category(ch)
            if ch == "\ufffd" or cat in _BAD_CATEGORIES:
                word_bad += 1
            elif cat in ("Lu", "Ll", "Lt", "Lo"):  # not Lm: modifier letters are shared by scripts
                letters += 1
                scripts.add(_script(ch))
        # A word spelled in several scripts is a wrong glyph->Unicode map, not language.
        bad += word_bad + (letters if len(scripts) > 1 else 0)
    return bad / total if total else 0.0


# ----------------------------------------------------------------------------- extractors

def _pages_pymupdf(data: bytes) -> tuple[list[str], list[bool]]:
    import pymupdf

    # MuPDF prints repair notes for every damaged file; the caller counts outcomes instead.
    pymupdf.TOOLS.mupdf_display_errors(False)
    pymupdf.TOOLS.mupdf_display_warnings(False)
    try:
        doc = pymupdf.open(stream=data, filetype="pdf")
    except Exception as exc:  # FileDataError, RuntimeError, ValueError: all mean unreadable bytes
        raise PdfError("corrupt", str(exc)) from None
    with doc:
        # An owner-password-only file opens with the empty user password (MuPDF tries it).
        if doc.needs_pass and not doc.authenticate(""):
            raise PdfError("encrypted")
        # Ligatures expanded (ﬂ -> fl), hyphenated line ends joined; no CID fallback, so
        # unmapped glyphs become U+FFFD and count as garbled.
        flags = pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP | pymupdf.TEXT_DEHYPHENATE
        texts, images = [], []
        for i in range(doc.page_count):
            try:
                page = doc.load_page(i)
                texts.append(page.get_text("text", flags=flags))
                images.append(bool(page.get_images()))
            except Exception:  # one broken page must not cost the others
                texts.append("")
                images.append(False)
        if doc.page_count == 0:
            raise PdfError("corrupt", "no pages")
        return texts, images


def _pages_pypdf(data: bytes) -> tuple[list[str], list[bool]]:
    import pypdf
    from pypdf.errors import DependencyError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except DependencyError:  # AES needs the `cryptography` package
                raise PdfError("encrypted", "AES decryption needs the cryptography package") from None
            if not ok:
                raise PdfError("encrypted")
        pages = list(reader.pages)
    except PdfError:
        raise
    except Exception as exc:  # PdfReadError, ValueError, KeyError, RecursionError...
        raise PdfError("corrupt", str(exc)) from None
    if not pages:
        raise PdfError("corrupt", "no pages")
    texts, images = [], []
    for page in pages:
        try:
            texts.append(page.extract_text() or "")
        except Exception:
            texts.append("")
        try:
            xobjects = page.get("/Resources", {}).get("/XObject", {})
            images.append(any(xobjects[k].get_object().get("/Subtype") == "/Image" for k in xobjects))
        except Exception:
            images.append(False)
    return texts, images


def extract_pages(data: bytes, extractor: str = "pymupdf") -> tuple[list[str], list[bool]]:
    """Per-page text and whether each page holds an image. Raises PdfError when unreadable."""
    # Readers accept junk before the header, within the first 1024 bytes (PDF 1.7 annex H);
    # without a header at all the bytes are something else, e.g. an HTML error page, which
    # MuPDF would happily open as HTML.
    if b"%PDF-" not in data[:1024]:
        raise PdfError("corrupt", "no %PDF- header")
    if extractor == "pymupdf":
        return _pages_pymupdf(data)
    if extractor == "pypdf":
        return _pages_pypdf(data)
    raise ValueError(f"unknown PDF extractor {extractor!r}; choose one of {', '.join(EXTRACTORS)}")


_BLANK_RUNS = re.compile(r"\n{3,}")


def _clean(page: str) -> str:
    lines = [line.rstrip() for line in page.splitlines()]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


def _assess(data: bytes, extractor: str, max_garbled: float) -> PdfText:
    try:
        pages, images = extract_pages(data, extractor)
    except PdfError as exc:
        return PdfText(reason=exc.reason, extractor=extractor)
    texts = [t for t in (_clean(p) for p in pages) if t]
    text = "\n\n".join(texts)  # pages as paragraphs: the line-level filters see page breaks
    res = PdfText(text=text, pages=len(pages), image_pages=sum(images), extractor=extractor)
    chars = sum(not ch.isspace() for ch in text)
    res.garbled = garbled_fraction(text)
    thin = chars < MIN_CHARS_PER_PAGE * len(pages)
    if chars == 0 or (thin and res.image_pages) or res.garbled > max_garbled:
        res.reason = "needs_ocr"
    return res


def pdf_text(data: bytes, extractor: str = "pymupdf", max_garbled: float = DEFAULT_MAX_GARBLED,
             fallback: bool = True) -> PdfText:
    """The text of a PDF, or the reason it has none: encrypted, corrupt or needs_ocr.

    With `fallback`, a PDF that PyMuPDF cannot read or reads as garbage gets a second
    opinion from pypdf: their font decoders fail on different files (the benchmark's
    Arabic PDFs garble in PyMuPDF and read cleanly in pypdf). Never the other way
    round, so choosing pypdf never loads the AGPL library.
    """
    res = _assess(data, extractor, max_garbled)
    if fallback and extractor == "pymupdf" and res.reason in ("corrupt", "needs_ocr"):
        alt = _assess(data, "pypdf", max_garbled)
        # A file only pypdf could open but found no text in is still a scan, not a corrupt file.
        if alt.reason is None or (res.reason == "corrupt" and alt.reason == "needs_ocr"):
            return alt
    return res


# ----------------------------------------------------------------------------- OCR hook

def load_ocr_hook(spec: str) -> OcrHook:
    """The callable named by 'module:function' (see the module docstring for its contract)."""
    module_name, _, attr = spec.partition(":")
    fix = "set ocr_hook to 'module:function' naming an importable callable(pdf: bytes, doc_id: str) -> str | None"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SmoledgeError(f"OCR hook {spec!r}: cannot import {module_name!r} ({exc}); {fix}") from exc
    hook = getattr(module, attr, None)
    if not callable(hook):
        raise SmoledgeError(f"OCR hook {spec!r}: {module_name} has no callable {attr!r}; {fix}")
    return hook
