"""A bundle as one reproducible .tar.gz, with its sha256 beside it.

    from smoledge.package.archive import write_archive
    sha = write_archive(Path("runs/quickstart/bundle"), files, Path("runs/quickstart/bundle.tar.gz"),
                        top="quickstart-bundle", mtime=1767225600)
    # runs/quickstart/bundle.tar.gz and bundle.tar.gz.sha256 (`sha256sum -c` reads it)

The same files give the same archive, byte for byte: members in sorted order (every directory
before what it holds), one fixed mtime (the manifest's creation time), owner root/root with no
names, permissions reduced to 644/755, and a gzip header with no file name and that same mtime.
So two builds of one bundle can be compared by their sha256, and a board can check what it got
with `sha256sum -c bundle.tar.gz.sha256` before `smoledge serve` checks every file inside.
"""

from __future__ import annotations

import gzip
import os
import tarfile
from pathlib import Path, PurePosixPath

from smoledge.io import atomic_path, atomic_write_text, sha256_file

# zlib's default trade-off; GGUF and ONNX weights barely compress, the level mostly costs time.
COMPRESSLEVEL = 6


def _entry(name: str, mtime: int, mode: int, kind: bytes, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_archive(bundle_dir: Path, files: list[str], out: Path, top: str, mtime: int) -> str:
    """Write `files` (paths relative to bundle_dir) under the directory `top` into the .tar.gz `out`,
    atomically, and `out`.sha256 next to it; return the archive's sha256."""
    dirs = {PurePosixPath(top)}
    for rel in files:
        dirs.update((PurePosixPath(top) / rel).parents)
    dirs.discard(PurePosixPath("."))
    entries = sorted([(d.as_posix(), None) for d in dirs] + [(f"{top}/{rel}", rel) for rel in files])
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=mtime, compresslevel=COMPRESSLEVEL) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, rel in entries:
                if rel is None:
                    tar.addfile(_entry(name, mtime, 0o755, tarfile.DIRTYPE))
                    continue
                path = bundle_dir / rel
                mode = 0o755 if os.access(path, os.X_OK) else 0o644  # run.sh stays executable
                with open(path, "rb") as f:
                    tar.addfile(_entry(name, mtime, mode, tarfile.REGTYPE, path.stat().st_size), f)
    sha = sha256_file(out)
    # sha256sum's format (two spaces, then the name), so `sha256sum -c` checks the archive next to it.
    atomic_write_text(out.with_name(out.name + ".sha256"), f"{sha}  {out.name}\n")
    return sha
