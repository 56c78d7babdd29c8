"""PDF reader: real PDFs (CJK, Arabic, multi-column, forms, a corrupted file), encrypted and
truncated PDFs, the garbled-text detector, scanned PDFs routed to the OCR hook (off by default).
The default extractor is pypdfium2 (permissive); PyMuPDF (AGPL, opt-in) is tested where installed."""

from __future__ import annotations

import importlib.util
import io
import sys
import textwrap
from collections import Counter

import pytest

from smoledge.config import ConfigError
from smoledge.data.config import SourceConfig
from smoledge.data.pdf import EXTRACTORS, garbled_fraction, pdf_text
from smoledge.data.readers import read_source
from smoledge.errors import SmoledgeError

TRIVIAL = "py-pdf-sample-files/001-trivial__minimal-document.pdf"
JO = "pdfminer.six/jo.pdf"  # Japanese in Ryumin-Light, a CID font that is not embedded
KAMPO = "pdfminer.six/kampo.pdf"  # the same, vertical
needs_pymupdf = pytest.mark.skipif(importlib.util.find_spec("pymupdf") is None,
                                   reason="PyMuPDF (AGPL-3.0) is opt-in: pip install 'smoledge[pdf-agpl]'")


def _read(path, stats=None, **kw):
    stats = stats if stats is not None else Counter()
    return list(read_source(SourceConfig(name="pdfs", kind="pdf", path=str(path), **kw), seed=0, stats=stats))


@pytest.fixture(scope="module")
def real_docs(shared_data):
    stats: Counter = Counter()
    docs = _read(shared_data / "pdf", stats)
    return {d.id: d for d in docs}, stats


def test_real_pdfs(real_docs):
    """The default path: pypdfium2, then pypdf, then pdfminer.six on what the one before garbles."""
    docs, stats = real_docs
    assert len(docs) == 32
    assert stats == Counter({"skipped:pdf:encrypted": 1})  # 005: a real user password
    assert "py-pdf-sample-files/005-libreoffice-writer-password__libreoffice-writer-password.pdf" not in docs
    geo = docs["py-pdf-sample-files/009-pdflatex-geotopo__GeoTopo-komprimiert.pdf"]
    assert geo.metadata["pages"] == 117 and "Topologie" in geo.text
    assert "Auflage" in geo.text  # the ﬂ ligature is expanded
    # PDFium garbles the Arabic font: pypdf's second opinion.
    for name in ("015-arabic__habibi.pdf", "015-arabic__habibi-rotated.pdf"):
        habibi = docs[f"py-pdf-sample-files/{name}"]
        assert habibi.metadata["extractor"] == "pypdf" and "حَبيبي" in habibi.text
    # PDFium leaves out text in a CJK font that is not embedded and pypdf garbles it: pdfminer.six's.
    assert docs[JO].metadata["extractor"] == "pdfminer" and "序" in docs[JO].text
    kampo = docs[KAMPO]
    assert kampo.metadata["extractor"] == "pdfminer" and sum("一" <= ch <= "鿿" for ch in kampo.text) > 1000
    assert {d.metadata["extractor"] for k, d in docs.items() if "arabic" not in k and k not in (JO, KAMPO)} \
        == {"pypdfium2"}
    zen = docs["pdfminer.six/zen_of_python_corrupted.pdf"].text  # a damaged stream, read anyway; lines kept apart
    assert "Beautiful is better than ugly.\nExplicit is better than implicit.\nSimple is better" in zen
    dmca = docs["pdfminer.six/dmca.pdf"].text  # owner-password-only: readable
    assert "Copyright" in dmca and "implemented in the U" in dmca  # a word hyphenated at a line end, joined
    irs = docs["pdfminer.six/i1040nr.pdf"].text
    assert "Form 1040NR" in irs and "MUST be removed before printing" not in irs  # printer's marks off the page
    for doc in docs.values():
        assert doc.metadata["format"] == "pdf" and doc.text == doc.text.strip()
        assert garbled_fraction(doc.text) <= 0.1 and "\x02" not in doc.text


def test_pypdf_alone_routes_garbled_cjk_to_ocr(shared_data):
    stats: Counter = Counter()
    docs = _read(shared_data / "pdf" / JO, stats, pdf_extractor="pypdf")
    assert docs == [] and stats["skipped:pdf:needs_ocr"] == 1
    res = pdf_text((shared_data / "pdf" / JO).read_bytes(), "pypdf")
    assert res.reason == "needs_ocr" and res.garbled > 0.3


def test_pypdfium2_alone_counts_the_text_it_left_out(shared_data):
    """PDFium drops text in fonts that are not embedded without a trace; the census of text
    objects counts it as garbled, so such a PDF is sent on, never emitted with its text missing."""
    kampo = pdf_text((shared_data / "pdf" / KAMPO).read_bytes(), "pypdfium2", fallback=False)
    assert kampo.reason == "needs_ocr" and kampo.garbled > 0.9 and len(kampo.text) < 100  # 28 of ~5,000 characters
    jo = pdf_text((shared_data / "pdf" / JO).read_bytes(), "pypdfium2", fallback=False)
    assert jo.reason == "needs_ocr" and 0.1 < jo.garbled < 0.5  # a third of the poem decoded
    # A font that is not embedded but that PDFium decodes (Garamond) costs nothing.
    dmca = pdf_text((shared_data / "pdf" / "pdfminer.six" / "dmca.pdf").read_bytes(), "pypdfium2", fallback=False)
    assert dmca.reason is None and dmca.garbled < 0.01 and dmca.pages == 18


