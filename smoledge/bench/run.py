"""Benchmark a model on this device: load time, prompt processing, decode, time to first token, peak RSS,
energy, and decode against the memory-bandwidth roofline. Torch-free: this runs on boards.

    smoledge bench runs/quickstart/bundle --device x86_64-avx2-laptop
    smoledge bench runs/quickstart/export/model-q4_0.gguf --device rpi5-8gb --repeats 5 --out bench.json
    smoledge bench runs/quickstart/export/onnx-int8-avx2 --pp 128 --tg 64
    smoledge bench runs/quickstart --device x86_64-avx2-laptop --all-backends --markdown bench.md

TARGET is a bundle (directory or .tar.gz: its model), a .gguf file, an ONNX directory, or an export
directory or run directory: then every artifact `smoledge export` wrote (smoledge.bench.select.candidates)
of the profile's backend (--all-backends: of both) that suits the device's ISA and fits its RAM budget,
weights plus the KV cache at its max_context, as the evaluate stage's selection counts it.

Each artifact is measured in a fresh worker process (smoledge.bench.measure) with the profile's thread
count: so its peak RSS is its own, not the largest of the run. Tests, as llama-bench names them:
pp<N> (a prompt of N tokens in one call), tg<N> (N single-token decodes from a 1-token context), plus
load, time to first token, peak RSS, and energy where Intel RAPL is readable. Each is run once untimed,
then --repeats times; the median and the spread (min-max, sd) are reported. Output: a llama-bench-style
markdown table (stdout, --markdown) and JSON (--out). For tg, the roofline: bytes read per token (the
model's weights plus the KV cache at the run's mean context) against the profile's memory bandwidth.
Every row names the model's family and quantization as the artifact itself records them (a GGUF's general.*
keys and tensor table, an ONNX directory's config.json and export metadata), so a model smoledge did not
train is benched and labelled like one it did.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import smoledge
from smoledge.bench.config import DeviceProfile, load_profile
from smoledge.bench.measure import MeasureSpec
from smoledge.bench.roofline import decode_roofline, describe
from smoledge.bench.select import (LLAMA_CPP, ONNXRUNTIME, Candidate, candidates, isa_problem, kv_cache_bytes,
                                   onnx_files, read_hf_config, size)
from smoledge.config import ConfigError
from smoledge.errors import SmoledgeError
from smoledge.host import emulation
from smoledge.io import atomic_write_json, atomic_write_text
from smoledge.progress import Progress

FORMAT = 2
KINDS = "a bundle (directory or .tar.gz), a .gguf file, an ONNX directory, an export directory or a run directory"


@dataclass
class BenchConfig:
    target: str
    """Bundle (directory or .tar.gz), .gguf, ONNX directory, export directory or run directory."""
    device: str = "x86_64-avx2-laptop"
    """Device profile name (devices/<name>.yaml, or one recorded in the bundle) or path."""
    repeats: int = 3
    """Timed runs per test; the median and spread are reported."""
    warmup: int = 1
    """Untimed runs before them."""
    pp: list[int] = field(default_factory=lambda: [128, 512])
    """Prompt lengths of the prompt-processing tests (pp<N>); empty: none."""
    tg: int = 128
    """Tokens decoded in the generation test (tg<N>); 0: none."""
    ttft_prompt: int = 256
    """Prompt tokens of the time-to-first-token test; 0: none."""
    all_backends: bool = False
    """Export/run directory: bench the artifacts of both backends, not only the profile's."""
    out: str | None = None
    """Write the results as JSON here."""
    markdown: str | None = None
    """Write the markdown tables here (they are printed by the CLI either way)."""
    seed: int = 0
    """Seed of the random prompt token ids."""

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ConfigError(f"bench repeats: must be >= 1, got {self.repeats}")
        if self.warmup < 0:
            raise ConfigError(f"bench warmup: must be >= 0, got {self.warmup}")
        for key, v in (("pp", min(self.pp, default=1)), ("tg", self.tg), ("ttft_prompt", self.ttft_prompt)):
            if v < 0 or (key == "pp" and v < 1):
                raise ConfigError(f"bench {key}: token counts must be >= {1 if key == 'pp' else 0}, got {v}")
        if not self.pp and not self.tg and not self.ttft_prompt:
            raise ConfigError("bench: nothing to measure; give --pp, --tg or --ttft-prompt")


@dataclass
class Target:
    kind: str
    """bundle, gguf, onnx or export."""
    artifacts: list[Candidate]
    labels: dict[str, str] = field(default_factory=dict)
    """Display name per artifact (a bundle's model is '<model id> <type>')."""
    recorded_profiles: list[dict[str, Any]] = field(default_factory=list)
    """Device profiles a bundle carries (a board has no devices/ folder)."""
    hf_config: dict[str, Any] | None = None
    """The export's config.json (export/run directories: for the RAM fit)."""


def onnx_candidate(d: Path) -> Candidate:
    files = onnx_files(d)
    target = d.name.rsplit("-", 1)[1] if d.name.startswith("onnx-int8") else None
    return Candidate(d.name, ONNXRUNTIME, d, sum(p.stat().st_size for p in files), target)


