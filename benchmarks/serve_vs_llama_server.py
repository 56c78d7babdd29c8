"""`smoledge serve --slots 4` against llama-cpp-python's own server on the same GGUF and threads.

    .venv/bin/python benchmarks/serve_vs_llama_server.py                        # runs/quickstart/bundle
    .venv/bin/python benchmarks/serve_vs_llama_server.py --bundle /tmp/qs-runs/quickstart/bundle \
        --threads 2 --concurrency 1 4 16 --per-client 3 --max-tokens 64 --rounds 2 --out /tmp/svl.json
    .venv/bin/python benchmarks/serve_vs_llama_server.py --model other.gguf ...  # same bundle, another GGUF

Needs llama-cpp-python's server extra (`pip install -c requirements.lock -e .[bench]` brings
sse-starlette, starlette-context, pydantic-settings).

Per round, each server is started in a fresh process on a free loopback port, warmed up with two
requests, then driven at every concurrency c by c async httpx clients that each send --per-client
POST /v1/completions one after another (same prompt, temperature 0, max_tokens N: both servers
generate the same tokens). Servers alternate order round by round, so a burst of someone else's load
does not always land on the same side.
  llama-server  python -m llama_cpp.server --model GGUF --n_threads T --n_ctx C (one request at a time)
  smoledge      smoledge serve BUNDLE --threads T --slots 4 --queue Q (the slots' requests decoded in one
                batch on T threads)
  direct        llama_cpp.Llama(GGUF, n_threads=T).create_completion in this process, one at a time
                (no HTTP): smoledge's overhead at c=1 is 1 - smoledge tok/s / direct tok/s.
Throughput = generated tokens (usage.completion_tokens) / wall time of the whole batch; latency is
per request, client side. The load average (`uptime`) is recorded next to every row: on a shared
2-core VM the numbers move with it. While another job keeps every core busy, llama.cpp with threads
= all cores collapses (its threads spin at barriers waiting for a descheduled peer): 64 tokens of the
quickstart took 17 s instead of 0.02 s at --threads 2, on every side alike, so measure such a machine
with --threads 1. Targets (issue 9): >= 1.0x llama-server at c=1, > 1.5x at c=4,
overhead vs direct <= 5% at c=1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
PROMPT = "The quick brown fox jumps over the lazy dog. Once upon a time"
START_TIMEOUT_S = 180.0
REQUEST_TIMEOUT_S = 300.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, default=REPO / "runs/quickstart/bundle", help="smoledge bundle dir")
    p.add_argument("--threads", type=int, default=2, help="threads for every side")
    p.add_argument("--n-ctx", type=int, default=2048)
    p.add_argument("--slots", type=int, default=4, help="smoledge serve --slots")
    p.add_argument("--queue", type=int, default=32, help="smoledge serve --queue (>= max concurrency: no 429 here)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--per-client", type=int, default=3, help="requests each client sends per concurrency level")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=1, help="rounds, server order alternating")
    p.add_argument("--out", type=Path, help="write every measurement as JSON here")
    p.add_argument("--model", type=Path,
                   help="serve this GGUF instead of the bundle's (a copy of the bundle with it, re-manifested)")
    return p.parse_args(argv)


def rebundle(bundle: Path, gguf: Path, out: Path) -> Path:
    """A copy of `bundle` that serves `gguf`: model swapped, server.json pointed at it, manifest rewritten,
    so the served model is checked like any packaged one. Per-device targets are dropped (one model)."""
    from smoledge.io import file_manifest
    from smoledge.serve.bundle import BUILD_RECORDS, MANIFEST

    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(bundle, out, ignore=shutil.ignore_patterns("*.gguf", "onnx*"))
    shutil.copy2(gguf, out / gguf.name)
    settings = json.loads((out / "server.json").read_text())
    settings.update(model_file=gguf.name, backend="llama.cpp", devices={})
    (out / "server.json").write_text(json.dumps(settings, indent=2, sort_keys=True))
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"] = file_manifest(out, exclude=(MANIFEST, *BUILD_RECORDS))
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return out


def load_avg() -> float:
    """The 1-minute load average, as `uptime` prints it."""
    return os.getloadavg()[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server subprocess on 127.0.0.1:port, started by `cmd`, ready when GET `ready_path` answers 200."""

    def __init__(self, name: str, cmd: list[str], port: int, ready_path: str, log: Path):
        self.name, self.cmd, self.port, self.ready_path, self.log = name, cmd, port, ready_path, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Server":
        self._log = open(self.log, "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.__exit__()
        raise RuntimeError(f"{self.name} not ready within {START_TIMEOUT_S:.0f} s; see {self.log}")

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def llama_server(gguf: Path, threads: int, n_ctx: int, log_dir: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--n_threads", str(threads),
           "--n_threads_batch", str(threads), "--n_ctx", str(n_ctx), "--host", "127.0.0.1", "--port", str(port)]
    return Server("llama-server", cmd, port, "/v1/models", log_dir / "llama_server.log")


def smoledge_server(bundle: Path, threads: int, n_ctx: int, slots: int, queue: int, log_dir: Path,
                    extra: list[str] = ()) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "smoledge.cli", "serve", str(bundle), "--threads", str(threads),
           "--n-ctx", str(n_ctx), "--slots", str(slots), "--queue", str(queue), "--host", "127.0.0.1",
           "--port", str(port), *extra]
    return Server("smoledge", cmd, port, "/ready", log_dir / "smoledge_serve.log")


