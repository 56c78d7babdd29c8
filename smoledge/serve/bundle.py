"""A deployable bundle: layout, server settings and checksum verification. Torch-free.

`smoledge package` writes a bundle directory:

    bundle/
      model-q8_0.gguf        the default model (package.gguf_type, llama.cpp: runs on any CPU)
      model-q4_0.gguf        ... and every other artifact a target device was given by evaluate:
      onnx-int8-arm64/       a GGUF for a llama.cpp device, an ONNX directory for an onnxruntime one
      tokenizer/             tokenizer.json, tokenizer_config.json, ... (the onnxruntime backend's tokenizer)
      serving/               Containerfile, smoledge.service, run.sh, README.md
      server.json            ServerSettings: default model, per-device models, id, chat template, n_ctx, threads...
      manifest.json          sha256 + bytes of every file above, versions, recipe, evaluation, selection

and next to it (runs/<name>/) bundle.tar.gz, the same files as one archive, and its sha256.

Everything that serves or benchmarks a bundle goes through `load_bundle`,
which refuses to go on unless every file matches the manifest: a bundle
copied to a board over a flaky link must fail loudly, not serve garbage.
An archive is unpacked into a private temp dir first, and only if every
member is a plain file or directory inside the bundle (no `..`, no absolute
path, no link, no device file).

    from smoledge.serve.bundle import load_bundle
    bundle = load_bundle("runs/quickstart/bundle")      # or bundle.tar.gz
    print(bundle.model_path, bundle.settings.n_ctx)
    target = bundle.target("rpi5-8gb")                  # what that device runs: backend, model, threads, n_ctx
"""

from __future__ import annotations

import atexit
import json
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from smoledge.config import ConfigError, Section
from smoledge.errors import SmoledgeError
from smoledge.io import sha256_file
from smoledge.layout import INPROGRESS, RECORD

MANIFEST = "manifest.json"
SERVER = "server.json"
# Written next to the bundle files by the build orchestrator (smoledge.runs);
# they describe the build, not the bundle, so the manifest leaves them out.
BUILD_RECORDS = (RECORD, INPROGRESS)
MANIFEST_FORMAT = 1

REFETCH = "re-run `smoledge package` or copy the bundle again"
LLAMA_CPP, ONNXRUNTIME = "llama.cpp", "onnxruntime"
# The graph files an ONNX directory serves (smoledge.export.onnx: fp32 or int8).
ONNX_GRAPHS = ("model_quantized.onnx", "model.onnx")
# A bundle holds a few dozen files; an archive with more members than this is not one.
MAX_ARCHIVE_MEMBERS = 10_000


def _model_problem(backend: str, model_file: str) -> str | None:
    """Why `model_file` cannot be the model of `backend`, or None."""
    path = Path(model_file)
    if not model_file or path.is_absolute() or ".." in path.parts:
        return f"must be a path inside the bundle, got {model_file!r}"
    if backend == LLAMA_CPP and path.suffix != ".gguf":
        return f"llama.cpp serves a .gguf file, got {model_file!r}"
    if backend == ONNXRUNTIME and path.suffix in (".gguf", ".onnx"):
        return f"onnxruntime serves an ONNX export directory (holding model.onnx), got {model_file!r}"
    return None


@dataclass
class DeviceTarget(Section):
    """server.json devices.<profile name>: what that device serves (the artifact evaluate selected for it)."""

    backend: Literal["llama.cpp", "onnxruntime"] = "llama.cpp"
    """Runtime for model_file."""
    model_file: str = ""
    """A .gguf file (llama.cpp) or an ONNX export directory (onnxruntime), relative to the bundle."""
    threads: int = 0
    """Threads the device profile gives the backend (0: all cores)."""
    n_ctx: int = 0
    """Context length on this device (the profile's max_context, capped by the model's; 0: server.json's n_ctx)."""
    reason: str = ""
    """Why evaluate chose this artifact for the device (evaluate/report.json)."""

    def __post_init__(self) -> None:
        problem = _model_problem(self.backend, self.model_file)
        if problem:
            self.fail("model_file", problem)
        if self.threads < 0 or self.n_ctx < 0:
            self.fail("threads", f"threads ({self.threads}) and n_ctx ({self.n_ctx}) must be >= 0")


