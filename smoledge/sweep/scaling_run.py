"""`smoledge scaling fit`: fit L(N, D) to a sweep's results table, predict, and write fit.json + fit.png.

    smoledge sweep build/quickstart.yaml --grid 'teacher=[...sizes...]' --grid pretrain.max_steps=100,200,400
    smoledge scaling fit runs/quickstart/sweep/results.csv --holdout-largest --target build/quickstart.yaml

    from smoledge.sweep.scaling_run import ScalingFitConfig, run
    report = run(ScalingFitConfig(table="runs/quickstart/sweep/results.csv", holdout_largest=True))
    report["holdout"][0]["error_pct"]

Reads the table written by `smoledge sweep` (smoledge/sweep/results.py: `n_params` = non-embedding N,
`tokens` = D, `val_loss`), drops failed and diverged points, holds out the points asked for (fitted
without them, then predicted: the check that the law extrapolates), fits the law with bootstrap
intervals (scaling.py), and writes into the output directory (default: scaling/ next to the table):

  fit.json        parameters with intervals, per-run residuals, held-out and requested predictions,
                  the target recipe's predicted loss, compute-optimal N, D and tokens per parameter
  fit.png         observed vs fitted loss; loss vs compute with the fitted curves and the
                  compute-optimal frontier; iso-loss contours over (N, D) with the optimal path
  manifest.json   sha256 of both, and of the table they came from
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from smoledge.config import ConfigError, Section
from smoledge.errors import SmoledgeError
from smoledge.io import atomic_write_json, sha256_file
from smoledge.sweep.scaling import FitConfig, FitResult, Observations, fit

FIT_JSON = "fit.json"
FIT_PLOT = "fit.png"
MANIFEST = "manifest.json"
NEEDED = ("point", "status", "n_params", "tokens")


@dataclass
class ScalingFitConfig(Section):
    table: str = ""
    """Results table of `smoledge sweep` (results.csv or results.parquet)."""
    out: str | None = None
    """Output directory for fit.json, fit.png and manifest.json (default: scaling/ next to the table)."""
    loss: Literal["val_loss", "train_loss"] = "val_loss"
    """Table column fitted as L."""
    fit: FitConfig = field(default_factory=FitConfig)
    """The fit itself (Huber delta, starts, bootstrap, interval level)."""
    holdout: list[str] = field(default_factory=list)
    """`point` ids left out of the fit and predicted instead (validation of the extrapolation)."""
    holdout_largest: bool = False
    """Also hold out the finished point with the largest compute 6 N D."""
    predict: list[list[float]] = field(default_factory=list)
    """(N, D) pairs to predict: non-embedding parameters, training tokens."""
    target: str | None = None
    """A recipe whose trained model to predict: its model size and token count (see target_stage)."""
    target_overrides: list[str] = field(default_factory=list)
    """KEY=VALUE overrides for the target recipe (like --set)."""
    target_stage: Literal["pretrain", "distill"] = "pretrain"
    """Which model of the target is predicted: the teacher (pretrain) or the student (distill)."""
    compute: list[float] = field(default_factory=list)
    """Training compute budgets C (FLOPs, 6 N D) at which to report the compute-optimal N, D and D/N,
    besides the table's largest and the target's."""

    def __post_init__(self) -> None:
        if not self.table:
            self.fail("table", "name the sweep's results table, e.g. runs/quickstart/sweep/results.csv")
        if Path(self.table).suffix not in (".csv", ".parquet"):
            self.fail("table", f"{self.table!r} is neither .csv nor .parquet (smoledge sweep writes both)")
        for i, pair in enumerate(self.predict):
            if len(pair) != 2 or not all(math.isfinite(v) and v > 0 for v in pair):
                self.fail(f"predict[{i}]", f"expected two positive numbers N,D (e.g. 4e5,1e6), got {pair}")
        for i, c in enumerate(self.compute):
            if not (math.isfinite(c) and c > 0):
                self.fail(f"compute[{i}]", f"must be a positive number of FLOPs, got {c}")
        if self.target_overrides and not self.target:
            self.fail("target_overrides", "only apply to a --target recipe; add one")


def _number(row: dict[str, Any], key: str) -> float | None:
    v = row.get(key)
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        raise SmoledgeError(f"point {row.get('point')}: column {key!r} holds {v!r}, not a number; "
                            "regenerate the table with `smoledge sweep`") from None


def read_runs(cfg: ScalingFitConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(usable runs, excluded runs with the reason) from the table."""
    from smoledge.sweep.results import read_table

    path = Path(cfg.table)
    if not path.is_file():
        raise SmoledgeError(f"results table {path} does not exist; run `smoledge sweep` first (it writes "
                            "<sweep dir>/results.csv and results.parquet)")
    try:
        rows = read_table(path)
    except (ValueError, KeyError) as exc:
        raise SmoledgeError(f"{path} is not a results table smoledge can read ({type(exc).__name__}: {exc}); "
                            "regenerate it with `smoledge sweep`") from None
    if not rows:
        raise SmoledgeError(f"{path} has no rows; the sweep has not finished any point yet")
    missing = [c for c in (*NEEDED, cfg.loss) if c not in rows[0]]
    if missing:
        raise SmoledgeError(f"{path} lacks column(s) {', '.join(missing)}; a scaling fit needs "
                            f"{', '.join((*NEEDED, cfg.loss))} (the table `smoledge sweep` writes)")
    runs, excluded = [], []
    for row in rows:
        point = str(row["point"])
        if row["status"] != "ok":
            excluded.append({"point": point, "reason": f"status {row['status']}: {row.get('error') or ''}".strip()})
            continue
        n, d, loss = (_number(row, k) for k in ("n_params", "tokens", cfg.loss))
        if loss is None or not math.isfinite(loss):
            excluded.append({"point": point, "reason": f"{cfg.loss} is {loss}: diverged"})
            continue
        for name, v in (("n_params", n), ("tokens", d), (cfg.loss, loss)):
            if v is None or not math.isfinite(v) or v <= 0:
                raise SmoledgeError(f"point {point}: {name} is {v}; the law needs positive N, D and loss. "
                                    f"Fix or drop that row of {path} (or mark it status=failed)")
        runs.append({"point": point, "N": n, "D": d, "L": loss, "row": row})
    return runs, excluded


