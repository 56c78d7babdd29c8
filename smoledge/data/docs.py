"""What a source's reader hands on: documents with their provenance, and the files a source names.

    from smoledge.data.docs import Doc, resolve_paths
    doc = Doc(id="pages/a.html", text="...", source="web", file="pages/a.html")
    doc.dropped            # "" for a document; "html_no_text", "warc_revisit"... for a record that yields none

Every record a reader meets becomes a Doc, so curation can account for all of
them: a document (text, or bytes still to extract in a worker: `payload`),
or a record that yields none (`dropped` says why; it lands in excluded.jsonl
as "read:<reason>"). Each one says where it came from: the source, the file
below the source's root, and where in that file (`offset`), so a kept or
dropped document can be traced to its bytes.
"""

from __future__ import annotations

import glob
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from smoledge.data.config import SourceConfig
from smoledge.errors import SmoledgeError

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".ndjson.gz")
PARQUET_SUFFIXES = (".parquet",)
# WET files (.warc.wet.gz) are Common Crawl's extracted text in WARC framing; WAT files are listed so a
# directory holding them is refused with the reason (they hold metadata, not documents).
WET_SUFFIXES = (".warc.wet.gz", ".warc.wet", ".wet.gz", ".wet")
WAT_SUFFIXES = (".warc.wat.gz", ".warc.wat", ".wat.gz", ".wat")
WARC_SUFFIXES = (".warc.gz", ".warc", ".arc.gz", ".arc") + WET_SUFFIXES + WAT_SUFFIXES
HTML_SUFFIXES = (".html", ".htm", ".xhtml")
PDF_SUFFIXES = (".pdf",)
TEXT_SUFFIXES = (".txt",)
SUFFIXES = {"jsonl": JSONL_SUFFIXES, "parquet": PARQUET_SUFFIXES, "warc": WARC_SUFFIXES, "html": HTML_SUFFIXES,
            "pdf": PDF_SUFFIXES, "text": TEXT_SUFFIXES}


@dataclass
class Payload:
    """A page's or a PDF's bytes, still to be turned into text (by a curate worker, in parallel)."""

    kind: str
    """html | pdf"""
    data: bytes
    charset: str | None = None
    """The charset the HTTP response declared (html)."""


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
    """Where the text came from: format (html/pdf/wet), pages, extractor, encoding, refetched, ocr..."""
    file: str = ""
    """The file it was read from, below the source's root (hf: the dataset id; sample: 'sample')."""
    offset: int = 0
    """Where in `file`: a WARC record's byte offset in the uncompressed stream, an ARC record's number,
    a JSONL line, a Parquet or dataset row; 0 for a document that is a whole file."""
    dropped: str = ""
    """Why this record yields no document ("html_no_text", "warc_revisit", "bad_json"...); "" for a document."""
    payload: Payload | None = None
    """Bytes still to extract (smoledge.data.web.extract); `text` is empty until then."""


def drop(source: SourceConfig, file: str, offset: int, reason: str, stats: Counter | None, doc_id: str = "",
         url: str = "") -> Doc:
    """The record at `file`/`offset` that yields no document, counted as "skipped:<reason>" (unless
    `stats` is None: the caller's own reader counted it)."""
    if stats is not None:
        stats[f"skipped:{reason}"] += 1
    return Doc(id=doc_id or f"{file}@{offset}", text="", source=source.name, url=url, file=file, offset=offset,
               dropped=reason)


def resolve_paths(source: SourceConfig) -> list[Path]:
    """The files a file-based source names (a file, a directory or a glob), sorted.

    A directory contributes the files with the kind's suffixes (warc: .warc, .warc.gz,
    .arc, .arc.gz, .warc.wet.gz...; html: .html, .htm, .xhtml; pdf: .pdf; text: .txt);
    a glob or a file is taken as named. WAT files are refused (they hold no text).
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
    else:
        path = Path(raw)
        if path.is_file():
            files = [path]
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(suffixes))
            if not files:
                raise SmoledgeError(
                    f"source '{source.name}': directory {path} holds no {'/'.join(suffixes)} files; {fix}"
                )
        else:
            hint = f", or write the built-in sample there with `smoledge sample {path}`" if source.kind == "jsonl" else ""
            raise SmoledgeError(f"source '{source.name}': {path} does not exist; {fix}{hint}")
    if source.kind == "warc":
        wat = [p for p in files if p.name.endswith(WAT_SUFFIXES)]
        if wat:
            raise SmoledgeError(wat_message(source, wat[0]))
    return files


def wat_message(source: SourceConfig, path: Path) -> str:
    return (f"source '{source.name}': {path} is a Common Crawl WAT file: JSON metadata about each capture "
            f"(HTTP headers, links), with no page text to curate; use the same crawl segment's WET file "
            f"(.warc.wet.gz, the text Common Crawl extracted) or its WARC file (.warc.gz, the pages, which "
            f"smoledge extracts itself), and remove the WAT files from the source's path")


def _glob_root(pattern: str) -> Path:
    """The directory part of a glob before its first wildcard: '/a/b/**/*.pdf' -> /a/b."""
    parts = Path(pattern).parts
    for i, part in enumerate(parts):
        if any(ch in part for ch in "*?["):
            return Path(*parts[:i]) if i else Path(".")
    return Path(pattern).parent


def file_ids(source: SourceConfig) -> Iterator[tuple[Path, str]]:
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


def read_file(path: Path, file_id: str, source: SourceConfig, stats: Counter) -> bytes | Doc:
    """The file's bytes, or the dropped Doc when it is too large, empty or unreadable."""
    try:
        if path.stat().st_size > source.max_doc_bytes:  # never read a huge file into memory
            return drop(source, file_id, 0, "too_large", stats, doc_id=file_id)
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise SmoledgeError(f"source '{source.name}': {path} disappeared while reading") from exc
    except OSError:
        return drop(source, file_id, 0, "unreadable_file", stats, doc_id=file_id)
    if not data.strip():
        return drop(source, file_id, 0, "empty", stats, doc_id=file_id)
    return data
