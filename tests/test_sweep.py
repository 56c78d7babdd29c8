"""`smoledge sweep`: the search space, a real tiny sweep (table, plots, best recipe), resume, failures."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

from smoledge.cli import main
from smoledge.config import ConfigError
from smoledge.io import sha256_file
from smoledge.recipe import load_recipe
from smoledge.sweep import SweepConfig, run_sweep
from smoledge.sweep.best import write_best_recipe
from smoledge.sweep.results import read_table
from smoledge.sweep.space import axes, parse_grid, parse_range, points

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "build" / "quickstart.yaml"
REQUIRED = ("point", "status", "n_params", "n_params_total", "tokens", "flops", "val_loss", "train_loss", "wall_s",
            "run_dir", "error")
# The quickstart recipe shrunk to seconds per point: 360 raw docs, a 1k vocabulary, the tiny shape, 12 steps.
PROXY = [
    "data.sources=[{name: sample, kind: sample, sample_docs: 360}]", "tokenizer.vocab_size=1024",
    "teacher.preset=tiny", "pretrain.max_steps=12", "pretrain.batch_size=4", "pretrain.seq_len=64",
    "pretrain.warmup_steps=2", "pretrain.eval_batches=2", "pretrain.checkpoint_every=12",
    "pretrain.tensorboard=false",
    # One torch thread: on a 2-core box shared with other jobs, 2 threads spin-wait for each other (10x slower).
    "pretrain.threads=1",
]


# ----------------------------------------------------------------------------- the space

def test_grid_is_every_combination_with_stable_ids() -> None:
    params = {"pretrain.lr": ["1e-3", 3e-3, 1e-2], "pretrain.optimizer": ["adamw", "muon"]}
    pts = points(params, "grid", trials=1, seed=0)
    assert len(pts) == 6
    assert [p.values for p in pts[:2]] == [{"pretrain.lr": 0.001, "pretrain.optimizer": "adamw"},
                                          {"pretrain.lr": 0.001, "pretrain.optimizer": "muon"}]
    assert len({p.id for p in pts}) == 6
    # Same values, same id (in any key order): what makes a sweep resumable.
    again = points({"pretrain.optimizer": ["adamw", "muon"], "pretrain.lr": [1e-3, 3e-3, 1e-2]}, "grid", 1, 0)
    assert {p.id for p in again} == {p.id for p in pts}
    # The overrides parse back to the same values through load_recipe.
    r = load_recipe(QUICKSTART, pts[3].overrides())
    assert (r.pretrain.lr, r.pretrain.optimizer) == (3e-3, "muon")


def test_random_draws_are_reproducible_and_lr_is_log_uniform() -> None:
    params = {"pretrain.lr": {"min": 1e-4, "max": 1e-2}, "pretrain.warmup_steps": {"min": 2, "max": 30},
              "pretrain.optimizer": ["adamw", "muon"]}
    a = points(params, "random", trials=200, seed=7)
    assert [p.values for p in a] == [p.values for p in points(params, "random", trials=200, seed=7)]
    assert [p.values for p in a] != [p.values for p in points(params, "random", trials=200, seed=8)]
    assert len(a) == 200
    lrs = [p.values["pretrain.lr"] for p in a]
    assert all(1e-4 <= x <= 1e-2 for x in lrs)
    # Log-uniform: half the mass below the geometric midpoint 1e-3 (uniform would put 9% there).
    assert 0.38 < sum(x < 1e-3 for x in lrs) / len(lrs) < 0.62
    warm = [p.values["pretrain.warmup_steps"] for p in a]
    assert all(isinstance(w, int) and 2 <= w <= 30 for w in warm)
    assert {p.values["pretrain.optimizer"] for p in a} == {"adamw", "muon"}
    # A space smaller than the trials asked for yields each point once.
    assert len(points({"pretrain.optimizer": ["adamw", "muon"]}, "random", trials=8, seed=0)) == 2


def test_section_axis_moves_its_keys_together() -> None:
    pts = points({"teacher": [{"hidden_size": 64, "num_heads": 4}, {"hidden_size": 128, "num_heads": 8}],
                  "pretrain.lr": [1e-3]}, "grid", 1, 0)
    assert [p.values for p in pts] == [
        {"teacher.hidden_size": 64, "teacher.num_heads": 4, "pretrain.lr": 0.001},
        {"teacher.hidden_size": 128, "teacher.num_heads": 8, "pretrain.lr": 0.001},
    ]


def test_list_of_sections_is_a_plain_value() -> None:
    (p1, p2) = points({"data.sources": [[{"name": "a", "sample_docs": 100}], [{"name": "b", "sample_docs": 200}]]},
                      "grid", 1, 0)
    assert p1.values["data.sources"][0]["sample_docs"] == 100 and p1.id != p2.id
    assert load_recipe(QUICKSTART, p2.overrides()).data.sources[0].name == "b"


@pytest.mark.parametrize("axis, shared", [
    ({"pretrain.lr": [1e-3, 1e-2]}, ["curate", "train-tokenizer"]),
    ({"tokenizer.vocab_size": [512, 1024]}, ["curate"]),
    ({"seed": [1, 2]}, []),
])
def test_stages_shared_by_every_point(axis: dict, shared: list[str]) -> None:
    from smoledge.sweep.runner import _stages, shared_prefix

    recipes = [load_recipe(QUICKSTART, p.overrides()) for p in points(axis, "grid", 1, 0)]
    assert [s.name for s in shared_prefix(recipes, _stages("pretrain"))] == shared


@pytest.mark.parametrize("params, method, message", [
    ({"pretrain.lrr": [1e-3]}, "grid", r"sweep\.params\.pretrain\.lrr: unknown recipe key 'pretrain\.lrr'.*"
                                        r"'pretrain\.lr'"),
    ({"pretrian.lr": [1e-3]}, "grid", r"unknown recipe key 'pretrian\.lr'.*'pretrain'"),
    ({"pretrain.lr.x": [1]}, "grid", r"'pretrain\.lr' is a value, not a section"),
    ({"pretrain.optimizer": ["adamw", "sgd"]}, "grid", r"sweep\.params\.pretrain\.optimizer\[1\]: 'sgd' is not valid"),
    ({"pretrain.lr": ["fast"]}, "grid", r"sweep\.params\.pretrain\.lr\[0\]: expected a number"),
    ({"pretrain.lr": []}, "grid", r"sweep\.params\.pretrain\.lr: the list of values is empty"),
    ({"pretrain.lr": [1e-3, 1e-3]}, "grid", r"sweep\.params\.pretrain\.lr: 0\.001 is listed twice"),
    ({"pretrain.lr": 1e-3}, "grid", r"sweep\.params\.pretrain\.lr: expected a list of values"),
    ({"pretrain.lr": {"min": 1e-4, "max": 1e-2}}, "grid", r"pretrain\.lr: a range .* needs method random"),
    ({"pretrain.optimizer": {"min": 1, "max": 2}}, "random", r"pretrain\.optimizer: a range needs a numeric key"),
    ({"pretrain.lr": {"min": 0, "max": 1e-2}}, "random", r"pretrain\.lr: a log-uniform range needs min > 0"),
    ({"pretrain.lr": {"min": 1e-2, "max": 1e-3}}, "random", r"pretrain\.lr: min must be < max"),
    ({"name": ["a", "b"]}, "grid", r"sweep\.params\.name: 'name' cannot be swept"),
    ({"export.gguf_types": [["f32"]]}, "grid", r"'export\.gguf_types' is not read by the proxy training"),
    ({"teacher": [5]}, "grid", r"sweep\.params\.teacher\[0\]: 'teacher' is a section"),
])
def test_bad_axes_fail_naming_the_key(params: dict, method: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        axes(params, method)


def test_recipe_sweep_section_is_checked_when_the_recipe_loads(tmp_path: Path) -> None:
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["sweep"] = {"params": {"pretrain.lrr": [1e-3]}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"sweep\.params\.pretrain\.lrr: unknown recipe key.*'pretrain\.lr'"):
        load_recipe(path)
    raw["sweep"] = {"params": {"pretrain.lr": [1e-3, 1e-2]}, "set": ["pretrain.max_steps=5"], "trails": 3}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"unknown key 'sweep\.trails'.*'trials'"):
        load_recipe(path)
    del raw["sweep"]["trails"]
    path.write_text(yaml.safe_dump(raw))
    assert load_recipe(path).sweep.params == {"pretrain.lr": [1e-3, 1e-2]}


def test_command_line_axes() -> None:
    assert parse_grid("pretrain.lr=1e-3,3e-3") == ("pretrain.lr", ["1e-3", "3e-3"])
    assert parse_grid("pretrain.optimizer=[adamw, muon]") == ("pretrain.optimizer", ["adamw", "muon"])
    assert parse_grid("teacher.hidden_size=64,128") == ("teacher.hidden_size", [64, 128])
    assert parse_range("pretrain.lr=1e-4:1e-2") == ("pretrain.lr", {"min": "1e-4", "max": "1e-2"})
    assert parse_range("pretrain.weight_decay=0:0.2:linear")[1]["log"] is False
    for bad in ("pretrain.lr", "pretrain.lr="):
        with pytest.raises(ConfigError, match="--grid"):
            parse_grid(bad)
    with pytest.raises(ConfigError, match="--range 'pretrain.lr=1e-4'"):
        parse_range("pretrain.lr=1e-4")
    # "1e-3" (YAML reads it as text) becomes the number the float field means.
    assert axes({"pretrain.lr": ["1e-3"]}, "grid")[0].choices == [{"pretrain.lr": 0.001}]


def test_best_recipe_keeps_layout_and_comments(tmp_path: Path) -> None:
    out = write_best_recipe(QUICKSTART, {"pretrain.lr": 0.004, "pretrain.optimizer": "muon",
                                         "teacher.hidden_size": 96, "teacher.num_heads": 4},
                            tmp_path / "best.yaml", "why this recipe exists")
    text = out.read_text()
    assert text.startswith("# why this recipe exists\n")
    # Comments and untouched lines survive; the changed line says what it was; new keys land in their section.
    assert "# The default recipe" in text and "  preset: small          # 4 layers" in text
    assert "  lr: 0.004  # smoledge sweep: best (was 1.0e-2)" in text
    assert "  optimizer: muon\n" in text  # unchanged value: line kept as it was
    assert "  hidden_size: 96  # smoledge sweep: best" in text
    r = load_recipe(out)
    assert (r.pretrain.lr, r.teacher.hidden_size, r.teacher.num_heads, r.distill.lr) == (0.004, 96, 4, 3e-3)
    # A flow-style section cannot be edited in place: the recipe is dumped again, still equal and loadable.
    flow = tmp_path / "flow.yaml"
    flow.write_text("name: f\npretrain: {max_steps: 40, lr: 1.0e-3}\n")
    r = load_recipe(write_best_recipe(flow, {"pretrain.lr": 0.02}, tmp_path / "b2.yaml", "h"))
    assert (r.pretrain.lr, r.pretrain.max_steps) == (0.02, 40)


# ----------------------------------------------------------------------------- a real sweep

@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, str]:
    """A 4-point sweep (lr x optimizer) of the shrunk quickstart, through the command line."""
    out = tmp_path_factory.mktemp("sweep") / "sw"
    argv = ["sweep", str(QUICKSTART), *[a for s in PROXY for a in ("--set", s)],
            "--grid", "pretrain.lr=3e-3,1e-2", "--grid", "pretrain.optimizer=[adamw, muon]", "--out", str(out)]
    assert main(argv) == 0
    return out, " ".join(argv)


@pytest.mark.slow
def test_sweep_table_has_the_columns_the_scaling_fit_reads(swept) -> None:
    out, _ = swept
    with open(out / "results.csv", newline="") as f:
        header = next(csv.reader(f))
    assert set(REQUIRED) <= set(header)
    assert header[2:4] == ["pretrain.lr", "pretrain.optimizer"]
    rows = read_table(out / "results.csv")
    parquet = read_table(out / "results.parquet")
    assert [r["point"] for r in parquet] == [r["point"] for r in rows]
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    assert {(r["pretrain.lr"], r["pretrain.optimizer"]) for r in rows} == {
        (3e-3, "adamw"), (3e-3, "muon"), (1e-2, "adamw"), (1e-2, "muon")}
    for r, p in zip(rows, parquet):
        assert 0 < r["n_params"] < r["n_params_total"]
        # tiny shape: 2 layers x (attention 64x(64+32+32+64) + MLP 3x64x192 + 2 norms) + final norm.
        assert r["n_params"] == 2 * (64 * 192 + 3 * 64 * 192 + 2 * 64) + 64
        assert r["n_params_total"] - r["n_params"] == 1024 * 64  # the tied embedding, once
        assert r["tokens"] == 12 * 4 * 64
        assert r["flops"] == 6 * r["n_params"] * r["tokens"]
        assert math.isfinite(r["val_loss"]) and math.isfinite(r["train_loss"]) and r["wall_s"] > 0
        assert r["optimizer"] == r["pretrain.optimizer"] and r["lr"] == r["pretrain.lr"]
        assert Path(r["run_dir"], "pretrain", "model", "model.safetensors").is_file()
        assert p["val_loss"] == pytest.approx(r["val_loss"]) and p["n_params"] == r["n_params"]
    # The optimizers really differ: the same lr gives different losses.
    by = {(r["pretrain.lr"], r["pretrain.optimizer"]): r["val_loss"] for r in rows}
    assert by[(1e-2, "adamw")] != by[(1e-2, "muon")]


@pytest.mark.slow
def test_sweep_shares_the_data_stages(swept) -> None:
    out, _ = swept
    records = sorted(out.rglob("curate/stage.json"))
    assert [p.resolve() for p in records] == [(out / "shared" / "base" / "curate" / "stage.json").resolve()] * len(records)
    for point in (out / "points").iterdir():
        assert (point / "curate").is_symlink() and (point / "tokenizer").is_symlink()
        assert not (point / "pretrain").is_symlink()


@pytest.mark.slow
def test_sweep_plots_best_recipe_and_manifest(swept) -> None:
    out, _ = swept
    rows = read_table(out / "results.csv")
    best = min(rows, key=lambda r: r["val_loss"])
    for name in ("lr.png", "compute.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / name).stat().st_size > 10_000
    recipe = load_recipe(out / "best.yaml")
    assert (recipe.pretrain.lr, recipe.pretrain.optimizer) == (best["pretrain.lr"], best["pretrain.optimizer"])
    # Only the swept values changed: the proxy settings (--set) stay out of the best recipe.
    base = load_recipe(QUICKSTART)
    assert recipe.pretrain.max_steps == base.pretrain.max_steps and recipe.teacher == base.teacher
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["best"]["point"] == best["point"] and manifest["ok"] == 4
    assert set(manifest["artifacts"]) == {"results.csv", "results.parquet", "lr.png", "compute.png", "best.yaml"}
    for name, meta in manifest["artifacts"].items():
        assert sha256_file(out / name) == meta["sha256"]


@pytest.mark.slow
def test_sweep_resumes_without_rerunning_finished_points(swept, capsys) -> None:
    out, _ = swept
    cfg = SweepConfig(recipe=str(QUICKSTART), overrides=PROXY, out=str(out),
                      params={"pretrain.lr": [3e-3, 1e-2], "pretrain.optimizer": ["adamw", "muon"]})
    before = (out / "results.csv").read_text()
    again = run_sweep(cfg)
    assert again.ran == [] and len(again.reused) == 4
    assert (out / "results.csv").read_text() == before
    # A point without its record (interrupted) runs again; the others do not.
    lost = again.rows[1]["point"]
    (out / "points" / lost / "point.json").unlink()
    third = run_sweep(cfg)
    assert third.ran == [lost] and sorted(third.reused) == sorted(r["point"] for r in again.rows if r["point"] != lost)
    assert (out / "points" / lost / "point.json").is_file()
    assert [r["val_loss"] for r in third.rows] == [r["val_loss"] for r in again.rows]


@pytest.mark.slow
def test_failed_point_is_recorded_and_the_sweep_goes_on(swept, tmp_path: Path) -> None:
    out, _ = swept
    # Same data config: a copy of the shared stages is up to date (the orchestrator's fingerprint cache).
    other = tmp_path / "sw2"
    shutil.copytree(out / "shared", other / "shared", symlinks=True)
    cfg = SweepConfig(recipe=str(QUICKSTART), overrides=PROXY, out=str(other),
                      params={"pretrain.seq_len": [64, 4096]})  # 4096 > the teacher's 2048 positions
    lines: list[str] = []
    result = run_sweep(cfg, out=lines.append)
    assert not any("curate: running" in line for line in lines)
    ok, failed = result.rows
    assert ok["status"] == "ok" and failed["status"] == "failed"
    assert "pretrain.seq_len: 4096 exceeds teacher.max_position_embeddings" in failed["error"]
    assert failed["val_loss"] is None and result.best["point"] == ok["point"]
    assert (other / "points" / failed["point"] / "error.txt").is_file()
    assert read_table(other / "results.parquet")[1]["error"] == failed["error"]
    # A failed point is a result: not re-run, unless asked.
    assert run_sweep(cfg, out=lines.append).ran == []
    cfg.retry_failed = True
    assert run_sweep(cfg, out=lines.append).ran == [failed["point"]]


def test_sweep_help_shows_an_example(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--grid pretrain.lr=1e-3,3e-3,1e-2" in text and "--random" in text and "--range" in text


def test_dry_run_lists_points_and_bad_flags_fail(capsys) -> None:
    assert main(["sweep", str(QUICKSTART), "--dry-run", "--grid", "pretrain.lr=1e-3,1e-2",
                 "--grid", "pretrain.optimizer=adamw,muon"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("4 points (grid), each trained up to pretrain:") and "pretrain.optimizer=muon" in out
    assert main(["sweep", str(QUICKSTART), "--dry-run", "--range", "pretrain.lr=1e-4:1e-2"]) == 2
    assert "add --random N" in capsys.readouterr().err
    assert main(["sweep", str(QUICKSTART), "--dry-run", "--grid", "student.preset=tiny,small"]) == 0
    assert "each trained up to distill" in capsys.readouterr().out  # auto: student keys need distillation
    assert main(["sweep", str(QUICKSTART), "--dry-run", "--grid", "student.preset=tiny,small",
                 "--set", "sweep.stage=pretrain"]) == 2
    assert "student/distill keys are swept" in capsys.readouterr().err
    # The quickstart recipe's own sweep: section; flags replace its axes.
    assert main(["sweep", str(QUICKSTART), "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("8 points (grid)")
    assert main(["sweep", str(QUICKSTART), "--dry-run", "--grid", "teacher.hidden_size=64,128"]) == 0
    assert capsys.readouterr().out.startswith("2 points (grid)")
    assert main(["sweep", str(QUICKSTART), "--dry-run", "--set", "sweep.params={}"]) == 2
    assert "nothing to sweep" in capsys.readouterr().err