def split_holdout(runs: list[dict[str, Any]], cfg: ScalingFitConfig) -> tuple[list[dict], list[dict]]:
    """(fitted runs, held-out runs)."""
    known = {r["point"] for r in runs}
    unknown = [p for p in cfg.holdout if p not in known]
    if unknown:
        raise SmoledgeError(f"--holdout {', '.join(unknown)}: no finished point with that id in {cfg.table}; "
                            f"points: {', '.join(sorted(known))}")
    held = set(cfg.holdout)
    if cfg.holdout_largest and runs:
        held.add(max(runs, key=lambda r: r["N"] * r["D"])["point"])
    return [r for r in runs if r["point"] not in held], [r for r in runs if r["point"] in held]


def recipe_size(recipe_path: str, overrides: list[str], stage: str) -> dict[str, Any]:
    """Non-embedding N (as the table counts it), total parameters and tokens D of a recipe's trained model.

    The model is built on the meta device: shapes only, no memory, no init."""
    import torch
    from transformers import SmolLM3ForCausalLM

    from smoledge.model.build import hf_config
    from smoledge.recipe import load_recipe
    from smoledge.sweep.results import is_embedding

    recipe = load_recipe(recipe_path, overrides)
    model_cfg, train = (recipe.student, recipe.distill) if stage == "distill" else (recipe.teacher, recipe.pretrain)
    with torch.device("meta"):
        model = SmolLM3ForCausalLM(hf_config(model_cfg, vocab_size=recipe.tokenizer.vocab_size))
    named = list(model.named_parameters())  # tied weights appear once
    n = sum(p.numel() for name, p in named if not is_embedding(name))
    total = sum(p.numel() for _, p in named)
    d = train.max_steps * train.batch_size * train.seq_len
    return {"recipe": recipe_path, "overrides": list(overrides), "stage": stage, "name": recipe.name,
            "N": float(n), "n_params_total": int(total), "D": float(d), "steps": train.max_steps}


def _compute_budgets(cfg: ScalingFitConfig, runs: list[dict], target: dict | None) -> list[dict[str, Any]]:
    budgets = [{"C": max(r["N"] * r["D"] for r in runs) * 6.0, "source": "largest fitted run"}]
    if target is not None:
        budgets.append({"C": 6.0 * target["N"] * target["D"], "source": f"target {target['name']}"})
    budgets += [{"C": float(c), "source": "--compute"} for c in cfg.compute]
    return budgets


