"""Readers of web and document files: saved HTML pages, PDFs, WARC/ARC archives and Common Crawl WET files.

    from collections import Counter
    from smoledge.data.config import SourceConfig
    from smoledge.data.web import read_warc, extract
    source = SourceConfig(name="cc", kind="warc", path="crawl/*.warc.gz")
    for doc in read_warc(source, Counter(), hook=None):
        doc = extract(doc, source, Counter(), hook=None)   # a page's or PDF's bytes -> its main text
        print(doc.id, doc.file, doc.offset, doc.dropped or doc.text[:60])

Reading and extracting are two steps. The readers split files into records
and decide what each record is (a page, a PDF, WET text, or nothing usable);
`extract` turns a page's bytes into main text (trafilatura) and a PDF's into
its text layer. The curate stage reads in its driver and extracts in its
workers, so the expensive half runs on every core. A record whose URL is
fetched again (`refetch`) is extracted where it is read: whether the fetch is
needed depends on what the bytes parse to.

Every record is accounted for: each reader yields one Doc per document
record, with `dropped` set (and "skipped:<reason>" counted) when it yields no
text: too_large, empty, unreadable_file, undecodable, html_no_text,
html_extract_error, pdf:encrypted, pdf:corrupt, pdf:needs_ocr,
pdf:ocr_failed / pdf:ocr_no_text / pdf:ocr_garbled, pdf:truncated,
warc_http_status (not 2xx), warc_not_html_or_pdf, warc_truncated,
warc_broken_record, warc_corrupt_gzip_member, warc_bad_payload, warc_revisit
(the capture's payload is in another record), and, for a whole file that held
no document record, warc_no_documents or corrupt_file. Counters without the
prefix describe kept documents and attempts: warc:truncated,
warc:truncated_kept, warc:truncated_file, warc:stray_bytes_skipped,
refetch:ok / refetch:<why not>, pdf:ocr, html:bytes_replaced, wet:bytes_replaced.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Iterator

from smoledge.data.config import SourceConfig
from smoledge.data.docs import Doc, Payload, drop, file_ids, read_file, wat_message
from smoledge.data.extract import (UndecodableError, charset_from_content_type, decode_html, html_main_text,
                                   parse_html, visible_text)
from smoledge.data.pdf import garbled_fraction, load_ocr_hook, pdf_text
from smoledge.data.refetch import RefetchError, refetch
from smoledge.data.warc import Skipped, WatFileError, iter_records
from smoledge.errors import SmoledgeError

HTML_TYPES = ("text/html", "application/xhtml+xml")
# Media types that say nothing: the payload's first bytes decide.
GENERIC_TYPES = ("", "application/octet-stream", "unk", "unknown", "binary/octet-stream")
SNIFF_BYTES = 1024

OcrHook = Callable[[bytes, str], "str | None"]
Screen = Callable[[str], bool]
# `dropped` of a page a screen turned down before extraction (see extract).
SCREENED = "screened"
# Visible text handed to a screen: what it decides on, and an excerpt for the report.
SCREEN_TEXT_CHARS = 1000


def ocr_hook(source: SourceConfig) -> OcrHook | None:
    if not source.ocr:
        return None
    return load_ocr_hook(str(source.ocr_hook))


# ----------------------------------------------------------------------------- extraction

def _html(doc: Doc, data: bytes, charset: str | None, stats: Counter, screen: Screen | None = None) -> Doc:
    try:
        html, encoding = decode_html(data, charset)
    except UndecodableError:
        return _dropped(doc, "undecodable", stats)
    if encoding.endswith("+replace"):
        stats["html:bytes_replaced"] += 1
    try:
        page = html
        if screen is not None:
            page = parse_html(html)
            if page is None:
                return _dropped(doc, "html_no_text", stats)
            visible = visible_text(page, SCREEN_TEXT_CHARS)
            if screen(visible):
                doc.dropped, doc.text = SCREENED, visible
                return doc
        text = html_main_text(page, doc.url)
    except Exception:  # lxml/trafilatura on hostile markup: one page must not stop the run
        return _dropped(doc, "html_extract_error", stats)
    if not text:
        return _dropped(doc, "html_no_text", stats)
    doc.text = text
    doc.metadata.update(format="html", encoding=encoding)
    return doc


def _pdf(data: bytes, source: SourceConfig) -> Any:
    return pdf_text(data, source.pdf_extractor, source.max_garbled_fraction)


def _pdf_doc(doc: Doc, res: Any, data: bytes, source: SourceConfig, stats: Counter, hook: OcrHook | None) -> Doc:
    """`doc` with the text of a PdfText (see smoledge.data.pdf), through the OCR hook when it needs one."""
    doc.metadata.update(format="pdf", pages=res.pages)
    if res.reason is None:
        doc.text = res.text
        doc.metadata["extractor"] = res.extractor
        return doc
    if res.reason != "needs_ocr":
        return _dropped(doc, f"pdf:{res.reason}", stats)
    if hook is None:  # OCR off: a scan or a garbled text layer is never emitted as text
        return _dropped(doc, "pdf:needs_ocr", stats)
    try:
        text = hook(data, doc.id)
    except Exception:  # a user hook failing on one PDF must not stop the run
        return _dropped(doc, "pdf:ocr_failed", stats)
    if not isinstance(text, str) or not text.strip():
        return _dropped(doc, "pdf:ocr_no_text", stats)
    if garbled_fraction(text) > source.max_garbled_fraction:
        return _dropped(doc, "pdf:ocr_garbled", stats)
    stats["pdf:ocr"] += 1
    doc.text = text.strip()
    doc.metadata["ocr"] = True
    return doc


def _dropped(doc: Doc, reason: str, stats: Counter) -> Doc:
    stats[f"skipped:{reason}"] += 1
    doc.dropped, doc.text, doc.payload = reason, "", None
    return doc


def extract(doc: Doc, source: SourceConfig, stats: Counter, hook: OcrHook | None,
            screen: Screen | None = None) -> Doc:
    """`doc` with its payload turned into text, or dropped with the reason; a Doc without one as is.

    `screen`, given a page's visible text before extraction, may say it is not worth extracting: the
    page is then returned with `dropped` = SCREENED and that text (the caller records why)."""
    payload, doc.payload = doc.payload, None
    if payload is None:
        return doc
    if payload.kind == "html":
        return _html(doc, payload.data, payload.charset, stats, screen)
    return _pdf_doc(doc, _pdf(payload.data, source), payload.data, source, stats, hook)


# ----------------------------------------------------------------------------- html and pdf files

def read_files(source: SourceConfig, stats: Counter) -> Iterator[Doc]:
    """One Doc per file of an html or pdf source, its bytes left to `extract`."""
    for path, file_id in file_ids(source):
        data = read_file(path, file_id, source, stats)
        if isinstance(data, Doc):
            yield data
        else:
            yield Doc(id=file_id, text="", source=source.name, file=file_id, payload=Payload(source.kind, data))


# ----------------------------------------------------------------------------- warc

def payload_kind(media_type: str, payload: bytes) -> str | None:
    """'html', 'pdf' or None, from the declared media type and the payload's first bytes."""
    head = payload[:SNIFF_BYTES].lstrip()
    if head.startswith(b"%PDF-"):
        return "pdf"
    if media_type in HTML_TYPES:
        return "html"
    if media_type == "application/pdf":
        return "pdf"
    if media_type in GENERIC_TYPES:
        lower = head.lower()
        if lower.startswith((b"<!doctype html", b"<html")) or b"<html" in lower:
            return "html"
    return None


