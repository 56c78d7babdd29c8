"""Chinchilla scaling-law fit: L(N, D) = E + A / N^alpha + B / D^beta, with bootstrap intervals.

Hoffmann et al. 2022 ("Training Compute-Optimal Large Language Models"), approach 3: with
a = log A, b = log B, e = log E, minimise over (a, b, e, alpha, beta)

    sum_i Huber_delta( LSE(a - alpha log N_i, b - beta log D_i, e) - log L_i )

with L-BFGS from a grid of initialisations, keeping the best. The log-sum-exp form keeps every
term positive and the fit scale-free; the Huber loss (delta 1e-3) keeps one bad run from
dragging the law. Confidence intervals come from the bootstrap: resample the runs with
replacement, refit, and take percentiles of each parameter and of each derived number.

    from smoledge.sweep.scaling import FitConfig, Observations, fit
    obs = Observations.from_arrays(N=[...], D=[...], L=[...])
    result = fit(obs, FitConfig(bootstrap=200))
    result.law.loss(1e6, 2e7)                 # point prediction
    result.predict(1e6, 2e7)                  # with its bootstrap interval
    result.compute_optimal(6 * 1e6 * 2e7)     # N_opt, D_opt, D/N at that compute

N is the non-embedding parameter count and D the training tokens seen; compute C = 6 N D.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from smoledge.config import Section
from smoledge.errors import SmoledgeError

PARAMS = ("E", "A", "B", "alpha", "beta")

# Hoffmann et al.'s initialisation grid (approach 3, appendix D.2): 6 x 6 x 5 x 5 x 5 = 4,500 starts.
GRID_A = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
GRID_B = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
GRID_E = (-1.0, -0.5, 0.0, 0.5, 1.0)
GRID_ALPHA = (0.0, 0.5, 1.0, 1.5, 2.0)
GRID_BETA = (0.0, 0.5, 1.0, 1.5, 2.0)


@dataclass
class FitConfig(Section):
    huber_delta: float = 1e-3
    """Huber threshold on the log-loss residual (Hoffmann et al.: 1e-3). Residuals above it count
    linearly, so one outlier run cannot dominate the fit."""
    starts: int = 32
    """L-BFGS runs from the best `starts` points of the 4,500-point initialisation grid (ranked by
    their objective before optimising); the best result is kept. 4500 runs them all, as Hoffmann et al.
    did (minutes); on the tests' and the benchmark's tables 16, 64 and 4500 found the same optimum."""
    bootstrap: int = 200
    """Bootstrap resamples (runs drawn with replacement, refitted) for the confidence intervals;
    0 skips them."""
    bootstrap_starts: int = 2
    """Grid starts per bootstrap refit, on top of the full-data optimum (which a resample's optimum is
    usually near): the resample's best `bootstrap_starts` grid points."""
    ci: float = 0.95
    """Central confidence level of the percentile intervals (0.95: the 2.5th to 97.5th percentile)."""
    max_exponent: float = 4.0
    """Upper bound on alpha and beta. With few runs an unbounded fit can slide to a huge exponent
    and a huge coefficient that cancel on the data and mean nothing; a fit that ends on the bound
    is flagged in `warnings`."""
    min_runs: int = 5
    """Fewest distinct (N, D) points accepted: the law has five parameters."""
    seed: int = 0
    """Seed of the bootstrap resampling."""
    warn_rmse: float = 0.02
    """A fit whose RMS relative error on the fitted runs exceeds this is flagged in `warnings`."""

    def __post_init__(self) -> None:
        if self.huber_delta <= 0:
            self.fail("huber_delta", f"must be > 0 (Hoffmann et al. use 1e-3), got {self.huber_delta}")
        if not 1 <= self.starts <= len(GRID_A) * len(GRID_B) * len(GRID_E) * len(GRID_ALPHA) * len(GRID_BETA):
            self.fail("starts", f"must be in [1, 4500] (grid points), got {self.starts}")
        if self.bootstrap < 0:
            self.fail("bootstrap", f"must be >= 0 (0 skips the intervals), got {self.bootstrap}")
        if self.bootstrap_starts < 0:
            self.fail("bootstrap_starts", f"must be >= 0, got {self.bootstrap_starts}")
        if not 0.0 < self.ci < 1.0:
            self.fail("ci", f"must be in (0, 1), e.g. 0.95, got {self.ci}")
        if self.max_exponent <= 0:
            self.fail("max_exponent", f"must be > 0, got {self.max_exponent}")
        if self.warn_rmse <= 0:
            self.fail("warn_rmse", f"must be > 0, got {self.warn_rmse}")
        if self.min_runs < 5:
            self.fail("min_runs", f"must be >= 5: the law has five parameters, got {self.min_runs}")


