"""The evaluate stage on a minimal run dir: a curated.parquet written here + an export dir
written by smoledge's own exporter."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from smoledge.errors import SmoledgeError
from smoledge.evaluate.config import EvaluateConfig
from smoledge.progress import Progress
from smoledge.recipe import Recipe
from smoledge.runs import StageContext, spec

pytest.importorskip("llama_cpp")

LANG_FILES = {"en": "leipzig-wikipedia.en.txt", "fr": "leipzig-wikipedia.fr.txt", "de": "leipzig-wikipedia.de.txt"}


def write_curated(path: Path, shared_data: Path, valid: bool = True) -> None:
    rows = []
    for lang, name in LANG_FILES.items():
        lines = [l.strip() for l in (shared_data / "prose" / name).read_text(errors="replace").splitlines() if len(l) > 60]
        for i, line in enumerate(lines[:40]):
            split = "valid" if valid and i % 4 == 0 else "train"
            rows.append({"id": f"{lang}-{i}", "text": line, "lang": lang, "split": split, "source": "prose"})
    # A language present only in training must not be scored.
    rows.append({"id": "it-0", "text": "Il gatto è sul tavolo e dorme tutto il giorno.", "lang": "it",
                 "split": "train", "source": "prose"})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, tiny_model_dir: Path) -> Path:
    from smoledge.export.gguf import write_gguf
    from smoledge.export.parity import probe_gguf
    from smoledge.export.stage import copy_hf_dir

    d = tmp_path_factory.mktemp("run") / "export"
    copy_hf_dir(tiny_model_dir, [], d / "hf")
    write_gguf(d / "hf", d / "model-f32.gguf", "f32")
    probe_gguf(write_gguf(d / "hf", d / "model-q8_0.gguf", "q8_0"))
    return d


def make_ctx(run_dir: Path, cfg: EvaluateConfig) -> StageContext:
    d = run_dir / spec("evaluate").dir
    d.mkdir(parents=True, exist_ok=True)
    return StageContext(recipe=Recipe(name=run_dir.name, evaluate=cfg), run_dir=run_dir, dir=d,
                        progress=Progress("evaluate"))


def test_evaluate_stage_reports_every_artifact_and_language(export_dir: Path, shared_data: Path) -> None:
    from smoledge.evaluate import stage

    run_dir = export_dir.parent
    write_curated(run_dir / "curate" / "curated.parquet", shared_data)
    ctx = make_ctx(run_dir, EvaluateConfig(seq_len=64, max_tokens_per_language=300))
    result = stage.run(ctx)

    report = json.loads((ctx.dir / "report.json").read_text())
    assert set(report) == {"hf", "model-f32.gguf", "model-q8_0.gguf"}
    for per in report.values():
        assert set(per) == {"de", "en", "fr"}  # `it` is train-only
        for v in per.values():
            assert v["tokens"] == 299  # capped at 300 ids, the first is context only
            assert v["ppl"] > 1 and 0 < v["bpb"] < 20
    for lang in ("de", "en", "fr"):
        hf, f32 = report["hf"][lang], report["model-f32.gguf"][lang]
        assert abs(f32["ppl"] / hf["ppl"] - 1) < 1e-3
    assert report["model-q8_0.gguf"]["en"]["ppl"] != report["hf"]["en"]["ppl"]

    md = (ctx.dir / "report.md").read_text()
    assert "| artifact | de ppl | de bpb | en ppl" in md and "| model-q8_0.gguf |" in md
    assert result.outputs == [ctx.dir / "report.json", ctx.dir / "report.md"]
    assert result.summary.startswith("ppl de ") and re.search(r"q8_0 \d+\.\d bpw \u0394 ", result.summary)
    assert re.search(r"f32 \d+\.\d bpw \u0394 [+-]0\.00%", result.summary), result.summary
    assert result.metrics["overall"]["hf"]["tokens"] == 3 * 299
    # The quantization table: size, bits per weight (file bits / parameters), ppl and its drift from f32.
    table = result.metrics["quantization"]
    assert set(table) == {"model-f32.gguf", "model-q8_0.gguf"}
    assert table["model-f32.gguf"]["ppl_delta_pct_vs_fp32"] == 0.0
    assert 32 <= table["model-f32.gguf"]["bits_per_weight"] < 40  # 32-bit weights plus the tokenizer and metadata
    assert table["model-q8_0.gguf"]["bits_per_weight"] < table["model-f32.gguf"]["bits_per_weight"] / 2
    assert table["model-q8_0.gguf"]["bytes"] == (export_dir / "model-q8_0.gguf").stat().st_size
    assert "# Quantization" in md and "| model-q8_0.gguf | " in md.split("# Quantization")[1]


def test_evaluate_stage_scores_onnx_artifacts(export_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    """onnx/ and each onnx-int8-*/ are scored by onnxruntime; fp32 ONNX matches PyTorch, and the int8
    model's drift is measured against it (its size: the quantized graph, not the tokenizer)."""
    from smoledge.evaluate import stage
    from smoledge.export.onnx import export_onnx, quantize_onnx

    run_dir = tmp_path / "run"
    shutil.copytree(export_dir, run_dir / "export")
    export_onnx(run_dir / "export" / "hf", run_dir / "export" / "onnx")
    quantize_onnx(run_dir / "export" / "onnx", run_dir / "export" / "onnx-int8-avx2", "avx2")
    write_curated(run_dir / "curate" / "curated.parquet", shared_data)
    result = stage.run(make_ctx(run_dir, EvaluateConfig(seq_len=64, max_tokens_per_language=128, gguf=False)))

    overall, table = result.metrics["overall"], result.metrics["quantization"]
    assert set(overall) == {"hf", "onnx", "onnx-int8-avx2"}
    assert abs(overall["onnx"]["ppl"] / overall["hf"]["ppl"] - 1) < 1e-4
    assert table["onnx"]["ppl_delta_pct_vs_fp32"] == 0.0
    int8 = table["onnx-int8-avx2"]
    assert int8["bytes"] == (run_dir / "export" / "onnx-int8-avx2" / "model_quantized.onnx").stat().st_size
    assert int8["bytes"] < table["onnx"]["bytes"] / 2
    assert int8["ppl_delta_pct_vs_fp32"] == pytest.approx(100 * (int8["ppl"] / overall["onnx"]["ppl"] - 1))


def test_evaluate_stage_pytorch_only(export_dir: Path, shared_data: Path) -> None:
    from smoledge.evaluate import stage

    run_dir = export_dir.parent
    write_curated(run_dir / "curate" / "curated.parquet", shared_data)
    ctx = make_ctx(run_dir, EvaluateConfig(seq_len=32, max_tokens_per_language=64, gguf=False, onnx=False))
    stage.run(ctx)
    assert set(json.loads((ctx.dir / "report.json").read_text())) == {"hf"}


def test_evaluate_stage_errors(export_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    from smoledge.evaluate import stage

    run_dir = export_dir.parent
    write_curated(run_dir / "curate" / "curated.parquet", shared_data, valid=False)
    with pytest.raises(SmoledgeError, match="no rows with split == 'valid'"):
        stage.run(make_ctx(run_dir, EvaluateConfig(seq_len=32, max_tokens_per_language=64)))
    with pytest.raises(SmoledgeError, match="exceeds the model's context"):
        stage.run(make_ctx(run_dir, EvaluateConfig(seq_len=1024, max_tokens_per_language=2048)))
    lonely = tmp_path / "lonely"
    with pytest.raises(SmoledgeError, match="run the export stage first"):
        stage.run(make_ctx(lonely, EvaluateConfig(seq_len=32, max_tokens_per_language=64)))
