"""Run a sweep: proxy trainings one after another on this machine, resumable, then table, plots, best.

    from smoledge.sweep import SweepConfig, run_sweep
    result = run_sweep(SweepConfig(recipe="build/quickstart.yaml",
                                   overrides=["pretrain.max_steps=60"],
                                   params={"pretrain.lr": [1e-3, 3e-3, 1e-2],
                                           "pretrain.optimizer": ["adamw", "muon"]}))
    result.table, result.best["point"], result.best_recipe

A proxy training is the recipe's own build (smoledge.runs) up to the training stage
(pretrain, or distill when student/distill keys are swept), with the point's values
applied as `--set` overrides, each point in its own run directory:

  <sweep dir>/
    sweep.json               the plan: recipe, overrides, search space, points
    shared/base/<stage>/     stages every point would build identically (curate, tokenizer...),
                             built once; each point's run dir links to them, and the build
                             orchestrator's fingerprint check sees them up to date
    points/<id>/             one point's run directory (pretrain/ with model, metrics, loss.png)
    points/<id>/point.json   its record, written once it finished (or failed): never re-run
    results.csv, results.parquet, lr.png, compute.png, best.yaml, manifest.json

Each training uses every local core (TrainConfig.threads 0), so points run one at a
time. An interrupted point has no record and runs again next time, resuming from its
last checkpoint. A failed point is recorded with its error and the sweep goes on.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from smoledge.config import ConfigError
from smoledge.errors import SmoledgeError
from smoledge.layout import TrainFiles
from smoledge.io import atomic_write_json, exclusive_dir, sha256_file
from smoledge.sweep.config import SweepConfig, SweepSpec
from smoledge.sweep.space import Point, points, top_sections

POINT_RECORD = "point.json"
PLAN = "sweep.json"
MANIFEST = "manifest.json"
BEST_RECIPE = "best.yaml"
SHARED_NAME = "base"
# Longest error message kept in the table (the full traceback is in the point's error.txt).
MAX_ERROR_CHARS = 500


@dataclass
class SweepResult:
    """What `run_sweep` returns; every path is inside `dir`."""

    dir: Path
    """The sweep directory."""
    table: Path
    """results.csv (one row per point; columns in smoledge/sweep/results.py)."""
    parquet: Path
    """results.parquet: the same table."""
    rows: list[dict[str, Any]]
    """The table's rows, in point order."""
    swept: list[str]
    """Swept dotted keys (the table's value columns)."""
    plots: dict[str, Path] = field(default_factory=dict)
    """"lr" (loss vs lr per optimizer) and "compute" (loss vs flops)."""
    best: dict[str, Any] | None = None
    """The row with the lowest metric among finished points (None when every point failed)."""
    best_recipe: Path | None = None
    """The base recipe with the best point's values, as YAML (loads with load_recipe)."""
    manifest: Path | None = None
    """manifest.json: sha256 of the table, plots and best recipe."""
    ran: list[str] = field(default_factory=list)
    """Points trained by this call."""
    reused: list[str] = field(default_factory=list)
    """Points recorded by an earlier call and not run again."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _stages(target: str) -> tuple[Any, ...]:
    from smoledge.runs import STAGE_NAMES, STAGES

    return STAGES[: STAGE_NAMES.index(target) + 1]


def _sections(stages: tuple[Any, ...]) -> list[str]:
    return sorted({sec for s in stages for sec in s.sections})


def shared_prefix(recipes: list[Any], stages: tuple[Any, ...]) -> list[Any]:
    """The leading stages whose fingerprint (config, external inputs, upstream) is the same for every
    point: one build of them serves the whole sweep."""
    from smoledge.runs import stage_fingerprint

    chains: list[dict[str, str]] = [{} for _ in recipes]
    shared = []
    for s in stages:
        fps = set()
        for recipe, chain in zip(recipes, chains):
            if s.stage.not_needed(recipe):
                fp = "not needed"
            else:
                external = s.stage.external_inputs(recipe)
                fp = stage_fingerprint(recipe, s, {d: chain[d] for d in s.deps}, external)
            chain[s.name] = fp
            fps.add(fp)
        if len(fps) != 1:
            break
        shared.append(s)
    return shared


def _link_shared(point_dir: Path, shared_dir: Path, stages: tuple[Any, ...], shared: list[Any]) -> None:
    """Point the run dir's shared stage dirs at the one shared build; make the others real dirs."""
    point_dir.mkdir(parents=True, exist_ok=True)
    names = {s.name for s in shared}
    for s in stages:
        link = point_dir / s.dir
        if s.name in names and (shared_dir / s.dir).is_dir():
            target = os.path.relpath(shared_dir / s.dir, point_dir)
            if link.is_symlink() and os.readlink(link) == target:
                continue
            if link.is_symlink():
                link.unlink()
            elif link.exists():
                shutil.rmtree(link)  # built here by an earlier sweep that did vary this stage
            link.symlink_to(target, target_is_directory=True)
        elif link.is_symlink():
            link.unlink()  # shared earlier, varies now: the build must not clear the shared copy


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _check_target(spec: SweepSpec, target: str, base: Any) -> None:
    if target == "pretrain" and top_sections(spec.params) & {"student", "distill"}:
        raise ConfigError("sweep.stage: pretrain trains the teacher only, but student/distill keys are swept; "
                          "set sweep.stage: distill (or auto)")
    if target == "pretrain" and base.distill.teacher:
        raise ConfigError(f"sweep.stage: this recipe skips pretraining (distill.teacher is "
                          f"{base.distill.teacher!r}); sweep student/distill keys, or set sweep.stage: distill")


