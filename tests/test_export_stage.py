"""The export stage on a minimal run dir: distill/model in, hf/ + GGUFs + parity.json out."""

from __future__ import annotations

import functools
import json
import re
import shutil
from pathlib import Path

import pytest

from smoledge.errors import SmoledgeError
from smoledge.evaluate.config import EvaluateConfig
from smoledge.export.config import ExportConfig
from smoledge.progress import Progress
from smoledge.recipe import Recipe
from smoledge.layout import RunFiles
from smoledge.runs import spec
from smoledge.stage import StageContext

pytest.importorskip("llama_cpp")

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def make_ctx(run_dir: Path, recipe: Recipe, stage: str) -> StageContext:
    d = run_dir / spec(stage).dir
    d.mkdir(parents=True, exist_ok=True)
    return StageContext(recipe=recipe, run_dir=run_dir, dir=d, progress=Progress(stage))


def fake_distill(run_dir: Path, model_dir: Path, with_tokenizer: bool = True) -> None:
    """runs/<name>/distill/model as the distill stage leaves it; the tokenizer stage's dir too."""
    dst = run_dir / "distill" / "model"
    shutil.copytree(model_dir, dst, ignore=None if with_tokenizer else shutil.ignore_patterns(*TOKENIZER_FILES))
    tok = RunFiles(run_dir).tokenizer.tokenizer
    tok.mkdir(parents=True)
    for name in TOKENIZER_FILES:
        if (model_dir / name).exists():
            shutil.copy2(model_dir / name, tok / name)


def recipe(**export) -> Recipe:
    return Recipe(name="t", export=ExportConfig(**export), evaluate=EvaluateConfig(seq_len=64, max_tokens_per_language=256))


def test_export_stage_writes_hf_ggufs_and_parity(tmp_path: Path, tiny_model_dir: Path) -> None:
    from smoledge.export import stage

    run_dir = tmp_path / "t"
    fake_distill(run_dir, tiny_model_dir, with_tokenizer=False)  # tokenizer found in the tokenizer stage
    ctx = make_ctx(run_dir, recipe(gguf_types=["q8_0", "f16"]), "export")
    result = stage.run(ctx)

    hf = ctx.dir / "hf"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (hf / name).is_file(), name
    assert (hf / "model.safetensors").read_bytes() == (tiny_model_dir / "model.safetensors").read_bytes()
    for name in ("model-f32.gguf", "model-q8_0.gguf", "model-f16.gguf", "parity.json"):
        assert (ctx.dir / name) in result.outputs and (ctx.dir / name).is_file()
    assert all(p.is_file() and ctx.dir in p.parents for p in result.outputs)

    parity = json.loads((ctx.dir / "parity.json").read_text())
    f32 = parity["files"]["model-f32.gguf"]
    assert f32["logits"]["max_abs_diff"] <= 1e-3 and f32["greedy"]["new_tokens"] == 32
    assert parity["tokenization"]["identical"]
    q8 = parity["files"]["model-q8_0.gguf"]
    assert q8["bytes"] == (ctx.dir / "model-q8_0.gguf").stat().st_size
    assert q8["logits"]["max_abs_diff"] > f32["logits"]["max_abs_diff"]
    assert "failed" not in parity

    assert result.metrics["files"]["model-q8_0.gguf"]["bytes"] < result.metrics["files"]["model-f16.gguf"]["bytes"]
    assert result.summary.startswith("gguf f32 \u0394logit ")
    assert re.search(r"q8_0 [\d.]+ (kB|MB)", result.summary), result.summary
    assert result.artifact == ctx.dir / "model-f16.gguf"


