"""Peak memory and throughput of the curate stage on N synthetic documents.

    .venv/bin/python benchmarks/curate_memory.py                    # 100k documents, all cores
    .venv/bin/python benchmarks/curate_memory.py --docs 20000 50000 --workers 2

Each size runs in a fresh subprocess: the whole curate stage (smoledge.runs.build
until "curate") on a `sample` source of N documents from the built-in generator
(smoledge.data.sample.generate: six languages with its planted duplicates, spam,
foreign pages...), with curate.workers worker processes. While it runs, this
script samples the resident memory of the subprocess and of its worker
processes with psutil every POLL_S seconds.

Printed per size: documents read and kept, wall time, documents/s, the
driver's peak RSS (getrusage in the subprocess: reading, dedup, writing) and
the peak of driver + workers together (the polled sum, what the machine must
hold).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

POLL_S = 0.2


def child(docs: int, workers: int, runs: str) -> None:
    """The measured run (in its own process)."""
    from smoledge.recipe import Recipe
    from smoledge.runs import build

    recipe = Recipe.from_dict({
        "name": f"mem{docs}",
        "seed": 1234,
        "data": {"sources": [{"name": "sample", "kind": "sample", "sample_docs": docs}]},
        "curate": {"workers": workers},
    })
    t = time.time()
    (outcome,) = build(recipe, runs_root=runs, until="curate", out=lambda s: None)
    m = outcome.record["metrics"]
    print(json.dumps({
        "read": m["read"], "kept": m["kept"], "workers": m["workers"], "seconds": time.time() - t,
        "stage_seconds": m["seconds"],
        # ru_maxrss is in KiB on Linux.
        "driver_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def measure(docs: int, workers: int) -> dict:
    import psutil

    with tempfile.TemporaryDirectory() as runs:
        proc = subprocess.Popen([sys.executable, __file__, "--child", str(docs), "--workers", str(workers),
                                 "--runs", runs], stdout=subprocess.PIPE, text=True)
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
            raise SystemExit(f"curate on {docs} docs failed (exit {proc.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    result["total_peak_mb"] = peak / 2**20
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, nargs="+", default=[100_000], help="document counts to measure")
    ap.add_argument("--workers", type=int, default=0, help="curate.workers (0: all cores)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--runs", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.workers, args.runs)
        return
    print(f"{'docs':>8}{'kept':>8}{'workers':>8}{'wall s':>9}{'docs/s':>8}{'driver MB':>11}{'total MB':>10}"
          f"   stage seconds")
    for n in args.docs:
        r = measure(n, args.workers)
        print(f"{r['read']:>8}{r['kept']:>8}{r['workers']:>8}{r['seconds']:>9.1f}{r['read'] / r['seconds']:>8.0f}"
              f"{r['driver_peak_mb']:>11.0f}{r['total_peak_mb']:>10.0f}   {r['stage_seconds']}", flush=True)


if __name__ == "__main__":
    main()