def resolve(path_str: str) -> Target:
    """What TARGET names; SmoledgeError when it is none of the kinds bench reads."""
    path = Path(path_str)
    if not path.exists():
        raise SmoledgeError(f"{path} does not exist; pass {KINDS}")
    if path.is_file() and path.suffix == ".gguf":
        return Target("gguf", [Candidate(path.name, LLAMA_CPP, path, path.stat().st_size)])
    if (path.is_file() and path.name.endswith((".tar.gz", ".tgz"))) or (path / "manifest.json").is_file():
        from smoledge.serve.bundle import load_bundle

        bundle = load_bundle(path)  # verifies every checksum first
        s = bundle.settings
        model = Candidate(s.model_file, LLAMA_CPP, bundle.model_path, bundle.model_path.stat().st_size)
        return Target("bundle", [model], {model.name: f"{s.model_id} {s.gguf_type}"},
                      list(bundle.manifest.get("devices") or []))
    if path.is_dir() and onnx_files(path):
        return Target("onnx", [onnx_candidate(path)])
    export = path / "export" if (path / "export").is_dir() else path
    if path.is_dir():
        found = candidates(export)
        if found:
            return Target("export", found, hf_config=read_hf_config(export))
    raise SmoledgeError(f"{path} is not something bench can run; pass {KINDS}")


def profile_for(device: str, recorded: list[dict[str, Any]]) -> DeviceProfile:
    try:
        return load_profile(device)
    except ConfigError:
        # On a board there is no devices/ folder; the bundle carries its profiles.
        for p in recorded:
            if p.get("name") == device:
                return DeviceProfile.from_dict(p)  # type: ignore[return-value]
        raise


def fitting(profile: DeviceProfile, target: Target, all_backends: bool) -> tuple[list[Candidate], dict[str, str]]:
    """An export's artifacts this device can run: its backend (or both), its ISA, its RAM budget with the KV
    cache at its max_context (what the evaluate stage's selection counts); the others with why not."""
    if target.kind != "export":
        return target.artifacts, {}
    cfg = target.hf_config or {}
    n_ctx = min(profile.max_context, int(cfg.get("max_position_embeddings") or profile.max_context))
    budget = int(profile.model_ram_budget_gb * 1e9)
    keep, skipped = [], {}
    for c in target.artifacts:
        ram = c.bytes + kv_cache_bytes(cfg, n_ctx, c.backend)
        if c.backend != profile.backend and not all_backends:
            skipped[c.name] = f"{c.backend}; device '{profile.name}' runs {profile.backend} (--all-backends: both)"
        elif (why := isa_problem(profile, c)) is not None:
            skipped[c.name] = why
        elif ram > budget:
            skipped[c.name] = f"needs {size(ram)} at {n_ctx} tokens, the budget is {size(budget)}"
        else:
            keep.append(c)
    if not keep:
        detail = "; ".join(f"{n}: {why}" for n, why in skipped.items())
        raise SmoledgeError(f"no artifact in the export suits device '{profile.name}': {detail}. Pass one "
                            f"artifact as TARGET, or use --all-backends or a larger device profile")
    return keep, skipped


