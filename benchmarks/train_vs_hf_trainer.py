"""smoledge's training step against transformers.Trainer with SmolLM2's 49,152-token vocabulary (issue 20).

    .venv/bin/python benchmarks/train_vs_hf_trainer.py          # the measurement: ~8 min on 2 idle cores
    .venv/bin/python benchmarks/train_vs_hf_trainer.py --steps 3 --warmup 1 --rounds 1 --seq-len 64   # smoke, ~2 min
    .venv/bin/python benchmarks/train_vs_hf_trainer.py --sides smoledge,hf-trainer --rounds 3

The student: build/smollm2-student.yaml's shape as a SmolLM3 from smoledge.model.build.hf_config (GQA, tied
embeddings; NoPE every 4th layer, which the recipe turns off, changes no matmul), 20 layers x 384 hidden,
MLP 1024, 6 heads / 2 KV heads: 31.5 M non-embedding parameters, 30% of SmolLM2-135M's 106.2 M, with
SmolLM2's vocabulary of 49,152 tokens (18.9 M more in the tied embedding).
Every side trains it from the same init on the same rows: global batch B x T (8 x 256), AdamW (betas
0.9/0.95, weight decay 0.1, lr 1e-3 after a linear warm-up, grad-norm clip 1.0), fp32 and no torch.compile
(--precision / --compile change both for every side), the same torch thread count and number of steps.
Data: real prose (../shared/data/prose) tokenized by a byte-level BPE trained on it to the full 49,152
tokens (benchmarks/train_throughput.py's build_shards), packed by smoledge's PackedSampler; the Trainer
gets the same rows as plain causal sequences.

Sides, each in its own fresh process (so one side's allocator state or memory cannot help or hurt the
next), in a rotating order over --rounds:
  smoledge          smoledge.train.loop.train with its defaults: the LM head and the loss taken
                    `loss_chunk` (512) positions at a time (smoledge.train.fused_head), never whole logits;
                    lean RMSNorm and SwiGLU (smoledge.train.lean_ops).
  smoledge-stock    the same loop with lean_activations off: transformers' own RMSNorm and SwiGLU, which
                    keep more activations for backward (smoledge.train.lean_ops).
  smoledge-plain    the same loop with loss_chunk 0 and lean_activations off: the whole (B, T, V) logits
                    and the loss from them, and transformers' modules; what the loop did before issue 20.
  smoledge-distill  cached top-k distillation: Distill(None, alpha 0.5, T 1, forward KL, top_k 64), each
                    batch carrying 64 teacher ids + 65 log-probs per position, as the teacher cache gives
                    them (CachedBatches). The targets are made up (seeded per batch: spread-out ids, a random
                    distribution): what the loss costs does not depend on their values. Not the Trainer's
                    work (it has no distillation), so no ratio is a target for it.
  matmul-floor      not training: only the step's matmuls, each linear's forward, input-gradient and
                    weight-gradient products for B x T tokens (7 per layer and the LM head's 3, in the
                    precision's dtype, on preallocated operands), timed like a step. Every side computes
                    at least these, so B x T / this time bounds the tokens/s of any implementation of the
                    same step on this machine's BLAS (attention and everything elementwise come on top),
                    and its ratio to the Trainer bounds the speed-up available without computing less.
  attention-floor   matmul-floor plus each layer's attention forward and backward (SDPA on preallocated
                    B x heads x T x head_dim queries and the KV heads as they are, causal without a mask:
                    the cheapest kernel, the one the Trainer's unpacked rows take): the bound with the
                    second-largest cost of the step added, so what is left above it is elementwise work
                    (norms, SiLU, RoPE, casts, the loss's softmax, the optimizer).
  hf-trainer        transformers.Trainer as benchmarks/train_throughput.py runs it (adamw_torch, constant lr
                    after warm-up, no logging, checkpoints or evaluation).

tokens/s: B x T / the median timed step (the steps after --warmup), as in train_throughput.py: smoledge's
from the loop's own per-step timing in metrics.jsonl (batch + forward + backward + clip + optimizer), the
Trainer's from a callback around each of its steps. "mean" uses the summed step time.
Peak memory: VmHWM, the high-water mark of the side's process's resident set, read at its end: the fairest
single number, since each side is alone in its process and it counts everything resident (imports, model,
optimizer state, activations, the logits, the allocator's cache), whoever allocated it. "start" is VmRSS
just before the side builds its model (torch, transformers and smoledge imported, data open): the
difference is what training added. smoledge's peak also covers its final evaluation and checkpoint.
Page faults: the side's process's minor faults (getrusage) over its whole run, per step: every first touch of
a fresh page, which a buffer above glibc's 32 MiB mmap limit (the Trainer's logits, the head's chunk, the
embedding's gradient) is each time it is allocated.
Load: /proc/loadavg and a 1024^2 fp32 matmul probe just before each side starts; rounds run under other
load (probe far below the idle ~250 GFLOP/s, load average well above 0) do not compare.
The table keeps each side's best round by median step, and the peak memory of that round.

Targets (issue 20): smoledge >= 1.5x the Trainer's tokens/s, <= 0.7x its peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import train_throughput as tt  # noqa: E402  (shards, the Trainer run and the smoledge run are shared)

SIDES = ("smoledge", "smoledge-stock", "smoledge-plain", "smoledge-distill", "matmul-floor", "attention-floor",
         "hf-trainer")
# Spacing of the made-up teacher ids: 64 ids x 761 < 49,152, so a row's ids are distinct.
ID_STRIDE = 761


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=8, help="optimizer steps per side (warm-up included)")
    p.add_argument("--warmup", type=int, default=2, help="first steps left out of the timing")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads for every side")
    p.add_argument("--batch-size", type=int, default=8, help="packed rows per step")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per row")
    p.add_argument("--layers", type=int, default=20)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--mlp", type=int, default=1024)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--vocab", type=int, default=49152, help="model and tokenizer vocabulary (SmolLM2's)")
    p.add_argument("--top-k", type=int, default=64, help="teacher targets per position (smoledge-distill)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="every side: fp32 (issue 20's comparison), or bf16 autocast over fp32 weights")
    p.add_argument("--compile", choices=("off", "on"), default="off",
                   help="torch.compile for smoledge (compile: on) and the Trainer (torch_compile=True)")
    p.add_argument("--rounds", type=int, default=2, help="runs per side, rotating the order; best kept")
    p.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated subset of {','.join(SIDES)}")
    p.add_argument("--prose", type=Path, default=tt.PROSE, help="directory of *.txt prose for tokenizer and data")
    # Internal: run one side in this process and print its result as one JSON line.
    p.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.warmup >= args.steps - 1:
        p.error(f"--warmup {args.warmup} leaves no timed steps out of --steps {args.steps}")
    if args.top_k * ID_STRIDE >= args.vocab:
        p.error(f"--top-k {args.top_k} is too many made-up ids for --vocab {args.vocab}")
    unknown = set(args.sides.split(",")) - set(SIDES)
    if unknown:
        p.error(f"unknown sides {sorted(unknown)}; choose from {', '.join(SIDES)}")
    return args


def memory_mib(field: str) -> float:
    """VmHWM / VmRSS of this process, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


