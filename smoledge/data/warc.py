"""Document records of WARC (and ARC) files, read so that a broken record never costs the ones after it.

    from collections import Counter
    from pathlib import Path
    from smoledge.data.warc import iter_records
    stats = Counter()   # rec is a WarcRecord, or a Skipped (rec.reason)
    for rec in iter_records(Path("CC-MAIN-...warc.gz"), stats, max_payload=10_000_000):
        print(rec.url, rec.media_type, len(rec.payload), rec.truncated)

Yields `response` and `resource` records (the captured documents) and
`conversion` records (Common Crawl's WET files: text already extracted) as
WarcRecords, and a Skipped for every record that stands for a document but
yields none (a revisit, which points at a payload stored elsewhere; a broken
or oversized record; a corrupt gzip member), so the caller can account for
it. request, metadata and warcinfo records are not documents and are passed
over. A WAT file (JSON metadata records) is refused with WatFileError. warcio parses each
record (HTTP headers, chunked transfer and content encodings), but the
framing is done here, because warcio's iterator stops for good at the first
record it cannot parse:

- gzip: members are decompressed one after another as one stream, so a file
  compressed as a single member, or with members that do not line up with
  records, reads like a well-formed one. A corrupt member is skipped to the
  next gzip header; a file that ends inside a member ends the stream.
- records: a header without a usable Content-Length is skipped to the next
  "WARC/" line; stray bytes between records are skipped the same way; a
  record the file ends inside is yielded with truncated="clipped", so the
  caller can fetch it again.
- payloads over `max_payload` are skipped without being held in memory.

ARC files (legacy) go through warcio's own iterator: an unreadable ARC
record ends its file. Every record carries its `offset`: the byte offset of
its WARC header in the file's uncompressed stream (for an ARC file, its
position). Everything skipped is also counted in `stats` as "skipped:<reason>".
"""

from __future__ import annotations

import io
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

CHUNK = 1 << 16
GZIP_MAGIC = b"\x1f\x8b\x08"
MAX_HEADER_BYTES = 1 << 16
# HTTP headers ride in the WARC block with the payload: a block may exceed the
# payload cap by this much before it is skipped unread.
HTTP_HEADER_ALLOWANCE = 1 << 16
DOCUMENT_TYPES = ("response", "resource", "conversion")
# A revisit record stands for a capture whose payload is stored in an earlier record.
REVISIT = "revisit"
# Common Crawl's WAT files: one JSON metadata record per capture, no page text.
WAT_CONTENT_TYPE = "application/json"


class WatFileError(ValueError):
    """The file holds WAT metadata records (JSON), not documents."""


@dataclass
class Skipped:
    """A record that stands for a document but yields none."""

    offset: int
    reason: str
    """warc_revisit | warc_broken_record | warc_corrupt_gzip_member | too_large | warc_bad_payload"""
    url: str = ""


@dataclass
class WarcRecord:
    record_id: str
    url: str
    date: str
    rec_type: str
    """response | resource | conversion"""
    media_type: str
    """'text/html', 'application/pdf', ... ('' when unknown)."""
    charset: str | None
    status: int | None
    """HTTP status of a response (None for resource records)."""
    payload: bytes
    truncated: str | None = None
    """The WARC-Truncated reason ('length', 'time', ...), 'clipped' when the file ends inside
    the record, or None when the payload is complete."""
    offset: int = 0
    """Byte offset of the record's WARC header in the file's uncompressed stream."""
    languages: str = ""
    """WARC-Identified-Content-Language (Common Crawl's guess, e.g. 'fra,eng'), '' when absent."""


class _CorruptMember(Exception):
    pass


class _GzipMembers:
    """Concatenated gzip members as one byte stream; `resync` skips a corrupt member."""

    def __init__(self, f: io.BufferedReader) -> None:
        self._f = f
        self._in = b""
        self._d = None
        self._member_start = 0
        self._eof = False
        self.truncated = False

    def read(self, n: int) -> bytes:
        while not self._eof:
            if self._d is None and not self._start_member():
                self._eof = True
                break
            if not self._in:
                self._in = self._f.read(CHUNK)
                if not self._in:  # the file ends inside a member
                    self.truncated = self._eof = True
                    break
            try:
                out = self._d.decompress(self._in, n)
            except zlib.error as exc:
                raise _CorruptMember(str(exc)) from None
            if self._d.eof:
                self._in, self._d = self._d.unused_data, None
            else:
                self._in = self._d.unconsumed_tail
            if out:
                return out
        return b""

    def _start_member(self) -> bool:
        while True:
            i = self._in.find(GZIP_MAGIC)
            if i >= 0:
                self._in = self._in[i:]
                self._member_start = self._f.tell() - len(self._in)
                self._d = zlib.decompressobj(31)
                return True
            more = self._f.read(CHUNK)
            if not more:
                return False
            self._in = self._in[-2:] + more  # a header may straddle two chunks

    def resync(self) -> None:
        """Continue at the next gzip header after the member that failed."""
        self._f.seek(self._member_start + 1)
        self._in, self._d, self._eof = b"", None, False


