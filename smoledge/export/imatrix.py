"""Importance matrix for llama.cpp's quantizer, measured in PyTorch on calibration text.

For every weight matrix W (out, in) that llama.cpp quantizes, the importance of input
column j is E[x_j^2] over the calibration tokens: rounding error in a column that meets
large activations costs more output error, so the quantizer weights its error search by
it. This is what llama.cpp's `llama-imatrix` tool computes by running the GGUF; here the
trained PyTorch model runs instead (the same activations, to fp32 precision) and the
result goes straight to `llama_model_quantize` through its C array of (name, data, size).

It is also saved in llama.cpp's GGUF imatrix format (`<tensor>.in_sum2`, `<tensor>.counts`),
so `llama-quantize --imatrix imatrix.gguf` can reuse it.

    from smoledge.export.imatrix import collect_imatrix, write_imatrix_gguf
    imatrix = collect_imatrix(model, windows)          # {"blk.0.attn_q.weight": (sum_x2, count), ...}
    write_imatrix_gguf(imatrix, "runs/q/export/imatrix.gguf", dataset="curated train split")
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np

from smoledge.errors import SmoledgeError
from smoledge.io import atomic_path

# (sum over tokens of x^2 per input column, tokens seen)
Imatrix = dict[str, tuple[np.ndarray, int]]


def linear_gguf_names(model: Any) -> dict[str, str]:
    """HF module name of each quantized Linear -> its llama.cpp tensor name, by the `gguf` package's own
    name map for the model's architecture (so fused tensors such as Phi-3's qkv_proj get theirs). A tied
    lm_head is the embedding, which llama.cpp's quantizer takes no importance matrix for."""
    import gguf
    import torch

    from smoledge.export.architectures import arch_spec

    names_map = gguf.get_tensor_name_map(arch_spec(model.config.model_type).graph, model.config.num_hidden_layers)
    names = {}
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or (name == "lm_head" and model.config.tie_word_embeddings):
            continue
        gg = names_map.get_name(name + ".weight", try_suffixes=(".weight",))
        if gg is None:
            raise SmoledgeError(f"no llama.cpp tensor name for the linear layer '{name}' of this "
                                f"{model.config.model_type} model; set export.imatrix: false")
        names[name] = gg
    return names


def collect_imatrix(model: Any, windows: list[list[int]]) -> Imatrix:
    """Run `model` (HF causal LM, eval mode) over each window and accumulate each Linear's input energy."""
    import torch

    from smoledge.export.parity import torch_threads

    targets = linear_gguf_names(model)
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook(gg_name: str):
        def accumulate(_module, inputs):
            x = inputs[0].detach().float().reshape(-1, inputs[0].shape[-1])  # (B*T, in)
            sums[gg_name] = sums.get(gg_name, 0) + (x * x).sum(0)  # (in,)
            counts[gg_name] = counts.get(gg_name, 0) + x.shape[0]
        return accumulate

    modules = dict(model.named_modules())
    handles = [modules[hf].register_forward_pre_hook(hook(gg)) for hf, gg in targets.items()]
    try:
        with torch.no_grad(), torch_threads(model):
            for window in windows:
                model(torch.tensor([window], dtype=torch.long))
    finally:
        for h in handles:
            h.remove()
    return {name: (sums[name].double().numpy(), counts[name]) for name in targets.values()}


def write_imatrix_gguf(imatrix: Imatrix, path: str | Path, dataset: str, chunk_size: int) -> Path:
    """Save in llama.cpp's GGUF imatrix format (what `llama-imatrix` writes, `llama-quantize --imatrix` reads)."""
    import gguf

    with atomic_path(Path(path)) as tmp:
        # llama-imatrix's files carry no architecture: the tensor names are the model's link.
        w = gguf.GGUFWriter(tmp, arch="")
        w.kv_data[0].pop(gguf.Keys.General.ARCHITECTURE, None)
        w.add_type(gguf.GGUFType.IMATRIX)
        w.add_array("imatrix.datasets", [dataset])
        w.add_uint32("imatrix.chunk_count", max(1, max((c for _, c in imatrix.values()), default=0) // chunk_size))
        w.add_uint32("imatrix.chunk_size", chunk_size)
        for name, (sum_x2, count) in imatrix.items():
            w.add_tensor(f"{name}.in_sum2", sum_x2.astype(np.float32).reshape(1, -1))  # (1 matrix, in)
            w.add_tensor(f"{name}.counts", np.array([[count]], dtype=np.float32))  # (1 matrix, 1)
        w.write_header_to_file(path=tmp)
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return Path(path)


def read_imatrix_gguf(path: str | Path) -> Imatrix:
    """Inverse of write_imatrix_gguf (one matrix per tensor: no mixture-of-experts here)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    tensors = {t.name: np.asarray(t.data, dtype=np.float64).reshape(-1) for t in reader.tensors}
    return {name.removesuffix(".in_sum2"): (data, int(tensors[name.removesuffix(".in_sum2") + ".counts"][0]))
            for name, data in tensors.items() if name.endswith(".in_sum2")}


class ImatrixArray:
    """The imatrix as llama.cpp's C array of llama_model_imatrix_data, ended by a NULL name.

    Holds the float buffers it points into, so keep the object alive while llama.cpp quantizes."""

    def __init__(self, imatrix: Imatrix):
        import llama_cpp

        # llama.cpp reads the mean of x^2 per column (llama-quantize divides the file's sums by counts).
        self._names = [name.encode() for name in imatrix]
        self._buffers = [np.ascontiguousarray(s / max(c, 1), dtype=np.float32) for s, c in imatrix.values()]
        self.array = (llama_cpp.llama_model_imatrix_data * (len(self._names) + 1))()
        for i, (name, buf) in enumerate(zip(self._names, self._buffers)):
            self.array[i].name = name
            self.array[i].data = buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            self.array[i].size = buf.size
        self.array[len(self._names)].name = None
