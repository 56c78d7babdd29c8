"""PDF reader: real PDFs (CJK, Arabic, multi-column, forms, a corrupted file), encrypted and
truncated PDFs, the garbled-text detector, scanned PDFs routed to the OCR hook (off by default)."""

from __future__ import annotations

import io
import textwrap
from collections import Counter

import pytest

from smoledge.config import ConfigError
from smoledge.data.config import SourceConfig
from smoledge.data.pdf import garbled_fraction, pdf_text
from smoledge.data.readers import read_source
from smoledge.errors import SmoledgeError

TRIVIAL = "py-pdf-sample-files/001-trivial__minimal-document.pdf"


def _read(path, stats=None, **kw):
    stats = stats if stats is not None else Counter()
    return list(read_source(SourceConfig(name="pdfs", kind="pdf", path=str(path), **kw), seed=0, stats=stats))


@pytest.fixture(scope="module")
def real_docs(shared_data):
    stats: Counter = Counter()
    docs = _read(shared_data / "pdf", stats)
    return {d.id: d for d in docs}, stats


def test_real_pdfs(real_docs):
    docs, stats = real_docs
    assert len(docs) == 32
    assert stats == Counter({"skipped:pdf:encrypted": 1})  # 005: a real user password
    assert "py-pdf-sample-files/005-libreoffice-writer-password__libreoffice-writer-password.pdf" not in docs
    geo = docs["py-pdf-sample-files/009-pdflatex-geotopo__GeoTopo-komprimiert.pdf"]
    assert geo.metadata["pages"] == 117 and "Topologie" in geo.text
    assert "Auflage" in geo.text  # the ﬂ ligature is expanded
    assert "序" in docs["pdfminer.six/jo.pdf"].text  # Japanese CID font mapped (pypdf garbles it)
    habibi = docs["py-pdf-sample-files/015-arabic__habibi.pdf"]  # PyMuPDF garbles it: pypdf's second opinion
    assert habibi.metadata["extractor"] == "pypdf" and "حَبيبي" in habibi.text
    assert "Beautiful is better than ugly" in docs["pdfminer.six/zen_of_python_corrupted.pdf"].text
    assert "Copyright" in docs["pdfminer.six/dmca.pdf"].text  # owner-password-only: readable
    for doc in docs.values():
        assert doc.metadata["format"] == "pdf" and doc.text == doc.text.strip()
        assert garbled_fraction(doc.text) <= 0.1


def test_pypdf_alone_routes_garbled_cjk_to_ocr(shared_data):
    stats: Counter = Counter()
    docs = _read(shared_data / "pdf" / "pdfminer.six" / "jo.pdf", stats, pdf_extractor="pypdf")
    assert docs == [] and stats["skipped:pdf:needs_ocr"] == 1
    res = pdf_text((shared_data / "pdf" / "pdfminer.six" / "jo.pdf").read_bytes(), "pypdf")
    assert res.reason == "needs_ocr" and res.garbled > 0.3


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
    stats = Counter()
    assert _read(tmp_path / "cut.pdf", stats, pdf_extractor="pypdf") == [] and stats["skipped:pdf:corrupt"] == 1
    stats = Counter()
    assert _read(tmp_path / "owner-only.pdf", stats, max_doc_bytes=100) == [] and stats["skipped:too_large"] == 1


@pytest.fixture(scope="module")
def scanned_pdf(tmp_path_factory, shared_data):
    """A real scan-like PDF: a page of the trivial document rendered to pixels, no text layer."""
    import pymupdf

    src = pymupdf.open(shared_data / "pdf" / TRIVIAL)
    pix = src[0].get_pixmap(dpi=72)
    out = pymupdf.open()
    page = out.new_page(width=src[0].rect.width, height=src[0].rect.height)
    page.insert_image(page.rect, pixmap=pix)
    path = tmp_path_factory.mktemp("scan") / "scan.pdf"
    out.save(path)
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
    with pytest.raises(ConfigError, match=r"path: a 'warc' source needs a path"):
        SourceConfig.from_dict({"name": "w", "kind": "warc"})
