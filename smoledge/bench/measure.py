"""Measure one artifact in this process: load, pp<N>, tg<N>, time to first token, peak RSS, energy. Torch-free.

`smoledge bench` (smoledge.bench.run) starts one fresh worker per artifact,

    echo '{"name": "model-q8_0.gguf", "backend": "llama.cpp", "path": "...", "threads": 2}' | \
        python -m smoledge.bench.measure

so that each artifact's peak RSS is its own (the high-water mark only ever grows within a process) and
one artifact's allocator state and page cache warm-up do not leak into the next one. The worker
writes JSON lines on its stdout: {"event": "progress", ...} while it runs, then one
{"event": "result", ...} or {"event": "error", ...}. Anything native code prints goes to stderr.

Every test runs `warmup` untimed times, then `repeats` timed times; prompts are random token ids
(speed does not depend on the text, as in llama-bench), the same for every backend:
  load      open the model (a fresh load each time; the OS page cache is warm after the warm-up)
  pp<N>     a new sequence of N prompt tokens in one call, through the greedy pick of the next token
  tg<N>     from a 1-token context, N single-token decodes, each fed the previous greedy pick; only
            the N decodes are timed (the 1-token prompt is not)
  ttft      a new sequence of `ttft_prompt` tokens until the first generated token is known:
            what a streaming client waits before its first token, less tokenization and HTTP
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from smoledge.bench.gguf_info import identity as gguf_identity
from smoledge.bench.gguf_info import read_gguf
from smoledge.bench.rapl import Rapl
from smoledge.bench.select import LLAMA_CPP, ONNXRUNTIME, kv_cache_bytes, onnx_files
from smoledge.config import ConfigError
from smoledge.errors import SmoledgeError


@dataclass
class MeasureSpec:
    name: str
    """Artifact name (model-q8_0.gguf, onnx-int8-avx2, ...)."""
    backend: str
    """llama.cpp or onnxruntime."""
    path: str
    """The .gguf file or the ONNX directory."""
    threads: int
    """Backend threads (the device profile's)."""
    pp: list[int] = field(default_factory=lambda: [128, 512])
    """Prompt lengths for the prompt-processing tests."""
    tg: int = 128
    """Tokens decoded in the generation test (0: no tg test)."""
    ttft_prompt: int = 256
    """Prompt tokens for the time-to-first-token test (0: no ttft test)."""
    repeats: int = 3
    """Timed runs per test."""
    warmup: int = 1
    """Untimed runs before them."""
    seed: int = 0
    """Seed of the random prompt ids."""

    @property
    def n_ctx(self) -> int:
        """Context the tests need: the longest prompt, or the tg run's 1 + tg tokens."""
        return max([*self.pp, self.ttft_prompt + 1 if self.ttft_prompt else 0, 1 + self.tg])

    @property
    def steps(self) -> int:
        """Progress steps: every run of every test, the loads included."""
        tests = 1 + len(self.pp) + (self.tg > 0) + (self.ttft_prompt > 0)
        return tests * (self.warmup + self.repeats)


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far. On Linux VmHWM of /proc/self/status: getrusage's
    ru_maxrss keeps the high-water mark of the image before execve, so a worker started from a big parent
    (pytest with torch loaded) would report the parent's peak. Elsewhere ru_maxrss (bytes on macOS)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # "VmHWM:   12345 kB"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def stat(xs: list[float]) -> dict[str, Any]:
    """Median and spread of repeated runs."""
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs),
            "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0, "runs": xs}


