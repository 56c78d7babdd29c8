"""Every record read is accounted for: kept in curated.parquet or excluded with its reason, each row
traceable to its file and offset; Common Crawl's WET text read with its URLs, WAT refused; trusted
sources through the `none` filter policy."""

from __future__ import annotations

import gzip
import io
import json
from collections import Counter
from pathlib import Path

import pytest

from smoledge.data.config import SourceConfig
from smoledge.data.readers import read_records
from smoledge.errors import SmoledgeError
from smoledge.recipe import Recipe
from smoledge.runs import build

SEED = 7


def curate(root: Path, name: str, sources: list[dict], **curate_cfg) -> tuple[dict, list[dict], list[dict]]:
    """Run the curate stage; (its metrics, curated rows, excluded rows)."""
    import pyarrow.parquet as pq

    recipe = Recipe.from_dict({"name": name, "seed": SEED, "data": {"sources": sources},
                               "curate": {"workers": 1, **curate_cfg}})
    build(recipe, runs_root=root, until="curate", out=lambda s: None)
    stage = root / name / "curate"
    metrics = json.loads((stage / "stage.json").read_text())["metrics"]
    kept = pq.read_table(stage / "curated.parquet").to_pylist()
    excluded = [json.loads(line) for line in (stage / "excluded.jsonl").read_text(encoding="utf-8").splitlines()]
    return metrics, kept, excluded


def warcio_document_records(path: Path) -> int | None:
    """How many response/resource/revisit records warcio reads in the file; None when it cannot read it all."""
    from warcio.archiveiterator import ArchiveIterator

    n = 0
    try:
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f, arc2warc=True):
                n += rec.rec_type in ("response", "resource", "revisit")
    except Exception:
        return None
    return n


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory, shared_data):
    """One curate run over every shared WARC/ARC, HTML page and PDF."""
    warc = shared_data / "warc"
    sources = [
        {"name": "warc", "kind": "warc", "path": str(warc)},
        # Not matched by a directory's suffixes: named on its own.
        {"name": "warc-bad", "kind": "warc", "path": str(warc / "warcio" / "example-bad.warc.gz.bad")},
        {"name": "html", "kind": "html", "path": str(shared_data / "html")},
        {"name": "pdf", "kind": "pdf", "path": str(shared_data / "pdf")},
    ]
    return sources, curate(tmp_path_factory.mktemp("runs"), "accounting", sources)


def test_read_equals_kept_plus_excluded_for_every_shared_file(shared_run, shared_data):
    sources, (m, kept, excluded) = shared_run
    assert m["read"] == len(kept) + len(excluded) == m["kept"] + m["dropped_total"]
    rows = Counter((r["source"], r["file"]) for r in kept + excluded)
    ids = Counter((r["source"], r["id"]) for r in kept + excluded)
    assert max(ids.values()) == 1  # a document id is unique across files
    checked = Counter()
    for src in sources:
        cfg = SourceConfig(**src)
        records = Counter(d.file for d in read_records(cfg, seed=SEED))
        assert sum(records.values()) == m["read_per_source"][cfg.name]["docs"]
        for file, n in records.items():
            # Each file's records, read on their own, are each a row of exactly one of the outputs.
            assert rows[(cfg.name, file)] == n, (cfg.name, file)
            checked[cfg.kind] += 1
        if cfg.kind == "warc":
            for path in sorted(Path(cfg.path).rglob("*") if Path(cfg.path).is_dir() else [Path(cfg.path)]):
                file = path.relative_to(cfg.path).as_posix() if Path(cfg.path).is_dir() else path.name
                if file in records:
                    # An independent count, where warcio reads the whole file: one row per document record,
                    # or one row saying why a file held none.
                    expected = warcio_document_records(path)
                    if expected is not None:
                        assert records[file] == max(expected, 1), file
    html_files = len(list((shared_data / "html").rglob("*.html")))
    pdf_files = len(list((shared_data / "pdf").rglob("*.pdf")))
    assert checked["html"] == html_files and checked["pdf"] == pdf_files and checked["warc"] >= 19


