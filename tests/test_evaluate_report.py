"""report.html: self-contained (no fetch of any kind), every plot drawn, and readable in a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from smoledge.evaluate.report import read_bench, read_curves, render, speed_rows, write_report

LANGS = ("de", "en", "fr")


def sample_report() -> dict:
    """A report.json as the evaluate stage writes it, with distinct numbers in every section."""
    ppl = {name: {l: {"ppl": base + i, "bpb": 1.0 + i / 10, "tokens": 500} for i, l in enumerate(LANGS)}
           for name, base in (("hf", 6.0), ("model-f32.gguf", 6.0), ("model-q8_0.gguf", 6.05), ("model-q4_0.gguf", 6.6))}
    lengths, depths = [64, 128, 256, 512, 1024], [0.0, 0.5, 1.0]
    acc = {f"{n}@{d:g}": (1.0 if n <= 256 else 0.25 if n == 512 else 0.0) for n in lengths for d in depths}
    grid = {"lengths": lengths, "depths": depths, "trials": 4, "accuracy": acc, "trained_length": 256,
            "by_length": {str(n): float(np.mean([acc[f"{n}@{d:g}"] for d in depths])) for n in lengths},
            "falloff": {"threshold": 0.5, "longest_ok": 256, "first_below": 512},
            "falloff_text": "retrieval holds up to 256 tokens, falls below 0.5 at 512"}
    return {
        "format": 2, "name": "demo", "created": "2026-11-28T00:00:00+00:00", "seq_len": 256, "trained_length": 256,
        "languages": list(LANGS), "perplexity": ppl, "eval_sets": {"mine": {"hf": {"en": {"ppl": 9.0, "bpb": 1.2, "tokens": 99}}}},
        "overall": {}, "quantization": {
            "model-f32.gguf": {"bytes": 4_000_000, "bits_per_weight": 33.0, "ppl": 6.0, "ppl_delta_pct_vs_fp32": 0.0},
            "model-q8_0.gguf": {"bytes": 1_100_000, "bits_per_weight": 9.0, "ppl": 6.05, "ppl_delta_pct_vs_fp32": 0.8},
            "model-q4_0.gguf": {"bytes": 700_000, "bits_per_weight": 5.5, "ppl": 6.6, "ppl_delta_pct_vs_fp32": 10.0}},
        "devices": {"laptop": {"artifact": "model-q8_0.gguf", "backend": "llama.cpp", "threads": 2, "n_ctx": 4096,
                               "reason": "smallest that passes"}},
        "passkey": {"hf (fp32, PyTorch)": grid, "model-q8_0.gguf on laptop (2 threads)": grid},
        "tasks": {"cloze": {"hf (fp32, PyTorch)": {"n": 20, "acc": 0.6, "acc_stderr": 0.11, "acc_norm": 0.55}}},
        "gates": [{"gate": "max_ppl_delta_pct", "device": "laptop", "artifact": "model-q8_0.gguf", "measured": 0.8,
                   "limit": 5.0, "passed": True},
                  {"gate": "min_passkey_accuracy@256", "device": "laptop", "artifact": "model-q8_0.gguf",
                   "measured": 1.0, "limit": 0.9, "passed": True}],
    }


def write_run(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "demo"
    (run / "evaluate").mkdir(parents=True)
    (run / "evaluate" / "report.json").write_text(json.dumps(sample_report()))
    for stage, n in (("pretrain", 40), ("distill", 30)):
        (run / stage).mkdir()
        rows = [{"step": s, "loss": 8.0 / s ** 0.3} for s in range(1, n + 1)] + [{"step": n, "val_loss": 3.1}]
        (run / stage / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{\"step\": 9")  # torn tail
    (run / "bench").mkdir()
    # The shape `smoledge bench --out` writes (format 2): results per artifact, a stat per test.
    def stat(median: float, sd: float) -> dict:
        return {"tokens_per_s": {"median": median, "sd": sd, "min": median - sd, "max": median + sd}}

    (run / "bench" / "laptop.json").write_text(json.dumps({
        "format": 2, "device": {"name": "laptop"}, "threads": 2,
        "results": [{"model": "demo q8_0", "backend": "llama.cpp",
                     "tests": {"pp128": stat(900.0, 20.0), "pp512": stat(700.0, 9.0), "tg128": stat(210.0, 5.0)}}]}))
    return run


def test_page_is_self_contained_and_draws_every_plot(tmp_path: Path) -> None:
    run = write_run(tmp_path)
    out = write_report(run)
    page = out.read_text()
    # Offline: nothing to fetch. SVG's xmlns is a name, not a request; links point inside the page or
    # are data: URIs (the heatmaps' pixels).
    assert not re.search(r"<script|<link|<img|<iframe|@import", page)
    assert not re.search(r"(src|href)=\"(?!#|data:)", page)
    assert not re.search(r"url\((?!#)", page)
    assert page.count("<svg") == 6  # training, perplexity, size-quality, two passkey heatmaps, speed
    for text in ("Quality gates", "min_passkey_accuracy@256", "smallest that passes", "Eval set: mine", "cloze",
                 "retrieval holds up to 256 tokens", "model-q4_0.gguf", "+10.00%"):
        assert text in page, text
    assert read_curves(run)["pretrain"][-1] == {"step": 40, "val_loss": 3.1}  # the torn line is skipped
    assert speed_rows(read_bench(run)) == [{"label": "demo q8_0 (llama.cpp)\nlaptop (2 thr)",
                                            "pp": ("pp512", 700.0, 9.0), "tg": ("tg128", 210.0, 5.0)}]


def test_failed_gate_is_marked_and_missing_data_says_so(tmp_path: Path) -> None:
    report = sample_report()
    report["gates"][1].update(measured=0.25, passed=False)
    report["passkey"] = {}
    page = render(report, {}, [])
    assert '<td class="fail">FAIL</td>' in page and '<td class="pass">pass</td>' in page
    assert "Passkey grid disabled" in page and "loss per step (val loss as points): no data." in page


def test_report_without_evaluation_names_the_fix(tmp_path: Path) -> None:
    from smoledge.errors import SmoledgeError

    with pytest.raises(SmoledgeError, match="--until evaluate"):
        write_report(tmp_path)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    """The page as a person sees it: a real browser's screenshot holds the heatmap's red and green,
    the bars, and mostly white page, not an error page or a blank one."""
    from matplotlib.image import imread

    run = write_run(tmp_path)
    html = write_report(run)
    png = tmp_path / "report.png"
    # The flags keep a root, offline, display-less Chromium from reaching for the network or a GPU.
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", "--window-size=1200,4200",
           f"--screenshot={png}", html.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert png.is_file(), proc.stderr[-2000:]
    img = imread(png)[..., :3]  # (H, W, 3) floats in [0, 1]
    assert img.shape[:2] == (4200, 1200)
    white = (img > 0.97).all(-1).mean()
    assert 0.4 < white < 0.97, white  # a page with content, not blank
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    assert ((g > 0.5) & (r < 0.3) & (b < 0.4)).sum() > 2000  # RdYlGn's green cells (accuracy 1.0)
    assert ((r > 0.6) & (g < 0.2) & (b < 0.2)).sum() > 2000  # its red cells (accuracy 0.0)