@dataclass
class Observations:
    """Finished runs: non-embedding parameters N, training tokens D, final loss L, and a label each."""

    N: np.ndarray
    D: np.ndarray
    L: np.ndarray
    labels: list[str]

    @classmethod
    def from_arrays(cls, N: Sequence[float], D: Sequence[float], L: Sequence[float],
                    labels: Sequence[str] | None = None) -> "Observations":
        n, d, loss = (np.asarray(x, dtype=np.float64).ravel() for x in (N, D, L))
        if not len(n) == len(d) == len(loss):
            raise SmoledgeError(f"N, D and L must have one value per run; got {len(n)}, {len(d)}, {len(loss)}")
        names = [str(x) for x in labels] if labels is not None else [f"run{i}" for i in range(len(n))]
        if len(names) != len(n):
            raise SmoledgeError(f"{len(names)} labels for {len(n)} runs")
        for col, values in (("N (n_params)", n), ("D (tokens)", d), ("L (loss)", loss)):
            bad = [names[i] for i in np.flatnonzero(~np.isfinite(values) | (values <= 0))]
            if bad:
                raise SmoledgeError(
                    f"{col} must be a positive finite number for every run; not so for {', '.join(bad[:5])}"
                    f"{' ...' if len(bad) > 5 else ''}. Drop those runs (or mark them status=failed)")
        return cls(n, d, loss, names)

    def __len__(self) -> int:
        return len(self.L)

    def subset(self, idx: np.ndarray) -> "Observations":
        return Observations(self.N[idx], self.D[idx], self.L[idx], [self.labels[i] for i in idx])

    def distinct_points(self) -> int:
        return len({(float(n), float(d)) for n, d in zip(self.N, self.D)})