@dataclass
class ServerSettings(Section):
    """server.json: everything the server needs besides the model file itself."""

    model_id: str = ""
    """Model name clients pass as `model` (the recipe name)."""
    model_file: str = ""
    """The default model, relative to the bundle: a GGUF file (backend llama.cpp) or an ONNX directory."""
    gguf_type: str = ""
    """Weight type of the default GGUF (f32, f16, q8_0); empty when the default is not a GGUF."""
    backend: Literal["llama.cpp", "onnxruntime"] = "llama.cpp"
    """Runtime of the default model (what `smoledge serve` runs when no device is named)."""
    devices: dict[str, DeviceTarget] = field(default_factory=dict)
    """Per target device profile: its backend, model, threads and context (`smoledge serve --device NAME`)."""
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
    slots: int = 1
    """Requests generated at the same time (one llama.cpp context each; --threads is split among them)."""
    queue: int = 8
    """Requests that may wait for a free slot; one more gets a 429 with Retry-After at once."""
    request_timeout: float = 300.0
    """Seconds a request may take, queueing included; past it the generation stops and the answer is a 504."""
    max_body_bytes: int = 2 * 1024 * 1024
    """Largest request body accepted (413 beyond)."""

    def __post_init__(self) -> None:
        if not self.model_id:
            self.fail("model_id", "must be set (the recipe name)")
        problem = _model_problem(self.backend, self.model_file)
        if problem:
            self.fail("model_file", problem)
        if self.n_ctx <= 0 or self.n_ctx_train <= 0:
            self.fail("n_ctx", f"n_ctx ({self.n_ctx}) and n_ctx_train ({self.n_ctx_train}) must be > 0")
        if self.n_ctx > self.n_ctx_train:
            self.fail("n_ctx", f"{self.n_ctx} exceeds the model's trained context {self.n_ctx_train}")
        if self.threads < 0:
            self.fail("threads", f"must be >= 0, got {self.threads}")
        if not 0 < self.port < 65536:
            self.fail("port", f"must be in 1..65535, got {self.port}")
        if self.slots < 1:
            self.fail("slots", f"must be >= 1, got {self.slots}")
        if self.queue < 0:
            self.fail("queue", f"must be >= 0, got {self.queue}")
        if self.request_timeout <= 0:
            self.fail("request_timeout", f"must be > 0 seconds, got {self.request_timeout}")
        if self.max_body_bytes < 1024:
            self.fail("max_body_bytes", f"must be >= 1024, got {self.max_body_bytes}")
        for name, device in self.devices.items():
            if device.n_ctx > self.n_ctx_train:
                self.fail(f"devices.{name}.n_ctx", f"{device.n_ctx} exceeds the model's trained context "
                          f"{self.n_ctx_train}")


@dataclass
class Target:
    """What to serve: the bundle's default, or one device's selection (Bundle.target)."""

    device: str | None
    """The device profile name; None: the bundle's default model."""
    backend: str
    """llama.cpp or onnxruntime."""
    model_path: Path
    """The .gguf file or the ONNX directory."""
    threads: int
    """Threads (0: all cores)."""
    n_ctx: int
    """Context length."""


@dataclass
class Bundle:
    dir: Path
    """Directory holding the verified bundle (a temp dir when it came as .tar.gz)."""
    manifest: dict[str, Any]
    """Parsed manifest.json."""
    settings: ServerSettings
    """Parsed server.json."""
    unpacked: Path | None = None
    """The temp dir a .tar.gz bundle was unpacked into; None for a bundle directory."""

    def remove_unpacked(self) -> None:
        """Delete the unpacked copy now. A server stopped by SIGTERM ends by re-raising the signal, and
        a process killed by a signal runs no atexit hook: without this each restart would leave one."""
        if self.unpacked is not None:
            shutil.rmtree(self.unpacked, ignore_errors=True)

    @property
    def model_path(self) -> Path:
        return self.dir / self.settings.model_file

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.manifest["files"]

    def target(self, device: str | None = None) -> Target:
        """What `device` (a profile name in server.json devices) serves; None: the bundle's default."""
        s = self.settings
        if device is None:
            return Target(None, s.backend, self.dir / s.model_file, s.threads, s.n_ctx)
        if device not in s.devices:
            known = ", ".join(sorted(s.devices)) or "none"
            raise SmoledgeError(f"device '{device}' is not a target of this bundle (its devices: {known}); "
                                "name one of them, or leave the device out to serve the default model")
        d = s.devices[device]
        return Target(device, d.backend, self.dir / d.model_file, d.threads, d.n_ctx or s.n_ctx)


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