def run(cfg: ScalingFitConfig) -> dict[str, Any]:
    """Fit, predict, write fit.json, fit.png and manifest.json; return what fit.json holds."""
    from smoledge.sweep.scaling_plot import plot_fit

    runs, excluded = read_runs(cfg)
    fitted, held = split_holdout(runs, cfg)
    if not fitted:
        raise SmoledgeError(f"no finished point left to fit in {cfg.table} (excluded: {len(excluded)}, "
                            f"held out: {len(held)})")
    obs = Observations.from_arrays([r["N"] for r in fitted], [r["D"] for r in fitted], [r["L"] for r in fitted],
                                   [r["point"] for r in fitted])
    result: FitResult = fit(obs, cfg.fit)
    holdout = []
    for r in held:
        p = result.predict(r["N"], r["D"])
        holdout.append({"point": r["point"], "N": r["N"], "D": r["D"], "observed": r["L"], "predicted": p["loss"],
                        "ci": [p["lo"], p["hi"]], "error_pct": 100 * (p["loss"] - r["L"]) / r["L"],
                        "inside_ci": bool(p["lo"] <= r["L"] <= p["hi"])})
    target = None
    if cfg.target:
        try:
            target = recipe_size(cfg.target, cfg.target_overrides, cfg.target_stage)
        except ConfigError as exc:
            raise ConfigError(f"--target: {exc}") from None
        target["prediction"] = result.predict(target["N"], target["D"])
    predictions = [result.predict(n, d) for n, d in cfg.predict]
    optimal = [{**b, **result.compute_optimal(b["C"])} for b in _compute_budgets(cfg, fitted, target)]

    table = Path(cfg.table)
    out = Path(cfg.out) if cfg.out else table.parent / "scaling"
    report = {
        "table": str(table.resolve()),
        "table_sha256": sha256_file(table),
        "loss_column": cfg.loss,
        "fitted_points": [r["point"] for r in fitted],
        "excluded": excluded,
        "fit": result.to_dict(),
        "holdout": holdout,
        "target": target,
        "predictions": predictions,
        "compute_optimal": optimal,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    json_path = atomic_write_json(out / FIT_JSON, _strict(report))
    plot_path = plot_fit(result, held, target, optimal, out / FIT_PLOT, cfg.loss)
    atomic_write_json(out / MANIFEST, {
        "table": {"path": str(table.resolve()), "sha256": report["table_sha256"]},
        "artifacts": {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in (json_path, plot_path)},
        "finished": report["finished"],
    })
    report["out"] = str(out)
    return report


def _strict(v: Any) -> Any:
    """NaN and infinity (intervals without a bootstrap, an exponent of 0) as null: strict JSON."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _strict(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_strict(x) for x in v]
    return v


def _fmt_ci(v: float, ci: list[float] | tuple[float, float]) -> str:
    if not all(math.isfinite(x) for x in ci):
        return f"{v:.4g}"  # no bootstrap, no interval
    return f"{v:.4g} [{ci[0]:.4g}, {ci[1]:.4g}]"


def summary(report: dict[str, Any]) -> str:
    """The report for a terminal."""
    f = report["fit"]
    level = f"{100 * f['ci_level']:g}%"
    lines = [f"L(N, D) = E + A / N^alpha + B / D^beta   fitted on {len(report['fitted_points'])} runs "
             f"({report['loss_column']}; fit RMSE {f['fit_rmse_pct']:.2f}%; {level} bootstrap intervals, "
             f"{f['bootstrap']['kept']} resamples)"]
    for k, v in f["params"].items():
        lines.append(f"  {k:>5} = {_fmt_ci(v, f['ci'][k])}")
    for w in f["warnings"]:
        lines.append(f"  warning: {w}")
    for e in report["excluded"]:
        lines.append(f"  excluded {e['point']}: {e['reason']}")
    for h in report["holdout"]:
        lines.append(f"held out {h['point']} (N={h['N']:.4g}, D={h['D']:.4g}): predicted "
                     f"{_fmt_ci(h['predicted'], h['ci'])}, measured {h['observed']:.4f}, error {h['error_pct']:+.2f}%")
    for p in report["predictions"]:
        lines.append(f"predict N={p['N']:.4g}, D={p['D']:.4g}: {_fmt_ci(p['loss'], (p['lo'], p['hi']))}")
    t = report["target"]
    if t is not None:
        p = t["prediction"]
        lines.append(f"target {t['name']} ({t['stage']}: N={t['N']:.4g} non-embedding, D={t['D']:.4g} tokens): "
                     f"predicted {_fmt_ci(p['loss'], (p['lo'], p['hi']))}")
    for o in report["compute_optimal"]:
        lines.append(f"compute-optimal at C={o['C']:.3g} ({o['source']}): N={_fmt_ci(o['N_opt'], o['N_opt_ci'])}, "
                     f"D={_fmt_ci(o['D_opt'], o['D_opt_ci'])}, tokens/param "
                     f"{_fmt_ci(o['tokens_per_param'], o['tokens_per_param_ci'])}, loss {o['loss']:.4f}")
    lines.append(f"wrote {report['out']}/{FIT_JSON}, {FIT_PLOT}, {MANIFEST}")
    return "\n".join(lines)


def parse_pair(text: str) -> list[float]:
    """"4e5,1e6" -> [400000.0, 1000000.0] (for --predict N,D)."""
    parts = [p for p in text.replace(" ", "").split(",") if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 2:
        raise ConfigError(f"--predict {text!r}: expected N,D (non-embedding parameters, tokens), e.g. 4e5,1e6")
    return values
