"""Read raw documents from a recipe source: sample, JSONL, Parquet, Hugging Face, WARC, HTML, PDF or text.

    from collections import Counter
    from smoledge.data.config import SourceConfig
    from smoledge.data.readers import read_source
    stats = Counter()
    for doc in read_source(SourceConfig(name="web", kind="jsonl", path="dump/*.jsonl.gz"), seed=0, stats=stats):
        print(doc.id, doc.text[:60])
    print(stats)   # e.g. {"skipped:bad_json": 1, "undecodable_lines": 2}

    # Web archives: main text of HTML responses (trafilatura) and of PDFs with a text layer.
    src = SourceConfig(name="cc", kind="warc", path="crawl/*.warc.gz", refetch=True)

Readers never crash on a bad record: a line that is not JSON, or lacks the
text field, is skipped and counted in `stats` under "skipped:<reason>";
bytes that are not UTF-8 are replaced (U+FFFD) and counted. What cannot be
worked around (a missing path, a missing column, no `datasets` library)
raises SmoledgeError naming the fix.

The warc/html/pdf/text kinds skip, each counted as "skipped:<reason>":
  too_large (over max_doc_bytes), empty, unreadable_file, undecodable (no
  encoding fits), html_no_text (trafilatura finds no main text),
  html_extract_error, pdf:encrypted, pdf:corrupt, pdf:needs_ocr (scanned or
  garbled, OCR off), pdf:ocr_failed / pdf:ocr_no_text / pdf:ocr_garbled,
  pdf:truncated (a cut-off PDF not fetched again), warc_http_status (not
  2xx), warc_not_html_or_pdf, warc_truncated, warc_broken_record,
  warc_corrupt_gzip_member, warc_bad_payload.
Counters without the prefix describe kept documents and attempts:
  warc:truncated, warc:truncated_kept (a cut-off page whose captured part is
  kept), warc:truncated_file, warc:stray_bytes_skipped, refetch:ok / refetch:<why not>, pdf:ocr,
  html:bytes_replaced, text:bytes_replaced.
"""

from __future__ import annotations

import glob
import gzip
import itertools
import json
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from smoledge.data.config import SourceConfig
from smoledge.errors import SmoledgeError

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".ndjson.gz")
PARQUET_SUFFIXES = (".parquet",)
WARC_SUFFIXES = (".warc.gz", ".warc", ".arc.gz", ".arc")
HTML_SUFFIXES = (".html", ".htm", ".xhtml")
PDF_SUFFIXES = (".pdf",)
TEXT_SUFFIXES = (".txt",)
SUFFIXES = {"jsonl": JSONL_SUFFIXES, "parquet": PARQUET_SUFFIXES, "warc": WARC_SUFFIXES, "html": HTML_SUFFIXES,
            "pdf": PDF_SUFFIXES, "text": TEXT_SUFFIXES}
HTML_TYPES = ("text/html", "application/xhtml+xml")
# Media types that say nothing: the payload's first bytes decide.
GENERIC_TYPES = ("", "application/octet-stream", "unk", "unknown", "binary/octet-stream")
SNIFF_BYTES = 1024
GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Doc:
    """One document on its way through curation."""

    id: str
    text: str
    source: str
    url: str = ""
    lang: str = ""
    """Filled in by the language filter."""
    lang_score: float = 0.0
    """Language-ID confidence (normalized probability)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Where the text came from: format (html/pdf), pages, extractor, encoding, refetched, ocr..."""