class WithTargets:
    """The sampler's batches with top-k teacher targets attached, in the teacher cache's form (a BatchSource)."""

    def __init__(self, sampler, vocab: int, top_k: int):
        self.sampler, self.vocab, self.top_k = sampler, vocab, top_k

    def batch(self, k: int):
        import torch

        b = self.sampler.batch(k)
        g = torch.Generator().manual_seed(k)
        rows, cols = b.input_ids.shape
        start = torch.randint(0, self.vocab, (rows, cols, 1), generator=g)
        ids = (start + ID_STRIDE * torch.arange(self.top_k)) % self.vocab                     # (B, T, k)
        logp = torch.log_softmax(3 * torch.randn(rows, cols, self.top_k + 1, generator=g), -1)  # (B, T, k + 1)
        return replace(b, teacher_ids=ids, teacher_logp=logp)


def matmul_floor(args: argparse.Namespace, attention: bool = False) -> dict:
    """The step's matmuls alone, or with each layer's attention (see the module docstring), timed per step like
    the training sides."""
    import torch
    import torch.nn.functional as F

    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    n, c, i, head_dim = args.batch_size * args.seq_len, args.hidden, args.mlp, args.hidden // args.heads
    kv = args.kv_heads * head_dim
    linears = [(c, c), (c, kv), (c, kv), (c, c), (c, i), (c, i), (i, c)] * args.layers + [(c, args.vocab)]
    g = torch.Generator().manual_seed(0)
    # (a, b) pairs: forward (N, in) @ (in, out), input grad (N, out) @ (out, in), weight grad (out, N) @ (N, in)
    ops = []
    for d_in, d_out in linears:
        x, w, gy = (torch.randn(*shape, generator=g).to(dtype) for shape in ((n, d_in), (d_in, d_out), (n, d_out)))
        ops += [(x, w), (gy, w.T), (gy.T, x)]
    q = torch.randn(args.batch_size, args.heads, args.seq_len, head_dim, generator=g).to(dtype)      # (B, H, T, D)
    q.requires_grad_(True)
    k, v = (torch.randn(args.batch_size, args.kv_heads, args.seq_len, head_dim, generator=g).to(dtype)
            .requires_grad_(True) for _ in range(2))                                            # (B, KV, T, D)
    times = []
    t_all = time.perf_counter()
    for _ in range(args.steps):
        t0 = time.perf_counter()
        for a, b in ops:
            torch.mm(a, b)
        for _ in range(args.layers if attention else 0):
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)      # (B, H, T, D)
            out.backward(out)
        times.append(time.perf_counter() - t0)
    return tt.timed(args, times[args.warmup:], time.perf_counter() - t_all, float("nan"))