def test_export_stage_fails_on_planted_mismatch_and_keeps_evidence(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import smoledge.export.gguf as gguf_mod
    from smoledge.export import stage

    # A writer with the Q/K permutation switched off: the gate must stop the build.
    monkeypatch.setattr(gguf_mod, "write_gguf", functools.partial(gguf_mod.write_gguf, _permute_qk=False))
    run_dir = tmp_path / "t"
    fake_distill(run_dir, tiny_model_dir)
    ctx = make_ctx(run_dir, recipe(gguf_types=["f32", "q8_0"]), "export")
    with pytest.raises(SmoledgeError, match="above the limit"):
        stage.run(ctx)
    parity = json.loads((ctx.dir / "parity.json").read_text())
    assert "above the limit" in parity["failed"]
    assert (ctx.dir / "model-f32.gguf").is_file()


def test_export_stage_without_distilled_model(tmp_path: Path) -> None:
    from smoledge.export import stage

    ctx = make_ctx(tmp_path / "t", recipe(), "export")
    with pytest.raises(SmoledgeError, match="run the distill stage first"):
        stage.run(ctx)


def test_export_config_validation() -> None:
    from smoledge.config import ConfigError

    with pytest.raises(ConfigError, match="parity_greedy_tokens"):
        ExportConfig(parity_greedy_tokens=0)
    with pytest.raises(ConfigError, match="gguf_types"):
        ExportConfig.from_dict({"gguf_types": ["q4_k"]}, prefix="export")


def test_bf16_q4_0_and_llama_cpp_k_quants_are_exported_and_load(tmp_path: Path, kquant_model_dir: Path) -> None:
    """bf16 and q4_0 come from smoledge's writer, the K-quants from llama.cpp's quantizer (from the f16
    file, exported with them); every file loads in llama.cpp and keeps the f32 file's top-1 mostly."""
    import gguf

    from smoledge.export import stage

    run_dir = tmp_path / "t"
    fake_distill(run_dir, kquant_model_dir)
    ctx = make_ctx(run_dir, recipe(gguf_types=["q4_k_m", "bf16", "q4_0", "q6_k", "q8_0"]), "export")
    result = stage.run(ctx)
    files = result.metrics["files"]
    assert list(files) == ["model-f32.gguf", "model-f16.gguf", "model-bf16.gguf", "model-q4_0.gguf",
                           "model-q8_0.gguf", "model-q4_k_m.gguf", "model-q6_k.gguf"]
    expected_type = {"bf16": gguf.LlamaFileType.MOSTLY_BF16, "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
                     "q4_k_m": gguf.LlamaFileType.MOSTLY_Q4_K_M, "q6_k": gguf.LlamaFileType.MOSTLY_Q6_K}
    for name, ftype in expected_type.items():
        reader = gguf.GGUFReader(ctx.dir / f"model-{name}.gguf")
        assert int(reader.fields["general.file_type"].parts[-1][0]) == int(ftype), name
        smaller = files[f"model-{name}.gguf"]["bytes"] < files["model-f16.gguf"]["bytes"]
        assert smaller == (name != "bf16"), name  # bf16 is f16's size
    # Random weights give nearly flat logits, where 4-bit noise flips the top-1 often; the logit error
    # itself must grow as bits are taken away, and 6 bits and up keep the top-1.
    parity = json.loads((ctx.dir / "parity.json").read_text())["files"]
    err = {name[len("model-"):-len(".gguf")]: e["logits"]["mean_abs_diff"] for name, e in parity.items()}
    assert err["f16"] < err["q8_0"] < err["q6_k"] < min(err["q4_k_m"], err["q4_0"]), err
    for name in ("f16", "bf16", "q8_0", "q6_k"):
        assert files[f"model-{name}.gguf"]["top1_agreement"] >= 0.8, (name, files[f"model-{name}.gguf"])
    # The 4-bit files are smaller than the 6-bit one, which is smaller than f16.
    assert files["model-q4_0.gguf"]["bytes"] < files["model-q6_k.gguf"]["bytes"] < files["model-f16.gguf"]["bytes"]
    # 256-wide rows take the real K-quant blocks (Q4_K_M keeps some attn_v/ffn_down in Q6_K).
    assert {"Q4_K", "Q6_K"} <= set(parity["model-q4_k_m.gguf"]["tensor_types"])
    assert set(parity["model-q6_k.gguf"]["tensor_types"]) - {"F32"} == {"Q6_K"}


def test_a_k_quant_no_matrix_can_hold_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    """64-wide rows cannot take 256-wide super-blocks: llama.cpp would write Q5_0/Q8_0 under the q4_k_m
    name, so smoledge refuses, saying what to change; the f16 file it was asked to quantize stays."""
    from smoledge.export.gguf import write_gguf
    from smoledge.export.kquant import quantize_gguf

    f16 = write_gguf(tiny_model_dir, tmp_path / "model-f16.gguf", "f16")
    with pytest.raises(SmoledgeError, match=r"no weight matrix has rows that are a multiple of 256 .*rows here: "
                                            r"64, 128.*Export q4_0 or q8_0 instead"):
        quantize_gguf(f16, tmp_path / "model-q4_k_m.gguf", "q4_k_m")
    assert f16.exists() and not (tmp_path / "model-q4_k_m.gguf").exists()


def test_an_unknown_llama_cpp_quant_is_refused(tmp_path: Path) -> None:
    from smoledge.export.kquant import quantize_gguf

    with pytest.raises(SmoledgeError, match="choose one of q4_k_m, q5_k_m, q6_k"):
        quantize_gguf(tmp_path / "a.gguf", tmp_path / "b.gguf", "q3_k_s")
    with pytest.raises(SmoledgeError, match="write the f16 GGUF first"):
        quantize_gguf(tmp_path / "missing.gguf", tmp_path / "b.gguf", "q4_k_m")


def test_onnx_fp32_is_gated_and_int8_loads_in_ort(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The ONNX decoder (with KV cache) matches PyTorch's logits and greedy tokens; the int8 one loads in
    ORTModelForCausalLM and mostly keeps the top-1."""
    from smoledge.export import stage
    from smoledge.export.onnx import load_ort

    run_dir = tmp_path / "t"
    fake_distill(run_dir, tiny_model_dir)
    ctx = make_ctx(run_dir, recipe(gguf_types=["q8_0"], onnx=True, onnx_int8=["avx2", "arm64"]), "export")
    result = stage.run(ctx)
    onnx = result.metrics["onnx"]
    assert onnx["onnx"]["max_abs_diff"] < 1e-3 and onnx["onnx"]["greedy_identical"]
    assert onnx["onnx"]["meta"]["graph_optimization_level"] == "basic"
    for target in ("avx2", "arm64"):
        assert onnx[f"onnx-int8-{target}"]["top1_agreement"] >= 0.6, onnx
        assert onnx[f"onnx-int8-{target}"]["meta"]["quantization"]["mode"] == "dynamic"
        assert type(load_ort(ctx.dir / f"onnx-int8-{target}")).__name__ == "ORTModelForCausalLM"
        assert (ctx.dir / f"onnx-int8-{target}" / "model_quantized.onnx") in result.outputs
    assert (ctx.dir / "onnx" / "model.onnx") in result.outputs


def test_onnx_int8_needs_the_onnx_export() -> None:
    from smoledge.config import ConfigError

    with pytest.raises(ConfigError, match="onnx_int8: quantizes the ONNX export"):
        ExportConfig(onnx=False, onnx_int8=["avx2"])


def test_a_planted_onnx_mismatch_fails_the_gate(tmp_path: Path, tiny_model_dir: Path) -> None:
    """One attention weight scaled inside the ONNX graph: the logit gate must refuse the file."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from smoledge.export.onnx import check_onnx, export_onnx

    out = export_onnx(tiny_model_dir, tmp_path / "onnx")
    graph = onnx.load(str(out / "model.onnx"))
    victim = next(t for t in graph.graph.initializer if "q_proj" in t.name or "MatMul" in t.name)
    planted = numpy_helper.to_array(victim).astype(np.float32) * 1.5
    victim.CopyFrom(numpy_helper.from_array(planted, victim.name))
    onnx.save(graph, str(out / "model.onnx"))
    with pytest.raises(SmoledgeError, match="ONNX logits differ from PyTorch by"):
        check_onnx(tiny_model_dir, out, "The quick brown fox jumps over the lazy dog.", 1e-3)



def test_the_hf_export_carries_a_model_card_read_from_the_run(tmp_path: Path, tiny_model_dir: Path) -> None:
    import yaml

    from smoledge.export import stage

    run_dir = tmp_path / "t"
    fake_distill(run_dir, tiny_model_dir)
    (run_dir / "distill" / "stage.json").write_text(json.dumps({"metrics": {"val_loss": 1.6685, "teacher_params": 123}}))
    ctx = make_ctx(run_dir, recipe(gguf_types=["q8_0"], onnx=False, onnx_int8=[]), "export")
    result = stage.run(ctx)
    card = (ctx.dir / "hf" / "README.md").read_text()
    assert (ctx.dir / "hf" / "README.md") in result.outputs
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["language"] == ["en", "fr", "es", "de", "it", "pt"] and meta["pipeline_tag"] == "text-generation"
    assert "Validation loss 1.6685" in card and "123 parameters" in card
    assert "model-f32.gguf: max |logit difference| vs PyTorch" in card and "## Intended use" in card
    # What the run did not record is said, not guessed.
    assert "Training tokens in the shards per language: not recorded" in card