def read_source(source: SourceConfig, seed: int, stats: Counter | None = None) -> Iterator[Doc]:
    """Documents of one source, at most `source.max_docs` of them."""
    stats = stats if stats is not None else Counter()
    if source.kind == "sample":
        docs = _read_sample(source, seed)
    elif source.kind == "jsonl":
        docs = _read_jsonl(source, stats)
    elif source.kind == "parquet":
        docs = _read_parquet(source, stats)
    elif source.kind == "hf":
        docs = _read_hf(source, stats)
    elif source.kind == "html":
        docs = _read_html(source, stats)
    elif source.kind == "pdf":
        docs = _read_pdf(source, stats, _ocr_hook(source))
    elif source.kind == "warc":
        docs = _read_warc(source, stats, _ocr_hook(source))
    elif source.kind == "text":
        docs = _read_text(source, stats)
    else:  # SourceConfig validation makes this unreachable
        raise SmoledgeError(f"source '{source.name}': unknown kind '{source.kind}'")
    # islice pulls exactly max_docs, so a huge file is not read to its end.
    yield from itertools.islice(docs, source.max_docs)


def resolve_paths(source: SourceConfig) -> list[Path]:
    """The files a file-based source names (a file, a directory or a glob), sorted.

    A directory contributes the files with the kind's suffixes (warc: .warc, .warc.gz,
    .arc, .arc.gz; html: .html, .htm, .xhtml; pdf: .pdf; text: .txt); a glob or a file is taken as named.
    """
    suffixes = SUFFIXES[source.kind]
    raw = str(source.path)
    fix = (
        f"fix data.sources '{source.name}' path in the recipe (a file, a directory or a glob such as "
        f"'data/*{suffixes[0]}')"
    )
    if any(ch in raw for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(raw, recursive=True) if Path(p).is_file())
        if not files:
            raise SmoledgeError(f"source '{source.name}': no file matches {raw!r}; {fix}")
        return files
    path = Path(raw)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(suffixes))
        if not files:
            raise SmoledgeError(
                f"source '{source.name}': directory {path} holds no {'/'.join(suffixes)} files; {fix}"
            )
        return files
    hint = f", or write the built-in sample there with `smoledge sample {path}`" if source.kind == "jsonl" else ""
    raise SmoledgeError(f"source '{source.name}': {path} does not exist; {fix}{hint}")


def _read_sample(source: SourceConfig, seed: int) -> Iterator[Doc]:
    from smoledge.data.sample import generate

    for rec in generate(source.sample_docs, seed):
        # rec["meta"] is the generator's ground truth: curation must not see it.
        yield Doc(id=rec["id"], text=rec["text"], source=source.name, url=rec["url"])


def _record_doc(rec: Any, source: SourceConfig, fallback_id: str, stats: Counter) -> Doc | None:
    """A Doc from one decoded record, or None (counted) when it has no usable text."""
    if not isinstance(rec, dict):
        stats["skipped:not_an_object"] += 1
        return None
    text = rec.get(source.text_field)
    if text is None:
        stats["skipped:missing_text"] += 1
        return None
    if not isinstance(text, str):
        stats["skipped:text_not_a_string"] += 1
        return None
    if not text.strip():
        stats["skipped:empty_text"] += 1
        return None
    # Cheap length test first: a str of n characters has at least n UTF-8 bytes.
    if len(text) > source.max_doc_bytes // 4 and len(text.encode("utf-8", "surrogatepass")) > source.max_doc_bytes:
        stats["skipped:too_large"] += 1
        return None
    doc_id = rec.get("id")
    url = rec.get("url")
    return Doc(
        id=str(doc_id) if doc_id is not None else fallback_id,
        text=text,
        source=source.name,
        url=url if isinstance(url, str) else "",
    )


def _open_binary(path: Path):
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == GZIP_MAGIC else open(path, "rb")


def _read_jsonl(source: SourceConfig, stats: Counter) -> Iterator[Doc]:
    for path in resolve_paths(source):
        try:
            with _open_binary(path) as f:
                for lineno, raw in enumerate(f, 1):
                    if not raw.strip():
                        continue
                    if len(raw) > source.max_doc_bytes:
                        stats["skipped:too_large"] += 1
                        continue
                    try:
                        line = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        line = raw.decode("utf-8", errors="replace")
                        stats["undecodable_lines"] += 1
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        stats["skipped:bad_json"] += 1
                        continue
                    doc = _record_doc(rec, source, f"{path.name}:{lineno}", stats)
                    if doc is not None:
                        yield doc
        except (EOFError, OSError, zlib.error) as exc:
            # A truncated .gz keeps the lines read so far; the rest is counted as lost.
            if isinstance(exc, FileNotFoundError):
                raise SmoledgeError(f"source '{source.name}': {path} disappeared while reading") from exc
            stats["corrupt_files"] += 1
            stats[f"corrupt_file:{path.name}"] += 1


def _read_parquet(source: SourceConfig, stats: Counter) -> Iterator[Doc]:
    import pyarrow.parquet as pq

    for path in resolve_paths(source):
        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for non-parquet bytes
            raise SmoledgeError(f"source '{source.name}': {path} is not a readable Parquet file ({exc})") from exc
        names = pf.schema_arrow.names
        if source.text_field not in names:
            raise SmoledgeError(
                f"source '{source.name}': {path} has no column '{source.text_field}' (columns: {', '.join(names)}); "
                f"set text_field for this source in the recipe"
            )
        columns = [c for c in (source.text_field, "id", "url") if c in names]
        row = 0
        # One row group at a time: memory stays bounded by the largest group.
        for rg in range(pf.num_row_groups):
            table = pf.read_row_group(rg, columns=columns)
            for rec in table.to_pylist():
                row += 1
                doc = _record_doc(rec, source, f"{path.name}:{row}", stats)
                if doc is not None:
                    yield doc


def _read_hf(source: SourceConfig, stats: Counter) -> Iterator[Doc]:
    try:
        import datasets  # noqa: F401  (optional: only hf sources need it)
    except ImportError:
        raise SmoledgeError(
            f"source '{source.name}' streams the Hugging Face dataset '{source.path}', but the `datasets` "
            f"library is not installed; fix: pip install datasets (and allow network access or a local HF cache)"
        ) from None
    try:
        ds = datasets.load_dataset(source.path, source.subset, split=source.split, streaming=True)
    except Exception as exc:  # network, auth, unknown config: all user-fixable
        raise SmoledgeError(
            f"source '{source.name}': could not open Hugging Face dataset '{source.path}' "
            f"(subset {source.subset!r}, split {source.split!r}): {exc}; check the id, subset and split, "
            f"and network access"
        ) from exc
    for i, rec in enumerate(ds):
        doc = _record_doc(rec, source, f"{source.path}:{i}", stats)
        if doc is not None:
            yield doc


# ----------------------------------------------------------------------------- html, pdf, warc

def _ocr_hook(source: SourceConfig) -> Callable[[bytes, str], str | None] | None:
    if not source.ocr:
        return None
    from smoledge.data.pdf import load_ocr_hook

    return load_ocr_hook(str(source.ocr_hook))


def _glob_root(pattern: str) -> Path:
    """The directory part of a glob before its first wildcard: '/a/b/**/*.pdf' -> /a/b."""
    parts = Path(pattern).parts
    for i, part in enumerate(parts):
        if any(ch in part for ch in "*?["):
            return Path(*parts[:i]) if i else Path(".")
    return Path(pattern).parent


def _file_ids(source: SourceConfig) -> Iterator[tuple[Path, str]]:
    """(path, id) of each file of the source; the id is the path below the source's root,
    so it does not depend on where the data lives (split hashes use it)."""
    raw = str(source.path)
    if any(ch in raw for ch in "*?["):
        root = _glob_root(raw)
    else:
        root = Path(raw) if Path(raw).is_dir() else Path(raw).parent
    for path in resolve_paths(source):
        try:
            yield path, path.relative_to(root).as_posix()
        except ValueError:
            yield path, path.name


def _read_file(path: Path, source: SourceConfig, stats: Counter) -> bytes | None:
    """The file's bytes, or None (counted) when it is too large, empty or unreadable."""
    try:
        if path.stat().st_size > source.max_doc_bytes:  # never read a huge file into memory
            stats["skipped:too_large"] += 1
            return None
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise SmoledgeError(f"source '{source.name}': {path} disappeared while reading") from exc
    except OSError:
        stats["skipped:unreadable_file"] += 1
        return None
    if not data.strip():
        stats["skipped:empty"] += 1
        return None
    return data


