"""ONNX artifacts: the decoder with its KV cache (optimum-onnx), int8 per CPU target (dynamic,
or static QDQ calibrated on the curated corpus), each gated or scored against PyTorch.

    from smoledge.export.onnx import export_onnx, quantize_onnx, quantize_onnx_static, check_onnx
    export_onnx("runs/quickstart/export/hf", "runs/quickstart/export/onnx", optimization="basic")
    quantize_onnx("runs/quickstart/export/onnx", "runs/quickstart/export/onnx-int8-avx2", "avx2")
    quantize_onnx_static("runs/quickstart/export/onnx", "runs/quickstart/export/onnx-int8-static-avx2",
                         "avx2", windows)
    report = check_onnx("runs/quickstart/export/hf", "runs/quickstart/export/onnx", text, max_abs_diff=1e-3)

Every directory loads with optimum's `ORTModelForCausalLM.from_pretrained(dir, file_name=...)`
(`model_file(dir)` says which file; the int8 ones also record it in `ort_config.json`).
Dynamic int8 quantizes the weights ahead of time and the activations per call, so it needs no
calibration data; static QDQ fixes the activation ranges too, from calibration windows, so no
range is computed at run time. The target picks the instruction set the kernels assume
(arm64: NEON dot products, avx2, avx512_vnni) and, through optimum's per-target configs, the
int8 signedness those kernels want.

The fp32 graph is optimised offline by onnxruntime at `optimization` (basic: constant folding
and redundant-node removal, which also makes the tied lm_head a plain weight the quantizers
see). The level, with the onnxruntime version, is written into each model's metadata
(`smoledge.graph_optimization_level`) and into `smoledge_onnx.json` next to it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from smoledge.errors import SmoledgeError
from smoledge.io import atomic_dir

TASK = "text-generation-with-past"
FP32_FILE = "model.onnx"
QUANTIZED_FILE = "model_quantized.onnx"
META_FILE = "smoledge_onnx.json"
INT8_TARGETS = ("arm64", "avx2", "avx512_vnni")
# Offline levels: "extended" fuses into contrib ops the int8 quantizers cannot read and "all" adds
# layout transforms for the exporting machine's CPU; onnxruntime applies both at load time anyway.
OPTIMIZATION_LEVELS = ("disabled", "basic")
# Files a quantized directory shares with its fp32 source, so optimum can load it alone.
SIDE_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "chat_template.jinja")


def model_file(onnx_dir: str | Path) -> str:
    """The graph file ORTModelForCausalLM should load from `onnx_dir`."""
    return QUANTIZED_FILE if (Path(onnx_dir) / QUANTIZED_FILE).exists() else FP32_FILE


def read_meta(onnx_dir: str | Path) -> dict[str, Any]:
    path = Path(onnx_dir) / META_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def export_onnx(hf_dir: str | Path, out_dir: str | Path, optimization: str = "basic") -> Path:
    """The HF model as an ONNX decoder with past key/values, plus its tokenizer and config, atomically,
    its graph optimised offline by onnxruntime at `optimization`."""
    from optimum.exporters.onnx import main_export

    if optimization not in OPTIMIZATION_LEVELS:
        raise SmoledgeError(f"ONNX graph optimisation level '{optimization}' is unknown; choose one of "
                            f"{', '.join(OPTIMIZATION_LEVELS)}")
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        try:
            main_export(str(hf_dir), output=tmp, task=TASK, device="cpu")
        except Exception as exc:  # optimum raises plain ValueErrors/RuntimeErrors for unsupported graphs
            raise SmoledgeError(f"optimum-onnx could not export {hf_dir} ({type(exc).__name__}: {exc}); "
                                f"set export.onnx: false to skip ONNX") from exc
        optimize_graph(tmp / FP32_FILE, optimization)
        write_meta(tmp, FP32_FILE, {"graph_optimization_level": optimization, "quantization": None})
    return out_dir


def optimize_graph(path: Path, level: str) -> None:
    """Rewrite the graph at `path` as onnxruntime optimises it at `level` (in place)."""
    import onnxruntime as ort

    if level == "disabled":
        return
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    optimized = path.with_name(path.stem + ".optimized.onnx")
    opts.optimized_model_filepath = str(optimized)
    external = path.with_name(path.name + "_data")
    if external.exists():  # over 2 GB: weights stay in a side file, as optimum wrote them
        opts.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                      external.name + ".optimized")
        opts.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    if external.exists():
        # The optimised graph names its own weight file; give both their final names.
        import onnx

        model = onnx.load(str(optimized), load_external_data=False)
        for init in model.graph.initializer:
            for entry in init.external_data:
                if entry.key == "location":
                    entry.value = external.name
        optimized.with_name(external.name + ".optimized").replace(external)
        onnx.save(model, str(path))
        optimized.unlink()
    else:
        optimized.replace(path)


def write_meta(directory: Path, graph: str, fields: dict[str, Any]) -> None:
    """Record how the graph was made: in the ONNX file's own metadata (travels with the file) and as JSON."""
    import onnx
    import onnxruntime as ort

    meta = {"task": TASK, "graph": graph, "onnxruntime": ort.__version__, **fields}
    path = directory / graph
    model = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    props.update({f"smoledge.{k}": json.dumps(v) if not isinstance(v, str) else v for k, v in meta.items()})
    del model.metadata_props[:]
    for key, value in sorted(props.items()):
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))  # external weights, if any, keep their file and offsets
    meta["opset"] = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _int8_config(target: str, static: bool) -> Any:
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    if target not in INT8_TARGETS:
        raise SmoledgeError(f"ONNX int8 target '{target}' is unknown; choose one of {', '.join(INT8_TARGETS)}")
    return getattr(AutoQuantizationConfig, target)(is_static=static, per_channel=static)


