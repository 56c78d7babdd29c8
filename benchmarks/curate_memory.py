"""Peak memory and throughput of the curate stage, against input size, workers and executor.

    .venv/bin/python benchmarks/curate_memory.py                    # 100k synthetic documents, all cores
    .venv/bin/python benchmarks/curate_memory.py --docs 20000 50000 --workers 2
    # real pages and a Common Crawl WARC, copied 1, 2 and 4 times; 1 and 2 workers, local and on Ray:
    .venv/bin/python benchmarks/curate_memory.py --web 1 2 4 --workers 1 2 --executor local ray

Each run is a fresh subprocess: the whole curate stage (smoledge.runs.build
until "curate"), with curate.workers and curate.executor as given, on either
a `sample` source of N documents from the built-in generator
(smoledge.data.sample.generate: six languages with its planted duplicates,
spam, foreign pages...) or (`--web R`) the real pages of
../shared/data/html/trafilatura and the Common Crawl WARC excerpt
warc/resiliparse/warcfile.warc.gz, each copied R times (an `html` and a `warc`
source; their extraction runs in the workers). While it runs, this script
samples the resident memory of the subprocess and of all its descendants (the
worker processes; with Ray, the raylet, GCS and actor processes a local Ray
starts) with psutil every POLL_S seconds.

Printed per run: documents read and kept, input MB, workers, wall time,
documents/s and MB/s (over the whole stage, worker start-up included), the
driver's peak RSS (getrusage in the subprocess: reading, dedup, writing) and
the peak of driver + descendants together (the polled sum, what the machine
must hold), and the load average after the run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

POLL_S = 0.2


SHARED = REPO.parent / "shared" / "data"


def web_sources(repeat: int, into: Path) -> tuple[list[dict], int]:
    """The real pages and the Common Crawl WARC, `repeat` copies each, as recipe sources; and their bytes."""
    pages = sorted((SHARED / "html" / "trafilatura").glob("*.html"))
    warc = SHARED / "warc" / "resiliparse" / "warcfile.warc.gz"
    size = 0
    for r in range(repeat):
        (into / "html" / str(r)).mkdir(parents=True)
        (into / "warc").mkdir(exist_ok=True)
        for page in pages:
            size += shutil.copyfile(page, into / "html" / str(r) / page.name).stat().st_size
        size += shutil.copyfile(warc, into / "warc" / f"copy{r}-{warc.name}").stat().st_size
    return [{"name": "pages", "kind": "html", "path": str(into / "html")},
            {"name": "crawl", "kind": "warc", "path": str(into / "warc")}], size


def child(spec: dict) -> None:
    """The measured run (in its own process)."""
    from smoledge.recipe import Recipe
    from smoledge.runs import build

    runs = Path(spec["runs"])
    if spec["web"]:
        sources, size = web_sources(spec["web"], runs / "input")
    else:
        sources, size = [{"name": "sample", "kind": "sample", "sample_docs": spec["docs"]}], 0
    recipe = Recipe.from_dict({
        "name": "mem",
        "seed": 1234,
        "data": {"sources": sources},
        "curate": {"workers": spec["workers"], "executor": spec["executor"]},
    })
    t = time.time()
    (outcome,) = build(recipe, runs_root=runs, until="curate", out=lambda s: None)
    m = outcome.record["metrics"]
    print(json.dumps({
        "read": m["read"], "kept": m["kept"], "workers": m["workers"], "seconds": time.time() - t,
        "stage_seconds": m["seconds"], "input_mb": size / 1e6,
        # ru_maxrss is in KiB on Linux.
        "driver_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def measure(spec: dict) -> dict:
    import psutil

    with tempfile.TemporaryDirectory() as runs:
        proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps({**spec, "runs": runs})],
                                stdout=subprocess.PIPE, text=True)
        ps = psutil.Process(proc.pid)
        peak = 0
        while proc.poll() is None:
            try:
                rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
                peak = max(peak, rss)
            except psutil.Error:  # a worker exited between listing and reading
                pass
            time.sleep(POLL_S)
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"curate run {spec} failed (exit {proc.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    result["total_peak_mb"] = peak / 2**20
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, nargs="+", default=[100_000], help="synthetic document counts to measure")
    ap.add_argument("--web", type=int, nargs="+", help="copies of the real pages + WARC to measure (instead of --docs)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0], help="curate.workers values (0: all cores)")
    ap.add_argument("--executor", nargs="+", default=["local"], choices=["local", "ray"])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    print(f"{'input':>10}{'executor':>9}{'docs':>7}{'kept':>6}{'MB':>6}{'workers':>8}{'wall s':>8}{'docs/s':>8}"
          f"{'MB/s':>6}{'driver MB':>10}{'total MB':>9}  load   stage seconds")
    sizes = [("web", r) for r in args.web] if args.web else [("docs", n) for n in args.docs]
    for kind, n in sizes:
        for executor in args.executor:
            for workers in args.workers:
                spec = {"web": n if kind == "web" else 0, "docs": n, "workers": workers, "executor": executor}
                r = measure(spec)
                label = f"web x{n}" if kind == "web" else f"{n} docs"
                print(f"{label:>10}{executor:>9}{r['read']:>7}{r['kept']:>6}{r['input_mb']:>6.1f}{r['workers']:>8}"
                      f"{r['seconds']:>8.1f}{r['read'] / r['seconds']:>8.1f}{r['input_mb'] / r['seconds']:>6.2f}"
                      f"{r['driver_peak_mb']:>10.0f}{r['total_peak_mb']:>9.0f}  {os.getloadavg()[0]:.2f}  "
                      f"{r['stage_seconds']}", flush=True)


if __name__ == "__main__":
    main()
