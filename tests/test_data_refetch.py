"""Refetch of truncated or unparsable WARC records, against a real HTTP server on 127.0.0.1:
full content comes back, 5xx is retried within bounds, oversize and slow answers are skipped,
private addresses are refused unless allowed, redirects cannot leave http(s)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from smoledge.data.config import SourceConfig
from smoledge.data.readers import read_source
from smoledge.data.refetch import RefetchError, refetch
from test_data_warc import html_page, warc_record  # a sibling test module (tests/ is on sys.path)

PDF = "pdf/py-pdf-sample-files/004-pdflatex-4-pages__pdflatex-4-pages.pdf"


class _Server:
    """Routes: path -> list of (status, body, content_type, delay_s, send_length); the last one repeats."""

    def __init__(self) -> None:
        self.routes: dict[str, list[tuple]] = {}
        self.hits: Counter = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                server.hits[self.path] += 1
                plan = server.routes.get(self.path) or [(404, b"not found", "text/plain", 0, True)]
                status, body, ctype, delay, send_length = plan[min(server.hits[self.path], len(plan)) - 1]
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                if status in (301, 302):
                    self.send_header("Location", body.decode())
                    body = b""
                self.send_header("Content-Type", ctype)
                if send_length:
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.close_connection = True  # body delimited by closing the connection
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading at its size cap

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def route(self, path: str, *responses: tuple) -> str:
        self.routes[path] = [r if len(r) == 5 else (*r, 0, True) for r in responses]
        return self.base + path


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # loopback only, never through a proxy
    srv = _Server()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _warc(tmp_path, *records: bytes):
    path = tmp_path / "crawl.warc"
    path.write_bytes(b"".join(records))
    return path


def _read(path, stats, **kw):
    kw.setdefault("refetch", True)
    kw.setdefault("refetch_allow_private", True)
    kw.setdefault("refetch_timeout_s", 2.0)
    src = SourceConfig(name="cc", kind="warc", path=str(path), **kw)
    return list(read_source(src, seed=0, stats=stats))


def test_truncated_pdf_and_html_records_are_refetched(tmp_path, server, shared_data, prose_texts):
    pdf = (shared_data / PDF).read_bytes()
    page = html_page("Full page", prose_texts[:8])
    pdf_url = server.route("/paper.pdf", (200, pdf, "application/pdf"))
    html_url = server.route("/page.html", (200, page, "text/html; charset=utf-8"))
    path = _warc(
        tmp_path,
        warc_record(pdf_url, pdf[: len(pdf) // 2], "00000000-0000-0000-0000-000000000101",
                content_type="application/pdf", extra={"WARC-Truncated": "length"}),
        warc_record(html_url, page[: len(page) // 3], "00000000-0000-0000-0000-000000000102",
                extra={"WARC-Truncated": "length"}),
    )
    stats: Counter = Counter()
    docs = _read(path, stats)
    assert [d.url for d in docs] == [pdf_url, html_url]
    assert docs[0].metadata["refetched"] and docs[0].metadata["pages"] == 4
    assert "Hello, here is some text without a meaning" in docs[0].text
    assert prose_texts[7][:40] in docs[1].text  # the part the crawl cut off
    assert stats["refetch:ok"] == 2 and stats["warc:truncated"] == 2
    assert server.hits == Counter({"/paper.pdf": 1, "/page.html": 1})

    # Refetch off: the cut PDF is skipped, the cut page keeps what was captured.
    stats = Counter()
    docs = _read(path, stats, refetch=False)
    assert [d.url for d in docs] == [html_url] and "refetched" not in docs[0].metadata
    assert stats["skipped:pdf:truncated"] == 1 and stats["warc:truncated_kept"] == 1
    assert server.hits["/paper.pdf"] == 1


def test_unparsable_pdf_record_is_refetched(tmp_path, server, shared_data):
    pdf = (shared_data / PDF).read_bytes()
    url = server.route("/broken.pdf", (200, pdf, "application/pdf"))
    path = _warc(tmp_path, warc_record(url, b"%PDF-1.5\n" + b"\x00garbage" * 50, "00000000-0000-0000-0000-000000000103",
                                   content_type="application/pdf"))
    stats: Counter = Counter()
    (doc,) = _read(path, stats)
    assert doc.metadata["refetched"] and doc.metadata["pages"] == 4
    stats = Counter()
    assert _read(path, stats, refetch=False) == [] and stats["skipped:pdf:corrupt"] == 1


def test_server_errors_are_retried_within_bounds(tmp_path, server, shared_data):
    pdf = (shared_data / PDF).read_bytes()
    url = server.route("/flaky.pdf", (500, b"oops", "text/plain"), (503, b"busy", "text/plain"),
                       (200, pdf, "application/pdf"))
    path = _warc(tmp_path, warc_record(url, pdf[:1000], "00000000-0000-0000-0000-000000000104",
                                   content_type="application/pdf", extra={"WARC-Truncated": "length"}))
    stats: Counter = Counter()
    (doc,) = _read(path, stats, refetch_retries=2)
    assert doc.metadata["refetched"] and server.hits["/flaky.pdf"] == 3

    server.hits.clear()
    stats = Counter()
    assert _read(path, stats, refetch_retries=1) == []
    assert server.hits["/flaky.pdf"] == 2  # one try + one retry, then it gives up
    assert stats["refetch:http_503"] == 1 and stats["skipped:pdf:truncated"] == 1

    # A 404 is final: no retry.
    gone = server.route("/gone.pdf", (404, b"gone", "text/plain"))
    path = _warc(tmp_path, warc_record(gone, pdf[:1000], "00000000-0000-0000-0000-000000000105",
                                   content_type="application/pdf", extra={"WARC-Truncated": "length"}))
    stats = Counter()
    assert _read(path, stats, refetch_retries=3) == [] and server.hits["/gone.pdf"] == 1
    assert stats["refetch:http_404"] == 1


def test_oversize_and_slow_answers_are_skipped(tmp_path, server, shared_data):
    pdf = (shared_data / PDF).read_bytes()
    declared = server.route("/big.pdf", (200, pdf, "application/pdf"))
    undeclared = server.route("/stream.pdf", (200, pdf, "application/pdf", 0, False))
    slow = server.route("/slow.pdf", (200, pdf, "application/pdf", 1.5, True))
    path = _warc(tmp_path, *[
        warc_record(url, pdf[:1000], f"00000000-0000-0000-0000-00000000011{i}", content_type="application/pdf",
                extra={"WARC-Truncated": "length"})
        for i, url in enumerate([declared, undeclared])
    ])
    stats: Counter = Counter()
    assert _read(path, stats, refetch_max_bytes=len(pdf) // 2) == []
    assert stats["refetch:too_large"] == 2 and stats["skipped:pdf:truncated"] == 2

    path = _warc(tmp_path, warc_record(slow, pdf[:1000], "00000000-0000-0000-0000-000000000120",
                                   content_type="application/pdf", extra={"WARC-Truncated": "length"}))
    stats = Counter()
    t = time.time()
    assert _read(path, stats, refetch_timeout_s=0.3, refetch_retries=1) == []
    assert stats["refetch:timeout"] == 1 and time.time() - t < 3.0
    assert server.hits["/slow.pdf"] == 2


def test_private_addresses_are_refused_unless_allowed(tmp_path, server, shared_data):
    pdf = (shared_data / PDF).read_bytes()
    url = server.route("/internal.pdf", (200, pdf, "application/pdf"))
    path = _warc(tmp_path, warc_record(url, pdf[:1000], "00000000-0000-0000-0000-000000000130",
                                   content_type="application/pdf", extra={"WARC-Truncated": "length"}))
    stats: Counter = Counter()
    assert _read(path, stats, refetch_allow_private=False) == []
    assert stats["refetch:blocked_address"] == 1 and server.hits["/internal.pdf"] == 0
    with pytest.raises(RefetchError) as err:
        refetch("http://169.254.169.254/latest/meta-data/", timeout_s=1, retries=0, max_bytes=100)
    assert err.value.reason == "blocked_address"


def test_redirects_are_followed_but_never_out_of_http(server, shared_data):
    pdf = (shared_data / PDF).read_bytes()
    target = server.route("/final.pdf", (200, pdf, "application/pdf"))
    hop = server.route("/hop", (302, target.encode(), "text/plain"))
    got = refetch(hop, timeout_s=2, retries=0, max_bytes=len(pdf), allow_private=True)
    assert got.body == pdf and got.url == target and got.status == 200
    sneaky = server.route("/sneaky", (302, b"file:///etc/passwd", "text/plain"))
    with pytest.raises(RefetchError) as err:
        refetch(sneaky, timeout_s=2, retries=0, max_bytes=1000, allow_private=True)
    assert err.value.reason == "bad_redirect"
    with pytest.raises(RefetchError) as err:
        refetch("ftp://127.0.0.1/x.pdf", timeout_s=1, retries=0, max_bytes=10, allow_private=True)
    assert err.value.reason == "bad_url"
