"""A self-contained report.html from the evaluate stage's report.json: readable offline, no CDN, no script.

    smoledge report runs/quickstart            # re-render, picking up bench results in runs/quickstart/bench/
    # or: from smoledge.evaluate.report import write_report; write_report(Path("runs/quickstart"))

Every plot is an inline SVG drawn by matplotlib (object API, Agg canvas: no display, no pyplot state):
training loss, training health per layer (smoledge.train.health: health.jsonl and the alerts in
events.jsonl of the pretrain and distill stages), perplexity per language per artifact, the passkey
heatmap per artifact, size vs quality and, when `smoledge bench --out runs/<name>/bench/<device>.json`
has been run, decode and prompt speed.
"""

from __future__ import annotations

import html
import io
import json
import math
from pathlib import Path
from typing import Any

from smoledge.io import atomic_write_text, read_log
from smoledge.layout import RunFiles

# health.jsonl per-layer metric -> (column title, number format); smoledge.train.health defines them.
HEALTH_COLUMNS = {
    "grad_norm": ("grad norm", ".3g"),
    "update_ratio": ("update / weight RMS", ".2e"),
    "act_rms": ("activation RMS", ".3g"),
    "erank": ("effective rank", ".1f"),
    "dead_fraction": ("dead MLP units", ".0%"),
    "attn_logit_max": ("max attention logit", ".3g"),
}
# Alerts listed per stage in the page (all of them are in report.json).
MAX_ALERTS_SHOWN = 30
CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #1b1f24; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .6em 0 1em; } th, td { border: 1px solid #d0d7de; padding: .25em .6em; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #1a7f37; font-weight: 600; } .fail { color: #cf222e; font-weight: 600; }
.muted { color: #57606a; } figure { margin: .5em 0 1.5em; } figure svg { max-width: 100%; height: auto; }
.grid { display: flex; flex-wrap: wrap; gap: 1em; } .grid figure { flex: 1 1 480px; }
"""


# ----------------------------------------------------------------------------- plots

def _figure(w: float = 7.5, h: float = 4.0) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=96)
    FigureCanvasAgg(fig)
    return fig


def _svg(fig: Any) -> str:
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: the SVG sits inside HTML


def plot_training(curves: dict[str, list[dict[str, Any]]]) -> str | None:
    """Train loss per step and val loss points, one panel per training stage."""
    stages = [(name, rows) for name, rows in curves.items() if any(_num(r.get("loss")) for r in rows)]
    if not stages:
        return None
    fig = _figure(7.5 if len(stages) == 1 else 11, 3.6)
    for i, (name, rows) in enumerate(stages):
        ax = fig.add_subplot(1, len(stages), i + 1)
        train = [(r["step"], r["loss"]) for r in rows if _num(r.get("loss"))]
        val = [(r["step"], r["val_loss"]) for r in rows if _num(r.get("val_loss"))]
        ax.plot(*zip(*train), lw=1.0, color="tab:blue", label="train loss")
        if val:
            ax.plot(*zip(*val), ls="none", marker="o", ms=5, color="tab:orange", label="val loss")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _svg(fig)


def plot_health(stage: str, records: list[dict[str, Any]]) -> str | None:
    """One small panel per health metric over the measured steps, one line per layer."""
    panels = [k for k in ("grad_norm", "update_ratio", "erank", "attn_logit_max") if any(k in r for r in records)]
    if not records or not panels:
        return None
    fig = _figure(11, 2.8)
    for n, key in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), n + 1)
        layers = max(len(r.get(key) or []) for r in records)
        for i in range(layers):
            pts = [(r["step"], r[key][i]) for r in records if len(r.get(key) or []) > i and _num(r[key][i])]
            if pts:
                ax.plot(*zip(*pts), lw=1.0, marker="o" if len(pts) == 1 else None, ms=3, label=f"layer {i}")
        if key == "update_ratio" and any(v > 0 for r in records for v in r.get(key) or [] if _num(v)):
            ax.set_yscale("log")
        ax.set_title(f"{stage}: {HEALTH_COLUMNS[key][0]}", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if n == 0:
            ax.legend(fontsize=6)
    return _svg(fig)


def plot_perplexity(ppl: dict[str, dict[str, dict[str, float]]]) -> str | None:
    """Grouped bars: languages on x, one bar per artifact."""
    if not ppl:
        return None
    import numpy as np

    names = list(ppl)
    langs = sorted({lang for per in ppl.values() for lang in per})
    fig = _figure(max(7.5, 1.2 * len(langs) + 3), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(names)
    x = np.arange(len(langs))
    for i, name in enumerate(names):
        ys = [ppl[name].get(lang, {}).get("ppl", float("nan")) for lang in langs]
        ax.bar(x + (i - (len(names) - 1) / 2) * width, ys, width, label=name)
    ax.set_xticks(x, langs)
    ax.set_ylabel("held-out perplexity")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _svg(fig)


def plot_passkey(grid: dict[str, Any], title: str) -> str:
    """Heatmap: context length (x) by needle depth (y), cell = retrieval accuracy."""
    import numpy as np

    lengths, depths = grid["lengths"], grid["depths"]
    acc = np.array([[grid["accuracy"].get(_cell(n, d), np.nan) for n in lengths] for d in depths])  # (D, L)
    fig = _figure(1.0 * len(lengths) + 2.6, 0.5 * len(depths) + 1.8)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(np.ma.masked_invalid(acc), vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(lengths)), [str(n) for n in lengths])
    ax.set_yticks(range(len(depths)), [f"{d:.0%}" for d in depths])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("needle depth")
    for (i, j), v in np.ndenumerate(acc):
        # RdYlGn's ends are dark: white text there, black in the pale middle.
        ax.text(j, i, "-" if math.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=8,
                color="white" if not math.isnan(v) and (v < 0.2 or v > 0.85) else "black")
    trained = grid.get("trained_length")
    if trained in lengths:
        ax.axvline(lengths.index(trained) + 0.5, color="black", lw=1.2, ls="--")
    fig.colorbar(im, ax=ax, fraction=0.05, label="accuracy")
    ax.set_title(title, fontsize=10)
    return _svg(fig)


def plot_size_quality(table: dict[str, dict[str, float]]) -> str | None:
    """Bytes on disk vs held-out perplexity, one labelled point per quantized artifact."""
    points = [(n, r["bytes"] / 1e6, r["ppl"]) for n, r in table.items() if _num(r.get("ppl"))]
    if not points:
        return None
    fig = _figure(7.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for name, mb, ppl in points:
        marker = "o" if name.endswith(".gguf") else "s"
        ax.plot(mb, ppl, marker=marker, ls="none", color="tab:blue" if marker == "o" else "tab:purple")
        ax.annotate(name.removeprefix("model-").removesuffix(".gguf"), (mb, ppl), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    from matplotlib.ticker import FormatStrFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))  # plain MB, not 2x10^0
    ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.set_xlabel("size on disk (MB, log scale)")
    ax.set_ylabel("held-out perplexity")
    ax.set_title("size vs quality (o GGUF, \u25a0 ONNX)", fontsize=10)
    ax.grid(alpha=0.3)
    return _svg(fig)


def speed_rows(bench: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per benched artifact of `smoledge bench --out` files: label, and {test: (median, sd)} for
    its longest prompt-processing test and its decode test."""
    rows = []
    for b in bench:
        for r in b.get("results", []):
            tests = r.get("tests", {})
            pp = max((t for t in tests if t.startswith("pp")), key=lambda t: int(t[2:]), default=None)
            tg = next((t for t in tests if t.startswith("tg")), None)
            if pp is None or tg is None:
                continue
            stat = {t: (tests[t]["tokens_per_s"]["median"], tests[t]["tokens_per_s"].get("sd", 0.0)) for t in (pp, tg)}
            label = f"{r['model']} ({r['backend']})\n{b['device']['name']} ({b['threads']} thr)"
            rows.append({"label": label, "pp": (pp, *stat[pp]), "tg": (tg, *stat[tg])})
    return rows


def plot_speed(bench: list[dict[str, Any]]) -> str | None:
    """Prompt processing and decode tok/s from `smoledge bench` results, one bar pair per artifact."""
    rows = speed_rows(bench)
    if not rows:
        return None
    import numpy as np

    fig = _figure(max(6.0, 2.2 * len(rows) + 2), 3.8)
    for k, (key, title) in enumerate((("pp", "prompt processing"), ("tg", "decode"))):
        ax = fig.add_subplot(1, 2, k + 1)
        ax.bar(np.arange(len(rows)), [r[key][1] for r in rows], yerr=[r[key][2] for r in rows], capsize=3,
               color="tab:green" if key == "tg" else "tab:cyan")
        ax.set_xticks(np.arange(len(rows)), [r["label"] for r in rows], fontsize=7)
        ax.set_ylabel("tokens/s")
        ax.set_title(f"{title} ({'/'.join(sorted({r[key][0] for r in rows}))})", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    return _svg(fig)


# ----------------------------------------------------------------------------- page

def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _cell(length: int, depth: float) -> str:
    """Key of one passkey grid cell in report.json (JSON keys are strings)."""
    return f"{length}@{depth:g}"


def _e(x: Any) -> str:
    return html.escape(str(x))


def _td(i: int, cell: Any, numeric_from: int) -> str:
    """A cell; a (text, css class) pair sets its class, else columns from numeric_from on align right."""
    text, cls = cell if isinstance(cell, tuple) else (cell, "num" if i >= numeric_from else "")
    return f"<td class=\"{cls}\">{_e(text)}</td>" if cls else f"<td>{_e(text)}</td>"


def _table(head: list[str], rows: list[list[Any]], numeric_from: int = 1) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(_td(i, c, numeric_from) for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _fig(svg: str | None, caption: str) -> str:
    if svg is None:
        return f"<p class=\"muted\">{_e(caption)}: no data.</p>"
    return f"<figure>{svg}<figcaption class=\"muted\">{_e(caption)}</figcaption></figure>"


def _fmt(v: Any, spec: str) -> str:
    return format(v, spec) if _num(v) else "-"


def _health_section(health: dict[str, dict[str, Any]]) -> list[str]:
    parts = ["<h2>Training health</h2>"]
    if not health:
        return parts + ["<p class=\"muted\">No health records (pretrain/distill health.interval: 0, or no "
                        "training stage in this run).</p>"]
    for stage, h in health.items():
        counts = h.get("alert_counts", {})
        summary = ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "none"
        parts.append(f"<h3>{_e(stage)}</h3><p>{_e(h.get('measured_steps', 0))} measured steps; alerts: "
                     f"<span class=\"{'fail' if counts else 'pass'}\">{_e(summary)}</span></p>")
        alerts = h.get("alerts", [])
        if alerts:
            parts.append(_table(["step", "alert", "message"], [
                [a.get("step"), (a.get("alert"), "fail"), a.get("message", "")] for a in alerts[:MAX_ALERTS_SHOWN]],
                numeric_from=99))
            if len(alerts) > MAX_ALERTS_SHOWN:
                parts.append(f"<p class=\"muted\">... and {len(alerts) - MAX_ALERTS_SHOWN} more in report.json and "
                             f"{_e(stage)}/events.jsonl.</p>")
        latest = h.get("latest") or {}
        keys = [k for k in HEALTH_COLUMNS if isinstance(latest.get(k), list)]
        if keys:
            layers = max(len(latest[k]) for k in keys)
            parts.append(f"<p class=\"muted\">Per layer at step {_e(latest.get('step'))} (the last measured):</p>")
            parts.append(_table(["layer"] + [HEALTH_COLUMNS[k][0] for k in keys], [
                [i] + [_fmt(latest[k][i], HEALTH_COLUMNS[k][1]) if i < len(latest[k]) else "-" for k in keys]
                for i in range(layers)]))
        parts.append(_fig(plot_health(stage, h.get("records", [])), f"{stage}: per-layer health over the measured steps"))
    return parts


def render(report: dict[str, Any], curves: dict[str, list[dict[str, Any]]], bench: list[dict[str, Any]],
           health: dict[str, dict[str, Any]] | None = None) -> str:
    """The whole page as one string. `health` (read_health's) defaults to report.json's training_health."""
    parts = [f"<h1>smoledge quality report: {_e(report.get('name', ''))}</h1>",
             f"<p class=\"muted\">{_e(report.get('created', ''))} \u00b7 held-out text scored at "
             f"{_e(report.get('seq_len'))} tokens per window \u00b7 languages: {_e(', '.join(report.get('languages', [])))}</p>"]

    gates = report.get("gates", [])
    parts.append("<h2>Quality gates</h2>")
    if gates:
        parts.append(_table(["gate", "device", "artifact", "measured", "limit", "result"], [
            [g["gate"], g["device"], g["artifact"], _fmt(g["measured"], ".4g"), _fmt(g["limit"], ".4g"),
             ("pass", "pass") if g["passed"] else ("FAIL", "fail")] for g in gates], numeric_from=3))
    else:
        parts.append("<p class=\"muted\">No gates set in the recipe (evaluate.gates).</p>")

    devices = report.get("devices", {})
    if devices:
        parts.append("<h2>Devices</h2>")
        parts.append(_table(["device", "backend", "threads", "context", "artifact", "why"], [
            [n, d["backend"], d["threads"], d["n_ctx"], d["artifact"] or ("none suits", "fail"), d["reason"]]
            for n, d in devices.items()],
            numeric_from=99))

    parts.append("<h2>Training</h2>")
    parts.append(_fig(plot_training(curves), "loss per step (val loss as points)"))
    parts.extend(_health_section(report.get("training_health", {}) if health is None else health))

    ppl = report.get("perplexity", {})
    parts.append("<h2>Perplexity per language</h2>")
    parts.append(_fig(plot_perplexity(ppl), "held-out perplexity per language and artifact"))
    langs = sorted({lang for per in ppl.values() for lang in per})
    parts.append(_table(["artifact"] + [f"{l} ppl" for l in langs] + [f"{l} bpb" for l in langs], [
        [name] + [_fmt(per.get(l, {}).get("ppl"), ".3f") for l in langs]
        + [_fmt(per.get(l, {}).get("bpb"), ".3f") for l in langs] for name, per in ppl.items()]))
    for set_name, per_artifact in report.get("eval_sets", {}).items():
        slangs = sorted({lang for per in per_artifact.values() for lang in per})
        parts.append(f"<h3>Eval set: {_e(set_name)}</h3>")
        parts.append(_table(["artifact"] + [f"{l} ppl" for l in slangs], [
            [name] + [_fmt(per.get(l, {}).get("ppl"), ".3f") for l in slangs] for name, per in per_artifact.items()]))

    table = report.get("quantization", {})
    parts.append("<h2>Size vs quality</h2>")
    parts.append(_fig(plot_size_quality(table), "bytes on disk vs held-out perplexity"))
    parts.append(_table(["artifact", "size (MB)", "bits/weight", "ppl", "\u0394 ppl vs fp32"], [
        [n, _fmt(r["bytes"] / 1e6, ".2f"), _fmt(r["bits_per_weight"], ".2f"), _fmt(r["ppl"], ".3f"),
         _fmt(r["ppl_delta_pct_vs_fp32"], "+.2f") + "%"] for n, r in table.items()]))

    passkey = report.get("passkey", {})
    parts.append("<h2>Long context: passkey retrieval</h2>")
    if passkey:
        figs = []
        for label, grid in passkey.items():
            figs.append(_fig(plot_passkey(grid, label), f"{label}: {grid.get('falloff_text', '')}"))
        parts.append("<div class=\"grid\">" + "".join(figs) + "</div>")
    else:
        parts.append("<p class=\"muted\">Passkey grid disabled (evaluate.passkey.enabled).</p>")

    tasks = report.get("tasks", {})
    if tasks:
        parts.append("<h2>Tasks</h2>")
        rows = []
        for task, per_artifact in tasks.items():
            for label, r in per_artifact.items():
                rows.append([task, label, r.get("n"), _fmt(r.get("acc"), ".3f"), _fmt(r.get("acc_stderr"), ".3f"),
                             _fmt(r.get("acc_norm"), ".3f")])
        parts.append(_table(["task", "artifact", "n", "acc", "\u00b1 stderr", "acc_norm"], rows, numeric_from=2))

    parts.append("<h2>Speed on the device</h2>")
    bench_dir = RunFiles(Path("runs") / str(report.get("name") or "NAME")).bench.as_posix()
    parts.append(_fig(plot_speed(bench), f"from smoledge bench results in {bench_dir}/ (run `smoledge bench "
                                         f"BUNDLE --device PROFILE --out {bench_dir}/PROFILE.json`)"))
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>smoledge report: {_e(report.get('name', ''))}</title><style>{CSS}</style></head>"
            f"<body>\n{body}\n</body></html>\n")


def read_curves(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """metrics.jsonl rows of each training stage the run has (a torn last line is skipped)."""
    return {files.dir.name: read_log(files.metrics) for files in RunFiles(run_dir).training()
            if files.metrics.is_file()}


def read_health(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Per training stage with a health.jsonl: {"measured_steps", "latest" (the last record: per-layer
    lists), "records", "alerts" (the `alert` events of the current run, i.e. after the last fresh "start"
    in events.jsonl; resumes and rollbacks keep them), "alert_counts" ({kind: n})}."""
    out = {}
    for files in RunFiles(run_dir).training():
        stage = files.dir.name
        if not files.health.is_file():
            continue
        records = read_log(files.health)
        events = read_log(files.events) if files.events.is_file() else []
        starts = [i for i, e in enumerate(events) if e.get("event") == "start"]
        alerts = [{k: v for k, v in e.items() if k not in ("event", "time")}
                  for e in events[starts[-1] if starts else 0:] if e.get("event") == "alert"]
        counts: dict[str, int] = {}
        for a in alerts:
            counts[str(a.get("alert"))] = counts.get(str(a.get("alert")), 0) + 1
        out[stage] = {"measured_steps": len(records), "latest": records[-1] if records else None,
                      "records": records, "alerts": alerts, "alert_counts": counts}
    return out


def health_summary(health: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """read_health's result without the full per-step records: what report.json keeps."""
    return {stage: {k: v for k, v in h.items() if k != "records"} for stage, h in health.items()}


def read_bench(run_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(RunFiles(run_dir).bench.glob("*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except json.JSONDecodeError:
            continue
    return out


def write_report(run_dir: Path, report: dict[str, Any] | None = None) -> Path:
    """Render runs/<name>/evaluate/report.html (atomically) from report.json, the training metrics and health,
    and bench results."""
    from smoledge.errors import SmoledgeError

    files = RunFiles(run_dir).evaluate
    path = files.report
    if report is None:
        if not path.is_file():
            raise SmoledgeError(f"{path} is missing; run `smoledge build RECIPE --until evaluate` first")
        report = json.loads(path.read_text())
    out = files.html
    atomic_write_text(out, render(report, read_curves(run_dir), read_bench(run_dir), read_health(run_dir)))
    return out
