"""WARC/ARC reader: real Common Crawl and warcio files (charsets, malformed files), broken
records and corrupt gzip members that must not cost later records, size caps, non-documents."""

from __future__ import annotations

import gzip
import io
from collections import Counter

import pytest

from smoledge.data.config import SourceConfig
from smoledge.data.readers import read_records, read_source, resolve_paths

# Documents each real file yields, and the counters it must leave (malformed on purpose:
# single-member gzip, members that split records, a file cut inside a gzip member...).
REAL_WARCS = {
    "resiliparse/warcfile.warc.gz": (15, {"skipped:html_no_text": 1}),
    "resiliparse/clueweb-quirk.warc.gz": (29, {}),
    "resiliparse/clipped.warc.gz": (1, {"warc:truncated": 1, "warc:truncated_kept": 1, "warc:truncated_file": 1}),
    "resiliparse/block-sized-records.warc.gz": (0, {}),
    "warcio/example.warc.gz": (1, {}),
    "warcio/example.warc": (1, {}),
    "warcio/example-bad-non-chunked.warc.gz": (1, {}),
    "warcio/example-bad.warc.gz.bad": (1, {"skipped:warc_http_status": 1}),
    "warcio/example-wrong-chunks.warc.gz": (1, {}),
    "warcio/example-trunc.warc": (1, {}),
    "warcio/example-iana.org-chunked.warc": (1, {}),
    "warcio/example-resource.warc.gz": (1, {}),
    "warcio/example-wget-bad-target-uri.warc.gz": (1, {"skipped:warc_not_html_or_pdf": 2}),
    "warcio/example-space-in-target-uri.warc.gz": (0, {"skipped:warc_not_html_or_pdf": 1}),
    "warcio/example-digest.warc": (0, {}),
    "warcio/post-test.warc.gz": (0, {"skipped:warc_not_html_or_pdf": 3}),
    "warcio/example.arc": (1, {}),
    "warcio/example.arc.gz": (1, {}),
    "warcio/example-space-in-url.arc": (1, {}),
    "warcio/bad.arc": (0, {"skipped:empty": 3}),
}


def _read(path, stats=None, **kw):
    stats = stats if stats is not None else Counter()
    return list(read_source(SourceConfig(name="cc", kind="warc", path=str(path), **kw), seed=0, stats=stats))


def html_page(title: str, paragraphs: list[str]) -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
            f"<nav><a href='/'>Home</a> | <a href='/about'>About</a></nav><article><h1>{title}</h1>{body}</article>"
            f"<footer>Copyright 2024 Example Ltd. All rights reserved.</footer></body></html>").encode("utf-8")