@dataclass(frozen=True)
class ScalingLaw:
    """L(N, D) = E + A / N^alpha + B / D^beta."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, N: Any, D: Any) -> Any:
        N, D = np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64)
        out = self.E + self.A / N**self.alpha + self.B / D**self.beta
        return float(out) if out.ndim == 0 else out

    def compute_optimal(self, C: float) -> dict[str, float]:
        """Minimise L(N, C / 6N) over N at compute C = 6 N D (Hoffmann et al., eq. 4):
        G = (alpha A / (beta B))^(1 / (alpha + beta)), N_opt = G (C/6)^(beta / (alpha + beta)),
        D_opt = (C/6)^(alpha / (alpha + beta)) / G, so D_opt / N_opt = (C/6)^((alpha - beta) / (alpha + beta)) / G^2."""
        a, b = self.alpha, self.beta
        if a <= 0 or b <= 0:
            return {"C": C, "N_opt": math.nan, "D_opt": math.nan, "tokens_per_param": math.nan, "loss": math.nan}
        s = a + b
        log_g = (math.log(a * self.A) - math.log(b * self.B)) / s
        log_c6 = math.log(C / 6.0)
        n_opt = math.exp(log_g + log_c6 * b / s)
        d_opt = math.exp(log_c6 * a / s - log_g)
        return {"C": C, "N_opt": n_opt, "D_opt": d_opt, "tokens_per_param": d_opt / n_opt,
                "loss": self.loss(n_opt, d_opt)}

    def to_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in PARAMS}

    @classmethod
    def from_theta(cls, theta: np.ndarray) -> "ScalingLaw":
        a, b, e, alpha, beta = (float(x) for x in theta)
        return cls(E=math.exp(e), A=math.exp(a), B=math.exp(b), alpha=alpha, beta=beta)


# ----------------------------------------------------------------------------- the objective

def _design(log_n: np.ndarray, log_d: np.ndarray) -> np.ndarray:
    """J with J @ theta = the three log-terms (a - alpha log N, b - beta log D, e) of every run, stacked."""
    n = len(log_n)
    J = np.zeros((3, n, 5))
    J[0, :, 0], J[0, :, 3] = 1.0, -log_n
    J[1, :, 1], J[1, :, 4] = 1.0, -log_d
    J[2, :, 2] = 1.0
    return J.reshape(3 * n, 5)                                                       # (3n, 5)


def _objective(theta: np.ndarray, J: np.ndarray, log_l: np.ndarray, delta: float) -> tuple[float, np.ndarray]:
    """Huber loss of the log residuals and its gradient in theta = (a, b, e, alpha, beta).

    Divided by delta^2 so the quadratic zone is O(1): L-BFGS's relative tolerances then mean the
    same thing whatever delta is (the raw sum is ~1e-6 and would stop it at the first step)."""
    terms = (J @ theta).reshape(3, -1)                                               # (3, n)
    top = terms.max(axis=0)
    w = np.exp(terms - top)                                                          # (3, n)
    z = w.sum(axis=0)
    r = top + np.log(z) - log_l                                                      # (n,) log L_pred - log L
    w /= z                                                                           # d log L_pred / d term
    c = np.clip(r, -delta, delta)                                                    # Huber'(r)
    value = c @ (r - 0.5 * c)                                                        # sum of Huber(r)
    grad = J.T @ (w * c).ravel()
    return float(value) / delta**2, grad / delta**2


def _grid() -> np.ndarray:
    mesh = np.meshgrid(GRID_A, GRID_B, GRID_E, GRID_ALPHA, GRID_BETA, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)                               # (4500, 5)


def _grid_values(grid: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
                 delta: float) -> np.ndarray:
    """The objective at every grid point at once (ranks the starts without 4,500 optimiser runs)."""
    a, b, e, alpha, beta = (grid[:, i : i + 1] for i in range(5))                    # (G, 1) each
    pred = np.logaddexp(np.logaddexp(a - alpha * log_n, b - beta * log_d), e)        # (G, n)
    r = np.abs(pred - log_l)
    return np.where(r <= delta, 0.5 * r * r, delta * (r - 0.5 * delta)).sum(axis=1) / delta**2


def _minimise(starts: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
              cfg: FitConfig) -> tuple[np.ndarray, float] | None:
    """Best L-BFGS-B result over the starts as (theta, objective), or None when every run failed.

    Optimised in centred coordinates: a - alpha log N = (a - alpha mu_N) - alpha (log N - mu_N), so
    the optimiser sees a' = a - alpha mu_N. Uncentred, a and alpha move together along a narrow valley
    (log N ~ 10-20 multiplies every change of alpha) and L-BFGS needs hundreds of steps to crawl it."""
    from scipy.optimize import minimize

    mu_n, mu_d = float(log_n.mean()), float(log_d.mean())
    J = _design(log_n - mu_n, log_d - mu_d)
    shift = np.array([mu_n, mu_d])
    bounds = [(None, None), (None, None), (None, None), (0.0, cfg.max_exponent), (0.0, cfg.max_exponent)]
    best: tuple[np.ndarray, float] | None = None
    for x0 in starts:
        x0 = np.array(x0, dtype=np.float64)
        x0[3:] = np.clip(x0[3:], 0.0, cfg.max_exponent)
        x0[:2] -= x0[3:] * shift                                    # (a, b) -> centred (a', b')
        with np.errstate(over="ignore", invalid="ignore"):
            res = minimize(_objective, x0, args=(J, log_l, cfg.huber_delta), jac=True,
                           method="L-BFGS-B", bounds=bounds,
                           options={"maxiter": 1000, "ftol": 1e-12, "gtol": 1e-8})
        if np.all(np.isfinite(res.x)) and math.isfinite(res.fun) and (best is None or res.fun < best[1]):
            theta = res.x.copy()
            theta[:2] += theta[3:] * shift                          # back to a = log A, b = log B
            best = (theta, float(res.fun))
    return best


def _check_design(obs: Observations, min_runs: int) -> None:
    points = obs.distinct_points()
    if points < min_runs:
        raise SmoledgeError(
            f"{points} distinct (N, D) points; the fit needs at least {min_runs} (the law has five parameters). "
            "Add runs at more model sizes and token counts, e.g. `smoledge sweep` over student/teacher size "
            "and pretrain.max_steps")
    for name, values, knob in (("N", obs.N, "model sizes"), ("D", obs.D, "token counts (max_steps)")):
        if len(np.unique(values)) < 2:
            raise SmoledgeError(
                f"every run has the same {name} ({values[0]:.4g}), so its exponent cannot be fitted; "
                f"add runs at 2 or more (ideally 3+) {knob}")


def fit_law(obs: Observations, cfg: FitConfig, extra_starts: np.ndarray | None = None,
            n_starts: int | None = None) -> tuple[ScalingLaw, float, np.ndarray]:
    """(law, objective, theta) of the best fit to `obs`."""
    log_n, log_d, log_l = np.log(obs.N), np.log(obs.D), np.log(obs.L)
    grid = _grid()
    with np.errstate(over="ignore", invalid="ignore"):
        values = _grid_values(grid, log_n, log_d, log_l, cfg.huber_delta)
    order = np.argsort(np.where(np.isfinite(values), values, np.inf), kind="stable")
    starts = grid[order[: cfg.starts if n_starts is None else n_starts]]
    if extra_starts is not None:
        starts = np.concatenate([np.atleast_2d(extra_starts), starts])
    best = _minimise(starts, log_n, log_d, log_l, cfg)
    if best is None:
        raise SmoledgeError(
            f"the scaling-law fit failed from all {len(starts)} starts (no finite optimum); check the table "
            "for losses that do not fall with N or D (diverged runs), or raise `starts`")
    theta, value = best
    return ScalingLaw.from_theta(theta), value, theta


# ----------------------------------------------------------------------------- the result

@dataclass
class FitResult:
    """The fitted law, its bootstrap samples and how it fits each run."""

    law: ScalingLaw
    objective: float
    """Huber objective at the optimum (divided by delta^2)."""
    obs: Observations
    cfg: FitConfig
    samples: np.ndarray
    """(bootstrap kept, 5) laws as (E, A, B, alpha, beta) rows."""
    skipped: int = 0
    """Bootstrap resamples dropped: too few distinct N or D to fit, or no finite optimum."""
    warnings: list[str] = field(default_factory=list)

    def interval(self, values: np.ndarray) -> tuple[float, float]:
        values = values[np.isfinite(values)]
        if values.size == 0:
            return (math.nan, math.nan)
        tail = 100 * (1 - self.cfg.ci) / 2
        lo, hi = np.percentile(values, [tail, 100 - tail])
        return float(lo), float(hi)

    def laws(self) -> list[ScalingLaw]:
        return [ScalingLaw(*map(float, row)) for row in self.samples]

    def param_intervals(self) -> dict[str, tuple[float, float]]:
        return {k: self.interval(self.samples[:, i]) for i, k in enumerate(PARAMS)}

    def predict(self, N: float, D: float) -> dict[str, float]:
        """Loss at (N, D) with its bootstrap interval."""
        loss = self.law.loss(N, D)
        boot = np.array([law.loss(N, D) for law in self.laws()])
        lo, hi = self.interval(boot)
        return {"N": float(N), "D": float(D), "C": 6.0 * N * D, "loss": loss, "lo": lo, "hi": hi}

    def compute_optimal(self, C: float) -> dict[str, Any]:
        """N_opt, D_opt, D/N and the loss at compute C, each with its bootstrap interval."""
        point = self.law.compute_optimal(C)
        boots = [law.compute_optimal(C) for law in self.laws()]
        out: dict[str, Any] = dict(point)
        for key in ("N_opt", "D_opt", "tokens_per_param", "loss"):
            out[f"{key}_ci"] = list(self.interval(np.array([b[key] for b in boots])))
        return out

    def residuals(self) -> list[dict[str, Any]]:
        fitted = self.law.loss(self.obs.N, self.obs.D)
        return [{"point": lab, "N": float(n), "D": float(d), "observed": float(o), "fitted": float(f),
                 "error_pct": float(100 * (f - o) / o)}
                for lab, n, d, o, f in zip(self.obs.labels, self.obs.N, self.obs.D, self.obs.L, fitted)]

    def to_dict(self) -> dict[str, Any]:
        res = self.residuals()
        return {
            "law": "L(N, D) = E + A / N^alpha + B / D^beta",
            "params": self.law.to_dict(),
            "ci": {k: list(v) for k, v in self.param_intervals().items()},
            "ci_level": self.cfg.ci,
            "objective": self.objective,
            "fit_rmse_pct": float(np.sqrt(np.mean([r["error_pct"] ** 2 for r in res]))),
            "runs": res,
            "bootstrap": {"requested": self.cfg.bootstrap, "kept": int(len(self.samples)), "skipped": self.skipped},
            "config": self.cfg.to_dict(),
            "warnings": list(self.warnings),
        }


def fit(obs: Observations, cfg: FitConfig | None = None) -> FitResult:
    """Fit the law to every run, then refit `cfg.bootstrap` resamples for the intervals."""
    import scipy.optimize  # noqa: F401 - loaded first, so that threadpool_limits sees its OpenBLAS
    from threadpoolctl import threadpool_limits

    # One BLAS thread: L-BFGS-B's tiny BLAS calls ran 30x slower when OpenBLAS woke its thread pool
    # for each of them on a loaded 2-core machine (measured: 1.4 s vs 0.05 s for one fit).
    with threadpool_limits(limits=1):
        return _fit(obs, cfg or FitConfig())


def _fit(obs: Observations, cfg: FitConfig) -> FitResult:
    _check_design(obs, cfg.min_runs)
    law, value, theta = fit_law(obs, cfg)
    warnings = []
    for name, v in (("alpha", law.alpha), ("beta", law.beta)):
        if v <= 1e-6 or v >= cfg.max_exponent - 1e-6:
            warnings.append(
                f"{name} = {v:.4g} ended on its bound [0, {cfg.max_exponent}]: the runs do not pin it down; "
                f"spread {'N (model sizes)' if name == 'alpha' else 'D (token counts)'} wider")
    if law.E < 1e-3 * float(obs.L.min()):
        warnings.append(f"E = {law.E:.3g}: the runs show no loss floor yet (loss still falling fast with N and D), "
                        "so the law extrapolates least reliably; add longer runs or larger models")
    rmse = float(np.sqrt(np.mean((law.loss(obs.N, obs.D) / obs.L - 1.0) ** 2)))
    if rmse > cfg.warn_rmse:
        warnings.append(f"the law misses the fitted runs by {100 * rmse:.1f}% RMS (> {100 * cfg.warn_rmse:g}%): "
                        "these runs do not follow E + A/N^alpha + B/D^beta well, so predictions beyond them "
                        "are unreliable (typical cause: runs too short to be past the early, fast-falling phase)")
    rng = np.random.default_rng(cfg.seed)
    rows, skipped = [], 0
    for _ in range(cfg.bootstrap):
        idx = rng.integers(0, len(obs), size=len(obs))
        sample = obs.subset(idx)
        if len(np.unique(sample.N)) < 2 or len(np.unique(sample.D)) < 2:
            skipped += 1
            continue
        try:
            boot, _, _ = fit_law(sample, cfg, extra_starts=theta, n_starts=cfg.bootstrap_starts)
        except SmoledgeError:
            skipped += 1
            continue
        rows.append([boot.E, boot.A, boot.B, boot.alpha, boot.beta])
    samples = np.array(rows, dtype=np.float64).reshape(-1, 5)
    if cfg.bootstrap and skipped > cfg.bootstrap // 2:
        warnings.append(f"{skipped} of {cfg.bootstrap} bootstrap resamples could not be fitted; the intervals "
                        "rest on the rest. Add runs at more distinct N and D")
    return FitResult(law=law, objective=value, obs=obs, cfg=cfg, samples=samples, skipped=skipped,
                     warnings=warnings)