def _refetch(url: str, source: SourceConfig, stats: Counter) -> Any:
    """The refetched response (smoledge.data.refetch.Fetched), or None; every outcome is counted."""
    try:
        got = refetch(url, timeout_s=source.refetch_timeout_s, retries=source.refetch_retries,
                      max_bytes=min(source.refetch_max_bytes, source.max_doc_bytes),
                      allow_private=source.refetch_allow_private)
    except RefetchError as exc:
        stats[f"refetch:{exc.reason}"] += 1
        return None
    stats["refetch:ok"] += 1
    return got


def _wet_doc(doc: Doc, rec: Any, stats: Counter) -> Doc:
    """A WET conversion record: Common Crawl's extracted text, UTF-8, with its language guess."""
    text = rec.payload.decode("utf-8", errors="replace")
    if "\ufffd" in text:
        stats["wet:bytes_replaced"] += 1
    doc.text = text.strip()
    if not doc.text:
        return _dropped(doc, "empty", stats)
    doc.metadata.update(format="wet", cc_languages=rec.languages)
    return doc


def _warc_doc(rec: Any, file_id: str, source: SourceConfig, stats: Counter, hook: OcrHook | None) -> Doc:
    """A Doc from one WarcRecord (smoledge.data.warc), refetching what the crawl cut off."""
    doc = Doc(id=f"{file_id}@{rec.offset}", text="", source=source.name, url=rec.url, file=file_id,
              offset=rec.offset, metadata={"warc_date": rec.date, "warc_record_id": rec.record_id})
    if rec.rec_type == "conversion":
        return _wet_doc(doc, rec, stats)
    if rec.status is not None and not 200 <= rec.status < 300:
        return _dropped(doc, "warc_http_status", stats)
    if not rec.truncated and not rec.payload.strip():
        return _dropped(doc, "empty", stats)
    kind = payload_kind(rec.media_type, rec.payload)
    if kind is None:  # checked first: an image or a script is never worth a refetch
        return _dropped(doc, "warc_not_html_or_pdf", stats)
    payload, charset, refetched = rec.payload, rec.charset, False

    def fetch_again() -> bool:
        nonlocal payload, charset, kind, refetched
        got = _refetch(rec.url, source, stats)
        if got is None:
            return False
        media = got.content_type.split(";", 1)[0].strip().lower()
        payload, charset, refetched = got.body, charset_from_content_type(got.content_type), True
        kind = payload_kind(media, payload) or kind
        return True

    if rec.truncated:
        stats["warc:truncated"] += 1
        if not (source.refetch and fetch_again()):
            if kind == "pdf":  # a cut-off PDF rarely parses, and what parses is a fragment
                return _dropped(doc, "pdf:truncated", stats)
            if not payload.strip():  # e.g. a gzip-encoded body cut before its first block
                return _dropped(doc, "warc_truncated", stats)
            stats["warc:truncated_kept"] += 1  # a page prefix: its main text is usually whole
    if not payload.strip():  # refetched, and empty this time
        return _dropped(doc, "empty", stats)
    if refetched:
        doc.metadata["refetched"] = True
    if not source.refetch:  # nothing left that needs the network: the worker extracts
        doc.payload = Payload(kind, payload, charset)
        return doc
    if kind == "html":
        return _html(doc, payload, charset, stats)
    res = _pdf(payload, source)
    # A PDF that does not parse may be a bad capture: FinePDFs fetches those again. What comes
    # back is read as a PDF whatever the server calls it (an HTML error page stays corrupt).
    if res.reason == "corrupt" and not refetched and fetch_again():
        doc.metadata["refetched"] = True
        res = _pdf(payload, source)
    return _pdf_doc(doc, res, payload, source, stats, hook)


def read_warc(source: SourceConfig, stats: Counter, hook: OcrHook | None) -> Iterator[Doc]:
    for path, file_id in file_ids(source):  # resolving the paths refuses WAT files before any is read
        count = 0
        before = stats["corrupt_files"]
        try:
            for rec in iter_records(path, stats, source.max_doc_bytes):
                count += 1
                if isinstance(rec, Skipped):  # counted by iter_records
                    yield drop(source, file_id, rec.offset, rec.reason, None, url=rec.url)
                else:
                    yield _warc_doc(rec, file_id, source, stats, hook)
        except FileNotFoundError as exc:
            raise SmoledgeError(f"source '{source.name}': {path} disappeared while reading") from exc
        except WatFileError:
            raise SmoledgeError(wat_message(source, path)) from None
        except OSError:  # an unreadable file (I/O error, permissions): the records read so far stay
            stats["corrupt_files"] += 1
            stats[f"corrupt_file:{path.name}"] += 1
        if not count:
            # A file that yields nothing says why, in excluded.jsonl like every other record.
            reason = "corrupt_file" if stats["corrupt_files"] > before else "warc_no_documents"
            yield drop(source, file_id, 0, reason, stats, doc_id=file_id)