def test_every_row_names_its_file_offset_and_policy(shared_run):
    _, (m, kept, excluded) = shared_run
    for r in kept + excluded:
        assert r["file"] and r["source"] in ("warc", "warc-bad", "html", "pdf")
    for r in excluded:
        assert r["policy"] == "fineweb" and r["reason"].split(":", 1)[0] in (
            "read", "boilerplate", "language", "gopher_repetition", "gopher_quality", "c4_quality",
            "fineweb_quality", "pii", "dedup")
    reasons = Counter(r["reason"] for r in excluded)
    # The drops that used to be only counters are rows now.
    assert reasons["read:html_no_text"] >= 1 and reasons["read:warc_http_status"] >= 1
    assert reasons["read:warc_no_documents"] >= 1 and reasons["read:pdf:encrypted"] == 1
    assert m["filters"]["read"]["dropped"] == sum(n for r, n in reasons.items() if r.startswith("read:"))
    # A WARC row's offset is where its record starts.
    cc = [r for r in kept + excluded if r["file"] == "resiliparse/warcfile.warc.gz"]
    assert len({r["offset"] for r in cc}) == len(cc) == 16
    assert all(r["id"] == f"resiliparse/warcfile.warc.gz@{r['offset']}" and r["url"].startswith("http")
               for r in cc)


def test_warc_offsets_point_at_the_records(shared_data):
    path = shared_data / "warc" / "resiliparse" / "warcfile.warc.gz"
    stream = gzip.decompress(path.read_bytes())
    docs = list(read_records(SourceConfig(name="cc", kind="warc", path=str(path)), seed=SEED))
    for d in docs:
        head = stream[d.offset:d.offset + 2000].split(b"\r\n\r\n", 1)[0].decode("latin-1")
        assert head.startswith("WARC/") and f"WARC-Target-URI: {d.url}" in head


def _warc(records: list[tuple[str, str, bytes, dict]]) -> bytes:
    """(type, url, payload, extra headers) -> a .warc.gz, one gzip member per record."""
    from warcio.warcwriter import WARCWriter

    out = io.BytesIO()
    writer = WARCWriter(out, gzip=True)
    for rec_type, url, payload, headers in records:
        content_type = headers.pop("Content-Type", "text/plain")
        rec = writer.create_warc_record(url, rec_type, payload=io.BytesIO(payload), warc_content_type=content_type,
                                        warc_headers_dict=headers)
        writer.write_record(rec)
    return out.getvalue()


@pytest.fixture(scope="module")
def wet_file(tmp_path_factory, shared_data) -> tuple[Path, dict[str, str]]:
    """A WET file as Common Crawl writes them (warcinfo, then one `conversion` record of text/plain per
    page, with WARC-Refers-To and WARC-Identified-Content-Language), from real pages: the shared Common
    Crawl WARC excerpt's responses and the saved pages with a known URL. The text is each page's visible
    text, boilerplate included, as in a WET."""
    import lxml.html
    from warcio.archiveiterator import ArchiveIterator

    from smoledge.data.extract import decode_html
    from smoledge.data.langid import identify

    pages: list[tuple[str, bytes]] = []
    with open(shared_data / "warc" / "resiliparse" / "warcfile.warc.gz", "rb") as f:
        for rec in ArchiveIterator(f):
            if rec.rec_type == "response":
                pages.append((rec.rec_headers.get_header("WARC-Target-URI"), rec.content_stream().read()))
    root = shared_data / "html" / "trafilatura"
    for entry in json.loads((root / "index.json").read_text()):
        if entry.get("url") and entry["lang"] in ("en", "fr", "es", "de", "it", "pt"):
            pages.append((entry["url"].strip(), (root / entry["file"]).read_bytes()))
    iso3 = {"en": "eng", "fr": "fra", "es": "spa", "de": "deu", "it": "ita", "pt": "por"}
    records = [("warcinfo", "", b"isPartOf: CC-MAIN-2024-xx\r\npublisher: Common Crawl\r\n",
                {"Content-Type": "application/warc-fields"})]
    urls: dict[str, str] = {}
    for k, (url, raw) in enumerate(pages):
        html, _ = decode_html(raw)
        try:
            tree = lxml.html.fromstring(html)
        except Exception:
            continue
        for el in tree.xpath("//script|//style|//noscript"):
            el.drop_tree()
        text = "\n".join(line.strip() for line in tree.text_content().splitlines() if line.strip())
        if url in urls or not text:
            continue
        headers = {"Content-Type": "text/plain", "WARC-Refers-To": f"<urn:uuid:{k:08d}-0000-0000-0000-000000000000>",
                   "WARC-Identified-Content-Language": iso3.get(identify(text)[0], "zho")}
        records.append(("conversion", url, text.encode("utf-8"), headers))
        urls[url] = text
    path = tmp_path_factory.mktemp("wet") / "CC-MAIN-20240000000000-00000.warc.wet.gz"
    path.write_bytes(_warc(records))
    return path, urls


