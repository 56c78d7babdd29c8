"""Read raw documents from a recipe source: sample, JSONL, Parquet, Hugging Face, WARC/WET, HTML, PDF or text.

    from collections import Counter
    from smoledge.data.config import SourceConfig
    from smoledge.data.readers import read_source
    stats = Counter()
    for doc in read_source(SourceConfig(name="web", kind="jsonl", path="dump/*.jsonl.gz"), seed=0, stats=stats):
        print(doc.id, doc.file, doc.offset, doc.text[:60])
    print(stats)   # e.g. {"skipped:bad_json": 1, "undecodable_lines": 2}

    # Web archives: main text of HTML responses (trafilatura), PDFs with a text layer, WET text.
    src = SourceConfig(name="cc", kind="warc", path="crawl/*.warc.gz", refetch=True)

`read_records` yields every record read as a Doc (smoledge.data.docs): a
document, possibly with bytes still to extract (`payload`; curate's workers
do that), or a record that yields none, with `dropped` giving the reason;
curate accounts for each in curated.parquet or excluded.jsonl. `read_source`
is the same stream extracted here, documents only.

Readers never crash on a bad record: a line that is not JSON, or lacks the
text field, is dropped and counted in `stats` under "skipped:<reason>";
bytes that are not UTF-8 are replaced (U+FFFD) and counted. What cannot be
worked around (a missing path, a missing column, a WAT file, no `datasets`
library) raises SmoledgeError naming the fix. The html/pdf/warc kinds and
their reasons are in smoledge.data.web.
"""

from __future__ import annotations

import gzip
import itertools
import json
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from smoledge.data.config import SourceConfig
from smoledge.data.docs import Doc, drop, file_ids, read_file, resolve_paths
from smoledge.data.extract import UndecodableError, decode_html
from smoledge.data.web import extract, ocr_hook, read_files, read_warc
from smoledge.errors import SmoledgeError

__all__ = ["Doc", "read_records", "read_source", "resolve_paths"]

GZIP_MAGIC = b"\x1f\x8b"


def read_records(source: SourceConfig, seed: int, stats: Counter | None = None) -> Iterator[Doc]:
    """Every record of one source as a Doc (documents, pending extractions and drops), at most
    `source.max_docs` of them."""
    stats = stats if stats is not None else Counter()
    if source.kind == "sample":
        docs = _read_sample(source, seed)
    elif source.kind == "jsonl":
        docs = _read_jsonl(source, stats)
    elif source.kind == "parquet":
        docs = _read_parquet(source, stats)
    elif source.kind == "hf":
        docs = _read_hf(source, stats)
    elif source.kind in ("html", "pdf"):
        docs = read_files(source, stats)
    elif source.kind == "warc":
        docs = read_warc(source, stats, ocr_hook(source) if source.refetch else None)
    elif source.kind == "text":
        docs = _read_text(source, stats)
    else:  # SourceConfig validation makes this unreachable
        raise SmoledgeError(f"source '{source.name}': unknown kind '{source.kind}'")
    # islice pulls exactly max_docs, so a huge file is not read to its end.
    yield from itertools.islice(docs, source.max_docs)


def read_source(source: SourceConfig, seed: int, stats: Counter | None = None) -> Iterator[Doc]:
    """The documents of one source with their text, extracted in this process (drops only counted)."""
    stats = stats if stats is not None else Counter()
    hook = ocr_hook(source)
    for doc in read_records(source, seed, stats):
        doc = extract(doc, source, stats, hook)
        if not doc.dropped:
            yield doc


def _read_sample(source: SourceConfig, seed: int) -> Iterator[Doc]:
    from smoledge.data.sample import generate

    for i, rec in enumerate(generate(source.sample_docs, seed)):
        # rec["meta"] is the generator's ground truth: curation must not see it.
        yield Doc(id=rec["id"], text=rec["text"], source=source.name, url=rec["url"], file="sample", offset=i)