def make_plan(cfg: SweepConfig) -> tuple[Any, SweepSpec, list[Point], str]:
    """(base recipe, search space, points, stage each point trains up to); nothing is written."""
    from smoledge.recipe import load_recipe

    base = load_recipe(cfg.recipe, cfg.overrides)
    spec = cfg.spec(base.sweep)
    plan = points(spec.params, spec.method, spec.trials, spec.seed)
    target = spec.target_stage()
    _check_target(spec, target, base)
    return base, spec, plan, target


def run_sweep(cfg: SweepConfig,
              out: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> SweepResult:
    """Plan the points, train the ones not yet recorded, then write table, plots, best recipe, manifest."""
    from smoledge.recipe import load_recipe
    from smoledge.runs import build

    base, spec, plan, target = make_plan(cfg)
    stages = _stages(target)
    swept = list(dict.fromkeys(k for p in plan for k in p.values))
    proxy = [*spec.set, *cfg.overrides]
    # Every point's recipe is loaded (so checked) before anything trains.
    recipes = {p.id: load_recipe(cfg.recipe, [*proxy, *p.overrides(), f"name={p.id}"]) for p in plan}
    sections = ["seed", *_sections(stages)]
    sweep_dir = Path(cfg.out) if cfg.out else Path(cfg.runs_dir) / base.name / "sweep"
    sweep_dir = sweep_dir.resolve()
    points_root, shared_root = sweep_dir / "points", sweep_dir / "shared"
    result = SweepResult(dir=sweep_dir, table=sweep_dir, parquet=sweep_dir, rows=[], swept=swept)

    with exclusive_dir(sweep_dir, f"another smoledge sweep is running in {sweep_dir}; wait for it or pass "
                                  "--out with another directory"):
        atomic_write_json(sweep_dir / PLAN, {
            "recipe": str(Path(cfg.recipe).resolve()), "overrides": proxy, "spec": spec.to_dict(),
            "stage": target, "points": [{"point": p.id, "values": p.values} for p in plan],
        })
        out(f"sweep: {len(plan)} points ({spec.method} over {', '.join(swept)}), each trained up to {target}; "
            f"{sweep_dir}")
        to_train = {p.id for p in plan if not _finished(points_root / p.id, recipes[p.id], sections, cfg.retry_failed)}
        shared = shared_prefix(list(recipes.values()), stages) if to_train else []
        if len(plan) > 1 and shared and shared[-1].name == target:
            raise ConfigError(f"sweep.params: the swept keys ({', '.join(swept)}) do not change the {target} "
                              "stage; every point would train the same model")
        shared = [s for s in shared if s.name != target]  # each point's model lives in its own run dir
        if shared:
            out(f"sweep: stages shared by every point: {', '.join(s.name for s in shared)}")
            first = plan[0]
            shared_recipe = load_recipe(cfg.recipe, [*proxy, *first.overrides(), f"name={SHARED_NAME}"])
            build(shared_recipe, runs_root=shared_root, until=shared[-1].name, out=lambda s: out(f"  shared {s}"))
        for i, p in enumerate(plan, 1):
            label = f"[{i}/{len(plan)}] {p.id} {p.label()}"
            point_dir = points_root / p.id
            if p.id not in to_train:
                record = _read_json(point_dir / POINT_RECORD) or {}
                result.reused.append(p.id)
                shown = f"val_loss {record['row']['val_loss']:.4f}" if record.get("status") == "ok" else "failed"
                out(f"{label}: recorded earlier ({shown}), not re-run")
                continue
            out(f"{label}: training")
            _link_shared(point_dir, shared_root / SHARED_NAME, stages, shared)
            row = _train_point(p, recipes[p.id], target, points_root, point_dir, build, out)
            atomic_write_json(point_dir / POINT_RECORD, {
                "point": p.id, "values": p.values, "overrides": p.overrides(), "proxy_overrides": proxy,
                "fingerprint": recipes[p.id].fingerprint(*sections), "status": row["status"], "row": row,
                "finished": _now(),
            })
            result.ran.append(p.id)
            shown = f"val_loss {row['val_loss']:.4f}" if row["status"] == "ok" else f"FAILED: {row['error']}"
            out(f"{label}: {shown} ({row['wall_s']:.1f}s)")
        for p in plan:
            record = _read_json(points_root / p.id / POINT_RECORD)
            if record is not None:
                result.rows.append(record["row"])
        _write_outputs(cfg, spec, base, result, sweep_dir)
    return result


def _finished(point_dir: Path, recipe: Any, sections: list[str], retry_failed: bool) -> bool:
    """Recorded with the same resolved config (and not a failure we were asked to retry)."""
    record = _read_json(point_dir / POINT_RECORD)
    if record is None or record.get("fingerprint") != recipe.fingerprint(*sections):
        return False
    return record.get("status") == "ok" or not retry_failed


def _trained(recipe: Any, target: str) -> dict[str, Any]:
    cfg = recipe.distill if target == "distill" else recipe.pretrain
    return {"optimizer": cfg.optimizer, "lr": cfg.lr}


def _train_point(p: Point, recipe: Any, target: str, points_root: Path, point_dir: Path, build: Callable,
                 out: Callable[[str], None]) -> dict[str, Any]:
    from smoledge.runs import spec as stage_spec
    from smoledge.sweep.results import failed_row, ok_row

    t0 = time.time()
    try:
        outcomes = build(recipe, runs_root=points_root, until=target, out=lambda s: out(f"  {s}"))
        record = outcomes[-1].record
        stage_dir = point_dir / stage_spec(target).dir
        (point_dir / "error.txt").unlink(missing_ok=True)
        return ok_row(p.id, p.values, _trained(recipe, target), record["metrics"], TrainFiles(stage_dir).model,
                      point_dir, record.get("wall_time_s", time.time() - t0))
    except KeyboardInterrupt:
        raise  # no record: the point runs again (from its last checkpoint) next time
    except Exception as exc:  # noqa: BLE001 - a failed point is a result; the sweep goes on
        from smoledge.io import atomic_write_text

        atomic_write_text(point_dir / "error.txt", traceback.format_exc())
        message = " ".join(f"{type(exc).__name__}: {exc}".split())[:MAX_ERROR_CHARS]
        return failed_row(p.id, p.values, _trained(recipe, target), point_dir, time.time() - t0, message)


def _write_outputs(cfg: SweepConfig, spec: SweepSpec, base: Any, result: SweepResult, sweep_dir: Path) -> None:
    from smoledge.sweep.best import write_best_recipe
    from smoledge.sweep.plots import plot_compute, plot_lr
    from smoledge.sweep.results import best_row, write_table

    result.table, result.parquet = write_table(result.rows, result.swept, sweep_dir)
    result.plots = {"lr": plot_lr(result.rows, result.swept, sweep_dir / "lr.png", spec.metric),
                    "compute": plot_compute(result.rows, sweep_dir / "compute.png", spec.metric)}
    result.best = best_row(result.rows, spec.metric)
    artifacts = [result.table, result.parquet, *result.plots.values()]
    if result.best is not None:
        values = {k: result.best[k] for k in result.swept if k in result.best}
        header = (f"Best point of `smoledge sweep` in {sweep_dir}: {result.best['point']} "
                  f"({spec.metric} {result.best[spec.metric]:.4f} in the proxy training). "
                  f"Swept values: {', '.join(f'{k}={v}' for k, v in values.items())}")
        result.best_recipe = write_best_recipe(Path(cfg.recipe), values, sweep_dir / BEST_RECIPE, header)
        artifacts.append(result.best_recipe)
    elif (sweep_dir / BEST_RECIPE).exists():
        (sweep_dir / BEST_RECIPE).unlink()  # from an earlier space whose points no longer count
    ok = sum(r["status"] == "ok" for r in result.rows)
    result.manifest = atomic_write_json(sweep_dir / MANIFEST, {
        "recipe": str(Path(cfg.recipe).resolve()),
        "base_recipe_name": base.name,
        "spec": spec.to_dict(),
        "points": len(result.rows), "ok": ok, "failed": len(result.rows) - ok,
        "best": None if result.best is None else {
            "point": result.best["point"], "metric": spec.metric, "value": result.best[spec.metric],
            "values": {k: result.best[k] for k in result.swept if k in result.best}},
        "artifacts": {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in artifacts},
        "finished": _now(),
    })
