"""Benchmark a bundle or GGUF on this device: load time, prompt processing and decode speed.

    smoledge bench runs/quickstart/bundle --device x86_64-avx2-laptop
    smoledge bench model.gguf --device devices/x86_64-avx2-laptop.yaml --repeats 5 --out bench.json

Measured like llama-bench: pp<N> evaluates N random prompt tokens in one
batch, tg<N> decodes N tokens one at a time (greedy) from a one-token
context; each is repeated and the median reported, after one warm-up run.
Threads come from the device profile, so the numbers describe that setting.
Torch-free: this runs on boards.
"""

from __future__ import annotations

import ctypes
import os
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from smoledge.bench.config import DeviceProfile, load_profile
from smoledge.config import ConfigError
from smoledge.errors import SmoledgeError
from smoledge.io import atomic_write_json
from smoledge.progress import Progress


@dataclass
class BenchConfig:
    target: str
    """Bundle directory (or .tar.gz) made by `smoledge package`, or a .gguf file."""
    device: str = "x86_64-avx2-laptop"
    """Device profile name (devices/<name>.yaml, or one recorded in the bundle) or path."""
    repeats: int = 3
    """Runs per measurement; the median is reported."""
    out: str | None = None
    """Write the results as JSON here (None: print only)."""
    n_prompt: int = 128
    """Prompt tokens for the prompt-processing test (pp<n>)."""
    n_gen: int = 128
    """Tokens decoded for the generation test (tg<n>)."""

    def __post_init__(self) -> None:
        for key in ("repeats", "n_prompt", "n_gen"):
            if getattr(self, key) < 1:
                raise ConfigError(f"bench {key}: must be >= 1, got {getattr(self, key)}")


@dataclass
class Target:
    model_path: Path
    name: str
    bundle_profiles: list[dict[str, Any]]


def _target(path_str: str) -> Target:
    path = Path(path_str)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise SmoledgeError(f"{path} does not exist; pass a bundle directory or an exported model-*.gguf")
        return Target(path, path.stem, [])
    from smoledge.serve.bundle import load_bundle

    bundle = load_bundle(path)  # verifies every checksum first
    s = bundle.settings
    return Target(bundle.model_path, f"{s.model_id} {s.gguf_type}", list(bundle.manifest.get("devices") or []))


def _profile(device: str, recorded: list[dict[str, Any]]) -> DeviceProfile:
    try:
        return load_profile(device)
    except ConfigError:
        # On a board there is no devices/ folder; the bundle carries its profiles.
        for p in recorded:
            if p.get("name") == device:
                return DeviceProfile.from_dict(p)  # type: ignore[return-value]
        raise


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def _sd(xs: list[float]) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run the benchmark, print a markdown table, write JSON to cfg.out; return the results."""
    import llama_cpp
    import numpy as np

    target = _target(cfg.target)
    profile = _profile(cfg.device, target.bundle_profiles)
    threads = profile.threads
    n_ctx = cfg.n_prompt + cfg.n_gen
    progress = Progress("bench")
    steps, step = 3 * cfg.repeats, 0

    def load() -> "llama_cpp.Llama":
        return llama_cpp.Llama(model_path=str(target.model_path), n_ctx=n_ctx, n_batch=min(512, n_ctx),
                               n_threads=threads, n_threads_batch=threads, verbose=False)

    load_s: list[float] = []
    llm = None
    for r in range(cfg.repeats):
        progress.update(f"load {r + 1}/{cfg.repeats}", step, steps)
        if llm is not None:
            llm.close()
        t0 = time.perf_counter()
        try:
            llm = load()
        except (ValueError, RuntimeError) as exc:
            raise SmoledgeError(
                f"llama.cpp could not load {target.model_path} ({exc}); re-run `smoledge export`"
            ) from None
        load_s.append(time.perf_counter() - t0)
        step += 1
    assert llm is not None
    n_ctx_train = llama_cpp.llama_model_n_ctx_train(llm.model)
    if n_ctx > n_ctx_train:
        raise ConfigError(f"pp{cfg.n_prompt} + tg{cfg.n_gen} needs {n_ctx} tokens of context; the model has "
                          f"{n_ctx_train}: lower n_prompt/n_gen")

    # Random token ids, like llama-bench: speed does not depend on the text.
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, llm.n_vocab(), size=cfg.n_prompt).tolist()
    llm.reset()
    llm.eval(prompt[: min(16, cfg.n_prompt)])  # warm-up: first-touch of weights and buffers

    pp_s: list[float] = []
    for r in range(cfg.repeats):
        progress.update(f"pp{cfg.n_prompt} {r + 1}/{cfg.repeats}", step, steps)
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        pp_s.append(time.perf_counter() - t0)
        step += 1

    tg_s: list[float] = []
    for r in range(cfg.repeats):
        progress.update(f"tg{cfg.n_gen} {r + 1}/{cfg.repeats}", step, steps)
        llm.reset()
        tokens = llm.generate(prompt[:1], temp=0.0, reset=True)
        t0 = time.perf_counter()
        try:
            for n, _ in enumerate(tokens, 1):  # each token is one single-token decode
                if n == cfg.n_gen:
                    break
        finally:
            tokens.close()
        tg_s.append(time.perf_counter() - t0)
        step += 1
    progress.update("done", steps, steps)
    progress.close()

    pp_tps = [cfg.n_prompt / s for s in pp_s]
    tg_tps = [cfg.n_gen / s for s in tg_s]
    desc_buf = ctypes.create_string_buffer(256)
    llama_cpp.llama_model_desc(llm.model, desc_buf, 256)
    results: dict[str, Any] = {
        "target": str(cfg.target),
        "model": target.name,
        "model_file": str(target.model_path),
        "model_desc": desc_buf.value.decode("utf-8", errors="replace"),
        "model_bytes": int(llama_cpp.llama_model_size(llm.model)),
        "n_params": int(llama_cpp.llama_model_n_params(llm.model)),
        "device": profile.to_dict(),
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "repeats": cfg.repeats,
        "load_s": {"median": _median(load_s), "runs": load_s},
        "pp": {"n_tokens": cfg.n_prompt, "tokens_per_s": _median(pp_tps), "sd": _sd(pp_tps), "runs": pp_tps},
        "tg": {"n_tokens": cfg.n_gen, "tokens_per_s": _median(tg_tps), "sd": _sd(tg_tps), "runs": tg_tps},
        "llama_cpp_python": llama_cpp.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    llm.close()
    print(markdown(results))
    if cfg.out:
        atomic_write_json(cfg.out, results)
        print(f"wrote {cfg.out}", file=sys.stderr)
    return results


def markdown(r: dict[str, Any]) -> str:
    """llama-bench style table: one row per test."""
    size = f"{r['model_bytes'] / 2**20:.2f} MiB"
    params = f"{r['n_params'] / 1e6:.2f} M"
    head = "| model | size | params | backend | threads | test | t/s (median ± sd) |"
    sep = "| --- | ---: | ---: | --- | ---: | ---: | ---: |"
    rows = [
        f"| {r['model']} | {size} | {params} | llama.cpp CPU | {r['threads']} | {test}{r[key]['n_tokens']} "
        f"| {r[key]['tokens_per_s']:.2f} ± {r[key]['sd']:.2f} |"
        for key, test in (("pp", "pp"), ("tg", "tg"))
    ]
    foot = (f"\nload: {r['load_s']['median'] * 1000:.1f} ms (median of {r['repeats']}), "
            f"device profile '{r['device']['name']}'")
    return "\n".join([head, sep, *rows]) + "\n" + foot
