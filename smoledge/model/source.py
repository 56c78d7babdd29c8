"""A model the user already has, as the recipe's `model.source`: a hub id, a local HF directory or a .gguf.

The export stage takes it instead of a distilled student (`fetch` gives a local HF directory, or the GGUF
itself); every data and training stage is then not needed. What each kind yields:

- HF directory or hub id: the PyTorch reference, so every export is gated on parity with it as a trained
  student's is.
- .gguf: the file is the model. There is no PyTorch reference (dequantizing it would only reproduce its
  rounding), so its quality is measured relative to the best artifact present, and the report says so.

Hub downloads go through huggingface_hub's cache; offline, a hub id that is not cached is refused with the
command that fetches it where there is network.

    from smoledge.model.source import source_kind, fetch
    source_kind("HuggingFaceTB/SmolLM2-135M-Instruct")  # "hub"
    hf_dir = fetch("HuggingFaceTB/SmolLM2-135M-Instruct", None)
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Literal

from smoledge.errors import SmoledgeError

SourceKind = Literal["gguf", "hf_dir", "hub"]
# Files of an HF model directory that export reads; the rest of a hub repo (other formats, ONNX, GGUFs,
# images) is not downloaded.
HUB_PATTERNS = ("config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
                "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                "chat_template.jinja", "vocab.json", "merges.txt", "added_tokens.json")
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


def source_kind(source: str) -> SourceKind:
    """What `source` names, or a SmoledgeError saying what it was taken for and what is accepted."""
    path = Path(source).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise SmoledgeError(f"model.source {source} looks like a GGUF file but does not exist; give the path "
                                "of an existing .gguf")
        return "gguf"
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SmoledgeError(f"model.source {source} is a directory without config.json, so not an HF model "
                                "directory; give a directory saved with save_pretrained, a .gguf file or a hub id")
        return "hf_dir"
    if path.exists():
        raise SmoledgeError(f"model.source {source} is a file but not a .gguf; accepted: a hub id "
                            "(HuggingFaceTB/SmolLM2-135M-Instruct), an HF model directory or a .gguf file")
    if HUB_ID.fullmatch(source):
        return "hub"
    raise SmoledgeError(f"model.source {source!r} is neither an existing path nor a hub id (owner/name); accepted: "
                        "a hub id, an HF model directory or a .gguf file")


def fetch(source: str, revision: str | None) -> Path:
    """A local HF directory (or the .gguf) for `source`; a hub id is downloaded into the HF cache once."""
    kind = source_kind(source)
    if kind != "hub":
        path = Path(source).expanduser().resolve()
        if kind == "hf_dir":
            check_hf_dir(path)
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        local = Path(snapshot_download(source, revision=revision, allow_patterns=list(HUB_PATTERNS)))
    except LocalEntryNotFoundError:
        raise SmoledgeError(
            f"cannot download {source} from the hub and it is not in the local HF cache (no network?); on a "
            f"machine with network run `hf download {source} --local-dir DIR`, copy DIR here and set "
            "model.source: DIR") from None
    except HfHubHTTPError as exc:
        raise SmoledgeError(f"the hub refused {source}{'@' + revision if revision else ''} ({exc}); check the id "
                            "and revision, and for a gated model log in with `hf auth login`") from None
    check_hf_dir(local)
    return local


def check_hf_dir(path: Path) -> None:
    """An HF directory export can read: config, safetensors weights and a tokenizer."""
    if not any(path.glob("*.safetensors")):
        raise SmoledgeError(f"{path} holds no *.safetensors weights; save the model with "
                            "model.save_pretrained(dir) (safetensors is the default) and point model.source at it")
    if not (path / "tokenizer.json").is_file() and not (path / "tokenizer.model").is_file():
        raise SmoledgeError(f"{path} has no tokenizer (tokenizer.json or tokenizer.model); save it next to the "
                            "weights with tokenizer.save_pretrained(dir)")


def model_identity(source: str, key: str) -> dict[str, Any]:
    """What anything made from this model depends on: a local model's weights and config (or the GGUF) by
    sha256, a hub model by id (the hub pins nothing more without network access). `key` names the recipe
    field for the error message."""
    root = Path(source).expanduser()
    if not root.exists():
        return {"hub": source}
    files = [root] if root.is_file() else sorted(
        p for p in root.iterdir() if p.suffix == ".safetensors" or p.name in ("config.json", "model.safetensors.index.json"))
    if root.is_dir() and not any(p.suffix == ".safetensors" for p in files):
        raise SmoledgeError(f"{key} {root} holds no *.safetensors weights; save it with "
                            f"model.save_pretrained(dir) (safetensors) or point {key} elsewhere")
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.name.encode())
        with p.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    # Content only: a run directory copied elsewhere keeps what was made from it valid.
    return {"sha256": digest.hexdigest()}
