"""Artifact selection per device: backend, ISA, RAM budget with the KV cache, and the perplexity gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from smoledge.bench.config import DeviceProfile
from smoledge.bench.select import candidates, kv_cache_bytes, select
from smoledge.errors import SmoledgeError

HF = {"num_attention_heads": 4, "num_key_value_heads": 2, "hidden_size": 64, "num_hidden_layers": 2}


def export_dir(tmp_path: Path) -> Path:
    """Files of the sizes an export would write (selection reads sizes and names, not contents)."""
    d = tmp_path / "export"
    d.mkdir()
    for name, size in (("model-f32.gguf", 4_000_000), ("model-q8_0.gguf", 1_100_000), ("model-q4_0.gguf", 700_000)):
        (d / name).write_bytes(b"\0" * size)
    for name, graph, size in (("onnx", "model.onnx", 5_000_000), ("onnx-int8-avx2", "model_quantized.onnx", 1_400_000),
                              ("onnx-int8-arm64", "model_quantized.onnx", 1_300_000)):
        (d / name).mkdir()
        (d / name / graph).write_bytes(b"\0" * size)
        (d / name / "tokenizer.json").write_text("{}")  # not the model: not counted
    return d


def profile(**kw) -> DeviceProfile:
    base = dict(name="dev", arch="x86_64", isa=["sse4_2", "avx", "avx2", "fma", "f16c"], cores=4, ram_gb=8,
                backend="llama.cpp", threads=4, max_context=1024, model_ram_budget_gb=1.0)
    return DeviceProfile(**{**base, **kw})


def test_candidates_and_kv_cache(tmp_path: Path) -> None:
    found = {c.name: c for c in candidates(export_dir(tmp_path))}
    assert found["onnx-int8-avx2"].bytes == 1_400_000 and found["onnx-int8-avx2"].target == "avx2"
    assert found["onnx"].target is None and found["model-q8_0.gguf"].backend == "llama.cpp"
    # 2 (K and V) x 2 layers x 2 KV heads x 16 dims x 1024 tokens x 2 bytes (llama.cpp's f16 cache)
    assert kv_cache_bytes(HF, 1024, "llama.cpp") == 2 * 2 * 2 * 16 * 1024 * 2
    assert kv_cache_bytes(HF, 1024, "onnxruntime") == 2 * kv_cache_bytes(HF, 1024, "llama.cpp")


def test_smallest_that_fits_and_passes_the_gate(tmp_path: Path) -> None:
    found = candidates(export_dir(tmp_path))
    deltas = {"model-f32.gguf": 0.0, "model-q8_0.gguf": 0.1, "model-q4_0.gguf": 6.8}
    assert select(profile(), found, HF, 1024, deltas, None).name == "model-q4_0.gguf"
    choice = select(profile(), found, HF, 1024, deltas, 5.0)
    assert choice.name == "model-q8_0.gguf" and "within max_ppl_delta_pct +5.00% (measured +0.10%)" in choice.reason
    assert choice.rejected["model-q4_0.gguf"] == "perplexity vs fp32 is +6.80%, gate max_ppl_delta_pct is +5.00%"
    assert choice.rejected["model-f32.gguf"].startswith("larger")
    assert choice.ram_bytes == 1_100_000 + kv_cache_bytes(HF, 1024, "llama.cpp")


def test_an_artifact_set_aside_by_a_check_is_skipped_with_its_reason(tmp_path: Path) -> None:
    found = candidates(export_dir(tmp_path))
    deltas = {"model-f32.gguf": 0.0, "model-q8_0.gguf": 0.1, "model-q4_0.gguf": 0.9}
    choice = select(profile(), found, HF, 1024, deltas, 5.0, {"model-q4_0.gguf": "passkey fell"})
    assert choice.name == "model-q8_0.gguf" and choice.rejected["model-q4_0.gguf"] == "passkey fell"
    with pytest.raises(SmoledgeError, match="model-q4_0.gguf: fell; model-q8_0.gguf: lost it"):
        select(profile(model_ram_budget_gb=0.0019), found, HF, 1024, deltas, 5.0,
               {"model-q8_0.gguf": "lost it", "model-q4_0.gguf": "fell"})


def test_isa_and_budget_rule_out_with_reasons(tmp_path: Path) -> None:
    found = candidates(export_dir(tmp_path))
    deltas = {"onnx": 0.0, "onnx-int8-avx2": 0.5, "onnx-int8-arm64": 0.6}
    pi = profile(arch="aarch64", isa=["neon", "dotprod"], backend="onnxruntime")
    choice = select(pi, found, HF, 1024, deltas, None)
    assert choice.name == "onnx-int8-arm64"
    assert choice.rejected["onnx-int8-avx2"] == "quantized for avx2, the device is aarch64"
    old_laptop = profile(isa=["sse4_2", "avx"], backend="onnxruntime")
    assert select(old_laptop, found, HF, 1024, deltas, None).rejected["onnx-int8-avx2"] == (
        "quantized for avx2, the device lacks avx2")
    tiny = profile(model_ram_budget_gb=0.001)  # 1 MB: with its 0.26 MB KV cache only q4_0 fits
    with pytest.raises(SmoledgeError) as err:
        select(tiny, found, HF, 1024, {"model-f32.gguf": 0.0, "model-q8_0.gguf": 0.1, "model-q4_0.gguf": 6.8}, 5.0)
    msg = str(err.value)
    assert "no artifact suits device 'dev' (llama.cpp)" in msg
    assert "model-q4_0.gguf: perplexity vs fp32 is +6.80%, gate max_ppl_delta_pct is +5.00%" in msg
    assert "model-q8_0.gguf: needs 1.36 MB at 1024 tokens, the budget is 1.00 MB" in msg
    unmeasured = select(profile(), found, HF, 1024, {}, None)
    assert unmeasured.name == "model-q4_0.gguf"
    with pytest.raises(SmoledgeError, match="model-q4_0.gguf: perplexity vs fp32 was not measured"):
        select(profile(), found, HF, 1024, {}, 5.0)
