"""Read raw documents from a recipe source: sample, JSONL, Parquet or a Hugging Face dataset.

    from collections import Counter
    from smoledge.data.config import SourceConfig
    from smoledge.data.readers import read_source
    stats = Counter()
    for doc in read_source(SourceConfig(name="web", kind="jsonl", path="dump/*.jsonl.gz"), seed=0, stats=stats):
        print(doc.id, doc.text[:60])
    print(stats)   # e.g. {"skipped:bad_json": 1, "undecodable_lines": 2}

Readers never crash on a bad record: a line that is not JSON, or lacks the
text field, is skipped and counted in `stats` under "skipped:<reason>";
bytes that are not UTF-8 are replaced (U+FFFD) and counted. What cannot be
worked around (a missing path, a missing column, no `datasets` library)
raises SmoledgeError naming the fix.
"""

from __future__ import annotations

import glob
import gzip
import itertools
import json
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from smoledge.data.config import SourceConfig
from smoledge.errors import SmoledgeError

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".ndjson.gz")
PARQUET_SUFFIXES = (".parquet",)
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
    else:  # SourceConfig validation makes this unreachable
        raise SmoledgeError(f"source '{source.name}': unknown kind '{source.kind}'")
    # islice pulls exactly max_docs, so a huge file is not read to its end.
    yield from itertools.islice(docs, source.max_docs)


def resolve_paths(source: SourceConfig) -> list[Path]:
    """The files a jsonl/parquet source names (a file, a directory or a glob), sorted."""
    suffixes = JSONL_SUFFIXES if source.kind == "jsonl" else PARQUET_SUFFIXES
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
