"""ONNX artifacts: the decoder with its KV cache (optimum-onnx) and dynamic int8 per CPU target.

    from smoledge.export.onnx import export_onnx, quantize_onnx, check_onnx
    export_onnx("runs/quickstart/export/hf", "runs/quickstart/export/onnx")
    quantize_onnx("runs/quickstart/export/onnx", "runs/quickstart/export/onnx-int8-avx2", "avx2")
    report = check_onnx("runs/quickstart/export/hf", "runs/quickstart/export/onnx", text, max_abs_diff=1e-3)

Both directories load with optimum's `ORTModelForCausalLM.from_pretrained(dir)` (the int8 one
with file_name="model_quantized.onnx", which `ort_config.json` also records). Dynamic int8
quantizes the weights ahead of time and the activations per call, so it needs no calibration
data; the target picks the instruction set its kernels assume (arm64: NEON dot products,
avx2, avx512_vnni).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from smoledge.errors import SmoledgeError
from smoledge.io import atomic_dir

TASK = "text-generation-with-past"
QUANTIZED_FILE = "model_quantized.onnx"
INT8_TARGETS = ("arm64", "avx2", "avx512_vnni")


def export_onnx(hf_dir: str | Path, out_dir: str | Path) -> Path:
    """The HF model as an ONNX decoder with past key/values, plus its tokenizer and config, atomically."""
    from optimum.exporters.onnx import main_export

    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        try:
            main_export(str(hf_dir), output=tmp, task=TASK, device="cpu")
        except Exception as exc:  # optimum raises plain ValueErrors/RuntimeErrors for unsupported graphs
            raise SmoledgeError(f"optimum-onnx could not export {hf_dir} ({type(exc).__name__}: {exc}); "
                                f"set export.onnx: false to skip ONNX") from exc
    return out_dir


def quantize_onnx(onnx_dir: str | Path, out_dir: str | Path, target: str) -> Path:
    """Dynamic (weights int8 ahead of time, activations per call) quantization for one CPU target."""
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    if target not in INT8_TARGETS:
        raise SmoledgeError(f"ONNX int8 target '{target}' is unknown; choose one of {', '.join(INT8_TARGETS)}")
    config = getattr(AutoQuantizationConfig, target)(is_static=False, per_channel=False)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        ORTQuantizer.from_pretrained(onnx_dir).quantize(save_dir=tmp, quantization_config=config)
    return out_dir


def load_ort(onnx_dir: str | Path) -> Any:
    from optimum.onnxruntime import ORTModelForCausalLM

    onnx_dir = Path(onnx_dir)
    name = QUANTIZED_FILE if (onnx_dir / QUANTIZED_FILE).exists() else "model.onnx"
    return ORTModelForCausalLM.from_pretrained(onnx_dir, file_name=name)


def ort_logits(model: Any, ids: list[int]) -> np.ndarray:
    """(T, V) float32 logits of onnxruntime for `ids` in one pass."""
    import torch

    inputs = torch.tensor([ids], dtype=torch.long)
    out = model(input_ids=inputs, attention_mask=torch.ones_like(inputs))
    return out.logits[0].float().numpy()


def ort_greedy(model: Any, prompt_ids: list[int], new_tokens: int) -> list[int]:
    """Argmax decoding through the KV cache, as a device runs it (one token per call after the prompt)."""
    import torch

    inputs = torch.tensor([prompt_ids], dtype=torch.long)
    out = model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), do_sample=False,
                         max_new_tokens=new_tokens, min_new_tokens=new_tokens, eos_token_id=None, pad_token_id=0)
    return out[0, len(prompt_ids):].tolist()


def check_onnx(hf_dir: str | Path, onnx_dir: str | Path, text: str, max_abs_diff: float | None,
               greedy_tokens: int = 0, model: Any = None) -> dict[str, Any]:
    """Logits of the ONNX model vs PyTorch on `text` (and, with greedy_tokens, greedy decoding through
    the KV cache vs PyTorch's argmax loop). With max_abs_diff, a larger difference or any greedy
    divergence fails the export; without it (quantized files) the numbers are only reported."""
    from smoledge.export.parity import compare_logits, load_torch, torch_logits

    model = model if model is not None else load_torch(hf_dir)[0]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir)
    ids = tok.encode(text, add_special_tokens=False)
    ort = load_ort(onnx_dir)
    result = compare_logits(torch_logits(hf_dir, ids, model=model), ort_logits(ort, ids))
    name = Path(onnx_dir).name
    if max_abs_diff is not None and result["max_abs_diff"] > max_abs_diff:
        raise SmoledgeError(f"{name}: ONNX logits differ from PyTorch by {result['max_abs_diff']:.3g} > "
                            f"{max_abs_diff:g} (export.parity_max_abs_logit_diff); the ONNX graph is not the model")
    if greedy_tokens:
        ref: list[int] = []
        for _ in range(greedy_tokens):
            ref.append(int(np.argmax(torch_logits(hf_dir, ids + ref, model=model)[-1])))
        got = ort_greedy(ort, ids, greedy_tokens)
        result["greedy_identical"] = ref == got
        if max_abs_diff is not None and ref != got:
            k = next(i for i, (a, b) in enumerate(zip(ref, got)) if a != b)
            raise SmoledgeError(f"{name}: greedy decoding through the ONNX KV cache diverges from PyTorch at new "
                                f"token {k} ({got[k]} vs {ref[k]}); the cached graph is not the model")
    return result
