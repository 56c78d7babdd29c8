"""Atomic file writes and checksums. Torch-free (used on boards too).

A half-written artifact must never look complete: everything is written to
a temporary name in the same directory, fsynced, then renamed into place.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to `path`; on success fsync it and rename it onto `path`.

    Use it for writers that want a filename (safetensors, gguf, parquet)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def read_json(path: str | Path, missing: str) -> dict[str, Any]:
    """A JSON file the caller needs; `missing` says how to get it when it is absent."""
    from smoledge.errors import SmoledgeError

    path = Path(path)
    if not path.exists():
        raise SmoledgeError(f"{path} is missing; {missing}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SmoledgeError(f"{path} is not valid JSON ({exc}); re-save it") from None


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temp directory; on success it replaces `path` as a whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def drop_partial_writes(root: str | Path) -> list[Path]:
    """Remove the temp files and directories atomic_path / atomic_dir leave under `root` when their writer is
    killed (SIGKILL, OOM, power): call it only where no writer can be alive. Returns what it removed."""
    removed = []
    for tmp in sorted(Path(root).rglob(".*.tmp")):
        if not tmp.exists():  # inside a temp directory already removed
            continue
        if tmp.is_dir():
            shutil.rmtree(tmp)
        else:
            tmp.unlink()
        removed.append(tmp)
    return removed


def file_manifest(root: str | Path, exclude: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """{relative path: {sha256, bytes}} for every regular file under root."""
    root = Path(root)
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if not p.is_file() or p.is_symlink() or rel in exclude or any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        out[rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    return out


def read_jsonl(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """("file:line", object) for each non-blank line of a JSONL file, read lazily; a line that is not
    one JSON object stops the read with an error naming the file and line."""
    from smoledge.errors import SmoledgeError

    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SmoledgeError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); "
                                    "each line must be one JSON object") from None
            if not isinstance(row, dict):
                raise SmoledgeError(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield where, row


@contextlib.contextmanager
def exclusive_dir(path: str | Path, busy: str) -> Iterator[None]:
    """Hold an advisory lock on `path`/.lock (created with the dir) for the block; another holder
    makes this raise SmoledgeError(busy) at once instead of two processes writing one dir."""
    from smoledge.errors import SmoledgeError

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with open(path / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SmoledgeError(busy) from None
        yield


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The well-formed JSON objects of an append-only JSONL log (metrics, events); a line torn by a
    kill, or any other line that is not one object, is skipped; a missing file is an empty log."""
    path = Path(path)
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows
