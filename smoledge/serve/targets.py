"""What `smoledge serve TARGET` serves, whatever TARGET is: a bundle, a GGUF, an ONNX export or an HF
directory, each turned into the same settings a bundle's server.json holds. Torch-free.

    from smoledge.serve.targets import resolve
    served = resolve("SmolLM2-135M-Instruct.Q4_1.gguf")     # or a bundle, an ONNX dir, an HF dir
    served.settings.model_id, served.settings.chat_template, served.target.backend, served.target.model_path

The HTTP layer only ever sees a `Served`: a bundle's settings come from its verified server.json, the
others' from the artifact itself, as the runtime that serves it reads them:
  - a `.gguf`: chat template, BOS/EOS and the end-of-turn tokens, and the trained context length from
    the file's own metadata, read by llama.cpp (which serves it; gguf-py is a build-only library);
  - an ONNX export directory (model.onnx or model_quantized.onnx, as optimum and `smoledge export`
    write it): the tokenizer files and config.json it holds;
  - an HF model directory: not served as is (that would need torch), but through a GGUF or ONNX
    export found in it or next to it (export/hf beside export/model-*.gguf); with none, the error
    gives the command that makes one.
Anything else is refused with what TARGET was taken for and what is accepted.
"""

from __future__ import annotations

import ctypes
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from smoledge.config import ConfigError
from smoledge.errors import SmoledgeError
from smoledge.layout import PackageFiles
from smoledge.serve.bundle import LLAMA_CPP, MANIFEST, ONNX_GRAPHS, ONNXRUNTIME, Bundle, ServerSettings, Target, \
    load_bundle
from smoledge.serve.hf_meta import MODEL_CONFIG, TOKENIZER_CONFIG, TOKENIZER_JSON, TokenizerMeta, read_tokenizer_meta

ACCEPTED = ("a bundle directory or .tar.gz (`smoledge package`), a .gguf file, an ONNX export directory "
            "(model.onnx + tokenizer.json), or an HF model directory exported to GGUF or ONNX")
EXPORT_COMMAND = "smoledge deploy {dir} --device x86_64-avx2-laptop"
# Context a bare model is served with when --n-ctx is not given: llama-server's default, so that a
# 128k-context model does not reserve a 128k KV cache per slot; capped by the model's own.
DEFAULT_N_CTX = 4096
# The GGUF a directory of several is served from: the type `smoledge package` bundles by default.
PREFERRED_GGUF = "model-q8_0.gguf"
# The export stage's HF directory (runs/<name>/export/hf), whose siblings are its GGUF and ONNX exports.
EXPORT_HF = "hf"
HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
              "pytorch_model.bin.index.json")


@dataclass
class Served:
    """TARGET read: the settings a bundle's server.json would hold, and the artifact to run."""

    kind: str
    """"bundle", "gguf", "onnx" or "hf" (an HF directory, served through one of its exports)."""
    settings: ServerSettings
    target: Target
    tokenizer_dir: Path | None = None
    """Where the onnxruntime backend reads tokenizer.json; None: the model directory itself."""
    bundle: Bundle | None = None
    """The verified bundle, for a bundle TARGET."""
    created: int = 0
    """When the model was made (Unix time; /v1/models' `created`)."""
    note: str = ""
    """How TARGET was read, for the startup line (an HF directory: which export serves it)."""

    def close(self) -> None:
        """Remove what serving unpacked (a .tar.gz bundle's temp dir)."""
        if self.bundle is not None:
            self.bundle.remove_unpacked()


def resolve(target: str | Path, device: str | None = None) -> Served:
    """Read TARGET (see the module docstring); SmoledgeError naming what it was taken for when it cannot be served."""
    path = Path(target)
    if not path.exists():
        raise SmoledgeError(f"serve target {path} does not exist; pass {ACCEPTED}")
    if device is not None and not _is_bundle(path):
        raise SmoledgeError(f"--device picks one of a bundle's per-device models, and {path} is not a bundle; "
                            f"leave --device out, or serve the bundle `smoledge package` made")
    if _is_bundle(path):
        return _bundle(path, device)
    if path.is_file():
        if path.suffix == ".gguf":
            return _gguf(path)
        head = path.read_bytes()[:4] if path.stat().st_size else b""
        kind = "a GGUF file named without .gguf" if head == b"GGUF" else "a file that is none of these"
        raise SmoledgeError(f"serve target {path} was taken for {kind}; pass {ACCEPTED}")
    if any((path / g).is_file() for g in ONNX_GRAPHS):
        return _onnx(path, path)
    if (path / MODEL_CONFIG).is_file():
        return _hf(path)
    raise SmoledgeError(f"serve target {path} is a directory with no manifest.json (bundle), no model.onnx (ONNX "
                        f"export) and no config.json (HF model); pass {ACCEPTED}")


