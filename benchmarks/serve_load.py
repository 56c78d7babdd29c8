"""Load test of `smoledge serve` with a bounded queue: no 5xx, every rejection a 429/503, RSS flat.

    .venv/bin/python benchmarks/serve_load.py                                   # runs/quickstart/bundle
    .venv/bin/python benchmarks/serve_load.py --bundle /tmp/qs-runs/quickstart/bundle \
        --requests 2000 --concurrency 32 --slots 2 --queue 8 --max-tokens 8 --max-seconds 600

Starts `smoledge serve BUNDLE --slots S --queue Q` on a free loopback port (benchmarks/
serve_vs_llama_server.py's Server), then --concurrency async httpx clients share --requests
POST /v1/completions (a client whose request is rejected goes straight on to its next one, so the
queue stays full and the rejection path is exercised as hard as the generation path). Stops early
at --max-seconds. Counts status codes and transport errors; checks every 429 carries Retry-After.
The server's RSS (psutil, its pid) is sampled after --warmup requests and at the end: growth
must stay under 10%. Exit status 1 when any check fails. Load average recorded next to each number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_vs_llama_server import PROMPT, REPO, load_avg, percentile, smoledge_server  # noqa: E402

MAX_RSS_GROWTH = 0.10


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, default=REPO / "runs/quickstart/bundle")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n-ctx", type=int, default=2048)
    p.add_argument("--slots", type=int, default=2)
    p.add_argument("--queue", type=int, default=8)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--warmup", type=int, default=200, help="requests before the first RSS sample")
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument("--max-seconds", type=float, default=600.0, help="stop issuing requests after this long")
    p.add_argument("--out", type=Path)
    return p.parse_args(argv)


async def load(url: str, pid: int, args: argparse.Namespace) -> dict:
    proc = psutil.Process(pid)
    codes: Counter[str] = Counter()
    ok_latencies: list[float] = []
    missing_retry_after = 0
    issued = done = 0
    rss: dict[str, dict] = {}
    deadline = time.monotonic() + args.max_seconds
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120.0, limits=limits) as client:

        async def one_client() -> None:
            nonlocal issued, done, missing_retry_after
            while issued < args.requests and time.monotonic() < deadline:
                issued += 1
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/completions", json={
                        "prompt": PROMPT, "max_tokens": args.max_tokens, "temperature": 0.8, "seed": issued})
                    codes[str(r.status_code)] += 1
                    if r.status_code == 200:
                        ok_latencies.append(time.perf_counter() - t0)
                    elif r.status_code == 429 and "retry-after" not in r.headers:
                        missing_retry_after += 1
                except httpx.HTTPError as exc:
                    codes[type(exc).__name__] += 1
                done += 1
                if done == args.warmup:
                    rss["warm"] = {"rss_mb": proc.memory_info().rss / 2**20, "after": done, "load1": load_avg()}

        t0 = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(args.concurrency)))
        wall = time.perf_counter() - t0
        rss["end"] = {"rss_mb": proc.memory_info().rss / 2**20, "after": done, "load1": load_avg()}
        metrics = (await client.get("/metrics")).text
    rejected = [line for line in metrics.splitlines() if line.startswith("smoledge_") and "reject" in line]
    return {"done": done, "wall_s": wall, "codes": dict(codes), "missing_retry_after": missing_retry_after,
            "ok_p50_s": percentile(ok_latencies, 50) if ok_latencies else None,
            "ok_p99_s": percentile(ok_latencies, 99) if ok_latencies else None, "rss": rss,
            "metrics_rejected": rejected}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log_dir = Path("/tmp/serve_load")
    log_dir.mkdir(parents=True, exist_ok=True)
    with smoledge_server(args.bundle, args.threads, args.n_ctx, args.slots, args.queue, log_dir) as server:
        start = {"rss_mb": psutil.Process(server.proc.pid).memory_info().rss / 2**20, "load1": load_avg()}
        res = asyncio.run(load(server.url, server.proc.pid, args))
    res["rss"]["ready"] = start
    server_errors = sum(n for c, n in res["codes"].items() if c.isdigit() and c.startswith("5") and c != "503")
    unexpected = {c: n for c, n in res["codes"].items() if c not in ("200", "429", "503")}
    warm, end = res["rss"].get("warm"), res["rss"]["end"]
    growth = (end["rss_mb"] / warm["rss_mb"] - 1) if warm else float("nan")

    print(f"smoledge serve {args.bundle} --slots {args.slots} --queue {args.queue} --threads {args.threads}; "
          f"{args.concurrency} clients, {res['done']}/{args.requests} requests in {res['wall_s']:.1f} s "
          f"({res['done'] / res['wall_s']:.0f} req/s), max_tokens {args.max_tokens}")
    print("status codes:", ", ".join(f"{c}: {n}" for c, n in sorted(res["codes"].items())))
    print(f"429 without Retry-After: {res['missing_retry_after']}")
    if res["ok_p50_s"] is not None:
        print(f"200 latency p50 {res['ok_p50_s'] * 1e3:.1f} ms, p99 {res['ok_p99_s'] * 1e3:.1f} ms")
    for k in ("ready", "warm", "end"):
        if k in res["rss"]:
            v = res["rss"][k]
            print(f"RSS {k:<5} {v['rss_mb']:7.1f} MiB" + (f" after {v['after']} requests" if "after" in v else "")
                  + f"  (load1 {v['load1']:.2f})")
    print(f"RSS growth warm -> end: {growth * 100:+.1f}% (limit {MAX_RSS_GROWTH * 100:.0f}%)")
    print("server metrics:", *res["metrics_rejected"], sep="\n  ")
    failures = []
    if server_errors or unexpected:
        failures.append(f"unexpected responses {unexpected}")
    if res["missing_retry_after"]:
        failures.append(f"{res['missing_retry_after']} 429s without Retry-After")
    if not growth < MAX_RSS_GROWTH:
        failures.append(f"RSS grew {growth * 100:.1f}%")
    print("FAIL: " + "; ".join(failures) if failures else "PASS")
    if args.out:
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **res}, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
