"""A deployable bundle: layout, server settings and checksum verification. Torch-free.

`smoledge package` writes a bundle directory:

    bundle/
      model-q8_0.gguf        the model (one GGUF)
      tokenizer/             tokenizer.json, tokenizer_config.json, ... (for other runtimes)
      serving/               Containerfile, smoledge.service, run.sh, README.md
      server.json            ServerSettings: model file, id, chat template, n_ctx, threads, host, port
      manifest.json          sha256 + bytes of every file above, versions, recipe, evaluation

Everything that serves or benchmarks a bundle goes through `load_bundle`,
which refuses to go on unless every file matches the manifest: a bundle
copied to a board over a flaky link must fail loudly, not serve garbage.

    from smoledge.serve.bundle import load_bundle
    bundle = load_bundle("runs/quickstart/bundle")
    print(bundle.model_path, bundle.settings.n_ctx)
"""

from __future__ import annotations

import atexit
import json
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smoledge.config import ConfigError, Section
from smoledge.errors import SmoledgeError
from smoledge.io import sha256_file

MANIFEST = "manifest.json"
SERVER = "server.json"
# Written next to the bundle files by the build orchestrator (smoledge.runs);
# they describe the build, not the bundle, so the manifest leaves them out.
BUILD_RECORDS = ("stage.json", "inprogress.json")
MANIFEST_FORMAT = 1

REFETCH = "re-run `smoledge package` or copy the bundle again"


@dataclass
class ServerSettings(Section):
    """server.json: everything the server needs besides the model file itself."""

    model_id: str = ""
    """Model name clients pass as `model` (the recipe name)."""
    model_file: str = ""
    """GGUF file, relative to the bundle directory."""
    gguf_type: str = ""
    """Weight type of the GGUF (f32, f16, q8_0)."""
    chat_template: str | None = None
    """Jinja2 chat template (from the tokenizer); null: the model has no chat format."""
    bos_token: str = ""
    """BOS text the chat template may reference."""
    eos_token: str = ""
    """EOS text the chat template may reference."""
    stop_tokens: list[str] = field(default_factory=list)
    """Special tokens that end a generation (e.g. <|im_end|>, <|endoftext|>)."""
    n_ctx: int = 512
    """Context length the server allocates (prompt + generated tokens)."""
    n_ctx_train: int = 512
    """Longest context the model was built for; n_ctx may not exceed it."""
    threads: int = 0
    """llama.cpp threads (0: all cores of the machine it runs on)."""
    host: str = "127.0.0.1"
    """Bind address (loopback unless a reverse proxy or container needs otherwise)."""
    port: int = 8000
    """TCP port."""

    def __post_init__(self) -> None:
        if not self.model_id:
            self.fail("model_id", "must be set (the recipe name)")
        if not self.model_file or Path(self.model_file).is_absolute() or ".." in Path(self.model_file).parts:
            self.fail("model_file", f"must be a file name inside the bundle, got {self.model_file!r}")
        if self.n_ctx <= 0 or self.n_ctx_train <= 0:
            self.fail("n_ctx", f"n_ctx ({self.n_ctx}) and n_ctx_train ({self.n_ctx_train}) must be > 0")
        if self.n_ctx > self.n_ctx_train:
            self.fail("n_ctx", f"{self.n_ctx} exceeds the model's trained context {self.n_ctx_train}")
        if self.threads < 0:
            self.fail("threads", f"must be >= 0, got {self.threads}")
        if not 0 < self.port < 65536:
            self.fail("port", f"must be in 1..65535, got {self.port}")


@dataclass
class Bundle:
    dir: Path
    """Directory holding the verified bundle (a temp dir when it came as .tar.gz)."""
    manifest: dict[str, Any]
    """Parsed manifest.json."""
    settings: ServerSettings
    """Parsed server.json."""

    @property
    def model_path(self) -> Path:
        return self.dir / self.settings.model_file

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.manifest["files"]