@pytest.mark.parametrize("extractor", ["pypdfium2", "pdfminer", "pypdf"])
def test_each_permissive_extractor_on_real_pdfs(shared_data, extractor):
    folder = shared_data / "pdf"
    for name, reason in (("py-pdf-sample-files/005-libreoffice-writer-password__libreoffice-writer-password.pdf",
                          "encrypted"), ("pdfminer.six/naacl06-shinyama.pdf", None),
                         ("pdfminer.six/zen_of_python_corrupted.pdf", None), (TRIVIAL, None)):
        res = pdf_text((folder / name).read_bytes(), extractor, fallback=False)
        assert res.reason == reason and res.extractor == extractor, name
    paper = pdf_text((folder / "pdfminer.six/naacl06-shinyama.pdf").read_bytes(), extractor, fallback=False)
    assert paper.pages == 8 and "Preemptive Information Extraction" in paper.text and paper.garbled < 0.01
    assert pdf_text(b"%PDF-1.5\n" + b"\x00garbage" * 50, extractor, fallback=False).reason == "corrupt"


def test_garbled_fraction(prose_texts):
    clean = "\n".join(prose_texts[:200])
    assert garbled_fraction(clean) < 0.01
    assert garbled_fraction("わたくしといふ現象は假定された有機交流電燈の") == 0.0  # kana + kanji mix normally
    assert garbled_fraction("ɹɹং Θͨ͘͠ͱ͍;ݱ ͷͻͱͭͷ੨͍র໌Ͱ͢") > 0.3  # a broken CID map
    assert garbled_fraction("\ue000\ue001\ue002 \ufffd\ufffd text") > 0.5  # private use, replacement
    assert garbled_fraction("") == 0.0


