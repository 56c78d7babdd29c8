"""What a GGUF file says it is (family, quantization) and the weight bytes one decoded token reads, from the
file's own metadata and tensor table. Standard library only: bench runs on boards, where gguf-py (the build
extra) is absent and llama-cpp-python exposes neither the tensors nor their types.

    from smoledge.bench.gguf_info import read_gguf, identity
    info = read_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")
    identity(info)   # {"architecture": "llama", "family": "llama · smollm2 135M", "quantization": "Q4_1", ...}

A model smoledge did not train carries no smoledge record, so everything here comes from the file. The
quantization is `general.file_type` named as llama-quantize names it (Q4_1, Q4_K_M, F32 for ALL_F32);
files without that key get the type holding most weight bytes, as llama.cpp guesses it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from smoledge.errors import SmoledgeError

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
# GGUF value types: struct code of each fixed-size one; 8 is a string, 9 an array.
SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
STRING, ARRAY = 8, 9


@dataclass
class Tensor:
    name: str
    type_id: int
    shape: tuple[int, ...]
    """ggml order: shape[0] is the row length; token_embd's shape[1] is the vocabulary."""
    nbytes: int
    """Bytes in the data section up to the next tensor: its data plus at most alignment - 1 bytes of padding."""


@dataclass
class GGUFInfo:
    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    """Scalar and string keys; arrays (the vocabulary, merges) are skipped."""
    tensors: list[Tensor] = field(default_factory=list)


class _Reader:
    def __init__(self, f: BinaryIO, path: Path):
        self.f, self.path = f, path

    def take(self, code: str) -> Any:
        size = struct.calcsize("<" + code)
        raw = self.f.read(size)
        if len(raw) != size:
            raise SmoledgeError(f"{self.path} ends inside its GGUF header; the file is truncated: download or "
                                f"export it again")
        return struct.unpack("<" + code, raw)[0]

    def string(self) -> str:
        n = self.take("Q")
        raw = self.f.read(n)
        if len(raw) != n:
            raise SmoledgeError(f"{self.path} ends inside its GGUF header; the file is truncated: download or "
                                f"export it again")
        return raw.decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype in SCALARS:
            return self.take(SCALARS[vtype])
        if vtype == STRING:
            return self.string()
        if vtype == ARRAY:
            etype, count = self.take("I"), self.take("Q")
            if etype in SCALARS:  # fixed-size elements: skip them in one seek
                self.f.seek(count * struct.calcsize("<" + SCALARS[etype]), 1)
            else:
                for _ in range(count):
                    self.value(etype)
            return None
        raise SmoledgeError(f"{self.path} has a GGUF value of unknown type {vtype}; it is not a GGUF this "
                            f"smoledge reads: convert it again with a current llama.cpp")


def read_gguf(path: str | Path) -> GGUFInfo:
    """The metadata and tensor table of a GGUF file (versions 2 and 3); SmoledgeError if it is not one."""
    path = Path(path)
    with open(path, "rb") as f:
        if f.read(4) != MAGIC:
            raise SmoledgeError(f"{path} is not a GGUF file (no GGUF magic); pass a .gguf that llama.cpp "
                                f"wrote, a bundle or an ONNX directory")
        r = _Reader(f, path)
        version = r.take("I")
        if version not in (2, 3):
            raise SmoledgeError(f"{path} is GGUF version {version}; smoledge reads versions 2 and 3: convert it "
                                f"again with a current llama.cpp")
        n_tensors, n_kv = r.take("Q"), r.take("Q")
        info = GGUFInfo(path)
        for _ in range(n_kv):
            key = r.string()
            value = r.value(r.take("I"))
            if value is not None:
                info.metadata[key] = value
        raw: list[tuple[str, int, tuple[int, ...], int]] = []
        for _ in range(n_tensors):
            name = r.string()
            shape = tuple(r.take("Q") for _ in range(r.take("I")))
            raw.append((name, r.take("I"), shape, r.take("Q")))
        align = int(info.metadata.get("general.alignment", DEFAULT_ALIGNMENT))
        data_start = -(-f.tell() // align) * align
    data_bytes = path.stat().st_size - data_start
    # Sizes from the offsets, not from a per-type block table, so types newer than this code still count.
    ends = sorted({off for *_, off in raw} | {data_bytes})
    next_offset = {a: b for a, b in zip(ends, ends[1:])}
    for name, type_id, shape, off in raw:
        if off not in next_offset:
            raise SmoledgeError(f"{path}: tensor {name} lies past the end of the file; the file is truncated: "
                                f"download or export it again")
        info.tensors.append(Tensor(name, type_id, shape, next_offset[off] - off))
    return info


def _names(prefix: str, strip: tuple[str, ...] = ()) -> dict[int, str]:
    """Enum names the installed llama.cpp defines (so they match the runtime that benches the file)."""
    import llama_cpp

    out = {}
    for key, v in vars(llama_cpp).items():
        if key.startswith(prefix) and isinstance(v, int) and key not in (prefix + "COUNT", prefix + "GUESSED"):
            name = key.removeprefix(prefix)
            for s in strip:
                name = name.removeprefix(s)
            out[v] = name
    return out


def type_bytes(info: GGUFInfo) -> dict[str, int]:
    """Bytes per ggml tensor type, largest first."""
    names = _names("GGML_TYPE_")
    out: dict[str, int] = {}
    for t in info.tensors:
        key = names.get(t.type_id, f"type{t.type_id}")
        out[key] = out.get(key, 0) + t.nbytes
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def weight_bytes_per_token(info: GGUFInfo) -> int:
    """Weight bytes one decoded token reads: every tensor, except that the token-embedding lookup reads one row
    when the output layer is its own tensor (with tied embeddings the output layer reads the whole table)."""
    total = sum(t.nbytes for t in info.tensors)
    names = {t.name: t for t in info.tensors}
    embd = names.get("token_embd.weight")
    if embd is not None and "output.weight" in names and len(embd.shape) >= 2 and embd.shape[1] > 0:
        total -= embd.nbytes - embd.nbytes // embd.shape[1]
    return total


def quantization(info: GGUFInfo) -> str:
    """general.file_type as llama-quantize names it; without it, the tensor type holding most bytes."""
    ftype = info.metadata.get("general.file_type")
    names = _names("LLAMA_FTYPE_", ("MOSTLY_", "ALL_"))
    if isinstance(ftype, int) and ftype in names:
        return names[ftype]
    by_type = type_bytes(info)
    if not by_type:
        return "unknown"
    # llama.cpp guesses the same way for files without general.file_type, and says so.
    return f"{next(iter(by_type))} (guessed)"


def family(info: GGUFInfo) -> tuple[str, str]:
    """(architecture, label): 'llama', 'llama · smollm2 135M' from general.architecture, basename (else name)
    and size_label."""
    meta = info.metadata
    arch = str(meta.get("general.architecture") or "unknown")
    name = str(meta.get("general.basename") or meta.get("general.name") or "").strip()
    size = str(meta.get("general.size_label") or "").strip()
    if size and size.lower() not in name.lower():
        name = f"{name} {size}".strip()
    return arch, (f"{arch} · {name}" if name else arch)


def identity(info: GGUFInfo) -> dict[str, Any]:
    """The fields a bench row carries about the model itself."""
    arch, label = family(info)
    return {"architecture": arch, "family": label, "quantization": quantization(info),
            "tensor_types": type_bytes(info), "weight_bytes_per_token": weight_bytes_per_token(info)}
