"""Readers: sample, JSONL (bad lines, bad bytes, gzip, dirs, globs), Parquet, plain text, missing paths; hf is in
test_data_hf.py."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from smoledge.config import ConfigError
from smoledge.data.config import SourceConfig
from smoledge.data.readers import Doc, read_source, resolve_paths
from smoledge.errors import SmoledgeError


def _jsonl(path: Path, records: list, raw_lines: list[bytes] = ()) -> Path:
    with open(path, "wb") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False).encode("utf-8") + b"\n")
        for raw in raw_lines:
            f.write(raw + b"\n")
    return path


def test_sample_source_drops_ground_truth_and_respects_max_docs():
    src = SourceConfig(name="web", kind="sample", sample_docs=120)
    docs = list(read_source(src, seed=3))
    assert len(docs) == 120 and all(isinstance(d, Doc) for d in docs)
    assert docs[0].source == "web" and docs[0].url.startswith("https://")
    assert not hasattr(docs[0], "meta")
    assert all(d.lang == "" for d in docs)  # nothing leaks from the generator's meta
    capped = list(read_source(SourceConfig(name="web", kind="sample", sample_docs=120, max_docs=10), seed=3))
    assert [d.id for d in capped] == [d.id for d in docs[:10]]


def test_jsonl_skips_bad_lines_and_replaces_bad_bytes(tmp_path, prose_texts):
    path = _jsonl(
        tmp_path / "dump.jsonl",
        [{"id": "a", "text": prose_texts[0], "url": "https://x.org/a"}, {"text": prose_texts[1]}],
        raw_lines=[
            b'{"id": "broken", "text": "unterminated',        # not JSON
            b'{"id": "notext", "body": "wrong field"}',         # no text field
            b'{"id": "num", "text": 42}',                        # text is not a string
            b'["a", "list"]',                                    # not an object
            b"",                                                 # blank line: ignored silently
            b'{"id": "latin1", "text": "caf\xe9 cr\xe8me, une tarte aux pommes"}',  # Latin-1 bytes
            b'{"id": "empty", "text": "   "}',
        ],
    )
    stats: Counter = Counter()
    docs = list(read_source(SourceConfig(name="raw", kind="jsonl", path=str(path)), seed=0, stats=stats))
    assert [d.id for d in docs] == ["a", "dump.jsonl:2", "latin1"]
    assert docs[0].url == "https://x.org/a" and docs[1].url == ""
    assert docs[2].text == "caf\ufffd cr\ufffdme, une tarte aux pommes"
    assert stats == Counter({
        "skipped:bad_json": 1, "skipped:missing_text": 1, "skipped:text_not_a_string": 1,
        "skipped:not_an_object": 1, "skipped:empty_text": 1, "undecodable_lines": 1,
    })


def test_jsonl_text_field_gzip_directory_and_glob(tmp_path):
    d = tmp_path / "dump"
    d.mkdir()
    _jsonl(d / "b.jsonl", [{"id": "b1", "content": "beta"}])
    with gzip.open(d / "a.jsonl.gz", "wb") as f:
        f.write(json.dumps({"id": "a1", "content": "alpha"}).encode() + b"\n")
    (d / "notes.txt").write_text("not a jsonl file")
    by_dir = list(read_source(SourceConfig(name="s", kind="jsonl", path=str(d), text_field="content"), seed=0))
    assert [doc.text for doc in by_dir] == ["alpha", "beta"]  # sorted files, gzip detected
    by_glob = list(read_source(SourceConfig(name="s", kind="jsonl", path=str(d / "*.jsonl"), text_field="content"),
                               seed=0))
    assert [doc.id for doc in by_glob] == ["b1"]


def test_truncated_gzip_keeps_what_was_read(tmp_path):
    payload = b"".join(json.dumps({"id": str(i), "text": f"line {i} " * 50}).encode() + b"\n" for i in range(200))
    blob = gzip.compress(payload)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(blob[: len(blob) // 2])
    stats: Counter = Counter()
    docs = list(read_source(SourceConfig(name="s", kind="jsonl", path=str(path)), seed=0, stats=stats))
    assert 0 < len(docs) < 200
    assert stats["corrupt_files"] == 1


def test_parquet_streams_row_groups(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [f"document number {i} about the weather" for i in range(25)] + [None, ""]
    table = pa.table({"id": [f"p{i}" for i in range(27)], "body": texts, "extra": list(range(27))})
    path = tmp_path / "docs.parquet"
    pq.write_table(table, path, row_group_size=10)
    assert pq.ParquetFile(path).num_row_groups == 3
    stats: Counter = Counter()
    docs = list(read_source(SourceConfig(name="pq", kind="parquet", path=str(path), text_field="body"), 0, stats))
    assert [d.id for d in docs] == [f"p{i}" for i in range(25)]
    assert stats == Counter({"skipped:missing_text": 1, "skipped:empty_text": 1})
    capped = list(read_source(SourceConfig(name="pq", kind="parquet", path=str(path), text_field="body",
                                           max_docs=12), 0))
    assert len(capped) == 12

    with pytest.raises(SmoledgeError, match=r"no column 'text'.*body.*text_field"):
        list(read_source(SourceConfig(name="pq", kind="parquet", path=str(path)), 0))


def test_missing_paths_name_the_path_and_the_fix(tmp_path):
    missing = tmp_path / "nowhere.jsonl"
    with pytest.raises(SmoledgeError, match=r"nowhere\.jsonl does not exist.*path.*smoledge sample"):
        list(read_source(SourceConfig(name="web", kind="jsonl", path=str(missing)), seed=0))
    with pytest.raises(SmoledgeError, match=r"no file matches"):
        resolve_paths(SourceConfig(name="web", kind="parquet", path=str(tmp_path / "*.parquet")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SmoledgeError, match=r"holds no \.parquet files"):
        resolve_paths(SourceConfig(name="web", kind="parquet", path=str(tmp_path / "empty")))


def test_text_files_are_one_document_each(tmp_path, prose_texts):
    corpus = tmp_path / "books"
    (corpus / "fr").mkdir(parents=True)
    (corpus / "a.txt").write_text("\n".join(prose_texts[:5]) + "\n", encoding="utf-8")
    damaged = "Déjà vu, un café crème à la gare. " * 10  # UTF-8 with two stray bytes at its end
    (corpus / "fr" / "b.txt").write_bytes(damaged.encode() + b" \xff\xfe")
    (corpus / "fr" / "c.txt").write_bytes(("Les élèves étudient à l'école. " * 20).encode("latin-1"))
    (corpus / "empty.txt").write_text("  \n", encoding="utf-8")
    (corpus / "notes.md").write_text(prose_texts[6], encoding="utf-8")  # not a .txt: not read
    stats = Counter()
    docs = list(read_source(SourceConfig(name="books", kind="text", path=str(corpus)), seed=0, stats=stats))
    assert [d.id for d in docs] == ["a.txt", "fr/b.txt", "fr/c.txt"]
    assert docs[2].text.startswith("Les élèves étudient à l'école.")  # Latin-1 decoded, not replaced
    assert docs[0].text == "\n".join(prose_texts[:5]) and docs[0].metadata == {"format": "text"}
    assert docs[1].text.startswith(damaged.strip()) and docs[1].text.endswith("\ufffd\ufffd")
    assert stats == Counter({"skipped:empty": 1, "text:bytes_replaced": 1})
    with pytest.raises(ConfigError, match="a 'text' source needs a path"):
        SourceConfig(name="books", kind="text")
