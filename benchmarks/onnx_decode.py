"""Decode speed (tokens/s): ONNX Runtime fp32 and dynamic int8 against PyTorch eager, in one run.

    .venv/bin/python benchmarks/onnx_decode.py [--threads 2 --prompt-tokens 32 --new-tokens 128 \
        --repeats 3 --int8-targets avx2 --profile --out runs/bench/onnx_decode.json]
    .venv/bin/python benchmarks/onnx_decode.py --hf runs/quickstart/export/hf   # an existing HF model dir

The model: by default a random-init SmolLM3 with SmolLM2-135M's shape, built the way smoledge
builds its students (ModelConfig(preset="smollm2-135m") -> smoledge.model.build.hf_config ->
init_model: 30 layers, hidden 576, 9 heads, 3 KV heads, MLP 1536, tied embeddings, NoPE every
4th layer), vocab 49152, saved with save_pretrained under --work. Decode speed does not depend
on what the weights are, so random weights measure the same thing a trained model would.
--hf DIR benchmarks an existing model dir instead (its tokenizer, when it has one, encodes the
prompt; otherwise the prompt is seeded random ids).

Engines, all in this process, all float32 activations, all --threads compute threads:
  eager      transformers AutoModelForCausalLM, model.generate(do_sample=False, use_cache=True)
             (torch.set_num_threads(threads), inference_mode).
  ort-fp32   smoledge.export.onnx.export_onnx (optimum-onnx, text-generation-with-past) loaded as
             optimum's ORTModelForCausalLM with SessionOptions(intra_op_num_threads=threads,
             inter_op_num_threads=1, sequential); the same generate() call.
  ort-int8-T smoledge.export.onnx.quantize_onnx(..., T): dynamic int8 (weights int8 ahead of
             time, activations quantized per call), one engine per --int8-targets entry.

Timing: every run generates exactly N new tokens (min_new_tokens = max_new_tokens = N,
eos_token_id=None) after a P-token prompt. Decode tokens/s = (N - 1) / (t(N new) - t(1 new)):
the difference cancels the prompt pass and generate()'s fixed costs, leaving N - 1 single-token
steps through the KV cache. One warm-up generate(N) per engine (its tokens are the correctness
check), then --repeats rounds; each round times every engine once, in a rotating order, so a
burst of someone else's load spreads over the engines instead of landing on one. The table
shows the median round; "prefill ms" is the median t(1 new) (prompt pass + first token).
"others" is the most cores other processes kept busy during any of that engine's timed rounds
(from /proc/stat): anything above ~0.1 means the row was measured under someone else's load.

Load: run it on an idle machine (--wait-idle S waits up to S seconds before each timed
measurement for other processes to go quiet). With --threads equal to the core count, anyone
else's load parks one of the threads and every parallel region then waits a scheduler slice
for it: on the 2-core dev box with one other busy process, eager (hundreds of OpenMP regions per
token) decoded ~20x slower (~1 tok/s instead of ~22) and ORT ~3x slower, so the ratios under
load say nothing about an idle device. Idle, the default run takes ~4.5 min (setup ~1 min:
build, export, quantize; warm-up and checks, timed rounds ~1 min, --profile ~1 min).

Correctness, in the same run: ort-fp32's greedy tokens must equal eager's (a mismatch is
reported with its position and eager's top-2 logit margin there: random weights make near-ties
likely); int8's agreement with eager is reported, not required: "same" = positions where the
greedy tokens match, "first diff" = the first new token that differs (the contexts differ after
it), "top-1 tf" = top-1 agreement of the logits with eager's on eager's own sequence
(teacher-forced, so every position compares the same context), "max |dlogit|" its largest
logit difference.

--profile runs one more generate(N) per ONNX engine with ORT's profiler on and prints the
share of kernel time per op type (which kernels int8 actually runs: MatMulInteger /
DynamicQuantizeMatMul vs fp32 MatMul).

Results: BENCHMARKS.md, "Decode speed: ONNX Runtime int8 vs PyTorch eager".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VOCAB = 49152  # SmolLM2's vocabulary size
SEED = 1234
PROMPT_TEXT = ("The quick brown fox jumps over the lazy dog. Le renard brun saute par-dessus le chien "
               "paresseux. El zorro marrón salta sobre el perro perezoso. Der braune Fuchs springt. ")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hf", type=Path, default=None, help="benchmark this HF model dir instead of a random 135M")
    ap.add_argument("--work", type=Path, default=None, help="where the model and its ONNX files go (default: a temp dir)")
    ap.add_argument("--threads", type=int, default=2, help="compute threads for every engine")
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--int8-targets", default="avx2", help="comma-separated quantize_onnx targets")
    ap.add_argument("--ort-no-spin", action="store_true",
                    help="stop ORT's idle threads from spinning (session.intra_op.allow_spinning=0)")
    ap.add_argument("--profile", action="store_true", help="print ORT's kernel time per op type")
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                    help="before each timed measurement wait up to this long for other processes to go idle")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "onnx_decode.json")
    args = ap.parse_args(argv)
    if args.new_tokens < 2 or args.prompt_tokens < 1 or args.repeats < 1 or args.threads < 1:
        ap.error("need --new-tokens >= 2, --prompt-tokens >= 1, --repeats >= 1, --threads >= 1")
    from smoledge.export.onnx import INT8_TARGETS

    unknown = set(args.int8_targets.split(",")) - set(INT8_TARGETS)
    if unknown:  # before the minute of export, not after it
        ap.error(f"--int8-targets {', '.join(sorted(unknown))} unknown; choose from {', '.join(INT8_TARGETS)}")
    return args


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, of this process) so far: their difference over the
    timed rounds is what other processes took from us (a load average lags by a minute)."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    own = os.times()
    return (sum(fields[:8]) - idle) / ticks, own.user + own.system


def load_mark() -> tuple[float, float, float]:
    return (*cpu_seconds(), time.perf_counter())


def others_cores(mark: tuple[float, float, float]) -> float:
    """Cores other processes kept busy, on average, since `mark` (a load_mark())."""
    busy, own, wall = load_mark()
    return max(0.0, (busy - mark[0]) - (own - mark[1])) / max(wall - mark[2], 1e-6)


def wait_idle(max_s: float, threshold: float = 0.25) -> float:
    """Wait (up to max_s) until other processes use under `threshold` cores over a 1 s window;
    the seconds waited. Returns anyway at the limit: the measurement records the load it ran under."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < max_s:
        mark = load_mark()
        time.sleep(1.0)
        if others_cores(mark) < threshold:
            break
    return time.perf_counter() - t0


