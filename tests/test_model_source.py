"""A recipe that names a model instead of data (`model.source`) and `smoledge deploy`: the data and training
stages report "not needed", export/evaluate/package run on the model, and bad sources are refused clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from smoledge.config import ConfigError
from smoledge.deploy import DeployConfig, deploy_recipe, run_name
from smoledge.errors import SmoledgeError
from smoledge.layout import RunFiles
from smoledge.model.source import fetch, source_kind
from smoledge.recipe import Recipe
from smoledge.runs import build
from smoledge.serve.bundle import load_bundle

DATA_STAGES = ("curate", "train-tokenizer", "pretrain", "teacher-cache", "distill")


def test_source_kinds_and_the_errors_that_name_what_is_accepted(tmp_path, tiny_model_dir):
    assert source_kind(str(tiny_model_dir)) == "hf_dir"
    assert source_kind("HuggingFaceTB/SmolLM2-135M-Instruct") == "hub"
    with pytest.raises(SmoledgeError, match="looks like a GGUF file but does not exist"):
        source_kind(str(tmp_path / "missing.gguf"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SmoledgeError, match="is a file but not a .gguf"):
        source_kind(str(tmp_path / "notes.txt"))
    with pytest.raises(SmoledgeError, match="without config.json"):
        source_kind(str(tmp_path))
    with pytest.raises(SmoledgeError, match="neither an existing path nor a hub id"):
        source_kind("not a model")


def test_an_hf_dir_without_tokenizer_and_an_unreachable_hub_id_are_refused(tmp_path, tiny_model_dir, monkeypatch):
    bare = tmp_path / "bare"
    shutil.copytree(tiny_model_dir, bare, ignore=shutil.ignore_patterns("tokenizer*"))
    with pytest.raises(SmoledgeError, match="has no tokenizer"):
        fetch(str(bare), None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with pytest.raises(SmoledgeError, match="hf download smoledge-test/no-such-model --local-dir"):
        fetch("smoledge-test/no-such-model", None)


def test_an_architecture_export_cannot_write_is_refused_before_anything_is_replaced(tmp_path, tiny_model_dir):
    """A Mamba-2 checkpoint: the export stage's preflight names the model_type and what is exportable, and
    the previous run's export stays as it was."""
    mamba = tmp_path / "mamba"
    shutil.copytree(tiny_model_dir, mamba)
    config = json.loads((mamba / "config.json").read_text())
    (mamba / "config.json").write_text(json.dumps({**config, "model_type": "mamba2"}))
    recipe = Recipe.from_dict({"name": "m", "model": {"source": str(mamba)}})
    kept = tmp_path / "m" / "export" / "model-q8_0.gguf"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"earlier export")
    with pytest.raises(SmoledgeError, match=r"model_type 'mamba2' \(model.source .*mamba\) is not exportable; "
                                            r"smoledge exports llama, smollm3"):
        build(recipe, runs_root=tmp_path, out=lambda s: None)
    assert kept.read_bytes() == b"earlier export"


def test_a_model_source_recipe_refuses_calibration_it_cannot_have():
    with pytest.raises(ConfigError, match="export.imatrix: calibrates on the curated training split"):
        Recipe.from_dict({"model": {"source": "a/b"}, "export": {"gguf_types": ["q8_0", "q4_k_m"], "imatrix": True}})
    with pytest.raises(ConfigError, match="model.revision"):
        Recipe.from_dict({"model": {"revision": "main"}})


def test_deploy_defaults_follow_the_devices():
    recipe = deploy_recipe(DeployConfig("HuggingFaceTB/SmolLM2-135M-Instruct", ["x86_64-avx2-laptop", "rpi5-8gb"]))
    assert recipe.name == "SmolLM2-135M-Instruct" and recipe.model.source == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert recipe.export.gguf_types == ["q8_0", "q4_k_m", "q4_0"]  # q4_0 for the ARM board
    assert not recipe.export.onnx  # both devices run llama.cpp
    assert recipe.evaluate.gates.max_ppl_delta_pct == 10.0
    assert recipe.evaluate.gates.max_passkey_drop == 0.2
    gguf = deploy_recipe(DeployConfig(str(Path("/x/SmolLM2-135M-Instruct.Q4_1.gguf")), ["rpi5-8gb"]))
    assert gguf.evaluate.gates.max_passkey_drop is None  # no PyTorch model to compare with
    with pytest.raises(ConfigError, match="evaluate.gates.max_passkey_drop: compares with the PyTorch model"):
        Recipe.from_dict({"model": {"source": "/x/m.gguf"}, "evaluate": {"gates": {"max_passkey_drop": 0.2}}})
    assert run_name("/x/SmolLM2-135M-Instruct.Q4_1.gguf") == "SmolLM2-135M-Instruct.Q4_1"


@pytest.mark.slow
def test_an_hf_dir_source_builds_export_evaluate_and_package(tmp_path, tiny_model_dir):
    recipe = Recipe.from_dict({
        "name": "imported", "model": {"source": str(tiny_model_dir)}, "data": {"languages": ["en", "fr", "de"]},
        "export": {"gguf_types": ["q8_0"], "onnx": False, "onnx_int8": []},
        "evaluate": {"onnx": False, "seq_len": 64, "max_tokens_per_language": 256, "passkey": {"enabled": False}},
    })
    outcomes = {o.name: o for o in build(recipe, runs_root=tmp_path, out=lambda s: None)}
    for name in DATA_STAGES:
        assert outcomes[name].status == "not needed"
        assert f"model.source is {tiny_model_dir}" in outcomes[name].record["summary"]
    files = RunFiles(tmp_path / "imported")
    report = json.loads(files.evaluate.report.read_text())
    assert report["held_out_source"].startswith("smoledge built-in held-out text")
    assert set(report["perplexity"]["hf"]) == set(recipe.data.languages)  # every language, no data configured
    assert "model-f32.gguf" in report["perplexity"]
    assert load_bundle(files.package.dir).settings.model_file == "model-q8_0.gguf"
    # Nothing changed: nothing re-runs.
    again = build(recipe, runs_root=tmp_path, out=lambda s: None)
    assert {o.status for o in again} <= {"skipped", "not needed"}


@pytest.mark.slow
def test_a_gguf_source_is_shipped_as_it_is_and_measured_against_itself(tmp_path, smollm2_gguf):
    recipe = Recipe.from_dict({
        "name": "gguf", "model": {"source": str(smollm2_gguf)}, "devices": ["x86_64-avx2-laptop"],
        "data": {"languages": ["en", "fr"]},  # two languages keep the real model's scoring short
        "evaluate": {"onnx": False, "seq_len": 128, "max_tokens_per_language": 256, "passkey": {"enabled": False}},
    })
    build(recipe, runs_root=tmp_path, out=lambda s: None)
    files = RunFiles(tmp_path / "gguf")
    imported = files.export.gguf("q4_1")
    assert imported.read_bytes()[:4] == b"GGUF" and imported.stat().st_size == smollm2_gguf.stat().st_size
    assert not any(files.export.hf.glob("*.safetensors"))  # no PyTorch reference is pretended
    report = json.loads(files.evaluate.report.read_text())
    assert "hf" not in report["perplexity"]
    assert "no PyTorch reference" in report["reference"] and "model-q4_1.gguf" in report["reference"]
    assert report["quantization"]["model-q4_1.gguf"]["ppl_delta_pct_vs_fp32"] == 0.0
    assert report["devices"]["x86_64-avx2-laptop"]["artifact"] == "model-q4_1.gguf"
    assert load_bundle(files.package.dir).settings.model_file == "model-q4_1.gguf"
