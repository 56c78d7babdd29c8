"""fit.png of `smoledge scaling fit` (matplotlib object API on the Agg canvas: no display, no pyplot state).

Three panels:
  observed vs fitted   every run's loss against the law's, the y = x line, held-out runs with their
                       bootstrap interval (the honest test: they were not fitted)
  loss vs compute      runs coloured by N; the law's curve L(N, C / 6N) for each fitted N; the
                       compute-optimal frontier L(N_opt(C), D_opt(C)); held-out runs and the target
  iso-loss (N, D)      contours of L over the (N, D) plane, lines of constant compute, the
                       compute-optimal path, and the runs
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from smoledge.sweep.plots import _figure, _save
from smoledge.sweep.scaling import FitResult


def plot_fit(result: FitResult, held: list[dict[str, Any]], target: dict[str, Any] | None,
             optimal: list[dict[str, Any]], out: Path, loss_name: str = "val_loss") -> Path:
    law, obs = result.law, result.obs
    fig = _figure(16.0, 4.8)
    ax1, ax2, ax3 = (fig.add_subplot(1, 3, i) for i in (1, 2, 3))

    # 1. observed vs fitted
    fitted = law.loss(obs.N, obs.D)
    ax1.scatter(fitted, obs.L, s=24, label="fitted runs")
    lo, hi = float(min(obs.L.min(), fitted.min())), float(max(obs.L.max(), fitted.max()))
    for h in held:
        p = result.predict(h["N"], h["D"])
        yerr = None
        if np.isfinite(p["lo"]):
            yerr = [[max(p["loss"] - p["lo"], 0.0)], [max(p["hi"] - p["loss"], 0.0)]]
        ax1.errorbar([p["loss"]], [h["L"]], xerr=yerr, fmt="s", color="crimson", ms=7, capsize=3,
                     label=f"held out {h['point']} ({100 * (p['loss'] - h['L']) / h['L']:+.2f}%)")
        lo, hi = min(lo, h["L"], p["loss"]), max(hi, h["L"], p["loss"])
    pad = 0.05 * (hi - lo or 1.0)
    ax1.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="grey", ls="--", lw=1.0, label="y = x")
    ax1.set_xlabel(f"fitted {loss_name}")
    ax1.set_ylabel(f"observed {loss_name}")
    ax1.set_title("observed vs fitted (held-out: predicted before training)", fontsize=10)
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=7)

    # 2. loss vs compute, curves per N, compute-optimal frontier
    every_n = np.concatenate([obs.N, [h["N"] for h in held]]) if held else obs.N
    every_d = np.concatenate([obs.D, [h["D"] for h in held]]) if held else obs.D
    c_runs = 6.0 * every_n * every_d
    c_lo, c_hi = c_runs.min() / 3, c_runs.max() * 3
    if target is not None:
        c_hi = max(c_hi, 6.0 * target["N"] * target["D"] * 3)
    cs = np.geomspace(c_lo, c_hi, 200)
    sizes = sorted(set(every_n.tolist()))
    colours = [f"C{i % 10}" for i in range(len(sizes))]
    for n, colour in zip(sizes, colours):
        ax2.plot(cs, law.loss(n, cs / (6.0 * n)), color=colour, lw=1.0, alpha=0.7)
        mine = obs.N == n
        if mine.any():
            ax2.scatter(6.0 * obs.N[mine] * obs.D[mine], obs.L[mine], color=colour, s=24, label=f"N={n:.3g}")
    frontier = [law.compute_optimal(c) for c in cs]
    ax2.plot(cs, [f["loss"] for f in frontier], color="black", lw=2.0, label="compute-optimal L(C)")
    for h in held:
        ax2.scatter([6.0 * h["N"] * h["D"]], [h["L"]], marker="s", color="crimson", s=40, zorder=5,
                    label=f"held out (N={h['N']:.3g})")
    if target is not None:
        p = target["prediction"]
        ax2.scatter([p["C"]], [p["loss"]], marker="*", color="gold", edgecolor="black", s=160, zorder=6,
                    label=f"target {target['name']} (predicted)")
    shown = [*obs.L.tolist(), *(h["L"] for h in held)]
    if target is not None:
        shown.append(target["prediction"]["loss"])
    ax2.set_ylim(0.8 * min(shown), 1.25 * max(shown))  # the curves shoot up at tiny compute: keep the runs in view
    ax2.set_xscale("log")
    ax2.set_xlabel("training compute C = 6 N D (FLOPs)")
    ax2.set_ylabel(loss_name)
    ax2.set_title("loss vs compute: fitted curve per N, optimal frontier", fontsize=10)
    ax2.grid(alpha=0.3, which="both")
    ax2.legend(fontsize=7)

    # 3. iso-loss contours over (N, D) with the compute-optimal path
    n_axis = np.geomspace(every_n.min() / 3, every_n.max() * 3, 120)
    d_axis = np.geomspace(every_d.min() / 3, every_d.max() * 3, 120)
    if target is not None:
        n_axis = np.geomspace(n_axis[0], max(n_axis[-1], target["N"] * 2), 120)
        d_axis = np.geomspace(d_axis[0], max(d_axis[-1], target["D"] * 2), 120)
    grid_n, grid_d = np.meshgrid(n_axis, d_axis)
    surface = law.loss(grid_n, grid_d)
    levels = np.quantile(surface, np.linspace(0.02, 0.98, 12))
    contours = ax3.contour(grid_n, grid_d, surface, levels=np.unique(levels), cmap="viridis", linewidths=0.8)
    ax3.clabel(contours, fontsize=6, fmt="%.2f")
    for c in np.geomspace((6 * grid_n * grid_d).min(), (6 * grid_n * grid_d).max(), 6)[1:-1]:
        ax3.plot(n_axis, c / (6.0 * n_axis), color="grey", lw=0.6, ls=":")
    path = [law.compute_optimal(c) for c in np.geomspace(6 * n_axis[0] * d_axis[0], 6 * n_axis[-1] * d_axis[-1], 100)]
    ax3.plot([p["N_opt"] for p in path], [p["D_opt"] for p in path], color="black", lw=2.0,
             label="compute-optimal N, D")
    for o in optimal:
        if np.isfinite(o["N_opt"]) and n_axis[0] <= o["N_opt"] <= n_axis[-1] and d_axis[0] <= o["D_opt"] <= d_axis[-1]:
            ax3.scatter([o["N_opt"]], [o["D_opt"]], marker="x", color="black", s=50, zorder=6)
            ax3.annotate(f"optimum at C={o['C']:.2g}\nD/N={o['tokens_per_param']:.3g}", (o["N_opt"], o["D_opt"]),
                         fontsize=6, xytext=(4, -12), textcoords="offset points")
    ax3.scatter(obs.N, obs.D, s=24, color="C0", zorder=5, label="fitted runs")
    for h in held:
        ax3.scatter([h["N"]], [h["D"]], marker="s", color="crimson", s=40, zorder=5, label="held out")
    if target is not None:
        ax3.scatter([target["N"]], [target["D"]], marker="*", color="gold", edgecolor="black", s=160, zorder=6,
                    label="target")
    ax3.set_xscale("log")
    ax3.set_yscale("log")
    ax3.set_xlim(n_axis[0], n_axis[-1])
    ax3.set_ylim(d_axis[0], d_axis[-1])
    ax3.set_xlabel("N (non-embedding parameters)")
    ax3.set_ylabel("D (training tokens)")
    ax3.set_title("iso-loss contours; dotted: constant compute", fontsize=10)
    ax3.legend(fontsize=7, loc="upper left")
    p = result.law
    fig.suptitle(f"L = {p.E:.4g} + {p.A:.4g}/N^{p.alpha:.3f} + {p.B:.4g}/D^{p.beta:.3f}", fontsize=11)
    return _save(fig, out)