def _is_bundle(path: Path) -> bool:
    return (path.is_file() and path.name.endswith((".tar.gz", ".tgz"))) or (path / MANIFEST).is_file()


def _bundle(path: Path, device: str | None) -> Served:
    bundle = load_bundle(path)
    t = bundle.target(device)
    tokenizer = PackageFiles(bundle.dir).tokenizer if t.backend == ONNXRUNTIME else None
    return Served("bundle", bundle.settings, t, tokenizer, bundle, _created(bundle))


def _created(bundle: Bundle) -> int:
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(bundle.manifest.get("created", "")).timestamp())
    except (TypeError, ValueError):
        return int(bundle.dir.stat().st_mtime)


def _settings(what: Path, **fields: object) -> ServerSettings:
    try:
        return ServerSettings(**fields)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise SmoledgeError(f"{what}: {exc}") from None


def _gguf(path: Path, model_id: str | None = None, hf: TokenizerMeta | None = None) -> Served:
    """A GGUF, described by its own metadata; `hf`: the HF directory it was exported from, whose template
    and end-of-turn tokens (generation_config.json's list too) win over what the converter recorded."""
    meta = gguf_meta(path)
    n_ctx_train = meta.n_ctx_train or DEFAULT_N_CTX
    n_ctx = min(n_ctx_train, DEFAULT_N_CTX)
    stops = list(dict.fromkeys([*meta.stop_tokens, *(hf.stop_tokens if hf else [])]))
    settings = _settings(path, model_id=model_id or path.stem, model_file=path.name, backend=LLAMA_CPP,
                         chat_template=(hf and hf.chat_template) or meta.chat_template, bos_token=meta.bos_token,
                         eos_token=meta.eos_token, stop_tokens=stops, n_ctx=n_ctx, n_ctx_train=n_ctx_train)
    return Served("gguf", settings, Target(None, LLAMA_CPP, path, 0, n_ctx), created=int(path.stat().st_mtime))


def _onnx(model_dir: Path, source: Path, model_id: str | None = None) -> Served:
    """An ONNX export with its tokenizer (optimum writes the tokenizer files next to the graph)."""
    if not (model_dir / TOKENIZER_JSON).is_file():
        raise SmoledgeError(f"{source} was taken for an ONNX export, but {model_dir} holds no {TOKENIZER_JSON}; the "
                            "onnxruntime backend needs the model's tokenizer: copy tokenizer.json and "
                            f"{TOKENIZER_CONFIG} into it (optimum's export writes them)")
    meta = read_tokenizer_meta(model_dir)
    n_ctx_train = meta.n_ctx_train or DEFAULT_N_CTX
    n_ctx = min(n_ctx_train, DEFAULT_N_CTX)
    settings = _settings(model_dir, model_id=model_id or model_dir.name, model_file=model_dir.name,
                         backend=ONNXRUNTIME, chat_template=meta.chat_template, bos_token=meta.bos_token,
                         eos_token=meta.eos_token, stop_tokens=meta.stop_tokens, n_ctx=n_ctx, n_ctx_train=n_ctx_train)
    return Served("onnx", settings, Target(None, ONNXRUNTIME, model_dir, 0, n_ctx), model_dir,
                  created=int(model_dir.stat().st_mtime))