def quantize_onnx(onnx_dir: str | Path, out_dir: str | Path, target: str) -> Path:
    """Dynamic (weights int8 ahead of time, activations per call) quantization for one CPU target."""
    from optimum.onnxruntime import ORTQuantizer

    config = _int8_config(target, static=False)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        ORTQuantizer.from_pretrained(onnx_dir, file_name=FP32_FILE).quantize(save_dir=tmp, quantization_config=config)
        write_meta(tmp, QUANTIZED_FILE, {
            "graph_optimization_level": read_meta(onnx_dir).get("graph_optimization_level", "disabled"),
            "quantization": {"mode": "dynamic", "target": target, "format": config.format.name,
                             "activations": config.activations_dtype.name, "weights": config.weights_dtype.name,
                             "per_channel": config.per_channel}})
    return out_dir


def weight_nodes(model: Any) -> list[str]:
    """Names of the nodes that read a stored weight: the linear layers' MatMuls (and, once constant
    folding has run, the tied lm_head's) and the embedding Gather. Attention's own products (QK^T, PV)
    stay fp32: their operands change with every prompt, so fixed calibration ranges would clip them."""
    weights = {init.name for init in model.graph.initializer}
    return [n.name for n in model.graph.node
            if (n.op_type == "MatMul" and n.input[1] in weights) or (n.op_type == "Gather" and n.input[0] in weights)]