def run_side(args: argparse.Namespace) -> dict:
    import torch
    import transformers  # noqa: F401  (both sides start with the same libraries resident)

    from smoledge.train.loop import train  # noqa: F401
    from smoledge.train.module import Distill

    torch.set_num_threads(args.threads)
    start = memory_mib("VmRSS")
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with tempfile.TemporaryDirectory(prefix=f"bench-{args.side}-") as tmp:
        work = Path(tmp)
        if args.side in ("matmul-floor", "attention-floor"):
            result = matmul_floor(args, attention=args.side == "attention-floor")
        elif args.side == "hf-trainer":
            result = tt.run_hf(args, work, doc_mask=False)
        elif args.side == "smoledge-stock":
            result = tt.run_smoledge(args, work, lean_activations=False)
        elif args.side == "smoledge-plain":
            result = tt.run_smoledge(args, work, loss_chunk=0, lean_activations=False)
        elif args.side == "smoledge-distill":
            objective = Distill(None, alpha=0.5, temperature=1.0, kind="forward", top_k=args.top_k)
            result = tt.run_smoledge(args, work, source=WithTargets(tt.sampler(args), args.vocab, args.top_k),
                                     objective=objective)
        else:
            result = tt.run_smoledge(args, work)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {**result, "start_mib": start, "peak_mib": memory_mib("VmHWM"), "faults_per_step": faults / args.steps}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.side:
        print("RESULT " + json.dumps({"side": args.side, **run_side(args)}), flush=True)
        return
    import torch

    from smoledge.train.metrics import measure_matmul_flops

    torch.set_num_threads(args.threads)
    sides = args.sides.split(",")
    results: dict[str, list[dict]] = {s: [] for s in sides}
    with tempfile.TemporaryDirectory(prefix="bench-vs-trainer-") as tmp:
        t0 = time.perf_counter()
        args.data = tt.build_shards(args.prose, args.vocab, Path(tmp))
        print(f"tokenizer ({args.vocab} tokens) + shards from {args.prose}: {time.perf_counter() - t0:.1f} s",
              flush=True)
        for rnd in range(args.rounds):
            for side in sides[rnd % len(sides):] + sides[: rnd % len(sides)]:
                load = float(Path("/proc/loadavg").read_text().split()[0])
                probe = measure_matmul_flops(torch.device("cpu"), torch.float32, seconds=0.5) / 1e9
                cmd = [sys.executable, __file__, "--side", side, "--data", str(args.data),
                       "--top-k", str(args.top_k)] + tt.forwarded(args)
                proc = subprocess.run(cmd, capture_output=True, text=True,
                                      env={**os.environ, "PYTHONPATH": str(REPO)})
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                if proc.returncode or not lines:
                    print(f"round {rnd + 1} {side}: FAILED (exit {proc.returncode})\n{proc.stderr[-3000:]}",
                          flush=True)
                    continue
                r = {**json.loads(lines[-1][len("RESULT "):]), "load": load, "probe_gflops": probe}
                results[side].append(r)
                print(f"round {rnd + 1} {side:17s} {r['tokens_per_s']:6.0f} tok/s median step, "
                      f"{r['mean_tokens_per_s']:6.0f} mean, peak {r['peak_mib']:6.0f} MiB "
                      f"(start {r['start_mib']:.0f}), "
                      f"wall {r['wall_s']:.1f} s, loss {r['final_loss']:.3f}, "
                      f"{r['faults_per_step'] / 1e3:.0f}k page faults a step; load {load:.2f}, "
                      f"probe {probe:.0f} GFLOP/s", flush=True)
    report(args, results)