def hf_n_params(cfg: dict[str, Any]) -> int | None:
    """Parameters of a Llama-family decoder (SmolLM3) from its config.json; None without one.
    Embeddings, per layer q/k/v/o + gated MLP + two RMSNorms, the final norm, lm_head unless tied."""
    try:
        d, v, n_layers = cfg["hidden_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
        heads, ff = cfg["num_attention_heads"], cfg["intermediate_size"]
    except KeyError:
        return None  # no config.json, or not a Llama-family one: the table shows "-"
    kv_heads = cfg.get("num_key_value_heads") or heads
    hd = cfg.get("head_dim") or d // heads
    layer = d * heads * hd + 2 * d * kv_heads * hd + heads * hd * d + 3 * d * ff + 2 * d
    if cfg.get("attention_bias"):
        layer += heads * hd + 2 * kv_heads * hd + d
    if cfg.get("mlp_bias"):
        layer += 2 * ff + d
    head = 0 if cfg.get("tie_word_embeddings", True) else v * d
    return v * d + n_layers * layer + d + head


class LlamaCppRunner:
    """llama-cpp-python, driven as a server drives it: Llama.eval, then the greedy pick from the last logits."""

    backend = LLAMA_CPP

    def __init__(self, spec: MeasureSpec):
        import llama_cpp

        self.lib = llama_cpp
        self.spec = spec
        self.llm: Any = None

    def load(self) -> None:
        n_ctx = self.spec.n_ctx
        try:
            # n_batch = the whole context, so a pp<N> prompt is one Llama.eval batch; ubatch as llama-bench.
            self.llm = self.lib.Llama(model_path=self.spec.path, n_ctx=n_ctx, n_batch=n_ctx,
                                      n_ubatch=min(512, n_ctx), n_threads=self.spec.threads,
                                      n_threads_batch=self.spec.threads, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise SmoledgeError(f"llama.cpp could not load {self.spec.path} ({exc}); re-run `smoledge export`") from None
        self.n_vocab = self.llm.n_vocab()

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
            self.llm = None

    def _greedy(self) -> int:
        logits = np.ctypeslib.as_array(self.lib.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.n_vocab,))  # (V,)
        return int(logits.argmax())

    def prefill(self, ids: list[int]) -> int:
        self.llm.reset()
        self.llm.eval(ids)
        return self._greedy()

    def step(self, token: int) -> int:
        self.llm.eval([token])
        return self._greedy()

    def facts(self) -> dict[str, Any]:
        import ctypes

        lib, model = self.lib, self.llm.model
        desc = ctypes.create_string_buffer(256)
        lib.llama_model_desc(model, desc, 256)
        meta = self.llm.metadata
        heads = lib.llama_model_n_head(model)
        key_length = meta.get(f"{meta.get('general.architecture', '')}.attention.key_length")
        dims = {"num_hidden_layers": lib.llama_model_n_layer(model), "num_attention_heads": heads,
                "num_key_value_heads": lib.llama_model_n_head_kv(model), "hidden_size": lib.llama_model_n_embd(model),
                "head_dim": int(key_length) if key_length else None}
        return {"model_bytes": int(lib.llama_model_size(model)), "n_params": int(lib.llama_model_n_params(model)),
                "desc": desc.value.decode("utf-8", errors="replace"), "n_ctx_train": lib.llama_model_n_ctx_train(model),
                "n_vocab": self.n_vocab, "kv_bytes_per_position": kv_cache_bytes(dims, 1, LLAMA_CPP),
                **gguf_identity(read_gguf(self.spec.path)), "versions": {"llama_cpp_python": lib.__version__}}


def onnx_quantization(dec: Any) -> str:
    """fp32/fp16, int8-dynamic or int8-static: what smoledge's export recorded (smoledge_onnx.json, or the same
    keys in the graph's own metadata when the JSON was not copied along); for a graph exported elsewhere, int8
    for a model_quantized.onnx, else the KV cache's float type."""
    from smoledge.export.onnx import QUANTIZED_FILE, read_meta

    meta = read_meta(dec.dir)
    if "quantization" not in meta:
        props = dec.session.get_modelmeta().custom_metadata_map
        if "smoledge.quantization" in props:
            meta = {"quantization": json.loads(props["smoledge.quantization"])}
    recorded = meta.get("quantization")
    if isinstance(recorded, dict) and recorded.get("mode"):
        return f"int8-{recorded['mode']}"
    if "quantization" not in meta and dec.path.name == QUANTIZED_FILE:
        return "int8"
    return {"float32": "fp32", "float16": "fp16"}.get(np.dtype(dec.kv_dtype).name, np.dtype(dec.kv_dtype).name)


class OrtRunner:
    """onnxruntime through smoledge's torch-free OrtDecoder (what the server runs)."""

    backend = ONNXRUNTIME

    def __init__(self, spec: MeasureSpec):
        import onnxruntime

        self.ort = onnxruntime
        self.spec = spec
        self.dec: Any = None

    def load(self) -> None:
        from smoledge.serve.ort_decoder import OrtDecoder

        self.dec = OrtDecoder(self.spec.path, n_threads=self.spec.threads)

    def close(self) -> None:
        self.dec = None  # the session is freed with its last reference

    def prefill(self, ids: list[int]) -> int:
        return int(self.dec.prefill(ids)[-1].argmax())

    def step(self, token: int) -> int:
        return int(self.dec.step(token).argmax())

    def facts(self) -> dict[str, Any]:
        dec = self.dec
        # The cache's shape as the graph declares it (query heads only matter through head_dim, given here).
        dims = {"num_hidden_layers": dec.n_layers, "num_attention_heads": dec.n_kv_heads,
                "num_key_value_heads": dec.n_kv_heads, "head_dim": dec.head_dim}
        files = onnx_files(Path(self.spec.path))
        model_bytes = sum(p.stat().st_size for p in files)
        arch = str(dec.config.get("model_type") or "unknown")
        return {"model_bytes": model_bytes, "n_params": hf_n_params(dec.config),
                "desc": f"{arch} {dec.path.name}", "n_ctx_train": dec.n_ctx_train,
                "n_vocab": dec.n_vocab, "kv_bytes_per_position": kv_cache_bytes(dims, 1, ONNXRUNTIME),
                "architecture": arch, "family": arch, "quantization": onnx_quantization(dec), "tensor_types": None,
                # Every graph and weight byte: an untied embedding table, of which a token reads one row,
                # is counted in full, so the bound is a little low (smoledge.bench.roofline).
                "weight_bytes_per_token": model_bytes,
                "versions": {"onnxruntime": self.ort.__version__}}


RUNNERS = {LLAMA_CPP: LlamaCppRunner, ONNXRUNTIME: OrtRunner}


def measure(spec: MeasureSpec, progress: Callable[[str, int], None] = lambda text, done: None) -> dict[str, Any]:
    """Every test of `spec` on its artifact; `progress(text, runs done)` before each run."""
    if spec.backend not in RUNNERS:
        raise ConfigError(f"backend '{spec.backend}' is unknown; choose one of {', '.join(RUNNERS)}")
    runner = RUNNERS[spec.backend](spec)  # imports the backend: counted in the baseline, not the model
    baseline = peak_rss_bytes()
    rapl, rapl_why = Rapl.open()
    done = 0

    def clock(work: Callable[[], Any]) -> tuple[float, float | None]:
        """Seconds (and joules, where RAPL reads) that `work` takes."""
        e0 = rapl.read() if rapl else None
        t0 = time.perf_counter()
        work()
        seconds = time.perf_counter() - t0
        return seconds, (rapl.joules(e0, rapl.read()) if rapl and e0 is not None else None)

    def repeat(label: str, run: Callable[[], tuple[float, float | None]]) -> tuple[list[float], list[float] | None]:
        """`run` warmup + repeats times; the timed runs' seconds and joules (None without RAPL)."""
        nonlocal done
        seconds: list[float] = []
        joules: list[float] = []
        for r in range(spec.warmup + spec.repeats):
            progress(f"{spec.name} {label} {'warm-up' if r < spec.warmup else r - spec.warmup + 1}", done)
            s, j = run()
            if r >= spec.warmup:
                seconds.append(s)
                if j is not None:
                    joules.append(j)
            done += 1
        return seconds, (joules if rapl else None)

    def load() -> None:
        runner.close()
        runner.load()

    load_s, _ = repeat("load", lambda: clock(load))
    facts = runner.facts()
    if facts["n_ctx_train"] and spec.n_ctx > facts["n_ctx_train"]:
        runner.close()
        raise ConfigError(f"{spec.name}: the tests need {spec.n_ctx} tokens of context, the model was built for "
                          f"{facts['n_ctx_train']}; lower --pp, --tg or --ttft-prompt")
    prompt = np.random.default_rng(spec.seed).integers(0, facts["n_vocab"], size=spec.n_ctx).tolist()

    tests: dict[str, dict[str, Any]] = {}

    def record(key: str, n: int, seconds: list[float], joules: list[float] | None) -> None:
        tests[key] = {"n_tokens": n, "tokens_per_s": stat([n / s for s in seconds]), "seconds": stat(seconds),
                      "energy_j": stat(joules) if joules else None,
                      "j_per_token": stat([j / n for j in joules]) if joules else None}

    for n in spec.pp:
        record(f"pp{n}", n, *repeat(f"pp{n}", lambda n=n: clock(lambda: runner.prefill(prompt[:n]))))

    def tg_run() -> tuple[float, float | None]:
        token = runner.prefill(prompt[:1])  # the 1-token context: not timed

        def decodes() -> None:
            nonlocal token
            for _ in range(spec.tg):
                token = runner.step(token)

        return clock(decodes)

    if spec.tg:
        record(f"tg{spec.tg}", spec.tg, *repeat(f"tg{spec.tg}", tg_run))
    ttft = None
    if spec.ttft_prompt:
        seconds, _ = repeat("ttft", lambda: clock(lambda: runner.prefill(prompt[:spec.ttft_prompt])))
        ttft = {"prompt_tokens": spec.ttft_prompt, **stat([s * 1000 for s in seconds])}
    runner.close()
    peak = peak_rss_bytes()
    return {
        "artifact": spec.name, "backend": spec.backend, "path": spec.path, "threads": spec.threads,
        "n_ctx": spec.n_ctx, **facts,
        "load_s": stat(load_s), "tests": tests, "ttft_ms": ttft,
        "rss": {"baseline_bytes": baseline, "peak_bytes": peak, "model_bytes": peak - baseline},
        "energy": {"readable": rapl is not None, "reason": rapl_why,
                   "zones": [z.name for z in rapl.zones] if rapl else []},
        "loadavg": list(os.getloadavg()), "spec": asdict(spec),
    }


def main() -> int:
    """Worker: the spec as JSON on stdin, JSON lines on stdout (see the module docstring)."""
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # native code that prints to stdout must not corrupt the protocol

    def emit(event: dict[str, Any]) -> None:
        proto.write(json.dumps(event) + "\n")
        proto.flush()

    try:
        spec = MeasureSpec(**json.loads(sys.stdin.read()))
        result = measure(spec, lambda text, done: emit({"event": "progress", "text": text, "done": done}))
    except (SmoledgeError, ConfigError) as exc:
        emit({"event": "error", "kind": type(exc).__name__, "message": str(exc)})
        return 1
    emit({"event": "result", "result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