def body(max_tokens: int) -> dict[str, Any]:
    return {"prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0.0, "seed": 0}


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): with few samples p99 is the slowest request."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


async def drive(url: str, concurrency: int, per_client: int, max_tokens: int) -> dict[str, Any]:
    """c clients, each sending per_client completions back to back; tokens/s over the batch's wall time."""
    latencies: list[float] = []
    tokens, codes = 0, {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:

        async def one_client() -> None:
            nonlocal tokens
            for _ in range(per_client):
                t0 = time.perf_counter()
                r = await client.post("/v1/completions", json=body(max_tokens))
                latencies.append(time.perf_counter() - t0)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    tokens += r.json()["usage"]["completion_tokens"]

        load = load_avg()
        t0 = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"concurrency": concurrency, "requests": len(latencies), "codes": codes, "tokens": tokens,
            "wall_s": wall, "tok_s": tokens / wall, "p50_s": percentile(latencies, 50),
            "p99_s": percentile(latencies, 99), "load1": load}


def measure_server(server: Server, args: argparse.Namespace) -> list[dict[str, Any]]:
    with server:
        asyncio.run(drive(server.url, 1, 2, args.max_tokens))  # warm-up: first-touch of weights, JIT paths
        rows = []
        for c in args.concurrency:
            rows.append({"side": server.name, **asyncio.run(drive(server.url, c, args.per_client, args.max_tokens))})
        return rows


def measure_direct(gguf: Path, args: argparse.Namespace) -> dict[str, Any]:
    """llama-cpp-python called directly, one completion at a time, the same requests as c=1."""
    from llama_cpp import Llama

    llm = Llama(str(gguf), n_ctx=args.n_ctx, n_threads=args.threads, n_threads_batch=args.threads, verbose=False)
    kw = dict(max_tokens=args.max_tokens, temperature=0.0, seed=0)
    for _ in range(2):
        llm.create_completion(PROMPT, **kw)
    latencies, tokens = [], 0
    load = load_avg()
    t0 = time.perf_counter()
    for _ in range(args.per_client):
        t = time.perf_counter()
        out = llm.create_completion(PROMPT, **kw)
        latencies.append(time.perf_counter() - t)
        tokens += out["usage"]["completion_tokens"]
    wall = time.perf_counter() - t0
    llm.close()
    return {"side": "direct", "concurrency": 1, "requests": len(latencies), "codes": {}, "tokens": tokens,
            "wall_s": wall, "tok_s": tokens / wall, "p50_s": percentile(latencies, 50),
            "p99_s": percentile(latencies, 99), "load1": load}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / "serve_vs_llama_server"
    log_dir.mkdir(parents=True, exist_ok=True)
    if args.model:
        args.bundle = rebundle(args.bundle, args.model, log_dir / "bundle")
    settings = json.loads((args.bundle / "server.json").read_text())
    gguf = args.bundle / settings["model_file"]
    rows: list[dict[str, Any]] = []
    for r in range(args.rounds):
        sides = [lambda: llama_server(gguf, args.threads, args.n_ctx, log_dir),
                 lambda: smoledge_server(args.bundle, args.threads, args.n_ctx, args.slots, args.queue, log_dir)]
        for make in (sides if r % 2 == 0 else sides[::-1]):
            rows += [{"round": r, **row} for row in measure_server(make(), args)]
        rows.append({"round": r, **measure_direct(gguf, args)})

    print(f"GGUF {gguf} ({gguf.stat().st_size / 1e6:.2f} MB), threads {args.threads}, max_tokens {args.max_tokens}, "
          f"smoledge --slots {args.slots} --queue {args.queue}, {args.rounds} round(s)")
    print(f"{'round':>5} {'side':<13} {'c':>3} {'reqs':>4} {'codes':<10} {'tokens':>6} {'tok/s':>8} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'load1':>5}")
    for row in rows:
        codes = ",".join(f"{k}x{v}" for k, v in sorted(row["codes"].items())) or "-"
        print(f"{row['round']:>5} {row['side']:<13} {row['concurrency']:>3} {row['requests']:>4} {codes:<10} "
              f"{row['tokens']:>6} {row['tok_s']:>8.1f} {row['p50_s'] * 1e3:>8.1f} {row['p99_s'] * 1e3:>8.1f} "
              f"{row['load1']:>5.2f}")

    def median_tok_s(side: str, c: int) -> float:
        return statistics.median(x["tok_s"] for x in rows if x["side"] == side and x["concurrency"] == c)

    print("\nmedian over rounds: smoledge / llama-server throughput")
    ratios = {}
    for c in args.concurrency:
        ratios[c] = median_tok_s("smoledge", c) / median_tok_s("llama-server", c)
        target = ">= 1.0x" if c == 1 else "> 1.5x" if c == 4 else "-"
        print(f"  c={c:<3} {median_tok_s('smoledge', c):8.1f} / {median_tok_s('llama-server', c):8.1f} tok/s "
              f"= {ratios[c]:.2f}x   (target {target})")
    overhead = 1 - median_tok_s("smoledge", 1) / median_tok_s("direct", 1)
    print(f"  overhead vs direct llama-cpp-python at c=1: {overhead * 100:+.1f}%  "
          f"({median_tok_s('smoledge', 1):.1f} vs {median_tok_s('direct', 1):.1f} tok/s; target <= 5%)")
    if args.out:
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                                        "ratios": ratios, "overhead_c1": overhead}, indent=1))


if __name__ == "__main__":
    main()
