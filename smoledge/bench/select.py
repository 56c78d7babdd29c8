"""Which exported artifact a device should run: its backend, its ISA, its RAM budget and the quality gates.

    from smoledge.bench.select import candidates, select
    choice = select(profile, candidates(Path("runs/quickstart/export")), ppl_delta={...}, max_ppl_delta_pct=5.0)
    print(choice.name, choice.reason)

Decode on a CPU is memory-bound: every token reads every weight once. So among the artifacts that fit the
device's RAM budget (weights plus the KV cache at the device's context) and pass the perplexity gate, the
smallest file is the fastest one, and that is the one chosen. Torch-free: this runs on boards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smoledge.bench.config import DeviceProfile
from smoledge.errors import SmoledgeError
from smoledge.layout import ExportFiles

LLAMA_CPP, ONNXRUNTIME = "llama.cpp", "onnxruntime"
# The ISA flag an int8 ONNX target needs (onnxruntime picks its kernels at run time; a model quantized
# for VNNI still runs elsewhere, but slower and with the wrong signedness for the hardware's dot product).
INT8_TARGET_NEEDS = {"avx2": "avx2", "avx512_vnni": "avx512_vnni", "arm64": None}
ARM = ("aarch64", "arm64")
# Bytes per cached K or V element: llama.cpp keeps its KV cache in f16, onnxruntime in the model's fp32.
KV_BYTES = {LLAMA_CPP: 2, ONNXRUNTIME: 4}


@dataclass
class Candidate:
    name: str
    """Artifact name as the evaluate report names it: model-q8_0.gguf, onnx, onnx-int8-avx2, ..."""
    backend: str
    """llama.cpp or onnxruntime."""
    path: Path
    """The .gguf file or the ONNX directory."""
    bytes: int
    """Model bytes on disk (for ONNX: graph and weights, not the tokenizer)."""
    target: str | None = None
    """The int8 ONNX CPU target (arm64, avx2, avx512_vnni), None otherwise."""


@dataclass
class Selection:
    name: str
    """The chosen artifact."""
    backend: str
    reason: str
    """Why it was chosen, in a sentence for the report and the bundle manifest."""
    ram_bytes: int
    """Estimated RAM: weights plus the KV cache at the device's max_context."""
    rejected: dict[str, str] = field(default_factory=dict)
    """Every other candidate of the device's backend, with why it was not chosen."""


def onnx_files(onnx_dir: Path) -> list[Path]:
    """The graph and weight files of an ONNX artifact (its tokenizer and configs are not the model)."""
    from smoledge.export.onnx import model_file  # numpy-only at import: fine on a board

    graph = onnx_dir / model_file(onnx_dir)
    if not graph.is_file():
        return []
    return [graph] + sorted(onnx_dir.glob(graph.name + "_data*"))


def candidates(export_dir: Path) -> list[Candidate]:
    """Every runnable artifact the export stage wrote."""
    out = [Candidate(p.name, LLAMA_CPP, p, p.stat().st_size) for p in sorted(export_dir.glob("model-*.gguf"))]
    for d in sorted(export_dir.glob("onnx*")):
        files = onnx_files(d) if d.is_dir() else []
        if files:
            target = d.name.rsplit("-", 1)[1] if d.name.startswith("onnx-int8") else None
            out.append(Candidate(d.name, ONNXRUNTIME, d, sum(p.stat().st_size for p in files), target))
    return out


def kv_cache_bytes(hf_config: dict[str, Any], n_ctx: int, backend: str) -> int:
    """K and V for every layer at n_ctx tokens: 2 x layers x kv_heads x head_dim x n_ctx x element bytes."""
    heads = int(hf_config["num_attention_heads"])
    head_dim = int(hf_config.get("head_dim") or hf_config["hidden_size"] // heads)
    kv_heads = int(hf_config.get("num_key_value_heads") or heads)
    return 2 * int(hf_config["num_hidden_layers"]) * kv_heads * head_dim * n_ctx * KV_BYTES[backend]


def isa_problem(profile: DeviceProfile, c: Candidate) -> str | None:
    """Why an int8 ONNX target does not suit this CPU, or None."""
    if c.target is None:
        return None
    is_arm = profile.arch in ARM
    if (c.target == "arm64") != is_arm:
        return f"quantized for {c.target}, the device is {profile.arch}"
    need = INT8_TARGET_NEEDS.get(c.target)
    if need and need not in profile.isa:
        return f"quantized for {c.target}, the device lacks {need}"
    return None


def select(profile: DeviceProfile, found: list[Candidate], hf_config: dict[str, Any], n_ctx: int,
           ppl_delta: dict[str, float], max_ppl_delta_pct: float | None,
           set_aside: dict[str, str] | None = None) -> Selection:
    """The smallest artifact of the device's backend that suits its ISA, fits its RAM budget at n_ctx and
    passes the perplexity gate, leaving out `set_aside` (name -> why: a check the caller ran on it failed).
    Raises SmoledgeError listing every candidate's reason when none does."""
    budget = int(profile.model_ram_budget_gb * 1e9)
    rejected: dict[str, str] = {}
    ok: list[tuple[int, Candidate]] = []
    for c in found:
        if c.backend != profile.backend:
            continue
        if set_aside and c.name in set_aside:
            rejected[c.name] = set_aside[c.name]
            continue
        ram = c.bytes + kv_cache_bytes(hf_config, n_ctx, c.backend)
        delta = ppl_delta.get(c.name)
        if (why := isa_problem(profile, c)) is not None:
            rejected[c.name] = why
        elif ram > budget:
            rejected[c.name] = f"needs {size(ram)} at {n_ctx} tokens, the budget is {size(budget)}"
        elif max_ppl_delta_pct is not None and (delta is None or not delta <= max_ppl_delta_pct):
            shown = "was not measured" if delta is None else f"is {delta:+.2f}%"
            rejected[c.name] = f"perplexity vs fp32 {shown}, gate max_ppl_delta_pct is {max_ppl_delta_pct:+.2f}%"
        else:
            ok.append((ram, c))
    if not ok:
        detail = "; ".join(f"{n}: {why}" for n, why in rejected.items()) or f"export wrote no {profile.backend} artifact"
        raise SmoledgeError(f"no artifact suits device '{profile.name}' ({profile.backend}): {detail}. Export a "
                            f"smaller or better quantization, or relax the device profile or evaluate.gates")
    ok.sort(key=lambda rc: (rc[1].bytes, rc[1].name))
    ram, best = ok[0]
    for _, c in ok[1:]:
        rejected[c.name] = f"larger ({size(c.bytes)} vs {size(best.bytes)}): decode reads every weight per token"
    gate = (f", within max_ppl_delta_pct {max_ppl_delta_pct:+.2f}% (measured {ppl_delta[best.name]:+.2f}%)"
            if max_ppl_delta_pct is not None else "")
    reason = (f"smallest {profile.backend} artifact ({size(best.bytes)}) that fits the {size(budget)} budget "
              f"with a {n_ctx}-token KV cache ({size(ram)} in all){gate}")
    return Selection(best.name, best.backend, reason, ram, rejected)


def size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.2f} MB"


def read_hf_config(export_dir: Path) -> dict[str, Any]:
    path = ExportFiles(export_dir).hf / "config.json"
    if not path.is_file():
        raise SmoledgeError(f"{path} is missing; re-run `smoledge export`")
    return json.loads(path.read_text())