def test_encrypted_and_truncated_pdfs_are_counted_and_skipped(tmp_path, shared_data):
    from pypdf import PdfReader, PdfWriter

    src = (shared_data / "pdf" / TRIVIAL).read_bytes()
    for name, user_pw in (("locked.pdf", "secret"), ("owner-only.pdf", "")):
        writer = PdfWriter()
        for page in PdfReader(io.BytesIO(src)).pages:
            writer.add_page(page)
        writer.encrypt(user_password=user_pw, owner_password="owner", algorithm="RC4-128")
        with open(tmp_path / name, "wb") as f:
            writer.write(f)
    big = (shared_data / "pdf" / "pdfminer.six" / "naacl06-shinyama.pdf").read_bytes()
    (tmp_path / "cut.pdf").write_bytes(big[: len(big) // 2])
    (tmp_path / "empty.pdf").write_bytes(b"")
    (tmp_path / "not-a-pdf.pdf").write_bytes(b"<html>this is an error page</html>")
    stats: Counter = Counter()
    docs = _read(tmp_path, stats)
    assert [d.id for d in docs] == ["owner-only.pdf"] and "Lorem ipsum" in docs[0].text
    assert stats == Counter({"skipped:pdf:encrypted": 1, "skipped:pdf:corrupt": 2, "skipped:empty": 1})
    for extractor in ("pypdfium2", "pdfminer", "pypdf"):
        stats = Counter()
        assert _read(tmp_path / "cut.pdf", stats, pdf_extractor=extractor) == [] and stats["skipped:pdf:corrupt"] == 1
        stats = Counter()
        assert [d.id for d in _read(tmp_path, stats, pdf_extractor=extractor)] == ["owner-only.pdf"]
        assert stats["skipped:pdf:encrypted"] == 1
    stats = Counter()
    assert _read(tmp_path / "owner-only.pdf", stats, max_doc_bytes=100) == [] and stats["skipped:too_large"] == 1


@pytest.fixture(scope="module")
def scanned_pdf(tmp_path_factory, shared_data):
    """A real scan-like PDF: a page of the trivial document rendered to pixels (PDFium), saved as
    an image-only PDF (Pillow): no text layer."""
    import pypdfium2 as pdfium

    image = pdfium.PdfDocument(shared_data / "pdf" / TRIVIAL)[0].render(scale=1).to_pil()
    path = tmp_path_factory.mktemp("scan") / "scan.pdf"
    image.convert("RGB").save(path, "PDF", resolution=72)
    return path


OCR_MODULE = '''
    CALLS = []

    def ocr(pdf: bytes, doc_id: str):
        CALLS.append(doc_id)
        assert pdf.startswith(b"%PDF-")
        return "Lorem ipsum dolor sit amet, consetetur sadipscing elitr, sed diam nonumy eirmod tempor."

    def broken(pdf, doc_id):
        raise RuntimeError("OCR engine crashed")

    def garbage(pdf, doc_id):
        return "\\ue000\\ue001\\ue002\\ue003 \\ufffd\\ufffd"

    not_callable = 42
'''


def test_scanned_pdf_needs_ocr_and_goes_to_the_hook(tmp_path, monkeypatch, scanned_pdf):
    for extractor in ("pypdfium2", "pdfminer", "pypdf"):
        res = pdf_text(scanned_pdf.read_bytes(), extractor, fallback=False)
        assert (res.reason, res.pages, res.image_pages) == ("needs_ocr", 1, 1), extractor
    stats: Counter = Counter()
    assert _read(scanned_pdf, stats) == []  # OCR off by default: skipped, never emitted as garbage
    assert stats == Counter({"skipped:pdf:needs_ocr": 1})

    (tmp_path / "smoledge_test_ocr.py").write_text(textwrap.dedent(OCR_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    stats = Counter()
    (doc,) = _read(scanned_pdf, stats, ocr=True, ocr_hook="smoledge_test_ocr:ocr")
    assert doc.text.startswith("Lorem ipsum") and doc.metadata["ocr"] is True and doc.id == "scan.pdf"
    assert stats == Counter({"pdf:ocr": 1})
    import smoledge_test_ocr

    assert smoledge_test_ocr.CALLS == ["scan.pdf"]
    for hook, reason in (("broken", "ocr_failed"), ("garbage", "ocr_garbled")):
        stats = Counter()
        assert _read(scanned_pdf, stats, ocr=True, ocr_hook=f"smoledge_test_ocr:{hook}") == []
        assert stats == Counter({f"skipped:pdf:{reason}": 1})
    with pytest.raises(SmoledgeError, match=r"no callable 'not_callable'"):
        _read(scanned_pdf, ocr=True, ocr_hook="smoledge_test_ocr:not_callable")
    with pytest.raises(SmoledgeError, match=r"cannot import 'no_such_ocr_module'"):
        _read(scanned_pdf, ocr=True, ocr_hook="no_such_ocr_module:run")


def test_config_validation_names_the_key():
    with pytest.raises(ConfigError, match=r"ocr_hook: ocr is true but no hook"):
        SourceConfig.from_dict({"name": "p", "kind": "pdf", "path": "x", "ocr": True})
    with pytest.raises(ConfigError, match=r"ocr_hook: expected 'module:function'"):
        SourceConfig.from_dict({"name": "p", "kind": "pdf", "path": "x", "ocr_hook": "just_a_module"})
    with pytest.raises(ConfigError, match=r"refetch: only warc records"):
        SourceConfig.from_dict({"name": "p", "kind": "pdf", "path": "x", "refetch": True})
    with pytest.raises(ConfigError, match=r"pdf_extractor"):
        SourceConfig.from_dict({"name": "p", "kind": "pdf", "path": "x", "pdf_extractor": "tesseract"})
    assert SourceConfig(name="p", kind="pdf", path="x").pdf_extractor == "pypdfium2"
    for extractor in EXTRACTORS:  # every extractor smoledge has is a valid choice
        assert SourceConfig.from_dict({"name": "p", "kind": "pdf", "path": "x", "pdf_extractor": extractor})
    with pytest.raises(ConfigError, match=r"path: a 'warc' source needs a path"):
        SourceConfig.from_dict({"name": "w", "kind": "warc"})


# ----------------------------------------------------------------------------- PyMuPDF (opt-in, AGPL)

def test_the_default_never_imports_pymupdf(shared_data):
    """Neither the default nor any second opinion loads the AGPL library."""
    import subprocess

    code = ("import sys; from pathlib import Path; from smoledge.data.pdf import pdf_text; "
            f"[pdf_text(p.read_bytes()) for p in sorted(Path({str(shared_data / 'pdf')!r}).rglob('*.pdf'))]; "
            "assert 'pymupdf' not in sys.modules and 'fitz' not in sys.modules, 'pymupdf imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pymupdf_missing_says_how_to_opt_in(shared_data, monkeypatch):
    monkeypatch.setitem(sys.modules, "pymupdf", None)  # what an install without the extra looks like
    with pytest.raises(SmoledgeError, match=r"pip install 'smoledge\[pdf-agpl\]'.*") as err:
        _read(shared_data / "pdf" / TRIVIAL, pdf_extractor="pymupdf")
    assert "AGPL-3.0" in str(err.value)


@needs_pymupdf
def test_pymupdf_opt_in_reads_the_real_pdfs(shared_data):
    stats: Counter = Counter()
    docs = {d.id: d for d in _read(shared_data / "pdf", stats, pdf_extractor="pymupdf")}
    assert len(docs) == 32 and stats == Counter({"skipped:pdf:encrypted": 1})
    assert "序" in docs[JO].text and docs[JO].metadata["extractor"] == "pymupdf"  # it maps the CJK font itself
    habibi = docs["py-pdf-sample-files/015-arabic__habibi.pdf"]  # PyMuPDF garbles it: pypdf's second opinion
    assert habibi.metadata["extractor"] == "pypdf" and "حَبيبي" in habibi.text
    for doc in docs.values():
        assert garbled_fraction(doc.text) <= 0.1