def versions() -> dict[str, str]:
    return {name: metadata.version(name)
            for name in ("torch", "onnxruntime", "transformers", "optimum", "optimum-onnx", "onnx")}


def build_random_model(out: Path) -> Path:
    """SmolLM2-135M's shape through smoledge's own builder, random weights, saved as an HF dir."""
    from smoledge.model.build import hf_config, init_model, num_params
    from smoledge.model.config import ModelConfig

    model = init_model(hf_config(ModelConfig(preset="smollm2-135m"), vocab_size=VOCAB), seed=SEED)
    model.save_pretrained(out)
    print(f"random smollm2-135m-shaped SmolLM3: {num_params(model) / 1e6:.1f}M params -> {out}")
    return out


def prompt_ids(hf_dir: Path, n: int, vocab: int) -> tuple[list[int], str]:
    """n prompt ids: the model's tokenizer on real text when it has one, else seeded random ids."""
    import numpy as np

    # Only a dir that ships a tokenizer: AutoTokenizer on a bare model dir fails in odd ways.
    if (hf_dir / "tokenizer.json").exists():
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(hf_dir)
        ids = tok.encode(PROMPT_TEXT * (1 + n // 8), add_special_tokens=False)
        if len(ids) >= n:
            return ids[:n], "text"
    # Ids 0..2 are specials in smoledge's tokenizers; keep the prompt to ordinary tokens.
    return np.random.default_rng(SEED).integers(3, vocab, size=n).tolist(), "random ids"


def session_options(args: argparse.Namespace, profile_prefix: str | None = None):
    """The same thread budget as torch: `threads` intra-op threads (the caller's thread is one
    of them), no inter-op parallelism, so ORT cannot run two nodes at once on top of that."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if args.ort_no_spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return so


def load_ort_threads(onnx_dir: Path, so):
    """smoledge.export.onnx.load_ort with session options (load_ort takes none): the same
    file-name choice, so the benchmark loads exactly what the export stage ships."""
    from optimum.onnxruntime import ORTModelForCausalLM

    from smoledge.export.onnx import model_file

    return ORTModelForCausalLM.from_pretrained(onnx_dir, file_name=model_file(onnx_dir), session_options=so)


def generate(model, prompt: list[int], n: int) -> tuple[list[int], float]:
    """Greedy decode of exactly n new tokens; (new ids, seconds)."""
    import torch

    ids = torch.tensor([prompt], dtype=torch.long)  # (1, P)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, use_cache=True,
                             max_new_tokens=n, min_new_tokens=n, eos_token_id=None, pad_token_id=0)  # (1, P + n)
    dt = time.perf_counter() - t0
    new = out[0, len(prompt):].tolist()
    assert len(new) == n, f"generate() returned {len(new)} new tokens, asked for {n}"
    return new, dt


def logits(model, ids: list[int]):
    """(T, V) float32 logits of one forward pass (eager or ORT) over ids."""
    import torch

    x = torch.tensor([ids], dtype=torch.long)  # (1, T)
    with torch.inference_mode():
        out = model(input_ids=x, attention_mask=torch.ones_like(x)).logits  # (1, T, V)
    return out[0].float().numpy()


def agreement(model, ref_model, prompt: list[int], ref_tokens: list[int], got_tokens: list[int]) -> dict:
    """Greedy-token agreement with eager, plus teacher-forced logits on eager's sequence."""
    import numpy as np

    from smoledge.export.parity import compare_logits

    seq = prompt + ref_tokens
    ref = logits(ref_model, seq)[len(prompt) - 1: -1]  # (N, V): the logits that chose each new token
    got = logits(model, seq)[len(prompt) - 1: -1]  # (N, V)
    tf = compare_logits(ref, got)
    same = [a == b for a, b in zip(ref_tokens, got_tokens)]
    first = next((i for i, s in enumerate(same) if not s), None)
    result = {"greedy_identical": all(same), "greedy_same_fraction": sum(same) / len(same),
              "first_diff": first, "teacher_forced_top1": tf["top1_agreement"],
              "teacher_forced_max_abs_diff": tf["max_abs_diff"], "logit_scale": tf["logit_scale"]}
    if first is not None:
        # Eager's own top-2 margin where they split: a tiny one means a near-tie, not a wrong graph.
        top2 = np.sort(ref[first])[-2:]
        result["eager_top2_margin_at_first_diff"] = float(top2[1] - top2[0])
    return result


def profile_ops(model, prompt: list[int], n: int) -> dict[str, float]:
    """Share of ORT kernel time per op type over one generate(n) (the session was built with profiling)."""
    generate(model, prompt, n)
    trace = Path(model.session.end_profiling())
    per_op: dict[str, float] = defaultdict(float)
    for event in json.loads(trace.read_text()):
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]  # microseconds
    total = sum(per_op.values()) or 1.0
    trace.unlink()
    return {op: us / total for op, us in sorted(per_op.items(), key=lambda kv: -kv[1])}


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    args = parse_args()
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from smoledge.export.onnx import export_onnx, quantize_onnx
    from smoledge.io import atomic_write_json

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    load_start = os.getloadavg()
    mark = load_mark()
    time.sleep(2.0)
    if (busy := others_cores(mark)) > 0.5:
        print(f"WARNING: other processes are using {busy:.1f} cores right now; with --threads {args.threads} on "
              f"{os.cpu_count()} cores the numbers (eager's most) will be far too low and the run slow. Rerun when "
              "the machine is idle, or pass --wait-idle.", flush=True)
    tmp = None
    if args.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="onnx_decode_")
        work = Path(tmp.name)
    else:
        work = args.work
        work.mkdir(parents=True, exist_ok=True)

    # 1. The model and its ONNX files (setup, not timed in the table; reported as wall seconds).
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    hf_dir = args.hf if args.hf is not None else build_random_model(work / "hf")
    phases["build_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    onnx_dir = export_onnx(hf_dir, work / "onnx")
    phases["export_s"] = time.perf_counter() - t0
    dirs = {"ort-fp32": onnx_dir}
    for target in args.int8_targets.split(","):
        t0 = time.perf_counter()
        dirs[f"ort-int8-{target}"] = quantize_onnx(onnx_dir, work / f"onnx-int8-{target}", target)
        phases[f"quantize_{target}_s"] = time.perf_counter() - t0

    config = AutoConfig.from_pretrained(hf_dir)
    prompt, prompt_kind = prompt_ids(hf_dir, args.prompt_tokens, config.vocab_size)
    t0 = time.perf_counter()
    eager = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    engines = {"eager": eager}
    for name, d in dirs.items():
        engines[name] = load_ort_threads(d, session_options(args))
    sizes = {"eager": dir_mb(hf_dir), **{name: dir_mb(d) for name, d in dirs.items()}}
    phases["load_s"] = time.perf_counter() - t0

    # 2. Warm-up: first-call costs (allocations, ORT's lazy kernel setup), and the tokens to compare.
    t0 = time.perf_counter()
    tokens = {name: generate(m, prompt, args.new_tokens)[0] for name, m in engines.items()}
    checks = {name: agreement(engines[name], eager, prompt, tokens["eager"], tokens[name])
              for name in engines if name != "eager"}
    phases["warmup_and_checks_s"] = time.perf_counter() - t0

    # 3. Timed rounds, rotating the engine order each round.
    names = list(engines)
    rounds: dict[str, list[dict]] = {name: [] for name in names}
    timed = load_mark()
    for r in range(args.repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            waited = wait_idle(args.wait_idle) if args.wait_idle else 0.0
            mark = load_mark()
            _, t1 = generate(engines[name], prompt, 1)
            _, tn = generate(engines[name], prompt, args.new_tokens)
            rounds[name].append({"t1_s": t1, "tN_s": tn, "decode_tok_s": (args.new_tokens - 1) / (tn - t1),
                                 "others_cores": others_cores(mark), "waited_s": waited})
        print(f"round {r + 1}/{args.repeats}: " + "  ".join(
            f"{n} {rounds[n][-1]['decode_tok_s']:.1f} (others {rounds[n][-1]['others_cores']:.2f})" for n in names))
    timed_s, timed_others = time.perf_counter() - timed[2], others_cores(timed)

    results = {}
    for name in names:
        rates = [x["decode_tok_s"] for x in rounds[name]]
        results[name] = {"decode_tok_s": statistics.median(rates), "decode_tok_s_min": min(rates),
                         "decode_tok_s_max": max(rates), "prefill_ms": 1e3 * statistics.median(x["t1_s"] for x in rounds[name]),
                         "others_cores_max": max(x["others_cores"] for x in rounds[name]),
                         "size_mb": sizes[name], "rounds": rounds[name], **checks.get(name, {})}

    profiles = {}
    if args.profile:
        t0 = time.perf_counter()
        for name, d in dirs.items():
            model = load_ort_threads(d, session_options(args, profile_prefix=str(work / f"profile-{name}")))
            profiles[name] = profile_ops(model, prompt, args.new_tokens)
        phases["profile_s"] = time.perf_counter() - t0
    load_end = os.getloadavg()

    # 4. Report.
    base = results["eager"]["decode_tok_s"]
    print(f"\nmodel: {hf_dir if args.hf else 'random smollm2-135m shape'} ({config.num_hidden_layers} layers, "
          f"hidden {config.hidden_size}, vocab {config.vocab_size}); prompt {args.prompt_tokens} {prompt_kind}, "
          f"{args.new_tokens} new tokens, median of {args.repeats}")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {args.threads} threads; "
          f"load avg {load_start[0]:.2f} at start, {load_end[0]:.2f} at end; other processes used "
          f"{timed_others:.2f} cores on average during the {timed_s:.0f} s of timed rounds")
    print(f"{'engine':<21} {'decode tok/s':>12} {'(min-max)':>14} {'vs eager':>8} {'prefill ms':>10} {'MB':>7} {'others':>6}   "
          f"{'same':>5} {'first diff':>10} {'top-1 tf':>8} {'max |dlogit|':>12}")
    for name in names:
        x = results[name]
        spread = f"{x['decode_tok_s_min']:.1f}-{x['decode_tok_s_max']:.1f}"
        row = (f"{name:<21} {x['decode_tok_s']:12.1f} {spread:>14} {x['decode_tok_s'] / base:7.2f}x "
               f"{x['prefill_ms']:10.1f} {x['size_mb']:7.1f} {x['others_cores_max']:6.2f}")
        if name != "eager":
            first = "-" if x["first_diff"] is None else str(x["first_diff"])
            row += (f"   {x['greedy_same_fraction']:5.2f} {first:>10} {x['teacher_forced_top1']:8.3f} "
                    f"{x['teacher_forced_max_abs_diff']:12.2e}")
        print(row)
    fp32 = results["ort-fp32"]
    print(f"ort-fp32 greedy tokens == eager: {fp32['greedy_identical']}"
          + ("" if fp32["greedy_identical"] else
             f" (first diff at {fp32['first_diff']}, eager top-2 margin there {fp32['eager_top2_margin_at_first_diff']:.2e})"))
    print("phases: " + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in phases.items()) + f", timed rounds {timed_s:.0f} s")
    for name, shares in profiles.items():
        top = ", ".join(f"{op} {share:.0%}" for op, share in list(shares.items())[:8])
        print(f"ORT kernel time, {name}: {top}")

    record = {
        "model": {"hf_dir": str(hf_dir) if args.hf else None, "kind": "trained/given" if args.hf else "random-init",
                  "layers": config.num_hidden_layers, "hidden": config.hidden_size, "heads": config.num_attention_heads,
                  "kv_heads": config.num_key_value_heads, "intermediate": config.intermediate_size,
                  "vocab": config.vocab_size},
        "settings": {"threads": args.threads, "prompt_tokens": args.prompt_tokens, "prompt_kind": prompt_kind,
                     "new_tokens": args.new_tokens, "repeats": args.repeats, "int8_targets": args.int8_targets.split(","),
                     "ort_allow_spinning": not args.ort_no_spin, "wait_idle_s": args.wait_idle,
                     "seed": SEED},
        "machine": {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads_used": args.threads,
                    "loadavg_start": load_start, "loadavg_end": load_end,
                    "other_processes_cores_during_timing": timed_others, "timed_rounds_s": timed_s, "platform": platform.platform()},
        "versions": versions(),
        "phase_s": phases,
        "results": results,
        "ort_kernel_share": profiles,
        "tokens": {"prompt": prompt, **tokens},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, record)
    print(f"wrote {args.out}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