def bundle_files(root: Path) -> list[str]:
    """Relative paths of the files a manifest must cover (hidden files and build records excluded)."""
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue  # editor/OS droppings and atomic-write temp files
        if p.is_dir() and not p.is_symlink():
            continue
        if rel.as_posix() in (MANIFEST, *BUILD_RECORDS):
            continue
        out.append(rel.as_posix())
    return out


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise SmoledgeError(f"{path} is missing: this is not a complete smoledge bundle; {REFETCH}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SmoledgeError(f"{path}: {what} is not valid JSON ({exc}); {REFETCH}") from None
    if not isinstance(data, dict):
        raise SmoledgeError(f"{path}: {what} must be a JSON object; {REFETCH}")
    return data


def verify(root: Path, manifest: dict[str, Any]) -> None:
    """Raise SmoledgeError naming the first missing, extra or modified file."""
    expected: dict[str, dict[str, Any]] = manifest.get("files") or {}
    if not isinstance(expected, dict) or not expected:
        raise SmoledgeError(f"{root / MANIFEST} lists no files; {REFETCH}")
    present = set(bundle_files(root))
    missing = sorted(set(expected) - present)
    if missing:
        raise SmoledgeError(f"bundle {root}: file '{missing[0]}' listed in the manifest is missing; {REFETCH}")
    extra = sorted(present - set(expected))
    if extra:
        raise SmoledgeError(
            f"bundle {root}: file '{extra[0]}' is not in the manifest (added or renamed after packaging); "
            f"remove it, or {REFETCH}"
        )
    for rel, meta in sorted(expected.items()):
        if not isinstance(meta, dict):
            raise SmoledgeError(f"{root / MANIFEST}: entry for '{rel}' is not an object; {REFETCH}")
        path = root / rel
        if path.is_symlink() or not path.is_file():
            raise SmoledgeError(f"bundle {root}: '{rel}' is not a regular file; {REFETCH}")
        size = path.stat().st_size
        if size != meta.get("bytes"):
            raise SmoledgeError(
                f"bundle {root}: '{rel}' has {size} bytes, the manifest says {meta.get('bytes')} "
                f"(truncated or modified); {REFETCH}"
            )
        if sha256_file(path) != meta.get("sha256"):
            raise SmoledgeError(f"bundle {root}: '{rel}' fails its sha256 check (modified or corrupted); {REFETCH}")


def _extract(archive: Path) -> Path:
    """Unpack a .tar.gz bundle into a private temp dir (removed at exit); return the bundle dir."""
    tmp = Path(tempfile.mkdtemp(prefix="smoledge-bundle-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            # The "data" filter refuses absolute paths, `..`, device files and
            # links that leave the archive: a bundle is data, never a program.
            tar.extractall(tmp, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise SmoledgeError(f"{archive}: cannot unpack the bundle archive ({exc}); {REFETCH}") from None
    if (tmp / MANIFEST).is_file():
        return tmp
    subdirs = [p for p in tmp.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and (subdirs[0] / MANIFEST).is_file():
        return subdirs[0]
    raise SmoledgeError(f"{archive}: no {MANIFEST} at the top of the archive; {REFETCH}")


def load_bundle(path: str | Path) -> Bundle:
    """Open a bundle directory (or .tar.gz), verify every checksum, parse server.json."""
    path = Path(path)
    if not path.exists():
        raise SmoledgeError(f"bundle {path} does not exist; build one with `smoledge package <recipe>`")
    root = _extract(path) if path.is_file() else path
    manifest = _read_json(root / MANIFEST, "the manifest")
    if manifest.get("format") != MANIFEST_FORMAT:
        raise SmoledgeError(
            f"{root / MANIFEST}: bundle format {manifest.get('format')!r}, this smoledge reads "
            f"{MANIFEST_FORMAT}; re-run `smoledge package` with this version"
        )
    verify(root, manifest)
    try:
        settings = ServerSettings.from_dict(_read_json(root / SERVER, "server settings"), prefix="server.json")
    except ConfigError as exc:
        raise SmoledgeError(f"{root / SERVER}: {exc}; {REFETCH}") from None
    if settings.model_file not in manifest["files"]:
        raise SmoledgeError(f"{root / SERVER}: model file '{settings.model_file}' is not in the bundle; {REFETCH}")
    return Bundle(dir=root, manifest=manifest, settings=settings)  # type: ignore[arg-type]
