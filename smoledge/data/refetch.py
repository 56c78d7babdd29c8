"""Fetch a document again when its crawled copy is truncated or broken (as FinePDFs does).

    from smoledge.data.refetch import RefetchError, refetch
    try:
        got = refetch("https://example.org/paper.pdf", timeout_s=10, retries=2, max_bytes=10_000_000)
        print(got.status, got.content_type, len(got.body))
    except RefetchError as exc:
        print("gave up:", exc.reason)   # e.g. too_large, http_404, timeout, blocked_address

Bounded in every direction: each attempt has a socket timeout, a failed
attempt (timeout, connection error, HTTP 5xx/429/408) is retried at most
`retries` times with exponential backoff, at most MAX_REDIRECTS redirects
are followed, and the body is read only up to `max_bytes` (a larger
Content-Length is refused before reading).

URLs come from crawled data, so they may point anywhere. Unless
`allow_private` is set, a URL whose host resolves to a loopback, private,
link-local or otherwise non-public address is refused ("blocked_address"),
at every redirect too: a WARC must not make curation query a cloud metadata
service or an intranet.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

MAX_REDIRECTS = 5
BACKOFF_S = 0.25
"""Wait before retry k (k = 1, 2, ...) is BACKOFF_S * 2**(k-1)."""
CHUNK = 1 << 16
USER_AGENT = "smoledge-refetch/0.1"
RETRY_STATUS = {408, 429, 500, 502, 503, 504}


@dataclass
class Fetched:
    url: str
    """Final URL, after redirects."""
    status: int
    content_type: str
    body: bytes
    attempts: int


class RefetchError(Exception):
    """The document could not be fetched again; `reason` is a short stats key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def check_address(url: str) -> None:
    """Raise RefetchError('blocked_address') when the URL's host resolves to a non-public address."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    if not host:
        raise RefetchError("bad_url", url)
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise RefetchError("dns", f"{host}: {exc}") from None
    for info in infos:
        addr = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if not addr.is_global:
            raise RefetchError("blocked_address", f"{host} resolves to {addr}")


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects only to http(s) URLs that pass the address check."""

    max_redirections = MAX_REDIRECTS

    def __init__(self, allow_private: bool) -> None:
        super().__init__()
        self.allow_private = allow_private

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            raise RefetchError("bad_redirect", newurl)
        if not self.allow_private:
            check_address(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _attempt(opener: urllib.request.OpenerDirector, url: str, timeout_s: float, max_bytes: int) -> Fetched:
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    with opener.open(req, timeout=timeout_s) as resp:
        declared = resp.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise RefetchError("too_large", f"Content-Length {declared} > {max_bytes}")
        body = bytearray()
        while len(body) <= max_bytes:
            chunk = resp.read(min(CHUNK, max_bytes + 1 - len(body)))
            if not chunk:
                break
            body += chunk
        if len(body) > max_bytes:
            raise RefetchError("too_large", f"body over {max_bytes} bytes")
        return Fetched(url=resp.geturl(), status=resp.status, content_type=resp.headers.get("Content-Type", ""),
                       body=bytes(body), attempts=0)


def refetch(url: str, *, timeout_s: float, retries: int, max_bytes: int, allow_private: bool = False) -> Fetched:
    """GET `url` again within the bounds above; raises RefetchError with the reason it gave up."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise RefetchError("bad_url", url)
    if not allow_private:
        check_address(url)
    opener = urllib.request.build_opener(_CheckedRedirects(allow_private))
    last = RefetchError("failed")
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(BACKOFF_S * 2 ** (attempt - 1))
        try:
            got = _attempt(opener, url, timeout_s, max_bytes)
            got.attempts = attempt + 1
            return got
        except RefetchError:
            raise  # too large, blocked redirect: asking again gives the same answer
        except urllib.error.HTTPError as exc:
            exc.close()
            if 300 <= exc.code < 400:  # urllib refuses redirects to non-http(s) URLs and loops this way
                raise RefetchError("bad_redirect", f"{url}: {exc}") from None
            last = RefetchError(f"http_{exc.code}", url)
            if exc.code not in RETRY_STATUS:
                raise last from None
        except (TimeoutError, socket.timeout):
            last = RefetchError("timeout", url)
        except urllib.error.URLError as exc:
            is_timeout = isinstance(exc.reason, (TimeoutError, socket.timeout))
            last = RefetchError("timeout" if is_timeout else "connection", f"{url}: {exc.reason}")
        except (OSError, ValueError, http.client.HTTPException) as exc:  # resets, cut or malformed responses
            last = RefetchError("connection", f"{url}: {exc}")
    raise last