def _hf(path: Path) -> Served:
    """An HF directory, served through the export found in it or next to it."""
    if not ((path / TOKENIZER_JSON).is_file() or (path / TOKENIZER_CONFIG).is_file()):
        raise SmoledgeError(f"serve target {path} was taken for an HF model directory (it has {MODEL_CONFIG}), but it "
                            f"has no tokenizer ({TOKENIZER_JSON}, {TOKENIZER_CONFIG}); copy the model's tokenizer "
                            "files into it from where the model came from")
    ggufs, onnx_dirs = exports(path)
    if ggufs:
        served = _gguf(ggufs[0], model_id=path.name, hf=read_tokenizer_meta(path))
        chosen = ggufs[0]
    elif onnx_dirs:
        served = _onnx(onnx_dirs[0], path, model_id=path.name)
        chosen = onnx_dirs[0]
    else:
        weights = any((path / w).is_file() for w in HF_WEIGHTS) or any(path.glob("*.safetensors"))
        what = "an HF model directory" if weights else f"an HF model directory (it has {MODEL_CONFIG}, but no weights)"
        raise SmoledgeError(f"serve target {path} was taken for {what}; smoledge serves it through a GGUF or ONNX "
                            f"export and found none in it or next to it. Make one with `"
                            f"{EXPORT_COMMAND.format(dir=path)}`, then serve the bundle it prints")
    served.kind = "hf"
    served.note = f"HF directory {path.name}, through its export {os.path.relpath(chosen, path)}"
    return served


def exports(hf_dir: Path) -> tuple[list[Path], list[Path]]:
    """GGUF files and ONNX export directories of an HF directory, the preferred one first: in it, and for the
    export stage's hf/ directory, beside it (export/model-*.gguf, export/onnx*/). Another directory's
    neighbours are other models, not its exports."""
    def is_onnx(d: Path) -> bool:
        return d.is_dir() and any((d / g).is_file() for g in ONNX_GRAPHS)

    ggufs = [p for p in hf_dir.glob("*.gguf") if p.is_file()]
    onnx = [d for d in hf_dir.iterdir() if is_onnx(d)]
    if hf_dir.name == EXPORT_HF:
        ggufs += [p for p in hf_dir.parent.glob("model-*.gguf") if p.is_file()]
        onnx += [d for d in hf_dir.parent.glob("onnx*") if is_onnx(d)]
    return (sorted(ggufs, key=lambda p: (p.name != PREFERRED_GGUF, p.name)),
            sorted(onnx, key=lambda d: (d.name != "onnx", d.name)))


@dataclass
class GGUFMeta:
    chat_template: str | None
    bos_token: str
    eos_token: str
    stop_tokens: list[str]
    """Texts of every token llama.cpp ends a generation on (EOS, EOT, EOM, <|im_end|>...)."""
    n_ctx_train: int | None


def gguf_meta(path: Path) -> GGUFMeta:
    """A GGUF's serving metadata, read by llama.cpp from the file's header and vocabulary (no weights loaded)."""
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise SmoledgeError(f"serve target {path} was taken for a GGUF file (by its name), but it does not start "
                                f"with the GGUF magic: it is not one, or not a whole one; download or export it "
                                f"again, or pass {ACCEPTED}")
    import llama_cpp

    # llama.cpp logs every load through llama-cpp-python's logger; only its errors are worth showing here.
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise SmoledgeError(f"serve target {path} was taken for a GGUF file, but llama.cpp cannot read it (truncated, "
                            f"corrupted, or an architecture this llama-cpp-python {llama_cpp.__version__} does not "
                            "know); download or export it again")
    try:
        def meta(key: str) -> str | None:
            size = 1 << 16
            while True:
                buf = ctypes.create_string_buffer(size)
                n = llama_cpp.llama_model_meta_val_str(model, key.encode(), buf, size)
                if n < 0:
                    return None
                if n < size:
                    return buf.value.decode("utf-8", errors="replace")
                size = n + 1

        vocab = llama_cpp.llama_model_get_vocab(model)
        n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)

        def text(token: int) -> str:
            return llama_cpp.llama_vocab_get_text(vocab, token).decode("utf-8", errors="replace") \
                if 0 <= token < n_vocab else ""

        ends = [t for t in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t)]
        context = meta(f"{meta('general.architecture')}.context_length")
        return GGUFMeta(chat_template=meta("tokenizer.chat_template"), bos_token=text(llama_cpp.llama_vocab_bos(vocab)),
                        eos_token=text(llama_cpp.llama_vocab_eos(vocab)), stop_tokens=[text(t) for t in ends],
                        n_ctx_train=int(context) if context and context.isdigit() else None)
    finally:
        llama_cpp.llama_model_free(model)