def report(args: argparse.Namespace, results: dict[str, list[dict]]) -> None:
    best = {s: max(rs, key=lambda r: r["tokens_per_s"]) for s, rs in results.items() if rs}
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "?")
    print(f"\nshape: {args.layers} layers x {args.hidden} hidden, MLP {args.mlp}, {args.heads} heads / "
          f"{args.kv_heads} KV, vocab {args.vocab}; B={args.batch_size} T={args.seq_len}; {args.threads} threads on "
          f"{cpu}; {args.steps} steps, first {args.warmup} untimed; {args.precision}, compile {args.compile}; "
          f"best of {args.rounds} rounds by median step")
    ref = best.get("hf-trainer")
    print(f"| {'side':17s} | {'tokens/s':>8s} | {'vs Trainer':>10s} | {'mean tok/s':>10s} | {'peak MiB':>8s} "
          f"| {'vs Trainer':>10s} | {'start MiB':>9s} | {'final loss':>10s} | {'faults/step':>11s} | {'load':>5s} "
          f"| {'probe GFLOP/s':>13s} |")
    print("|" + "-" * 19 + "|" + "|".join("-" * (w - 1) + ":" for w in (10, 12, 12, 10, 12, 11, 12, 13, 7, 15)) + "|")
    for side, r in best.items():
        speed = f"{r['tokens_per_s'] / ref['tokens_per_s']:9.2f}x" if ref else f"{'-':>10s}"
        memory = f"{r['peak_mib'] / ref['peak_mib']:9.2f}x" if ref else f"{'-':>10s}"
        print(f"| {side:17s} | {r['tokens_per_s']:8.0f} | {speed} | {r['mean_tokens_per_s']:10.0f} "
              f"| {r['peak_mib']:8.0f} | {memory} | {r['start_mib']:9.0f} | {r['final_loss']:10.3f} "
              f"| {r['faults_per_step'] / 1e3:10.0f}k | {r['load']:5.2f} | {r['probe_gflops']:13.0f} |")
    if ref and "smoledge" in best:
        speed = best["smoledge"]["tokens_per_s"] / ref["tokens_per_s"]
        memory = best["smoledge"]["peak_mib"] / ref["peak_mib"]
        print(f"target tokens/s >= 1.5x the Trainer's: {'met' if speed >= 1.5 else 'missed'} ({speed:.2f}x); "
              f"peak memory <= 0.7x: {'met' if memory <= 0.7 else 'missed'} ({memory:.2f}x)")
    for floor, what in (("matmul-floor", "the step's matmuls alone"),
                        ("attention-floor", "the step's matmuls and attention alone")):
        if ref and floor in best:
            bound = best[floor]["tokens_per_s"] / ref["tokens_per_s"]
            print(f"{what} run at {bound:.2f}x the Trainer's tokens/s: no implementation of the same step gets "
                  f"further on this machine")


if __name__ == "__main__":
    main()