def _record_doc(rec: Any, source: SourceConfig, file: str, offset: int, stats: Counter) -> Doc:
    """A Doc from one decoded record, or a dropped one (counted) when it has no usable text."""
    if not isinstance(rec, dict):
        return drop(source, file, offset, "not_an_object", stats, doc_id=f"{file}:{offset}")
    doc_id = rec.get("id")
    doc_id = str(doc_id) if doc_id is not None else f"{file}:{offset}"
    url = rec.get("url")
    url = url if isinstance(url, str) else ""
    text = rec.get(source.text_field)
    reason = ""
    if text is None:
        reason = "missing_text"
    elif not isinstance(text, str):
        reason = "text_not_a_string"
    elif not text.strip():
        reason = "empty_text"
    # Cheap length test first: a str of n characters has at least n UTF-8 bytes.
    elif len(text) > source.max_doc_bytes // 4 and len(text.encode("utf-8", "surrogatepass")) > source.max_doc_bytes:
        reason = "too_large"
    if reason:
        return drop(source, file, offset, reason, stats, doc_id=doc_id, url=url)
    return Doc(id=doc_id, text=text, source=source.name, url=url, file=file, offset=offset)


def _open_binary(path: Path):
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == GZIP_MAGIC else open(path, "rb")


def _read_jsonl(source: SourceConfig, stats: Counter) -> Iterator[Doc]:
    for path, file_id in file_ids(source):
        lineno = records = 0
        try:
            with _open_binary(path) as f:
                for lineno, raw in enumerate(f, 1):
                    if not raw.strip():
                        continue
                    records += 1
                    if len(raw) > source.max_doc_bytes:
                        yield drop(source, file_id, lineno, "too_large", stats, doc_id=f"{file_id}:{lineno}")
                        continue
                    try:
                        line = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        line = raw.decode("utf-8", errors="replace")
                        stats["undecodable_lines"] += 1
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        yield drop(source, file_id, lineno, "bad_json", stats, doc_id=f"{file_id}:{lineno}")
                        continue
                    yield _record_doc(rec, source, file_id, lineno, stats)
        except (EOFError, OSError, zlib.error) as exc:
            # A truncated .gz keeps the lines read so far; the rest is lost, and said so.
            if isinstance(exc, FileNotFoundError):
                raise SmoledgeError(f"source '{source.name}': {path} disappeared while reading") from exc
            stats["corrupt_files"] += 1
            stats[f"corrupt_file:{path.name}"] += 1
            yield drop(source, file_id, lineno + 1, "corrupt_file", stats, doc_id=f"{file_id}:{lineno + 1}")
            continue
        if not records:  # a file that yields nothing says why
            yield drop(source, file_id, 0, "empty_file", stats, doc_id=file_id)


def _read_parquet(source: SourceConfig, stats: Counter) -> Iterator[Doc]:
    import pyarrow.parquet as pq

    for path, file_id in file_ids(source):
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
                yield _record_doc(rec, source, file_id, row, stats)
        if not row:
            yield drop(source, file_id, 0, "empty_file", stats, doc_id=file_id)


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
        yield _record_doc(rec, source, str(source.path), i, stats)


def _read_text(source: SourceConfig, stats: Counter) -> Iterator[Doc]:
    for path, file_id in file_ids(source):
        data = read_file(path, file_id, source, stats)
        if isinstance(data, Doc):
            yield data
            continue
        # The pages' decoder: a BOM, UTF-8, a few stray bytes replaced, or a guessed legacy encoding (a
        # Latin-1 book), never every accented letter turned into U+FFFD.
        try:
            text, encoding = decode_html(data)
        except UndecodableError:
            yield drop(source, file_id, 0, "undecodable", stats, doc_id=file_id)
            continue
        if encoding.endswith("+replace"):
            stats["text:bytes_replaced"] += 1
        yield Doc(id=file_id, text=text.strip(), source=source.name, file=file_id, metadata={"format": "text"})