def measure_in_worker(spec: MeasureSpec, progress: Progress, offset: int, total: int) -> dict[str, Any]:
    """Run smoledge.bench.measure on one artifact in a fresh Python process; its result."""
    env = dict(os.environ)
    root = str(Path(smoledge.__file__).resolve().parents[1])  # the worker imports this same smoledge
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "smoledge.bench.measure"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(asdict(spec)))
        proc.stdin.close()
        result, error = None, None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("event") == "progress":
                progress.update(event["text"], offset + event["done"], total)
            elif event.get("event") == "result":
                result = event["result"]
            elif event.get("event") == "error":
                error = event
        rc = proc.wait()
        err.seek(0)
        stderr = err.read()
    if error is not None:
        raise (ConfigError if error["kind"] == "ConfigError" else SmoledgeError)(error["message"])
    if rc != 0 or result is None:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise SmoledgeError(f"the bench worker for {spec.name} failed (exit {rc}):\n{tail}")
    return result


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Measure every artifact TARGET names; write JSON (cfg.out) and markdown (cfg.markdown); return the results."""
    target = resolve(cfg.target)
    profile = profile_for(cfg.device, target.recorded_profiles)
    artifacts, skipped = fitting(profile, target, cfg.all_backends)
    specs = [MeasureSpec(name=c.name, backend=c.backend, path=str(c.path), threads=profile.threads, pp=list(cfg.pp),
                         tg=cfg.tg, ttft_prompt=cfg.ttft_prompt, repeats=cfg.repeats, warmup=cfg.warmup, seed=cfg.seed)
             for c in artifacts]
    n_ctx = specs[0].n_ctx
    if n_ctx > profile.max_context:
        raise ConfigError(f"the tests need {n_ctx} tokens of context; device '{profile.name}' allows max_context "
                          f"{profile.max_context}: lower --pp, --tg or --ttft-prompt")
    # Under qemu-user the timings are the emulator's: kept, marked, and never set against a roofline.
    emulated = emulation()
    loadavg_before = list(os.getloadavg())
    progress = Progress("bench")
    total, done = sum(s.steps for s in specs), 0
    rows = []
    try:
        for spec in specs:
            r = measure_in_worker(spec, progress, done, total)
            done += spec.steps
            r["model"] = target.labels.get(spec.name, spec.name)
            tg = r["tests"].get(f"tg{spec.tg}")
            r["roofline"] = decode_roofline(r["weight_bytes_per_token"], r["kv_bytes_per_position"], 1, spec.tg,
                                            profile.memory_bandwidth_gbs,
                                            tg["tokens_per_s"]["median"]) if tg and not emulated else None
            r["emulated"] = emulated is not None
            rows.append(r)
        progress.update("done", total, total)
    finally:
        progress.close()
    results: dict[str, Any] = {
        "format": FORMAT,
        "target": str(cfg.target),
        "kind": target.kind,
        "device": profile.to_dict(),
        "threads": profile.threads,
        "settings": {"repeats": cfg.repeats, "warmup": cfg.warmup, "pp": list(cfg.pp), "tg": cfg.tg,
                     "ttft_prompt": cfg.ttft_prompt, "seed": cfg.seed, "all_backends": cfg.all_backends},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_before": loadavg_before, "loadavg_after": list(os.getloadavg()),
                    "emulated": emulated},
        "skipped": skipped,
        "results": rows,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if cfg.out:
        atomic_write_json(cfg.out, results)
    if cfg.markdown:
        atomic_write_text(cfg.markdown, markdown(results) + "\n")
    return results


def _mib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.2f} MiB"


def _spread(s: dict[str, Any], fmt: str = ".2f", scale: float = 1.0) -> str:
    """median (min-max)."""
    return f"{s['median'] * scale:{fmt}} ({s['min'] * scale:{fmt}}-{s['max'] * scale:{fmt}})"


def markdown(r: dict[str, Any]) -> str:
    """llama-bench's table (one row per artifact and test) with the model's family, its quantization and, on
    the tg row, the fraction of the memory-bandwidth bound achieved; then load, TTFT, memory, energy and the
    roofline's arithmetic."""
    head = ["| model | family | quant | size | params | backend | threads | test | t/s | roofline |",
            "| --- | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
    rows, other, roof = [], [], []
    for a in r["results"]:
        params = f"{a['n_params'] / 1e6:.2f} M" if a["n_params"] else "-"
        backend = f"{a['backend']} CPU"
        fraction = (a["roofline"] or {}).get("fraction")
        for test, t in a["tests"].items():
            tps = t["tokens_per_s"]
            bound = f"{100 * fraction:.1f}%" if fraction is not None and test == f"tg{a['spec']['tg']}" else "-"
            rows.append(f"| {a['model']} | {a['family']} | {a['quantization']} | {_mib(a['model_bytes'])} | {params} "
                        f"| {backend} | {a['threads']} | {test} | {tps['median']:.2f} ± {tps['sd']:.2f} | {bound} |")
        ttft = (f"{_spread(a['ttft_ms'], '.1f')} @ {a['ttft_ms']['prompt_tokens']}" if a["ttft_ms"] else "-")
        energy = "; ".join(f"{k} {t['j_per_token']['median']:.4f}" for k, t in a["tests"].items() if t["j_per_token"])
        other.append(f"| {a['model']} | {a['backend']} | {_spread(a['load_s'], '.1f', 1000)} "
                     f"| {ttft} | {a['rss']['peak_bytes'] / 2**20:.1f} ({a['rss']['model_bytes'] / 2**20:+.1f}) "
                     f"| {energy or '-'} |")
        if a["roofline"]:
            roof.append(f"- {a['model']} tg{a['spec']['tg']}: {describe(a['roofline'])}")
    s = r["settings"]
    parts = ["\n".join(head + rows), "",
             "| model | backend | load ms | TTFT ms @ prompt tokens | peak RSS MiB (model) | energy J/token |",
             "| --- | --- | ---: | ---: | ---: | --- |", *other]
    if roof:
        parts += ["", "roofline (decode is memory-bound: bandwidth / bytes read per token):", *roof]
    unread = {a["energy"]["reason"] for a in r["results"] if not a["energy"]["readable"]}
    if unread:
        parts += ["", "energy " + "; ".join(sorted(unread))]
    if r["skipped"]:
        parts += ["", "not benched: " + "; ".join(f"{n}: {why}" for n, why in r["skipped"].items())]
    m = r["machine"]
    if m.get("emulated"):
        parts = [f"EMULATED: {m['emulated']}. These timings measure the emulator, not the device "
                 f"'{r['device']['name']}': no roofline fraction, no device speed; compare tokens, not t/s.", "",
                 *parts]
    parts += ["", f"device profile '{r['device']['name']}', {r['threads']} threads; t/s and ms are the median of "
                  f"{s['repeats']} runs after {s['warmup']} warm-up (± sd; min-max in brackets); "
                  f"{m['cpu_count']} CPUs, load average {m['loadavg_before'][0]:.2f} before, "
                  f"{m['loadavg_after'][0]:.2f} after"]
    return "\n".join(parts)
