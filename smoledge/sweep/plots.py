"""Sweep plots (PNG, matplotlib object API on the Agg canvas: no display, no pyplot state).

  lr.png        loss vs learning rate (log x), one panel per optimizer, one line per combination
                of the other swept values (e.g. one per width), best point starred
  compute.png   loss vs training compute C = 6 N D (log x), one colour per optimizer, with the frontier
                (lowest loss at or below each compute)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from smoledge.io import atomic_path


def _finite(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["status"] == "ok" and r.get(metric) is not None and math.isfinite(r[metric])]


def _figure(width: float, height: float):  # -> (Figure)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, out: Path) -> Path:
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")  # the temp name has no .png suffix: say the format
    return out


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else v if isinstance(v, str) else json.dumps(v)


def _other_keys(rows: list[dict[str, Any]], swept: list[str]) -> list[str]:
    """Swept keys other than the lr and optimizer the panels and x axis already show, and that take more
    than one value (a section axis like teacher: [{...}] also sets keys that never change)."""
    return [k for k in swept if k.rsplit(".", 1)[-1] not in ("lr", "optimizer")
            and len({json.dumps(r.get(k), sort_keys=True) for r in rows}) > 1]


def _lr_ticks(ax: Any, lrs: list[float]) -> None:
    """A labelled tick at every lr tried (log axes label 2x10^-3-style minor ticks on top of each other)."""
    from matplotlib.ticker import NullFormatter

    if lrs:
        ax.set_xticks(lrs, labels=[f"{x:g}" for x in lrs], rotation=45, fontsize=8)
        ax.xaxis.set_minor_formatter(NullFormatter())


def _failed_note(rows: list[dict[str, Any]], shown: int) -> str:
    hidden = len(rows) - shown
    return f" ({hidden} failed or diverged, not shown)" if hidden else ""


def plot_lr(rows: list[dict[str, Any]], swept: list[str], out: Path, metric: str = "val_loss") -> Path:
    good = _finite(rows, metric)
    optimizers = sorted({r["optimizer"] for r in rows}) or ["-"]
    fig = _figure(5.0 * len(optimizers), 4.6)
    axes = [fig.add_subplot(1, len(optimizers), i + 1) for i in range(len(optimizers))]
    best = min(good, key=lambda r: r[metric]) if good else None
    others = _other_keys(rows, swept)
    ymin = min((r[metric] for r in good), default=0.0)
    ymax = max((r[metric] for r in good), default=1.0)
    for ax, opt in zip(axes, optimizers):
        mine = [r for r in good if r["optimizer"] == opt]
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in mine:
            # Two keys name a line well enough (a section axis moves several together, e.g. width and heads).
            label = ", ".join(f"{k.rsplit('.', 1)[-1]}={_value(r[k])}" for k in others[:2]) or opt
            groups.setdefault(label, []).append(r)
        for label, grp in groups.items():
            grp.sort(key=lambda r: r["lr"])
            ax.plot([r["lr"] for r in grp], [r[metric] for r in grp], marker="o", ms=4, lw=1.2, label=label)
            low = min(grp, key=lambda r: r[metric])
            ax.plot([low["lr"]], [low[metric]], marker="o", ms=9, mfc="none", color=ax.lines[-1].get_color())
        if best is not None and best["optimizer"] == opt:
            ax.plot([best["lr"]], [best[metric]], marker="*", ms=14, color="gold", mec="black", ls="none",
                    label=f"best ({best['point']})")
        ax.set_xscale("log")
        _lr_ticks(ax, sorted({r["lr"] for r in rows}))
        if ymax > ymin:
            pad = 0.05 * (ymax - ymin)
            ax.set_ylim(ymin - pad, ymax + pad)  # same y range in every panel: optimizers compare by eye
        ax.set_xlabel("learning rate")
        ax.set_ylabel(metric)
        ax.set_title(f"{opt}{_failed_note([r for r in rows if r['optimizer'] == opt], len(mine))}", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        if mine:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no finished points", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(f"{metric} vs lr (circles: best lr of each line)", fontsize=11)
    return _save(fig, out)


def plot_compute(rows: list[dict[str, Any]], out: Path, metric: str = "val_loss") -> Path:
    good = [r for r in _finite(rows, metric) if r.get("flops")]
    fig = _figure(6.0, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for opt in sorted({r["optimizer"] for r in good}):
        mine = [r for r in good if r["optimizer"] == opt]
        ax.scatter([r["flops"] for r in mine], [r[metric] for r in mine], s=22, label=opt)
    if good:
        # The compute frontier: the lowest loss reached at or below each compute (what a scaling fit follows).
        frontier, low = [], math.inf
        for c in sorted({r["flops"] for r in good}):
            here = min(r[metric] for r in good if r["flops"] == c)
            if here < low:
                low = here
                frontier.append((c, low))
        if len(frontier) > 1:
            ax.plot(*zip(*frontier), color="grey", ls="--", lw=1.0, label="frontier", drawstyle="steps-post")
        best = min(good, key=lambda r: r[metric])
        ax.plot([best["flops"]], [best[metric]], marker="*", ms=14, color="gold", mec="black", ls="none",
                label=f"best ({best['point']})")
        ax.set_xscale("log")
        from matplotlib.ticker import NullFormatter

        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels (2x10^10...) pile up over a decade
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no finished points", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("training compute C = 6 N D (FLOPs, N non-embedding)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs compute{_failed_note(rows, len(good))}", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, out)
