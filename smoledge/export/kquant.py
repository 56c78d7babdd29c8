"""K-quant GGUFs (Q4_K_M, Q5_K_M, Q6_K) by llama.cpp's own quantizer, through llama-cpp-python.

    from smoledge.export.kquant import quantize_gguf
    quantize_gguf("runs/quickstart/export/model-f16.gguf", "runs/quickstart/export/model-q4_k_m.gguf", "q4_k_m")

gguf-py only writes the legacy block quants; the K-quants' super-block scales and the
per-tensor mix of Q4_K_M / Q5_K_M (attention V and FFN down kept wider) are llama.cpp's,
so smoledge calls `llama_model_quantize` on the F16 file its own writer made rather than
reimplementing them. The output is written to a temp name and renamed.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import TYPE_CHECKING

from smoledge.errors import SmoledgeError
from smoledge.export import gguf_constants as C
from smoledge.host import local_cores
from smoledge.io import atomic_path

if TYPE_CHECKING:
    from smoledge.export.imatrix import Imatrix


def quantize_gguf(src: str | Path, dst: str | Path, kind: str, threads: int = 0,
                  imatrix: "Imatrix | None" = None) -> Path:
    """Quantize the F16 (or F32) GGUF `src` to `kind` (a key of LLAMA_CPP_QUANTS) at `dst`, atomically.

    With `imatrix` (smoledge.export.imatrix.collect_imatrix), llama.cpp weighs each column's
    rounding error by its activation energy when it searches the block scales."""
    import llama_cpp

    from smoledge.export.imatrix import ImatrixArray

    if kind not in C.LLAMA_CPP_QUANTS:
        raise SmoledgeError(f"'{kind}' is not a llama.cpp quant smoledge makes; choose one of "
                            f"{', '.join(C.LLAMA_CPP_QUANTS)}")
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise SmoledgeError(f"{src} is missing: the {kind} GGUF is quantized from it; write the f16 GGUF first")
    _refuse_if_no_k_blocks(src, kind)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, C.LLAMA_CPP_QUANTS[kind])
    params.nthread = threads or local_cores()
    held = ImatrixArray(imatrix) if imatrix else None  # alive until llama.cpp returns
    if held is not None:
        params.imatrix = held.array
    with atomic_path(dst) as tmp:
        status = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        if status != 0:
            raise SmoledgeError(f"llama.cpp could not quantize {src} to {kind} (status {status}); its log above "
                                f"says which tensor; export f16 or q8_0 instead")
    return dst


def _refuse_if_no_k_blocks(src: Path, kind: str) -> None:
    """llama.cpp quietly keeps a matrix in Q5_0/Q8_0 when its rows are not a multiple of the K-quants'
    256-wide super-block; when that is every matrix, the file would carry the K-quant's name and none
    of its format, so refuse it."""
    import gguf

    widths = sorted({int(t.shape[0]) for t in gguf.GGUFReader(str(src)).tensors if len(t.shape) == 2})
    if widths and not any(w % C.K_QUANT_BLOCK == 0 for w in widths):
        raise SmoledgeError(
            f"cannot make a {kind} GGUF from {src.name}: no weight matrix has rows that are a multiple of "
            f"{C.K_QUANT_BLOCK} (the K-quants' super-block; rows here: {', '.join(map(str, widths))}), so llama.cpp "
            f"would write legacy quants under the {kind} name. Export q4_0 or q8_0 instead, or make "
            f"hidden_size and intermediate_size multiples of {C.K_QUANT_BLOCK}")


def tensor_types(path: str | Path) -> dict[str, int]:
    """How many tensors of each ggml type a GGUF holds, e.g. {"Q4_K": 120, "Q6_K": 31, "F32": 61}:
    where llama.cpp kept a tensor wider (its rows are not a multiple of 256, or the mix asks for it),
    this shows it."""
    import gguf

    counts: dict[str, int] = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    return dict(sorted(counts.items()))