def _html_doc(data: bytes, charset: str | None, doc_id: str, url: str, source: SourceConfig, stats: Counter,
              meta: dict[str, Any]) -> Doc | None:
    from smoledge.data.extract import UndecodableError, decode_html, html_main_text

    try:
        html, encoding = decode_html(data, charset)
    except UndecodableError:
        stats["skipped:undecodable"] += 1
        return None
    if encoding.endswith("+replace"):
        stats["html:bytes_replaced"] += 1
    try:
        text = html_main_text(html, url)
    except Exception:  # lxml/trafilatura on hostile markup: one page must not stop the run
        stats["skipped:html_extract_error"] += 1
        return None
    if not text:
        stats["skipped:html_no_text"] += 1
        return None
    return Doc(id=doc_id, text=text, source=source.name, url=url,
               metadata={**meta, "format": "html", "encoding": encoding})


def _pdf_doc(res: Any, data: bytes, doc_id: str, url: str, source: SourceConfig, stats: Counter,
             hook: Callable[[bytes, str], str | None] | None, meta: dict[str, Any]) -> Doc | None:
    """A Doc from a PdfText (see smoledge.data.pdf), through the OCR hook when it needs one."""
    from smoledge.data.pdf import garbled_fraction

    meta = {**meta, "format": "pdf", "pages": res.pages}
    if res.reason is None:
        return Doc(id=doc_id, text=res.text, source=source.name, url=url,
                   metadata={**meta, "extractor": res.extractor})
    if res.reason != "needs_ocr":
        stats[f"skipped:pdf:{res.reason}"] += 1
        return None
    if hook is None:  # OCR off: a scan or a garbled text layer is never emitted as text
        stats["skipped:pdf:needs_ocr"] += 1
        return None
    try:
        text = hook(data, doc_id)
    except Exception:  # a user hook failing on one PDF must not stop the run
        stats["skipped:pdf:ocr_failed"] += 1
        return None
    if not isinstance(text, str) or not text.strip():
        stats["skipped:pdf:ocr_no_text"] += 1
        return None
    if garbled_fraction(text) > source.max_garbled_fraction:
        stats["skipped:pdf:ocr_garbled"] += 1
        return None
    stats["pdf:ocr"] += 1
    return Doc(id=doc_id, text=text.strip(), source=source.name, url=url, metadata={**meta, "ocr": True})


def _pdf(data: bytes, source: SourceConfig) -> Any:
    from smoledge.data.pdf import pdf_text

    return pdf_text(data, source.pdf_extractor, source.max_garbled_fraction)


def _read_html(source: SourceConfig, stats: Counter) -> Iterator[Doc]:
    for path, doc_id in _file_ids(source):
        data = _read_file(path, source, stats)
        if data is not None:
            doc = _html_doc(data, None, doc_id, "", source, stats, {})
            if doc is not None:
                yield doc


def _read_text(source: SourceConfig, stats: Counter) -> Iterator[Doc]:
    from smoledge.data.extract import UndecodableError, decode_html

    for path, doc_id in _file_ids(source):
        data = _read_file(path, source, stats)
        if data is None:
            continue
        # The pages' decoder: a BOM, UTF-8, a few stray bytes replaced, or a guessed legacy encoding (a
        # Latin-1 book), never every accented letter turned into U+FFFD.
        try:
            text, encoding = decode_html(data)
        except UndecodableError:
            stats["skipped:undecodable"] += 1
            continue
        if encoding.endswith("+replace"):
            stats["text:bytes_replaced"] += 1
        yield Doc(id=doc_id, text=text.strip(), source=source.name, metadata={"format": "text"})


