"""Main text of an HTML page, as FineWeb extracts it: bytes -> str -> trafilatura.

    from smoledge.data.extract import decode_html, html_main_text
    html, encoding = decode_html(raw_bytes, declared="windows-1251")
    text = html_main_text(html, url="https://example.org/page")   # "" when there is no main text

Decoding follows the order browsers use (byte-order mark, the charset the
server declared, the page's <meta> charset) with the WHATWG label mapping
(gb2312 is read as gb18030, latin-1 as windows-1252), then UTF-8. When none
decodes cleanly, a few stray bytes (<= 0.1% of characters, or far fewer than
the valid UTF-8 multi-byte characters around them) become U+FFFD;
more mean an undeclared encoding, which charset_normalizer (a trafilatura
dependency) guesses; when nothing fits, up to 1% U+FFFD is tolerated and
beyond that the page is undecodable (UndecodableError).

Extraction uses trafilatura with the settings FineWeb chose for precision:
favor_precision, no comments, no images, plain text. Repeated segments are
removed within a page only (a fresh LRU cache per call): trafilatura's
default cache is shared across calls, which would make a page's text depend
on the pages read before it (and on how sources are sharded across
workers); cross-document duplicates are curate's dedup's job. trafilatura is
set up to give the same text ~50% sooner (see _trafilatura).
"""

from __future__ import annotations

import codecs
import functools
import re
from typing import Any

# WHATWG Encoding Standard: labels whose real-world meaning is a superset codec.
WHATWG_ALIASES = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "csgb2312": "gb18030", "chinese": "gb18030",
    "iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "l1": "cp1252", "ascii": "cp1252",
    "us-ascii": "cp1252", "iso8859-1": "cp1252", "iso_8859-1": "cp1252",
    "iso-8859-9": "cp1254", "latin5": "cp1254",
    "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932", "ms_kanji": "cp932",
    "euc-kr": "cp949", "ks_c_5601-1987": "cp949", "big5": "big5hkscs", "tis-620": "cp874",
    "iso-8859-11": "cp874", "windows-874": "cp874",
}
# How much of the page <meta charset> may be looked for in (the HTML spec says 1024 bytes;
# real pages put long <script> blocks first).
META_SNIFF_BYTES = 4096
# Up to this fraction of undecodable characters, they are stray bytes in a page that is
# otherwise in its declared encoding (kept as U+FFFD); above it, the page is in another
# encoding, which is guessed. A page keeps U+FFFD for at most MAX_REPLACED_FRACTION.
STRAY_BYTES_FRACTION = 0.001
MAX_REPLACED_FRACTION = 0.01
# Valid non-ASCII UTF-8 characters per broken one that make a page UTF-8 with stray bytes
# (legacy single-byte text almost never forms valid UTF-8 multi-byte sequences).
UTF8_EVIDENCE = 3
# Guessing an encoding costs time on big pages; the guess is made on a prefix.
DETECT_BYTES = 200_000