class _Lines:
    """Line and exact-length reads over a `read(n)` callable, with a buffer that can be dropped."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self._buf = b""
        self.pos = 0
        """Bytes consumed so far (readline, read and skip)."""

    def readline(self, limit: int = MAX_HEADER_BYTES) -> bytes:
        while b"\n" not in self._buf and len(self._buf) < limit:
            chunk = self._read(CHUNK)
            if not chunk:
                break
            self._buf += chunk
        i = self._buf.find(b"\n", 0, limit)
        end = i + 1 if i >= 0 else min(len(self._buf), limit)
        line, self._buf = self._buf[:end], self._buf[end:]
        self.pos += len(line)
        return line

    def read(self, n: int) -> bytes:
        head, self._buf = self._buf[:n], self._buf[n:]
        out = head + _read_capped(self._read, n - len(head))
        self.pos += len(out)
        return out

    def skip(self, n: int) -> int:
        skipped = 0
        while skipped < n:
            got = len(self.read(min(CHUNK, n - skipped)))
            if not got:
                break
            skipped += got
        return skipped

    def reset(self) -> None:
        self._buf = b""


def _open_stream(f: io.BufferedReader) -> tuple[Callable[[int], bytes], _GzipMembers | None]:
    magic = f.read(2)
    f.seek(0)
    if magic == GZIP_MAGIC[:2]:
        gz = _GzipMembers(f)
        return gz.read, gz
    return f.read, None


def _header_fields(block: bytes) -> dict[str, str]:
    fields = {}
    for line in block.split(b"\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            fields[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return fields


def _frames(path: Path, stats: Counter, max_block: int) -> Iterator[tuple[int, bytes, bytes, bool] | Skipped]:
    """(offset, WARC header bytes, block bytes, clipped) of every document-type record of a WARC file,
    and a Skipped for each record that stands for a document but cannot be read."""
    with open(path, "rb") as f:
        read, gz = _open_stream(f)
        lines = _Lines(read)
        stray = seen = False
        while True:
            start = lines.pos
            try:
                line = lines.readline()
                if not line:
                    break
                if not line.startswith(b"WARC/"):
                    if line.strip(b"\r\n\x00 \t"):
                        stray = True  # counted once per gap, when the next record starts
                    continue
                if stray:
                    stats["warc:stray_bytes_skipped"] += 1
                    stray = False
                seen = True
                header = [line]
                size = len(line)
                while True:
                    hline = lines.readline()
                    header.append(hline)
                    size += len(hline)
                    if not hline or hline in (b"\r\n", b"\n") or size > MAX_HEADER_BYTES:
                        break
                head = b"".join(header)
                fields = _header_fields(head)
                length = fields.get("content-length", "")
                if not head.endswith((b"\r\n\r\n", b"\n\n")) or not length.isdigit():
                    stats["skipped:warc_broken_record"] += 1
                    yield Skipped(start, "warc_broken_record", fields.get("warc-target-uri", ""))
                    continue  # the scan above skips to the next "WARC/" line
                length_i = int(length)
                rec_type = fields.get("warc-type", "").lower()
                if rec_type == "metadata" and fields.get("content-type", "").startswith(WAT_CONTENT_TYPE):
                    raise WatFileError(f"{path.name} holds WAT records (JSON metadata about each capture)")
                if rec_type == REVISIT:
                    stats["skipped:warc_revisit"] += 1
                    lines.skip(length_i)
                    yield Skipped(start, "warc_revisit", fields.get("warc-target-uri", ""))
                    continue
                if rec_type not in DOCUMENT_TYPES:
                    lines.skip(length_i)
                    continue
                if length_i > max_block:
                    stats["skipped:too_large"] += 1
                    lines.skip(length_i)
                    yield Skipped(start, "too_large", fields.get("warc-target-uri", ""))
                    continue
                block = lines.read(length_i)
                yield start, head, block, len(block) < length_i
            except _CorruptMember:
                # Lost with it: the record(s) it held (one per member in crawler output).
                stats["skipped:warc_corrupt_gzip_member"] += 1
                yield Skipped(start, "warc_corrupt_gzip_member")
                assert gz is not None
                gz.resync()
                lines.reset()
        if gz is not None and gz.truncated:
            stats["warc:truncated_file"] += 1
        if stray and not seen:  # bytes, but not one WARC record: not a WARC file at all
            stats["corrupt_files"] += 1
            stats[f"corrupt_file:{path.name}"] += 1


def _media_type(value: str | None) -> tuple[str, str | None]:
    from smoledge.data.extract import charset_from_content_type

    if not value:
        return "", None
    return value.split(";", 1)[0].strip().lower(), charset_from_content_type(value)


def _read_capped(read: Callable[[int], bytes], limit: int) -> bytes:
    """Up to `limit` bytes from `read`, in CHUNK-sized calls, stopping at end of input."""
    parts, got = [], 0
    while got < limit:
        chunk = read(min(CHUNK, limit - got))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _to_record(rec, fallback_id: str, clipped: bool, stats: Counter, max_payload: int,
               offset: int) -> WarcRecord | Skipped:
    """A WarcRecord from a parsed warcio record, or a Skipped (counted) when it cannot be used."""
    h = rec.rec_headers
    rec_id = (h.get_header("WARC-Record-ID") or "").strip("<>") or fallback_id
    url = h.get_header("WARC-Target-URI") or ""
    truncated = h.get_header("WARC-Truncated") or ("clipped" if clipped else None)
    status = None
    if rec.rec_type == "response" and rec.http_headers is not None:
        code = rec.http_headers.get_statuscode()
        status = int(code) if code and code.isdigit() else None
        media, charset = _media_type(rec.http_headers.get_header("Content-Type"))
    else:
        media, charset = _media_type(h.get_header("Content-Type"))
    # Common Crawl's own sniffed type is more reliable than what the server said.
    identified = (h.get_header("WARC-Identified-Payload-Type") or "").split(";", 1)[0].strip().lower()
    if identified:
        media = identified
    try:
        payload = _read_capped(rec.content_stream().read, max_payload + 1)
    except Exception:  # bad chunking or content encoding (zlib, brotli, ValueError...)
        if not truncated:
            stats["skipped:warc_bad_payload"] += 1
            return Skipped(offset, "warc_bad_payload", url)
        payload = b""  # a cut-off encoded body: only a refetch can recover it
    if len(payload) > max_payload:
        stats["skipped:too_large"] += 1
        return Skipped(offset, "too_large", url)
    return WarcRecord(record_id=rec_id, url=url, date=h.get_header("WARC-Date") or "", rec_type=rec.rec_type,
                      media_type=media, charset=charset, status=status, payload=payload, truncated=truncated,
                      offset=offset, languages=h.get_header("WARC-Identified-Content-Language") or "")


def _is_arc(path: Path) -> bool:
    import gzip

    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)
        try:
            start = gzip.GzipFile(fileobj=f).read(16) if head == GZIP_MAGIC[:2] else f.read(16)
        except (OSError, EOFError, zlib.error):
            return False
    return start.lstrip().startswith(b"filedesc://")


def _iter_arc(path: Path, stats: Counter, max_payload: int) -> Iterator[WarcRecord | Skipped]:
    from warcio.archiveiterator import ArchiveIterator

    with open(path, "rb") as f:
        n = 0
        try:
            for rec in ArchiveIterator(f, arc2warc=True):
                n += 1
                if rec.rec_type not in DOCUMENT_TYPES:
                    continue
                # warcio invents a random WARC-Record-ID for ARC records: use the position instead.
                rec.rec_headers.replace_header("WARC-Record-ID", f"{path.name}:{n}")
                yield _to_record(rec, f"{path.name}:{n}", False, stats, max_payload, n)
        except Exception:  # warcio's ArchiveLoadFailed and parse errors: the rest of an ARC is unreadable
            stats["corrupt_files"] += 1
            stats[f"corrupt_file:{path.name}"] += 1


def iter_records(path: Path, stats: Counter, max_payload: int) -> Iterator[WarcRecord | Skipped]:
    """The document records of one WARC, WET or ARC file (plain or gzip): WarcRecords, and a Skipped
    for each one that yields no document. Raises WatFileError on a WAT file."""
    from warcio.archiveiterator import ArchiveIterator

    if _is_arc(path):
        yield from _iter_arc(path, stats, max_payload)
        return
    for n, framed in enumerate(_frames(path, stats, max_payload + HTTP_HEADER_ALLOWANCE), 1):
        if isinstance(framed, Skipped):
            yield framed
            continue
        offset, head, block, clipped = framed
        try:
            # The trailing CRLFs spare warcio a "record not followed by newline" warning
            # (a clipped block has none: they would read as payload).
            raw = head + block + (b"" if clipped else b"\r\n\r\n")
            rec = next(iter(ArchiveIterator(io.BytesIO(raw))))
            out = _to_record(rec, f"{path.name}:{n}", clipped, stats, max_payload, offset)
        except Exception:  # warcio's ArchiveLoadFailed, StatusAndHeadersParserException, ...
            stats["skipped:warc_broken_record"] += 1
            out = Skipped(offset, "warc_broken_record")
        yield out