def test_a_wet_file_is_curated_with_its_urls(tmp_path, wet_file):
    path, urls = wet_file
    m, kept, excluded = curate(tmp_path, "wet", [{"name": "cc-wet", "kind": "warc", "path": str(path.parent)}])
    assert m["read"] == len(urls) == len(kept) + len(excluded) and len(kept) >= 5
    for r in kept:
        meta = json.loads(r["metadata"])
        assert r["url"] in urls and meta["format"] == "wet" and meta["cc_languages"]
        assert r["file"] == path.name and r["id"] == f"{path.name}@{r['offset']}"
    assert {r["url"] for r in kept + excluded} == set(urls)


def test_wat_files_are_refused_with_what_to_use_instead(tmp_path):
    wat = _warc([("metadata", "http://example.org/", json.dumps({"Envelope": {}}).encode(),
                  {"Content-Type": "application/json"})])
    named = tmp_path / "named" / "CC-MAIN-x.warc.wat.gz"
    renamed = tmp_path / "renamed" / "segment.warc.gz"
    for path in (named, renamed):
        path.parent.mkdir()
        path.write_bytes(wat)
        with pytest.raises(SmoledgeError, match=r"WAT file.*no page text.*WET file \(\.warc\.wet\.gz"):
            list(read_records(SourceConfig(name="cc", kind="warc", path=str(path.parent)), seed=SEED))


def test_revisits_and_files_without_documents_say_why(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "revisits.warc.gz").write_bytes(_warc([
        ("revisit", f"http://example.org/{i}", b"", {"WARC-Profile": "http://netpreserve.org/warc/1.0/revisit/"
                                                     "identical-payload-digest"}) for i in range(2)]))
    (tmp_path / "in" / "requests-only.warc.gz").write_bytes(_warc([
        ("warcinfo", "", b"software: test\r\n", {"Content-Type": "application/warc-fields"}),
        ("request", "http://example.org/", b"GET / HTTP/1.1\r\n\r\n", {"Content-Type": "application/http"})]))
    source = SourceConfig(name="cc", kind="warc", path=str(tmp_path / "in"))
    rows = [(d.file, d.url, d.dropped) for d in read_records(source, seed=SEED)]
    assert rows == [("requests-only.warc.gz", "", "warc_no_documents"),
                    ("revisits.warc.gz", "http://example.org/0", "warc_revisit"),
                    ("revisits.warc.gz", "http://example.org/1", "warc_revisit")]