def warc_record(url: str, body: bytes, rec_id: str, content_type: str = "text/html; charset=utf-8",
            status: str = "200 OK", rec_type: str = "response", extra: dict | None = None, gz: bool = False) -> bytes:
    """One WARC record (one gzip member when gz), written by warcio."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    out = io.BytesIO()
    writer = WARCWriter(out, gzip=gz)
    http = None
    if rec_type in ("response", "request"):
        http = StatusAndHeaders(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))],
                                protocol="HTTP/1.1")
    headers = {"WARC-Record-ID": f"<urn:uuid:{rec_id}>", **(extra or {})}
    rec = writer.create_warc_record(url, rec_type, payload=io.BytesIO(body), http_headers=http,
                                    warc_headers_dict=headers)
    writer.write_record(rec)
    return out.getvalue()


@pytest.fixture(scope="module")
def pages(prose_texts):
    """Five distinct article pages of real prose."""
    return [html_page(f"Article {i}", prose_texts[i * 6:(i + 1) * 6]) for i in range(5)]


@pytest.mark.parametrize("name", sorted(REAL_WARCS))
def test_real_warc_files_read_without_losing_documents(shared_data, name):
    n_docs, counters = REAL_WARCS[name]
    stats: Counter = Counter()
    docs = _read(shared_data / "warc" / name, stats)
    assert len(docs) == n_docs, (len(docs), dict(stats))
    for key, value in counters.items():
        assert stats[key] == value, (key, dict(stats))
    for doc in docs:
        assert doc.text.strip() and doc.url.startswith("http") and doc.metadata["format"] == "html"
    if name.endswith(".arc") or name.endswith(".arc.gz"):  # no record ids in ARC: stable positional ids
        assert [d.id for d in docs] == [d.id for d in _read(shared_data / "warc" / name)]


def test_common_crawl_charsets_urls_and_ids(shared_data):
    docs = _read(shared_data / "warc" / "resiliparse" / "warcfile.warc.gz")
    by_url = {d.url: d for d in docs}
    ru = by_url["http://01spb.ru/company/"]  # windows-1251
    assert ru.metadata["encoding"] == "cp1251" and "О компании" in ru.text
    cn = by_url["http://0760.jxtdw.com/area/sanxiang/"]  # gb2312, read as its superset gb18030
    assert cn.metadata["encoding"] == "gb18030" and "职位名称" in cn.text
    nl = by_url["http://0900-hovenier.nl/gelderland/oosterbeek/"]  # utf-8
    assert "Hovenier in Oosterbeek" in nl.text
    assert all("\ufffd" not in d.text for d in docs)
    # Ids name the file and the record's offset: unique across files, where record ids repeat in copies.
    assert all(d.id == f"warcfile.warc.gz@{d.offset}" and d.file == "warcfile.warc.gz" for d in docs)
    assert len({d.id for d in docs}) == len(docs)
    assert all(d.metadata["warc_record_id"].startswith("urn:uuid:") for d in docs)


def test_broken_record_does_not_stop_later_records(tmp_path, pages):
    good1 = warc_record("https://a.example/1", pages[0], "00000000-0000-0000-0000-000000000001")
    good2 = warc_record("https://a.example/2", pages[1], "00000000-0000-0000-0000-000000000002")
    good3 = warc_record("https://a.example/3", pages[2], "00000000-0000-0000-0000-000000000003")
    # A header whose Content-Length is not a number, and stray bytes before the next record.
    broken = good2.replace(b"Content-Length: ", b"Content-Length: x", 1)
    assert broken != good2
    path = tmp_path / "mixed.warc"
    path.write_bytes(good1 + broken + b"garbage between records\r\n" + good3)
    stats: Counter = Counter()
    docs = _read(path, stats)
    assert [d.url for d in docs] == ["https://a.example/1", "https://a.example/3"]
    assert stats["skipped:warc_broken_record"] == 1
    (tmp_path / "notes.warc").write_text("these are notes, not an archive\n")
    stats = Counter()
    assert _read(tmp_path / "notes.warc", stats) == [] and stats["corrupt_files"] == 1


def test_corrupt_gzip_member_is_skipped_to_the_next_member(tmp_path, pages):
    members = [warc_record(f"https://b.example/{i}", pages[i], f"00000000-0000-0000-0000-00000000001{i}", gz=True)
               for i in range(4)]
    bad = bytearray(members[1])
    mid = len(bad) // 2
    bad[mid:mid + 40] = b"\x00" * 40  # damage the deflate data of record 1
    path = tmp_path / "damaged.warc.gz"
    path.write_bytes(members[0] + bytes(bad) + members[2] + members[3])
    stats: Counter = Counter()
    docs = _read(path, stats)
    assert [d.url for d in docs] == ["https://b.example/0", "https://b.example/2", "https://b.example/3"]
    assert stats["skipped:warc_corrupt_gzip_member"] == 1
    # The same records as one gzip stream (not one member per record) read the same.
    whole = tmp_path / "single-member.warc.gz"
    whole.write_bytes(gzip.compress(b"".join(gzip.decompress(m) for m in members)))
    assert [d.url for d in _read(whole)] == [f"https://b.example/{i}" for i in range(4)]


def test_non_documents_error_pages_and_oversize_records_are_skipped(tmp_path, pages):
    recs = [
        warc_record("https://c.example/req", b"", "00000000-0000-0000-0000-000000000020", rec_type="request"),
        warc_record("https://c.example/missing", pages[0], "00000000-0000-0000-0000-000000000021", status="404 Not Found"),
        warc_record("https://c.example/logo.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100,
                "00000000-0000-0000-0000-000000000022", content_type="image/png"),
        warc_record("https://c.example/empty", b"", "00000000-0000-0000-0000-000000000023"),
        warc_record("https://c.example/huge", pages[1] * 40, "00000000-0000-0000-0000-000000000024"),
        # No Content-Type at all: the payload's first bytes say it is HTML.
        warc_record("https://c.example/sniffed", pages[2], "00000000-0000-0000-0000-000000000025", content_type=""),
        warc_record("https://c.example/ok", pages[3], "00000000-0000-0000-0000-000000000026"),
    ]
    path = tmp_path / "misc.warc.gz"
    path.write_bytes(gzip.compress(b"".join(recs)))
    stats: Counter = Counter()
    docs = _read(path, stats, max_doc_bytes=20 * len(pages[1]))
    assert [d.url for d in docs] == ["https://c.example/sniffed", "https://c.example/ok"]
    assert stats["skipped:warc_http_status"] == 1 and stats["skipped:warc_not_html_or_pdf"] == 1
    assert stats["skipped:empty"] == 1 and stats["skipped:too_large"] == 1
    assert docs[1].metadata["warc_record_id"] == "urn:uuid:00000000-0000-0000-0000-000000000026"


def test_pdf_responses_become_pdf_documents(tmp_path, shared_data):
    pdf = (shared_data / "pdf" / "py-pdf-sample-files" / "021-pdfa__crazyones-pdfa.pdf").read_bytes()
    path = tmp_path / "pdfs.warc"
    path.write_bytes(warc_record("https://d.example/crazy.pdf", pdf, "00000000-0000-0000-0000-000000000030",
                             content_type="application/pdf"))
    (doc,) = _read(path)
    assert doc.metadata["format"] == "pdf" and doc.metadata["pages"] == 1
    assert "Here" in doc.text and "crazy ones" in doc.text


def test_resolve_paths_picks_archive_suffixes(shared_data):
    files = resolve_paths(SourceConfig(name="w", kind="warc", path=str(shared_data / "warc")))
    names = {p.name for p in files}
    assert "example.warc.gz" in names and "example.warc" in names and "example.arc" in names
    assert "example.arc.gz" in names and "example-bad.warc.gz.bad" not in names
    assert all(p.name.endswith((".warc", ".warc.gz", ".arc", ".arc.gz")) for p in files)


def test_whole_directory_in_one_source(shared_data):
    stats: Counter = Counter()
    docs = _read(shared_data / "warc", stats)
    expected = sum(n for name, (n, _) in REAL_WARCS.items() if not name.endswith(".bad"))
    assert len(docs) == expected
    assert stats["corrupt_files"] == 0
    # max_docs stops after that many records read (kept or not), without reading the rest.
    src = SourceConfig(name="cc", kind="warc", path=str(shared_data / "warc"), max_docs=3)
    assert len(list(read_records(src, seed=0))) == 3