def quantize_onnx_static(onnx_dir: str | Path, out_dir: str | Path, target: str,
                         windows: list[list[int]]) -> Path:
    """Static QDQ int8 for one CPU target: per-channel int8 weights (linear layers and the embedding)
    and int8 activations whose ranges (MinMax) come from running the fp32 model over the calibration
    `windows`."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static
    from optimum.onnxruntime.configuration import ORTConfig

    if not windows:
        raise SmoledgeError("static ONNX int8 needs calibration windows from the curated training split; "
                            "none were given")
    config = _int8_config(target, static=True)
    onnx_dir, out_dir = Path(onnx_dir), Path(out_dir)
    src = onnx_dir / FP32_FILE
    graph = onnx.load(str(src), load_external_data=False)
    nodes = weight_nodes(graph)
    with atomic_dir(out_dir) as tmp:
        quantize_static(
            str(src), str(tmp / QUANTIZED_FILE), KVCalibrationReader(src, windows),
            quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul", "Gather"], nodes_to_quantize=nodes,
            per_channel=config.per_channel, reduce_range=config.reduce_range,
            activation_type=config.activations_dtype, weight_type=config.weights_dtype,
            calibrate_method=CalibrationMethod.MinMax,
            use_external_data_format=(onnx_dir / (FP32_FILE + "_data")).exists(),
            extra_options={"WeightSymmetric": config.weights_symmetric,
                           "ActivationSymmetric": config.activations_symmetric})
        for name in SIDE_FILES:
            if (onnx_dir / name).exists():
                shutil.copy2(onnx_dir / name, tmp / name)
        ORTConfig(quantization=config).save_pretrained(tmp)
        write_meta(tmp, QUANTIZED_FILE, {
            "graph_optimization_level": read_meta(onnx_dir).get("graph_optimization_level", "disabled"),
            "quantization": {"mode": "static", "target": target, "format": "QDQ", "calibration": "MinMax",
                             "activations": config.activations_dtype.name, "weights": config.weights_dtype.name,
                             "per_channel": config.per_channel, "quantized_nodes": len(nodes),
                             "calibration_windows": len(windows),
                             "calibration_tokens": sum(len(w) for w in windows)}})
    return out_dir


class KVCalibrationReader:
    """Feeds quantize_static's calibrator the decoder's inputs as serving produces them: each window
    once as a prefill (empty cache) of its first half and once as its second half read against the
    cache the first half left (run through the fp32 graph), so the ranges cover both call shapes."""

    def __init__(self, fp32_path: Path, windows: list[list[int]]):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
        self.windows = windows
        self.feeds = self._feeds()

    def _empty_cache(self) -> dict[str, np.ndarray]:
        cache = {}
        for inp in self.session.get_inputs():
            if inp.name.startswith("past_key_values."):
                _, n_kv, _, head_dim = inp.shape  # (B, n_kv, past, hd): only n_kv and hd are fixed
                cache[inp.name] = np.zeros((1, n_kv, 0, head_dim), dtype=np.float32)
        return cache

    def _step(self, ids: list[int], cache: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        past = next(iter(cache.values())).shape[2] if cache else 0
        return {"input_ids": np.array([ids], dtype=np.int64),  # (1, T)
                "attention_mask": np.ones((1, past + len(ids)), dtype=np.int64),  # (1, past + T)
                "position_ids": np.arange(past, past + len(ids), dtype=np.int64)[None],  # (1, T)
                **cache}

    def _feeds(self):
        names = [o.name for o in self.session.get_outputs()]
        for window in self.windows:
            half = max(1, len(window) // 2)
            first = self._step(window[:half], self._empty_cache())
            yield first
            outputs = dict(zip(names, self.session.run(None, first)))
            cache = {n.replace("present.", "past_key_values."): v for n, v in outputs.items() if n.startswith("present.")}
            if half < len(window):
                yield self._step(window[half:], cache)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)

    def rewind(self) -> None:
        self.feeds = self._feeds()


def load_ort(onnx_dir: str | Path, n_threads: int | None = None) -> Any:
    """optimum's ORTModelForCausalLM on the CPU; n_threads caps onnxruntime's intra-op pool (a device
    profile's thread count), None leaves onnxruntime's default (every core)."""
    import onnxruntime as ort
    from optimum.onnxruntime import ORTModelForCausalLM

    options = ort.SessionOptions()
    if n_threads:
        options.intra_op_num_threads = n_threads
        options.inter_op_num_threads = 1
    model = ORTModelForCausalLM.from_pretrained(onnx_dir, file_name=model_file(onnx_dir), session_options=options)
    # optimum-onnx 0.1.0 sizes the empty KV cache of the first call from the config: KV heads from
    # num_attention_heads for model types missing from its grouped-query list (phi3), head size from
    # hidden_size / heads for most (wrong for Qwen3, whose heads are wider). onnxruntime then rejects
    # the call. The graph's own past input, (batch, kv_heads, past, head_dim), has the true sizes.
    past = {i.name: i.shape for i in model.session.get_inputs()}.get("past_key_values.0.key")
    if past and len(past) == 4 and isinstance(past[1], int) and isinstance(past[3], int):
        model.num_key_value_heads = past[1]
        if hasattr(model, "embed_size_per_head"):
            model.embed_size_per_head = past[3]
    return model


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