def prose_jsonl(shared_data: Path, out: Path) -> int:
    """Real prose as documents: news and encyclopedia sentences in tens, book paragraphs of 60+ words."""
    docs = []
    for path in sorted((shared_data / "prose").glob("*.txt")):
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        if path.name.startswith("gutenberg"):
            chunks, cur = [], []
            for line in lines:
                cur.append(line)
                if not line and len(" ".join(cur).split()) >= 60:
                    chunks.append("\n".join(cur).strip())
                    cur = []
        else:
            lines = [line for line in lines if line]
            chunks = ["\n".join(lines[i:i + 10]) for i in range(0, len(lines), 10)]
        docs += [{"id": f"{path.stem}:{k}", "text": c} for k, c in enumerate(chunks) if c]
    with open(out, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    return len(docs)


@pytest.mark.slow  # two curate runs over ~3,000 real prose documents
def test_a_trusted_source_keeps_the_prose_the_web_filters_drop(tmp_path, shared_data):
    n = prose_jsonl(shared_data, tmp_path / "prose.jsonl")
    src = {"name": "prose", "kind": "jsonl", "path": str(tmp_path / "prose.jsonl")}
    web, web_kept, web_excluded = curate(tmp_path, "web", [src])
    trusted, kept, excluded = curate(tmp_path, "trusted", [{**src, "filters": "none"}])
    assert web["read"] == trusted["read"] == n
    quality = ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality")
    web_quality_drops = [r for r in web_excluded if r["reason"].split(":")[0] in quality]
    assert len(web_quality_drops) > 0.1 * n and {r["policy"] for r in web_excluded} == {"fineweb"}
    # Trusted: nothing dropped for quality, only for language, and duplicates.
    assert {r["reason"].split(":")[0] for r in excluded} <= {"language", "dedup"}
    assert {r["policy"] for r in excluded} <= {"none"} and trusted["dropped_per_policy"].keys() <= {"none"}
    kept_ids = {r["id"] for r in kept}
    assert {r["id"] for r in web_kept} <= kept_ids
    assert sum(r["id"] in kept_ids for r in web_quality_drops) >= 0.9 * len(web_quality_drops)
    assert all(json.loads(r["filter_stats"])["passed"] == ["language", "pii"] for r in kept)


def test_policies_and_overrides_pick_the_steps(tmp_path, shared_data):
    n = prose_jsonl(shared_data, tmp_path / "prose.jsonl")
    src = {"name": "prose", "kind": "jsonl", "path": str(tmp_path / "prose.jsonl"), "max_docs": 300}
    m, kept, excluded = curate(tmp_path, "custom", [{**src, "filters": ["gopher_quality"],
                                                     "filter_settings": {"min_words": 200}}])
    assert n >= 300 and m["read"] == 300
    assert {r["policy"] for r in excluded} == {"custom"}
    assert {r["reason"].split(":")[0] for r in excluded} <= {"language", "gopher_quality", "dedup"}
    # min_words 200 for this source: its short documents go, for Gopher's word count.
    assert any(r["reason"] == "gopher_quality:gopher_short_doc" for r in excluded)
    assert all(json.loads(r["filter_stats"])["passed"] == ["language", "gopher_quality", "pii"] for r in kept)


def test_record_files_account_for_bad_lines_and_empty_files(tmp_path):
    d = tmp_path / "dump"
    d.mkdir()
    (d / "a.jsonl").write_text('{"text": "fine"}\nnot json\n\n{"id": 7}\n{"text": "' + "x" * 300 + '"}\n')
    (d / "b.jsonl").write_text("\n\n")
    source = SourceConfig(name="dump", kind="jsonl", path=str(d), max_doc_bytes=200)
    rows = [(d.file, d.offset, d.id, d.dropped) for d in read_records(source, seed=SEED)]
    assert rows == [("a.jsonl", 1, "a.jsonl:1", ""), ("a.jsonl", 2, "a.jsonl:2", "bad_json"),
                    ("a.jsonl", 4, "7", "missing_text"), ("a.jsonl", 5, "a.jsonl:5", "too_large"),
                    ("b.jsonl", 0, "b.jsonl", "empty_file")]


def test_drops_are_spilled_and_merged_in_read_order(tmp_path):
    from smoledge.data.exclusions import Dropped, Exclusions

    log = Exclusions(tmp_path / "excluded.partial.jsonl")
    log.add([Dropped(0, "a", "s", "read:empty", "", policy="fineweb"),
             Dropped(3, "d", "s", "language:unwanted_language", "Hallo", policy="none")])
    log.add([Dropped(5, "f", "s", "gopher_quality:gopher_short_doc", "x", policy="fineweb")])
    later = [Dropped(4, "e", "s", "dedup:exact", "y", policy="fineweb"), Dropped(1, "b", "s", "dedup:near", "z")]
    log.count(later)
    log.write(tmp_path / "excluded.jsonl", later)
    rows = [json.loads(line) for line in (tmp_path / "excluded.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "d", "e", "f"]
    assert log.total == 5 and log.by_policy["none"] == Counter({"language:unwanted_language": 1})
    assert not (tmp_path / "excluded.partial.jsonl").exists()
