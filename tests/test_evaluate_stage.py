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
from smoledge.runs import spec
from smoledge.stage import StageContext

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


# Short passkey grids keep the stage tests fast; test_evaluate_passkey.py covers the grid itself.
QUICK_PASSKEY = {"lengths": [64, 128], "depths": [0.0, 1.0], "trials": 1}


def evaluate_config(**kw) -> EvaluateConfig:
    kw.setdefault("passkey", QUICK_PASSKEY)
    return EvaluateConfig.from_dict(kw, prefix="evaluate")  # type: ignore[return-value]


def make_ctx(run_dir: Path, cfg: EvaluateConfig, devices: list[str] | None = None) -> StageContext:
    d = run_dir / spec("evaluate").dir
    d.mkdir(parents=True, exist_ok=True)
    recipe = Recipe(name=run_dir.name, evaluate=cfg, devices=devices if devices is not None else ["x86_64-avx2-laptop"])
    return StageContext(recipe=recipe, run_dir=run_dir, dir=d, progress=Progress("evaluate"))


def test_evaluate_stage_reports_every_artifact_and_language(export_dir: Path, shared_data: Path) -> None:
    from smoledge.evaluate import stage

    run_dir = export_dir.parent
    write_curated(run_dir / "curate" / "curated.parquet", shared_data)
    ctx = make_ctx(run_dir, evaluate_config(seq_len=64, max_tokens_per_language=300))
    result = stage.run(ctx)

    report = json.loads((ctx.dir / "report.json").read_text())["perplexity"]
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
    assert result.outputs == [ctx.dir / "report.json", ctx.dir / "report.md", ctx.dir / "report.html"]
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
    result = stage.run(make_ctx(run_dir, evaluate_config(seq_len=64, max_tokens_per_language=128, gguf=False),
                                devices=[]))

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
    ctx = make_ctx(run_dir, evaluate_config(seq_len=32, max_tokens_per_language=64, gguf=False, onnx=False), devices=[])
    stage.run(ctx)
    assert set(json.loads((ctx.dir / "report.json").read_text())["perplexity"]) == {"hf"}
    # A device whose backend was not scored cannot be judged: the error says which switch to turn on.
    with pytest.raises(SmoledgeError, match="evaluate.gguf is false; set it true"):
        stage.run(make_ctx(run_dir, evaluate_config(seq_len=32, max_tokens_per_language=64, gguf=False, onnx=False)))


def test_evaluate_stage_errors(export_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    from smoledge.evaluate import stage

    run_dir = export_dir.parent
    write_curated(run_dir / "curate" / "curated.parquet", shared_data, valid=False)
    with pytest.raises(SmoledgeError, match="no rows with split == 'valid'"):
        stage.run(make_ctx(run_dir, evaluate_config(seq_len=32, max_tokens_per_language=64)))
    with pytest.raises(SmoledgeError, match="exceeds the model's context"):
        stage.run(make_ctx(run_dir, evaluate_config(seq_len=1024, max_tokens_per_language=2048)))
    lonely = tmp_path / "lonely"
    with pytest.raises(SmoledgeError, match="run the export stage first"):
        stage.run(make_ctx(lonely, evaluate_config(seq_len=32, max_tokens_per_language=64)))


def _device_profile(path: Path, budget_gb: float, max_context: int = 256) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"name": path.stem, "arch": "x86_64", "isa": ["sse4_2", "avx", "avx2", "fma", "f16c"],
                                    "cores": 2, "ram_gb": 8, "backend": "llama.cpp", "threads": 1,
                                    "max_context": max_context, "model_ram_budget_gb": budget_gb}))
    return path