def _escapes(path: PurePosixPath) -> bool:
    """Whether a relative archive path climbs above the archive's top (`a/../../x`)."""
    depth = 0
    for part in path.parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            return True
    return False


def member_problem(m: tarfile.TarInfo) -> str | None:
    """Why an archive member cannot be part of a bundle, or None. A bundle is data: plain files and
    directories below its top, never a link (that a later member could write through), a device or a FIFO."""
    name = PurePosixPath(m.name)
    if m.name.startswith("/") or name.is_absolute() or (len(m.name) > 1 and m.name[1] == ":"):
        return "has an absolute path"
    if ".." in name.parts:
        return "has a '..' component (path traversal)"
    if m.issym() or m.islnk():
        kind = "a symbolic link" if m.issym() else "a hard link"
        # A symlink resolves from its own directory, a hard link names another member of the archive.
        target = PurePosixPath(m.linkname)
        out = target.is_absolute() or _escapes((name.parent if m.issym() else PurePosixPath()) / target)
        return f"is {kind} to '{m.linkname}'{' (outside the bundle)' if out else ''}; a bundle holds no links"
    if m.ischr() or m.isblk():
        return "is a device file"
    if m.isfifo():
        return "is a FIFO"
    if not (m.isfile() or m.isdir()):
        return f"is not a regular file or directory (tar type {m.type!r})"
    return None


def _extract(archive: Path) -> tuple[Path, Path]:
    """Unpack a .tar.gz bundle into a private temp dir (removed at exit); return (temp dir, bundle dir).

    One streaming pass: each member is checked before it is written, and the first bad one stops the
    unpacking and removes the temp dir, so nothing of a refused archive stays on disk (and nothing is
    ever written outside the temp dir). tarfile's "data" filter runs as a second line of defence."""
    tmp = Path(tempfile.mkdtemp(prefix="smoledge-bundle-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    free = shutil.disk_usage(tmp).free

    def refuse(message: str) -> SmoledgeError:
        shutil.rmtree(tmp, ignore_errors=True)
        return SmoledgeError(f"bundle archive {archive}: {message}; refusing to unpack it: {REFETCH}")

    seen: set[str] = set()
    total = 0
    try:
        with tarfile.open(archive, "r|*") as tar:
            for member in tar:
                problem = member_problem(member)
                if problem:
                    raise refuse(f"member '{member.name}' {problem}")
                key = PurePosixPath(member.name).as_posix()
                if key in seen:
                    raise refuse(f"member '{member.name}' appears twice (a later copy would replace the first)")
                seen.add(key)
                if len(seen) > MAX_ARCHIVE_MEMBERS:
                    raise refuse(f"more than {MAX_ARCHIVE_MEMBERS} members: not a smoledge bundle")
                total += member.size
                if total > free:
                    raise refuse(f"unpacking needs more than the {free} bytes free in {tmp.parent} "
                                 "(set TMPDIR to a disk with room)")
                tar.extract(member, tmp, filter="data")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:  # truncated or corrupted: EOFError, zlib.error
        raise refuse(f"cannot unpack the bundle archive ({type(exc).__name__}: {exc})") from None
    if (tmp / MANIFEST).is_file():
        return tmp, tmp
    subdirs = [p for p in tmp.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and (subdirs[0] / MANIFEST).is_file():
        return tmp, subdirs[0]
    raise refuse(f"no {MANIFEST} at the top of the archive")


def load_bundle(path: str | Path) -> Bundle:
    """Open a bundle directory (or .tar.gz), verify every checksum, parse server.json."""
    path = Path(path)
    if not path.exists():
        raise SmoledgeError(f"bundle {path} does not exist; build one with `smoledge package <recipe>`")
    unpacked, root = _extract(path) if path.is_file() else (None, path)
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
    models = [("model_file", settings.backend, settings.model_file)]
    models += [(f"devices.{n}.model_file", d.backend, d.model_file) for n, d in sorted(settings.devices.items())]
    for key, backend, model in models:
        wanted = [model] if backend == LLAMA_CPP else [f"{model}/{g}" for g in ONNX_GRAPHS]
        if not any(w in manifest["files"] for w in wanted):
            raise SmoledgeError(f"{root / SERVER}: {key} '{model}' ({backend}) is not in the bundle; {REFETCH}")
    return Bundle(dir=root, manifest=manifest, settings=settings, unpacked=unpacked)  # type: ignore[arg-type]
