"""Multi-process training over gloo (2 CPU processes under torchrun) against one process with the same global batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from smoledge.tokenizer.shards import write_split
from smoledge.train.metrics import read_metrics
from test_train_run import _docs

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "dist_train.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory, shared_data: Path, tiny_tokenizer_dir: Path) -> Path:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    docs = _docs(shared_data, tok)
    out = tmp_path_factory.mktemp("dist") / "shards"
    write_split(out, "train", [d for i, d in enumerate(docs) if i % 20], len(tok))
    write_split(out, "valid", docs[::20], len(tok))
    return out


def _launch(cmd: list[str]) -> subprocess.CompletedProcess:
    """Run torchrun (or one process) in its own session, so a hang kills the workers too, not just torchrun."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{cmd[-6:]} hung for 300 s: {err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _run(cmd: list[str], out: Path) -> None:
    done = _launch(cmd)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "final.safetensors").exists()


def _compare(single: Path, multi: Path, loss_tol: float, weight_tol: float) -> None:
    a, b = read_metrics(single / "metrics.jsonl"), read_metrics(multi / "metrics.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 7))
    for x, y in zip(a, b):
        assert abs(x["loss"] - y["loss"]) <= loss_tol, (x, y)
        assert abs(x.get("val_loss", 0.0) - y.get("val_loss", 0.0)) <= loss_tol
    wa, wb = load_file(str(single / "final.safetensors")), load_file(str(multi / "final.safetensors"))
    assert sorted(wa) == sorted(wb) and not any("mtp" in k for k in wa)
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= weight_tol
    # The runs really trained (weights moved from the seed-0 init the script starts from).
    assert a[-1]["loss"] < a[0]["loss"]


@pytest.mark.slow
def test_ddp_on_two_processes_matches_one_process(shards: Path, tmp_path: Path) -> None:
    args = [str(shards), "--parallel", "ddp"]
    _run([sys.executable, str(SCRIPT), args[0], str(tmp_path / "single"), *args[1:]], tmp_path / "single")
    _run([*TORCHRUN, str(SCRIPT), args[0], str(tmp_path / "ddp"), *args[1:]], tmp_path / "ddp")
    _compare(tmp_path / "single", tmp_path / "ddp", loss_tol=1e-5, weight_tol=1e-5)
    # Both processes wrote one checkpoint set; it is whole tensors (no per-rank files).
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints" / "step-000006").iterdir()) == [
        "model.safetensors", "state.json", "tensors.safetensors"]


@pytest.mark.slow
def test_fsdp2_with_muon_and_mtp_matches_one_process(shards: Path, tmp_path: Path) -> None:
    args = ["--optimizer", "muon", "--mtp", "2"]
    _run([sys.executable, str(SCRIPT), str(shards), str(tmp_path / "single"), "--parallel", "fsdp", *args],
         tmp_path / "single")
    _run([*TORCHRUN, str(SCRIPT), str(shards), str(tmp_path / "fsdp"), "--parallel", "fsdp", *args],
         tmp_path / "fsdp")
    # Muon orthogonalises in bf16 (torch's Newton-Schulz), so the last bits of a sharded matmul
    # order show up a little more than under AdamW.
    _compare(tmp_path / "single", tmp_path / "fsdp", loss_tol=2e-4, weight_tol=3e-3)
    state = json.loads((tmp_path / "fsdp" / "checkpoints" / "step-000006" / "state.json").read_text())
    assert state["step"] == 6


@pytest.mark.slow
@pytest.mark.parametrize("stage,before,count", [("pretrain", "train-tokenizer", 3), ("distill", "teacher-cache", 5)])
def test_torchrun_smoledge_training_matches_the_single_process_stage(tmp_path: Path, stage: str, before: str,
                                                                     count: int) -> None:
    """The CLI entry point itself under torchrun: rank 0 keeps the records, both ranks train (distillation
    from the teacher cache included)."""
    import shutil

    import yaml

    from smoledge.recipe import load_recipe
    from smoledge.runs import build
    from smoledge.stage import read_record
    from test_train_run import TINY_BUILD

    recipe_path = tmp_path / "tiny.yaml"
    recipe_path.write_text(yaml.safe_dump({**TINY_BUILD, "pretrain": {**TINY_BUILD["pretrain"], "max_steps": 12},
                                           "distill": {**TINY_BUILD["distill"], "max_steps": 12}}))
    recipe = load_recipe(recipe_path)
    single, multi = tmp_path / "single", tmp_path / "multi"
    build(recipe, single, until=before, out=lambda s: None)
    shutil.copytree(single, multi)
    build(recipe, single, until=stage, out=lambda s: None)
    cmd = [*TORCHRUN, "-m", "smoledge.cli", stage, str(recipe_path), "--runs-dir", str(multi)]
    done = _launch(cmd)
    assert done.returncode == 0, done.stderr[-3000:]
    # Rank 0 alone reports: one summary line per stage.
    assert done.stderr.count(f"[{count}/{count}] {stage}: done") == 1
    assert done.stderr.count(f"[1/{count}] curate: up to date") == 1
    a, b = read_record(single / "tiny" / stage), read_record(multi / "tiny" / stage)
    assert b["metrics"]["steps"] == 12 and abs(a["metrics"]["val_loss"] - b["metrics"]["val_loss"]) <= 1e-4
    ra = read_metrics(single / "tiny" / stage / "metrics.jsonl")
    rb = read_metrics(multi / "tiny" / stage / "metrics.jsonl")
    assert max(abs(x["loss"] - y["loss"]) for x, y in zip(ra, rb)) <= 1e-4
    assert (multi / "tiny" / stage / "model" / "model.safetensors").exists()
    assert {"metrics.jsonl", "events.jsonl", "loss.png", "model/config.json"} <= set(b["outputs"])