_META_CHARSET = re.compile(rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([a-zA-Z0-9_.:\-]+)""", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))

# FineWeb's trafilatura settings (datatrove Trafilatura(favour_precision=True)).
TRAFILATURA_OPTIONS = dict(
    favor_precision=True, include_comments=False, include_images=False, include_tables=True,
    output_format="txt", with_metadata=False,
)


class UndecodableError(ValueError):
    """No candidate encoding decodes the bytes without replacing too many of them."""


def charset_from_content_type(content_type: str | None) -> str | None:
    """'text/html; charset="UTF-8"' -> 'utf-8'."""
    if not content_type:
        return None
    m = re.search(r"charset\s*=\s*[\"']?([^\s;\"']+)", content_type, re.IGNORECASE)
    return m.group(1).lower() if m else None


def normalize_encoding(label: str | None) -> str | None:
    """A Python codec name for an HTML charset label, or None when Python does not know it."""
    if not label:
        return None
    label = label.strip().lower()
    label = WHATWG_ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def sniff_meta_charset(data: bytes) -> str | None:
    m = _META_CHARSET.search(data[:META_SNIFF_BYTES])
    return m.group(1).decode("ascii", "replace").lower() if m else None


def _guess(data: bytes) -> str | None:
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # optional: without it, the replacement fallback decides
        return None
    best = from_bytes(data[:DETECT_BYTES]).best()
    return best.encoding if best is not None else None


def decode_html(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """(text, encoding used). Raises UndecodableError when too many bytes would be replaced."""
    candidates: list[str] = []
    for bom, enc in _BOMS:
        if data.startswith(bom):
            candidates.append(enc)
            break
    candidates += [declared or "", sniff_meta_charset(data) or "", "utf-8"]
    tried: list[str] = []
    for label in candidates:
        enc = normalize_encoding(label)
        if enc is None or enc in tried:
            continue
        tried.append(enc)
        try:
            return data.decode(enc), enc
        except UnicodeDecodeError:
            continue
    # A page in the first candidate with a stray bad byte or two: keep it, with U+FFFD.
    first = tried[0]
    text = data.decode(first, errors="replace")
    bad = text.count("\ufffd")
    replaced = bad / max(len(text), 1)
    # UTF-8 also shows itself by its valid multi-byte characters: a page with many of them
    # and a few broken ones is UTF-8 with damage, not an undeclared legacy encoding.
    multibyte = sum(ord(ch) > 127 for ch in text) - bad if first == "utf-8" else 0
    if replaced <= STRAY_BYTES_FRACTION or multibyte >= UTF8_EVIDENCE * bad:
        return text, first + "+replace"
    # Many bad bytes: the page is in another, undeclared encoding; guess it.
    guess = normalize_encoding(_guess(data))
    if guess is not None and guess not in tried:
        try:
            return data.decode(guess), guess
        except UnicodeDecodeError:
            pass
    if replaced > MAX_REPLACED_FRACTION:
        raise UndecodableError(f"no encoding decodes it (tried {', '.join(tried + ([guess] if guess else []))})")
    return text, first + "+replace"


def parse_html(html: str) -> Any:
    """The page's lxml tree as trafilatura parses it (its parser and settings), or None when it has none.

    html_main_text(parse_html(page)) is html_main_text(page): curate parses a page once to look at its
    language before extraction, and hands the same tree on."""
    return _trafilatura().utils.load_html(html)


# Elements whose text a reader never sees.
_INVISIBLE = frozenset(("script", "style", "noscript", "template"))


def visible_text(tree: Any, limit: int) -> str:
    """About the first `limit` characters of the text a reader sees in the page (menus and footers
    included: everything but scripts and styles), whitespace collapsed."""
    parts: list[str] = []
    size = 0
    body = tree.find(".//body")
    for el in (body if body is not None else tree).iter():
        if el.tag in _INVISIBLE or not isinstance(el.tag, str):
            texts = [el.tail]
        else:
            texts = [el.text, el.tail]
        for t in texts:
            if t and not t.isspace():
                parts.append(t)
                size += len(t)
        if size >= limit:
            break
    return " ".join(" ".join(parts).split())[:limit]


@functools.cache
def _trafilatura() -> Any:
    """trafilatura, set up to give the same text sooner (tests/test_discard_rules.py checks it is the same):

    - its discard selectors run as smoledge.data.discard_rules;
    - its HTML parser gives every element lxml.html's HtmlElement class through lxml's C-level
      default lookup. lxml.html's own lookup is a Python method that picks FormElement,
      InputElement, ... by tag, classes whose extra methods trafilatura never calls; it ran for
      each of the ~3,000 element objects a page makes, ~1.4 ms of its ~12 (shared pages, one core).
    """
    import trafilatura
    from lxml import etree, html
    from trafilatura.utils import HTML_PARSER

    from smoledge.data import discard_rules  # built on lxml: loaded with trafilatura, not at import

    discard_rules.install()
    HTML_PARSER.set_element_class_lookup(etree.ElementDefaultClassLookup(
        element=html.HtmlElement, comment=html.HtmlComment, pi=html.HtmlProcessingInstruction,
        entity=html.HtmlEntity))
    return trafilatura


def html_main_text(html: str | Any, url: str | None = None) -> str:
    """The main text (paragraphs separated by newlines) of a page, as a string or a parse_html tree
    (which extraction consumes), or '' when trafilatura finds none."""
    from trafilatura.deduplication import LRUCache

    # A page-local cache: deduplication inside the page, nothing carried to the next page.
    text = _trafilatura().extract(html, url=url or None, deduplicate=LRUCache(maxsize=1024), **TRAFILATURA_OPTIONS)
    return (text or "").strip()
