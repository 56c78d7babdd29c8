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
import os
from pathlib import Path

from smoledge.errors import SmoledgeError
from smoledge.export import gguf_constants as C
from smoledge.io import atomic_path


def quantize_gguf(src: str | Path, dst: str | Path, kind: str, threads: int = 0) -> Path:
    """Quantize the F16 (or F32) GGUF `src` to `kind` (a key of LLAMA_CPP_QUANTS) at `dst`, atomically."""
    import llama_cpp

    if kind not in C.LLAMA_CPP_QUANTS:
        raise SmoledgeError(f"'{kind}' is not a llama.cpp quant smoledge makes; choose one of "
                            f"{', '.join(C.LLAMA_CPP_QUANTS)}")
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise SmoledgeError(f"{src} is missing: the {kind} GGUF is quantized from it; write the f16 GGUF first")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, C.LLAMA_CPP_QUANTS[kind])
    params.nthread = threads or len(os.sched_getaffinity(0))
    with atomic_path(dst) as tmp:
        status = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        if status != 0:
            raise SmoledgeError(f"llama.cpp could not quantize {src} to {kind} (status {status}); its log above "
                                f"says which tensor; export f16 or q8_0 instead")
    return dst
