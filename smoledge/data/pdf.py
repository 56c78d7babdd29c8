"""Text from PDFs that have a text layer; scanned or garbled ones go to an OCR hook (off by default).

    from smoledge.data.pdf import pdf_text
    res = pdf_text(open("paper.pdf", "rb").read())
    if res.reason is None:
        print(res.pages, res.text[:200])
    else:
        print("skipped:", res.reason)   # encrypted | corrupt | needs_ocr

Extractor (SourceConfig.pdf_extractor): pypdfium2 (PDFium; Apache-2.0 and
BSD-3-Clause) by default. On a PDF it cannot open or reads as garbage, pypdf
(BSD-3-Clause) and then pdfminer.six (MIT) give their opinions in turn
(FALLBACKS). Each of the three can be chosen alone. PyMuPDF
(`pdf_extractor: pymupdf`, with pypdf as its second opinion) is opt-in: it is
AGPL-3.0, so it is not among smoledge's dependencies (`pip install
'smoledge[pdf-agpl]'`) and is imported only when a recipe chooses it.
`benchmarks/pdf_extractors.py --repeat 5` measured them on the 33 PDFs of
shared/data/pdf (2026-12-07, 2 cores shared with another engineer's jobs, load
average 1.1-1.4; best of 5; timings include the garbled-text check; agree:
word-bigram F1 against the majority of the single extractors' sane readings,
on the 28 PDFs that at least 3 of them read sanely, see the benchmark):

    extractor                     docs/s  pages/s  failed  needs OCR  sane   trunc 60% sane  agree
    pypdfium2                       51.3      394    1/33       4/33  28/33        0/33      0.981
    pdfminer                         2.3       17    1/33       1/33  31/33        0/33      0.927
    pypdf                            6.8       52    1/33       2/33  30/33        0/33      0.961
    pymupdf (AGPL, opt-in)          63.3      487    1/33       2/33  30/33        8/33      0.980
    pypdfium2+pypdf+pdfminer        33.5      258    1/33       0/33  32/33        0/33      0.981
      fallback (default)
    pymupdf+pypdf fallback          63.5      489    1/33       0/33  32/33        8/33      0.980

Why pypdfium2: the only permissive extractor near PyMuPDF's speed (8x pypdf,
23x pdfminer.six per page), and its text is as close to the majority as
PyMuPDF's (0.981 against 0.980; on the multi-column IRS booklet 0.95 against
0.93, pypdf 0.85); it joins words hyphenated at line ends and leaves out
printer's marks outside the page. Its weak spots in the set: an Arabic font it
garbles (015-arabic, as PyMuPDF does), which pypdf reads cleanly; and Japanese
set in a CID font that is not embedded (jo.pdf, kampo.pdf), of whose text
objects PDFium returns most empty, without a trace. `_pdfium_census` counts
them as garbled, so such a PDF goes on to pypdf (which garbles it) and
pdfminer.six (which reads it). With both, 32/33 are sane, as with the former
PyMuPDF default; the 33rd is the password-protected file. The extra opinions
cost time only on the PDFs that need them (4 here: 0.98 s for the set against
0.64 s for pypdfium2 alone). pypdf goes first because it is 3x faster than
pdfminer.six per PDF; on this set, pdfminer first would have saved 0.07 s on
the two Japanese files. What none of the permissive ones does is repair a
cut-off file (PyMuPDF reads 8 of the 33 copies cut at 60%, the others none).
For WARC sources, `refetch: true` fetches such PDFs whole; otherwise, opt in
to PyMuPDF.

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
import logging
import re
import threading
import unicodedata
from dataclasses import dataclass
from typing import Callable, Sequence

from smoledge.errors import SmoledgeError

EXTRACTORS = ("pypdfium2", "pdfminer", "pypdf", "pymupdf")
DEFAULT_EXTRACTOR = "pypdfium2"
# Who gives a second (and third) opinion on a PDF an extractor cannot open or reads as
# garbage: their font decoders fail on different files. Never PyMuPDF, so only a recipe
# that names it loads the AGPL library.
FALLBACKS = {"pypdfium2": ("pypdf", "pdfminer"), "pymupdf": ("pypdf",)}
PYMUPDF_MISSING = (
    "pdf_extractor: pymupdf needs PyMuPDF, which is not installed. It is AGPL-3.0 licensed and "
    "therefore not among smoledge's (Apache-2.0) dependencies: pip install 'smoledge[pdf-agpl]' "
    "to opt in, or use the default pdf_extractor: pypdfium2 (Apache-2.0/BSD-3-Clause)"
)
DEFAULT_MAX_GARBLED = 0.1
# A page counts as text-bearing from this many non-space characters; a PDF
# whose pages average less and that holds images is taken for a scan.
MIN_CHARS_PER_PAGE = 16

OcrHook = Callable[[bytes, str], "str | None"]
# Per-page text, whether each page shows an image, and how many glyphs the extractor
# saw but could not decode (only PDFium tells; the others leave U+FFFD or garbage in
# the text, which garbled_fraction counts).
Pages = tuple[list[str], list[bool], int]


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

# PDFium is not thread-safe and pypdfium2 leaves the locking to its caller.
_PDFIUM_LOCK = threading.Lock()


def _pages_pypdfium2(data: bytes) -> Pages:
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    with _PDFIUM_LOCK:
        try:
            # An owner-password-only file opens without a password, as in every viewer.
            doc = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            if getattr(exc, "err_code", None) == pdfium_c.FPDF_ERR_PASSWORD:
                raise PdfError("encrypted") from None
            raise PdfError("corrupt", str(exc)) from None
        try:
            if len(doc) == 0:
                raise PdfError("corrupt", "no pages")
            texts, images, lost = [], [], 0
            for i in range(len(doc)):
                try:
                    page = doc[i]
                    textpage = page.get_textpage()
                    undecoded, image = _pdfium_census(pdfium_c, page.raw, textpage.raw)
                    lost += undecoded
                    # The whole text layer keeps every line break PDFium finds; the text inside
                    # the crop box leaves out printer's marks outside it but drops some of
                    # those breaks, gluing lines ("implicit.Simple"). The first, unless it
                    # holds text the second clipped away.
                    whole, bounded = textpage.get_text_range(), textpage.get_text_bounded()
                    text = whole if "".join(whole.split()) == "".join(bounded.split()) else bounded
                    # PDFium joins a word hyphenated at a line end and leaves U+0002 where the
                    # hyphen was; the same code is all it has for an unmapped glyph 2 (a
                    # bullet), so dropping it loses nothing. Other unmapped glyphs stay
                    # control characters and count as garbled.
                    texts.append(text.replace("\x02", ""))
                    images.append(image)
                    textpage.close()
                    page.close()
                except Exception:  # one broken page must not cost the others
                    texts.append("")
                    images.append(False)
            return texts, images, lost
        finally:
            doc.close()


def _pdfium_census(pdfium_c, parent, textpage, form: bool = False, depth: int = 0) -> tuple[int, bool]:
    """Text objects PDFium decoded nothing of, on a page (or form XObject) and its nested
    forms, and whether it shows an image.

    PDFium silently leaves out text in a CJK font that is not embedded (Ryumin-Light:
    99% of kampo.pdf's characters, 70% of jo.pdf's). Each object it returns empty counts
    as one lost glyph, a lower bound; only fonts that are not embedded are checked, and
    there a space-only object counts too (dmca.pdf: 58 against 37,000 characters). Raw
    calls: pypdfium2's object wrappers cost as much as the extraction."""
    count, get = ((pdfium_c.FPDFFormObj_CountObjects, pdfium_c.FPDFFormObj_GetObject) if form
                  else (pdfium_c.FPDFPage_CountObjects, pdfium_c.FPDFPage_GetObject))
    undecoded, image = 0, False
    for i in range(count(parent)):
        obj = get(parent, i)
        kind = pdfium_c.FPDFPageObj_GetType(obj)
        if kind == pdfium_c.FPDF_PAGEOBJ_TEXT:
            # GetText's size is 2 bytes (the UTF-16 terminator) when it decoded nothing.
            if (not pdfium_c.FPDFFont_GetIsEmbedded(pdfium_c.FPDFTextObj_GetFont(obj))
                    and pdfium_c.FPDFTextObj_GetText(obj, textpage, None, 0) <= 2):
                undecoded += 1
        elif kind == pdfium_c.FPDF_PAGEOBJ_IMAGE:
            image = True
        elif kind == pdfium_c.FPDF_PAGEOBJ_FORM and depth < 15:
            inner, inner_image = _pdfium_census(pdfium_c, obj, textpage, True, depth + 1)
            undecoded, image = undecoded + inner, image or inner_image
    return undecoded, image


