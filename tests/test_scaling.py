"""Scaling-law fit (smoledge/sweep/scaling*.py): recovery of a known law, bootstrap coverage, the
compute-optimal closed form against brute force, bad input, and `smoledge scaling fit` on a small table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from smoledge.cli import main
from smoledge.config import ConfigError
from smoledge.errors import SmoledgeError
from smoledge.io import sha256_file
from smoledge.sweep.results import write_table
from smoledge.sweep.scaling import FitConfig, Observations, ScalingLaw, fit
from smoledge.sweep.scaling_run import ScalingFitConfig, recipe_size, run

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "build" / "quickstart.yaml"
# A law shaped like the small runs here (losses ~2-6 nats at N ~ 1e4-1e6, D ~ 1e5-1e7).
TRUE = ScalingLaw(E=1.8, A=50.0, B=400.0, alpha=0.32, beta=0.36)
N_GRID = (2e4, 5e4, 1e5, 2.5e5, 5e5)
D_GRID = (1e5, 3e5, 1e6, 3e6)
FAR = (2e6, 1e7)  # 4x the largest N and 3x the largest D: an extrapolation


def synthetic(noise: float, seed: int = 0, law: ScalingLaw = TRUE) -> Observations:
    n, d = (a.ravel() for a in np.meshgrid(N_GRID, D_GRID, indexing="ij"))
    rng = np.random.default_rng(seed)
    loss = law.loss(n, d) * np.exp(rng.normal(0.0, noise, n.size))
    return Observations.from_arrays(n, d, loss, [f"p{i}" for i in range(n.size)])


def test_objective_gradient_matches_finite_differences():
    from smoledge.sweep.scaling import _design, _objective

    obs = synthetic(0.01, seed=4)
    J, log_l = _design(np.log(obs.N) - 11.0, np.log(obs.D) - 13.0), np.log(obs.L)
    for theta in (np.array([1.0, 2.0, 0.5, 0.3, 0.4]), np.array([-0.5, 1.0, 0.6, 0.5, 0.2])):
        delta = 0.05  # wide enough that both Huber zones hold some residuals
        value, grad = _objective(theta, J, log_l, delta)
        eps = 1e-6
        numeric = [(_objective(theta + eps * e, J, log_l, delta)[0] - _objective(theta - eps * e, J, log_l, delta)[0])
                   / (2 * eps) for e in np.eye(5)]
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)


def test_fit_recovers_the_law_exactly_from_noiseless_runs():
    result = fit(synthetic(0.0), FitConfig(bootstrap=0))
    for k in ("E", "A", "B", "alpha", "beta"):
        assert getattr(result.law, k) == pytest.approx(getattr(TRUE, k), rel=2e-3), k
    assert result.to_dict()["fit_rmse_pct"] < 0.01
    assert result.warnings == []


def test_fit_recovers_the_law_from_noisy_runs_and_extrapolates():
    result = fit(synthetic(0.005, seed=1), FitConfig(bootstrap=0))
    law = result.law
    assert abs(law.alpha - TRUE.alpha) < 0.05 and abs(law.beta - TRUE.beta) < 0.05
    assert law.E == pytest.approx(TRUE.E, rel=0.1)
    # The point of the fit: the loss of a run far larger than any fitted one.
    assert law.loss(*FAR) == pytest.approx(TRUE.loss(*FAR), rel=0.015)


def test_bootstrap_intervals_contain_the_truth():
    result = fit(synthetic(0.005, seed=2), FitConfig(bootstrap=40, seed=0))
    assert len(result.samples) + result.skipped == 40 and len(result.samples) >= 36
    ci = result.param_intervals()
    for k in ("E", "alpha", "beta"):
        lo, hi = ci[k]
        assert lo <= getattr(TRUE, k) <= hi, (k, ci[k])
    # Informative, not just wide: the exponents are pinned to within ~0.1 by 20 runs at 0.5% noise.
    assert ci["alpha"][1] - ci["alpha"][0] < 0.25 and ci["beta"][1] - ci["beta"][0] < 0.25
    p = result.predict(*FAR)
    assert p["lo"] <= TRUE.loss(*FAR) <= p["hi"]
    assert p["lo"] <= p["loss"] <= p["hi"]


@pytest.mark.parametrize("C", [1e11, 1e13, 1e15, 1e18])
def test_compute_optimal_matches_brute_force(C):
    law = ScalingLaw(E=1.7, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # Hoffmann et al.'s fit
    opt = law.compute_optimal(C)
    # Brute force: L(N, C / 6N) on a fine log grid of N, then refined around the best cell.
    n = np.geomspace(1.0, C / 6.0, 200_001)
    best = n[np.argmin(law.loss(n, C / (6.0 * n)))]
    n = np.geomspace(best / 1.01, best * 1.01, 20_001)
    best = n[np.argmin(law.loss(n, C / (6.0 * n)))]
    assert opt["N_opt"] == pytest.approx(best, rel=1e-4)
    assert 6.0 * opt["N_opt"] * opt["D_opt"] == pytest.approx(C, rel=1e-9)
    assert opt["tokens_per_param"] == pytest.approx(opt["D_opt"] / opt["N_opt"], rel=1e-12)
    assert opt["loss"] == pytest.approx(law.loss(best, C / (6.0 * best)), rel=1e-9)


def test_compute_optimal_of_a_fit_carries_intervals():
    result = fit(synthetic(0.003, seed=3), FitConfig(bootstrap=10))
    o = result.compute_optimal(1e15)
    for k in ("N_opt", "D_opt", "tokens_per_param", "loss"):
        lo, hi = o[f"{k}_ci"]
        assert lo <= hi and math.isfinite(lo)
    truth = TRUE.compute_optimal(1e15)
    assert o["tokens_per_param"] == pytest.approx(truth["tokens_per_param"], rel=0.5)


def test_a_law_that_does_not_describe_the_runs_is_flagged():
    obs = synthetic(0.0)
    # A sudden drop at the largest D (a phase change in training, not a power law): 12% lower losses.
    jumped = Observations.from_arrays(obs.N, obs.D, np.where(obs.D == max(D_GRID), 0.88, 1.0) * obs.L)
    warnings = fit(jumped, FitConfig(bootstrap=0)).warnings
    assert any("misses the fitted runs by" in w for w in warnings), warnings


def test_too_few_distinct_runs_is_refused():
    obs = synthetic(0.0)
    idx = np.array([0, 1, 4, 5, 0, 1, 4, 5])  # 8 rows, 4 distinct (N, D) points
    with pytest.raises(SmoledgeError, match=r"4 distinct \(N, D\) points; the fit needs at least 5.*Add runs"):
        fit(obs.subset(idx), FitConfig(bootstrap=0))


def test_one_model_size_is_refused():
    obs = Observations.from_arrays([1e5] * 6, [1e5, 2e5, 4e5, 8e5, 1.6e6, 3.2e6], [4, 3.6, 3.3, 3.1, 3.0, 2.9])
    with pytest.raises(SmoledgeError, match="same N.*cannot be fitted.*model sizes"):
        fit(obs, FitConfig(bootstrap=0))


def test_non_positive_values_are_refused():
    with pytest.raises(SmoledgeError, match=r"L \(loss\) must be a positive finite number.*not so for b"):
        Observations.from_arrays([1e5, 2e5], [1e6, 1e6], [3.0, 0.0], ["a", "b"])
    with pytest.raises(SmoledgeError, match=r"N \(n_params\)"):
        Observations.from_arrays([-1.0, 2e5], [1e6, 1e6], [3.0, 2.0])


def test_fit_config_is_validated():
    with pytest.raises(ConfigError, match="ci: must be in"):
        FitConfig(ci=1.5)
    with pytest.raises(ConfigError, match="min_runs: must be >= 5"):
        FitConfig(min_runs=3)
    with pytest.raises(ConfigError, match="huber_delta"):
        FitConfig.from_dict({"huber_delta": -1.0})
    with pytest.raises(ConfigError, match="predict\\[0\\]"):
        ScalingFitConfig(table="t.csv", predict=[[1e5, -2.0]])


# ----------------------------------------------------------------------------- the command

def _row(point: str, n: float, d: float, loss: float | None, status: str = "ok") -> dict:
    row = {"point": point, "status": status, "teacher.hidden_size": int(n), "pretrain.max_steps": int(d),
           "optimizer": "muon", "lr": 0.01, "run_dir": f"runs/x/{point}", "error": "" if status == "ok" else "boom"}
    if status == "ok":
        row.update({"n_params": int(n), "n_params_total": int(n) + 262144, "tokens": int(d), "flops": 6.0 * n * d,
                    "val_loss": loss, "val_ppl": math.exp(loss) if loss == loss else loss, "train_loss": loss,
                    "steps": int(d) // 2048, "rollbacks": 0, "tokens_per_s": 1e4, "wall_s": 1.0})
    return row


@pytest.fixture
def table(tmp_path: Path) -> Path:
    """A sweep table from the known law (0.3% noise): 4 sizes x 3 token counts, plus the largest run
    (to hold out), a failed point and a diverged one."""
    rng = np.random.default_rng(5)
    rows = []
    for n in (2e4, 5e4, 1e5, 2.5e5):
        for d in (2e5, 4e5, 8e5):
            rows.append(_row(f"n{int(n)}d{int(d)}", n, d, float(TRUE.loss(n, d) * math.exp(rng.normal(0, 0.003)))))
    rows.append(_row("big", 5e5, 1.6e6, float(TRUE.loss(5e5, 1.6e6))))
    rows.append(_row("crashed", 1e5, 2e5, None, status="failed"))
    rows.append(_row("diverged", 2.5e5, 2e5, float("nan")))
    write_table(rows, ["teacher.hidden_size", "pretrain.max_steps"], tmp_path)
    return tmp_path / "results.csv"


def test_cli_fits_a_table_predicts_the_held_out_run_and_writes_artifacts(table: Path, tmp_path: Path, capsys):
    out = tmp_path / "fit"
    rc = main(["scaling", "fit", str(table), "--holdout-largest", "--bootstrap", "20", "--predict", "1e6,4e6",
               "--compute", "1e14", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    report = json.loads((out / "fit.json").read_text())
    assert [h["point"] for h in report["holdout"]] == ["big"]
    assert abs(report["holdout"][0]["error_pct"]) < 2.0
    assert "big" not in report["fitted_points"] and len(report["fitted_points"]) == 12
    assert {e["point"] for e in report["excluded"]} == {"crashed", "diverged"}
    assert report["predictions"][0]["loss"] == pytest.approx(TRUE.loss(1e6, 4e6), rel=0.03)
    assert [o["source"] for o in report["compute_optimal"]] == ["largest fitted run", "--compute"]
    assert report["fit"]["bootstrap"]["kept"] + report["fit"]["bootstrap"]["skipped"] == 20
    manifest = json.loads((out / "manifest.json").read_text())
    for name in ("fit.json", "fit.png"):
        assert manifest["artifacts"][name]["sha256"] == sha256_file(out / name)
    assert manifest["table"]["sha256"] == sha256_file(table)
    assert (out / "fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "held out big" in printed and "error" in printed and "alpha =" in printed


def test_parquet_table_and_target_recipe(table: Path, tmp_path: Path):
    report = run(ScalingFitConfig(table=str(table.with_suffix(".parquet")), out=str(tmp_path / "pq"),
                                  fit=FitConfig(bootstrap=0), target=str(QUICKSTART),
                                  target_overrides=["pretrain.max_steps=1000"]))
    t = report["target"]
    # The quickstart teacher (4 layers x 128, SwiGLU 384, 4 heads / 2 KV heads): 12 h^2 + 2 h per layer
    # (q, o: h^2; k, v: h^2/2 each; gate/up/down: 9 h^2; two norms) plus the final norm.
    assert t["N"] == 4 * (12 * 128 * 128 + 2 * 128) + 128
    assert t["D"] == 1000 * 8 * 256
    assert t["prediction"]["loss"] == pytest.approx(TRUE.loss(t["N"], t["D"]), rel=0.05)
    assert report["compute_optimal"][1]["source"] == "target quickstart"
    # Without a bootstrap there are no intervals: null in fit.json (strict JSON), not NaN.
    text = (tmp_path / "pq" / "fit.json").read_text()
    assert "NaN" not in text and json.loads(text)["fit"]["ci"]["alpha"] == [None, None]


def test_recipe_size_matches_a_real_model():
    from smoledge.model.build import hf_config, init_model
    from smoledge.recipe import load_recipe
    from smoledge.sweep.results import is_embedding

    overrides = ["teacher.num_layers=2", "teacher.hidden_size=48", "teacher.intermediate_size=144"]
    size = recipe_size(str(QUICKSTART), overrides, "pretrain")
    recipe = load_recipe(QUICKSTART, overrides)
    model = init_model(hf_config(recipe.teacher, vocab_size=recipe.tokenizer.vocab_size), seed=0)
    assert size["N"] == sum(p.numel() for name, p in model.named_parameters() if not is_embedding(name))
    assert size["n_params_total"] == sum(p.numel() for p in model.parameters())


def test_cli_errors_name_the_problem_and_the_fix(table: Path, tmp_path: Path, capsys):
    assert main(["scaling", "fit", str(tmp_path / "nope.csv")]) == 1
    assert "does not exist; run `smoledge sweep` first" in capsys.readouterr().err
    assert main(["scaling", "fit", str(table), "--holdout", "zzz", "--bootstrap", "0"]) == 1
    assert "--holdout zzz: no finished point with that id" in capsys.readouterr().err
    assert main(["scaling", "fit", str(table), "--predict", "12", "--bootstrap", "0"]) == 2
    assert "expected N,D" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("point,status,n_params,val_loss\na,ok,100,3.0\n")
    assert main(["scaling", "fit", str(bad)]) == 1
    assert "lacks column(s) tokens" in capsys.readouterr().err
    few = tmp_path / "few"
    few.mkdir()
    write_table([_row(f"p{i}", 1e4 * (i + 1), 1e5 * (i + 1), 3.0 - 0.1 * i) for i in range(4)], [], few)
    assert main(["scaling", "fit", str(few / "results.csv")]) == 1
    assert "4 distinct (N, D) points; the fit needs at least 5" in capsys.readouterr().err