def test_device_runs_its_selected_artifact_with_tasks_and_eval_sets(export_dir: Path, shared_data: Path,
                                                                    tmp_path: Path) -> None:
    """The laptop profile gets the smallest GGUF (q8_0) with the reason; the passkey grid and the task run on
    it with the profile's threads and context, next to the fp32 PyTorch reference; an eval set is scored on
    every artifact."""
    from smoledge.evaluate import stage

    run_dir = tmp_path / "run"
    shutil.copytree(export_dir, run_dir / "export")
    write_curated(run_dir / "curate" / "curated.parquet", shared_data)
    prose = (shared_data / "prose" / LANG_FILES["en"]).read_text(errors="replace").splitlines()
    lines = [l.strip() for l in prose if 60 < len(l.strip()) < 160][:12]
    (tmp_path / "mine.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in lines[:6]))
    # A next-sentence cloze from real prose: the true next sentence vs two from elsewhere.
    (tmp_path / "cloze.jsonl").write_text("\n".join(json.dumps(
        {"context": lines[i], "choices": [lines[i + 1], lines[(i + 5) % 12], lines[(i + 7) % 12]], "gold": 0})
        for i in range(0, 10, 2)))
    cfg = evaluate_config(seq_len=128, max_tokens_per_language=256,
                          eval_sets=[{"name": "mine", "path": str(tmp_path / "mine.jsonl"), "lang": "en"}],
                          tasks=[{"name": "cloze", "path": str(tmp_path / "cloze.jsonl")}])
    ctx = make_ctx(run_dir, cfg)
    result = stage.run(ctx)
    report = json.loads((ctx.dir / "report.json").read_text())

    laptop = report["devices"]["x86_64-avx2-laptop"]
    assert laptop["artifact"] == "model-q8_0.gguf" and laptop["threads"] == 2 and laptop["backend"] == "llama.cpp"
    assert laptop["reason"].startswith("smallest llama.cpp artifact")
    assert "larger" in laptop["rejected"]["model-f32.gguf"]
    device_label = "model-q8_0.gguf on x86_64-avx2-laptop (2 threads)"
    assert set(report["passkey"]) == {"hf (fp32, PyTorch)", device_label}
    for grid in report["passkey"].values():
        assert grid["lengths"] == [64, 128] and set(grid["by_length"]) == {"64", "128"}
    assert set(report["tasks"]["cloze"]) == {"hf (fp32, PyTorch)", device_label}
    assert report["tasks"]["cloze"][device_label]["n"] == 5
    assert set(report["eval_sets"]["mine"]) == {"hf", "model-f32.gguf", "model-q8_0.gguf"}
    assert report["eval_sets"]["mine"]["hf"]["en"]["tokens"] > 0
    assert report["gates"] == []
    assert result.metrics["devices"]["x86_64-avx2-laptop"]["artifact"] == "model-q8_0.gguf"
    assert "x86_64-avx2-laptop: model-q8_0.gguf" in result.summary
    page = (ctx.dir / "report.html").read_text()
    assert page.count("<svg") >= 4 and "cloze" in page


def test_a_planted_regression_fails_the_perplexity_gate(export_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    """q8_0 written from a corrupted copy of the model (embedding x4): the only artifact inside the
    device's RAM budget is over max_ppl_delta_pct, so the build fails naming the gate, the measured
    value and the limit, and the report is still written."""
    from safetensors.torch import load_file, save_file

    from smoledge.evaluate import stage
    from smoledge.evaluate.gates import GateFailed
    from smoledge.export.gguf import write_gguf

    run_dir = tmp_path / "run"
    shutil.copytree(export_dir, run_dir / "export")
    bad = tmp_path / "bad-hf"
    shutil.copytree(export_dir / "hf", bad)
    weights = load_file(bad / "model.safetensors")
    weights = {k: (v * 4 if "embed_tokens" in k else v).contiguous() for k, v in weights.items()}
    save_file(weights, bad / "model.safetensors", metadata={"format": "pt"})
    write_gguf(bad, run_dir / "export" / "model-q8_0.gguf", "q8_0")
    write_curated(run_dir / "curate" / "curated.parquet", shared_data)
    sizes = {p.name: p.stat().st_size for p in (run_dir / "export").glob("model-*.gguf")}
    budget = (sizes["model-q8_0.gguf"] + sizes["model-f32.gguf"]) / 2 / 1e9 + 1e-4  # q8_0 fits, f32 does not
    profile = _device_profile(tmp_path / "tiny-board.yaml", budget, max_context=128)
    cfg = evaluate_config(seq_len=64, max_tokens_per_language=128, gates={"max_ppl_delta_pct": 5.0})
    ctx = make_ctx(run_dir, cfg, devices=[str(profile)])
    with pytest.raises(GateFailed) as err:
        stage.run(ctx)
    msg = str(err.value)
    assert "no artifact suits device 'tiny-board'" in msg
    assert re.search(r"model-q8_0\.gguf: perplexity vs fp32 is \+\d+\.\d\d%, gate max_ppl_delta_pct is \+5\.00%", msg), msg
    assert "model-f32.gguf: needs" in msg and "budget" in msg
    report = json.loads((ctx.dir / "report.json").read_text())  # written before the build stopped
    assert report["devices"]["tiny-board"]["artifact"] is None
    assert report["quantization"]["model-q8_0.gguf"]["ppl_delta_pct_vs_fp32"] > 5.0
    assert "none suits" in (ctx.dir / "report.html").read_text()


def test_a_failing_passkey_gate_names_gate_value_and_limit(export_dir: Path, shared_data: Path) -> None:
    """A random tiny model retrieves no passkey: min_passkey_accuracy 0.5 fails at the longest grid length
    within the trained context, with the measured value and the limit; the report marks it FAIL."""
    from smoledge.evaluate import stage
    from smoledge.evaluate.gates import GateFailed

    run_dir = export_dir.parent
    write_curated(run_dir / "curate" / "curated.parquet", shared_data)
    cfg = evaluate_config(seq_len=64, max_tokens_per_language=128, gates={"min_passkey_accuracy": 0.5})
    ctx = make_ctx(run_dir, cfg)
    with pytest.raises(GateFailed, match=r"gate evaluate\.gates\.min_passkey_accuracy@128 failed on device "
                                         r"'x86_64-avx2-laptop' \(model-q8_0\.gguf\): measured 0, limit 0\.5"):
        stage.run(ctx)
    gates = json.loads((ctx.dir / "report.json").read_text())["gates"]
    assert gates == [{"gate": "min_passkey_accuracy@128", "device": "x86_64-avx2-laptop", "artifact": "model-q8_0.gguf",
                      "measured": 0.0, "limit": 0.5, "passed": False}]
    assert '<td class="fail">FAIL</td>' in (ctx.dir / "report.html").read_text()


def test_devices_on_one_artifact_share_its_check_and_an_intermediate_gguf_is_not_scored(
        export_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    """Two devices that pick q8_0 over the same lengths get one passkey check, labelled with both, on at most
    this machine's cores (the 16-thread profile would oversubscribe them); the f16 GGUF export wrote only as
    the K-quants' source (export.gguf_types asks for q4_k_m, not f16) is not scored."""
    from smoledge.evaluate import stage
    from smoledge.export.config import ExportConfig
    from smoledge.export.gguf import write_gguf

    run_dir = tmp_path / "run"
    shutil.copytree(export_dir, run_dir / "export")
    write_gguf(run_dir / "export" / "hf", run_dir / "export" / "model-f16.gguf", "f16")
    write_curated(run_dir / "curate" / "curated.parquet", shared_data)
    big = _device_profile(tmp_path / "big-box.yaml", budget_gb=4.0)
    big.write_text(big.read_text().replace("threads: 1", "threads: 16").replace("cores: 2", "cores: 16"))
    ctx = make_ctx(run_dir, evaluate_config(seq_len=128, max_tokens_per_language=256),
                   devices=["x86_64-avx2-laptop", str(big)])
    ctx.recipe.export = ExportConfig(gguf_types=["q8_0", "q4_k_m"], onnx=False, onnx_int8=[])
    stage.run(ctx)
    report = json.loads((ctx.dir / "report.json").read_text())

    assert set(report["overall"]) == {"hf", "model-f32.gguf", "model-q8_0.gguf"}
    assert [d["artifact"] for d in report["devices"].values()] == ["model-q8_0.gguf"] * 2
    from smoledge.host import local_cores

    cores = local_cores()
    label = f"model-q8_0.gguf on x86_64-avx2-laptop, big-box ({min(16, cores)} threads)"
    assert set(report["passkey"]) == {"hf (fp32, PyTorch)", label}
    assert all(d["passkey"] == report["passkey"][label] for d in report["devices"].values())
    assert report["devices"]["big-box"]["threads"] == 16  # the device's own count stays in the report