_CID = re.compile(r"\(cid:\d+\)")


def _pages_pdfminer(data: bytes) -> Pages:
    from pdfminer.converter import TextConverter
    from pdfminer.layout import LAParams
    from pdfminer.pdfdocument import PDFDocument, PDFEncryptionError, PDFPasswordIncorrect
    from pdfminer.pdfinterp import PDFPageInterpreter, PDFResourceManager
    from pdfminer.pdfpage import PDFPage
    from pdfminer.pdfparser import PDFParser
    from pdfminer.pdftypes import resolve1
    from pdfminer.psparser import LIT

    logging.getLogger("pdfminer").setLevel(logging.ERROR)  # a warning for every odd font; outcomes are counted
    try:
        doc = PDFDocument(PDFParser(io.BytesIO(data)), password="")
        pages = list(PDFPage.create_pages(doc))
    except (PDFPasswordIncorrect, PDFEncryptionError):
        raise PdfError("encrypted") from None
    except Exception as exc:  # PDFSyntaxError, PSEOF, KeyError, TypeError...: unreadable bytes
        raise PdfError("corrupt", str(exc)) from None
    if not pages:
        raise PdfError("corrupt", "no pages")
    resources = PDFResourceManager(caching=True)
    texts, images = [], []
    for page in pages:
        out = io.StringIO()
        device = TextConverter(resources, out, laparams=LAParams())  # layout analysis: columns, reading order
        try:
            PDFPageInterpreter(resources, device).process_page(page)
            # An unmapped glyph comes out as "(cid:N)": make it U+FFFD so it counts as garbled.
            texts.append(_CID.sub("\ufffd", out.getvalue()))
        except Exception:
            texts.append("")
        finally:
            device.close()
        try:
            xobjects = resolve1((page.resources or {}).get("XObject")) or {}
            images.append(any(resolve1(x).get("Subtype") is LIT("Image") for x in xobjects.values()))
        except Exception:
            images.append(False)
    return texts, images, 0