def _read_pdf(source: SourceConfig, stats: Counter, hook: Callable[[bytes, str], str | None] | None) -> Iterator[Doc]:
    for path, doc_id in _file_ids(source):
        data = _read_file(path, source, stats)
        if data is not None:
            doc = _pdf_doc(_pdf(data, source), data, doc_id, "", source, stats, hook, {})
            if doc is not None:
                yield doc


def _payload_kind(media_type: str, payload: bytes) -> str | None:
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
    from smoledge.data.refetch import RefetchError, refetch

    try:
        got = refetch(url, timeout_s=source.refetch_timeout_s, retries=source.refetch_retries,
                      max_bytes=min(source.refetch_max_bytes, source.max_doc_bytes),
                      allow_private=source.refetch_allow_private)
    except RefetchError as exc:
        stats[f"refetch:{exc.reason}"] += 1
        return None
    stats["refetch:ok"] += 1
    return got


def _warc_doc(rec: Any, source: SourceConfig, stats: Counter,
              hook: Callable[[bytes, str], str | None] | None) -> Doc | None:
    """A Doc from one WarcRecord (smoledge.data.warc), refetching what the crawl cut off."""
    from smoledge.data.extract import charset_from_content_type

    if rec.status is not None and not 200 <= rec.status < 300:
        stats["skipped:warc_http_status"] += 1
        return None
    if not rec.truncated and not rec.payload.strip():
        stats["skipped:empty"] += 1
        return None
    kind = _payload_kind(rec.media_type, rec.payload)
    if kind is None:  # checked first: an image or a script is never worth a refetch
        stats["skipped:warc_not_html_or_pdf"] += 1
        return None
    payload, charset, refetched = rec.payload, rec.charset, False
    meta: dict[str, Any] = {"warc_date": rec.date}

    def fetch_again() -> bool:
        nonlocal payload, charset, kind, refetched
        got = _refetch(rec.url, source, stats)
        if got is None:
            return False
        media = got.content_type.split(";", 1)[0].strip().lower()
        payload, charset, refetched = got.body, charset_from_content_type(got.content_type), True
        kind = _payload_kind(media, payload) or kind
        return True

    if rec.truncated:
        stats["warc:truncated"] += 1
        if not (source.refetch and fetch_again()):
            if kind == "pdf":  # a cut-off PDF rarely parses, and what parses is a fragment
                stats["skipped:pdf:truncated"] += 1
                return None
            if not payload.strip():  # e.g. a gzip-encoded body cut before its first block
                stats["skipped:warc_truncated"] += 1
                return None
            stats["warc:truncated_kept"] += 1  # a page prefix: its main text is usually whole
    if not payload.strip():  # refetched, and empty this time
        stats["skipped:empty"] += 1
        return None
    if kind == "html":
        doc = _html_doc(payload, charset, rec.record_id, rec.url, source, stats, meta)
    else:
        res = _pdf(payload, source)
        # A PDF that does not parse may be a bad capture: FinePDFs fetches those again. What comes
        # back is read as a PDF whatever the server calls it (an HTML error page stays corrupt).
        if res.reason == "corrupt" and source.refetch and not refetched and fetch_again():
            res = _pdf(payload, source)
        doc = _pdf_doc(res, payload, rec.record_id, rec.url, source, stats, hook, meta)
    if doc is not None and refetched:
        doc.metadata["refetched"] = True
    return doc


def _read_warc(source: SourceConfig, stats: Counter,
               hook: Callable[[bytes, str], str | None] | None) -> Iterator[Doc]:
    from smoledge.data.warc import iter_records

    for path in resolve_paths(source):
        try:
            for rec in iter_records(path, stats, source.max_doc_bytes):
                doc = _warc_doc(rec, source, stats, hook)
                if doc is not None:
                    yield doc
        except FileNotFoundError as exc:
            raise SmoledgeError(f"source '{source.name}': {path} disappeared while reading") from exc
        except OSError:  # an unreadable file (I/O error, permissions): the records read so far stay
            stats["corrupt_files"] += 1
            stats[f"corrupt_file:{path.name}"] += 1