def _pages_pymupdf(data: bytes) -> Pages:
    try:
        import pymupdf
    except ImportError:
        raise SmoledgeError(PYMUPDF_MISSING) from None

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
        return texts, images, 0


def _pages_pypdf(data: bytes) -> Pages:
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
    return texts, images, 0


def extract_pages(data: bytes, extractor: str = DEFAULT_EXTRACTOR) -> Pages:
    """Per-page text, whether each page shows an image, and the glyphs left undecoded (see Pages).

    Raises PdfError when the PDF cannot be read."""
    # Readers accept junk before the header, within the first 1024 bytes (PDF 1.7 annex H);
    # without a header at all the bytes are something else, e.g. an HTML error page, which
    # MuPDF would happily open as HTML.
    if b"%PDF-" not in data[:1024]:
        raise PdfError("corrupt", "no %PDF- header")
    pages = _PAGES.get(extractor)
    if pages is None:
        raise ValueError(f"unknown PDF extractor {extractor!r}; choose one of {', '.join(EXTRACTORS)}")
    return pages(data)


_PAGES = {"pypdfium2": _pages_pypdfium2, "pdfminer": _pages_pdfminer, "pypdf": _pages_pypdf, "pymupdf": _pages_pymupdf}


_BLANK_RUNS = re.compile(r"\n{3,}")


def _clean(page: str) -> str:
    lines = [line.rstrip() for line in page.splitlines()]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


def _assess(data: bytes, extractor: str, max_garbled: float) -> PdfText:
    try:
        pages, images, lost = extract_pages(data, extractor)
    except PdfError as exc:
        return PdfText(reason=exc.reason, extractor=extractor)
    texts = [t for t in (_clean(p) for p in pages) if t]
    text = "\n\n".join(texts)  # pages as paragraphs: the line-level filters see page breaks
    res = PdfText(text=text, pages=len(pages), image_pages=sum(images), extractor=extractor)
    chars = sum(not ch.isspace() for ch in text)
    # Glyphs the extractor could not decode count as garbled characters.
    res.garbled = (garbled_fraction(text) * chars + lost) / (chars + lost) if chars + lost else 0.0
    thin = chars < MIN_CHARS_PER_PAGE * len(pages)
    if chars == 0 or (thin and res.image_pages) or res.garbled > max_garbled:
        res.reason = "needs_ocr"
    return res


def pdf_text(data: bytes, extractor: str = DEFAULT_EXTRACTOR, max_garbled: float = DEFAULT_MAX_GARBLED,
             fallback: bool | str | Sequence[str] = True) -> PdfText:
    """The text of a PDF, or the reason it has none: encrypted, corrupt or needs_ocr.

    With `fallback`, a PDF that `extractor` cannot read or reads as garbage gets more
    opinions, in turn, until one reads it: FALLBACKS[extractor] (for pypdfium2, pypdf
    reads the benchmark's Arabic PDFs and pdfminer.six its Japanese gazette set in a
    font that is not embedded), or the extractors `fallback` names. Never PyMuPDF
    unless named, so only a recipe that chooses it loads the AGPL library.
    """
    res = _assess(data, extractor, max_garbled)
    if fallback is True:
        others: Sequence[str] = FALLBACKS.get(extractor, ())
    else:
        others = (fallback,) if isinstance(fallback, str) else fallback or ()
    for other in others:
        if res.reason not in ("corrupt", "needs_ocr"):
            break
        if other == extractor:
            continue
        alt = _assess(data, other, max_garbled)
        # A file only another could open but found no text in is still a scan, not a corrupt file.
        if alt.reason is None or (res.reason == "corrupt" and alt.reason == "needs_ocr"):
            res = alt
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
