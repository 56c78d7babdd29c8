"""Training-health monitor cost: training throughput with the monitors on (default interval) vs off.

    .venv/bin/python benchmarks/health_overhead.py [--steps 105 --warmup 5 --repeats 3 --threads 2 \
        --interval 50 --out health_overhead.json]

Shape: the quickstart teacher (ModelConfig preset "small": 4 layers x 128 wide, MLP 512, 4 heads / 2 KV heads,
tied embeddings, vocab 4096) with the quickstart pretrain settings (Muon, lr 1e-2, WSD, 8 x 256 tokens per
step, TensorBoard on), fp32 on the CPU (--device cuda: the CUDA defaults, bf16 and torch.compile).
Data: runs/quickstart/tokenizer/shards when that exists (the quickstart's own corpus), else a byte-level BPE
(vocab 4096) and shards built from ../shared/data/prose (as benchmarks/train_throughput.py does).

Runs: monitors off (health.interval 0) and on (health.interval --interval, HealthConfig's default unless
set), alternating off, on, off, on, ... for --repeats pairs, in this one process, each a fresh model from the
same seed on the same batches. Evaluation and periodic checkpoints are pushed past the end (both arms would
pay them alike; they are not what is measured).

Throughput of a run = tokens of its timed steps / their summed step time, where a step's time is the loop's
own (metrics.jsonl tokens_per_s: batch packing, forward, backward, clip, optimizer step and, on a measured
step, the hooks, the extra QK^T per layer, the SVDs, the weight copy, health.jsonl and its TensorBoard
scalars). Timed steps are those after --warmup; with the defaults that is steps 6..105, holding the measured
steps 50 and 100: exactly 1 in 50, the default interval. Overhead = 1 - median over pairs of (on / off).
Also reported: the extra time of a measured step over an unmeasured one in the "on" runs (median), from
which overhead(interval) ~= extra / (interval x unmeasured step) for any other interval.

Results: BENCHMARKS.md, "Training-health monitor cost (issue 10)".
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

QUICKSTART_SHARDS = REPO / "runs" / "quickstart" / "tokenizer" / "shards"
PROSE = REPO.parent / "shared" / "data" / "prose"
SEED = 1234


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from smoledge.train.config import HealthConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=105, help="optimizer steps per run")
    p.add_argument("--warmup", type=int, default=5, help="first steps left out of the timing")
    p.add_argument("--repeats", type=int, default=3, help="off/on pairs")
    p.add_argument("--interval", type=int, default=HealthConfig.interval, help="health.interval of the 'on' runs")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--shards", type=Path, default=None, help="token shards dir (default: the quickstart's, else built)")
    p.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = p.parse_args(argv)
    if args.warmup >= args.steps - args.interval:
        p.error(f"--warmup {args.warmup} leaves fewer timed steps than one --interval {args.interval}")
    return args


def shards_dir(args: argparse.Namespace, work: Path) -> Path:
    if args.shards is not None:
        return args.shards
    if (QUICKSTART_SHARDS / "train.meta.json").exists():
        return QUICKSTART_SHARDS
    from benchmarks.train_throughput import build_shards

    return build_shards(PROSE, 4096, work)


def one_run(args: argparse.Namespace, shards: Path, out: Path, interval: int) -> dict:
    from smoledge.tokenizer.shards import Shard
    from smoledge.model.build import hf_config, init_model
    from smoledge.model.config import ModelConfig
    from smoledge.progress import Progress
    from smoledge.train.config import HealthConfig, PretrainConfig
    from smoledge.train.data import PackedSampler, validation_batches
    from smoledge.train.loop import train
    from smoledge.train.metrics import METRICS, read_metrics

    train_shard = Shard.open(shards, "train")
    cfg = PretrainConfig(max_steps=args.steps, batch_size=8, seq_len=256, optimizer="muon", lr=1e-2, warmup_steps=min(20, args.steps // 2),
                         checkpoint_every=10 * args.steps, eval_every=10 * args.steps, eval_batches=1,
                         threads=args.threads, seed=SEED, device=args.device, health=HealthConfig(interval=interval))
    model = init_model(hf_config(ModelConfig(preset="small"), vocab_size=max(4096, train_shard.vocab_size)), seed=SEED)
    sampler = PackedSampler(train_shard, cfg.batch_size, cfg.seq_len, SEED)
    valid = validation_batches(Shard.open(shards, "valid"), cfg.batch_size, cfg.seq_len, 1)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    outcome = train(model, cfg, sampler, valid, out, Progress("bench", log_every_s=1e9), {"bench": "health"})
    wall = time.perf_counter() - t0
    tokens = cfg.batch_size * cfg.seq_len
    steps = {r["step"]: tokens / r["tokens_per_s"] for r in read_metrics(out / METRICS)
             if "tokens_per_s" in r and r["step"] > args.warmup}
    measured = [s for s in steps if interval and s % interval == 0]
    plain = [t for s, t in steps.items() if s not in measured]
    return {"interval": interval, "tokens_per_s": tokens * len(steps) / sum(steps.values()), "timed_steps": len(steps),
            "measured_steps": len(measured), "plain_step_s": statistics.median(plain),
            "measured_step_s": statistics.median([steps[s] for s in measured]) if measured else None,
            "wall_s": wall, "final_loss": outcome.final_train_loss}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(f"uptime: {os.popen('uptime').read().strip()}", flush=True)
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="health_overhead_") as tmp:
        work = Path(tmp)
        shards = shards_dir(args, work)
        print(f"shards: {shards}", flush=True)
        for rep in range(args.repeats):
            for interval in (0, args.interval):
                r = one_run(args, shards, work / f"run{rep}-{interval}", interval)
                r["pair"] = rep
                runs.append(r)
                label = "off" if interval == 0 else f"on (every {interval})"
                print(f"pair {rep} {label:>15}: {r['tokens_per_s']:8.1f} tok/s over {r['timed_steps']} steps "
                      f"({r['measured_steps']} measured), final loss {r['final_loss']:.4f}, wall {r['wall_s']:.0f} s",
                      flush=True)
    ratios = [on["tokens_per_s"] / off["tokens_per_s"] for off, on in zip(runs[0::2], runs[1::2])]
    ratio = statistics.median(ratios)
    on_runs = [r for r in runs if r["interval"]]
    extra = statistics.median([r["measured_step_s"] - r["plain_step_s"] for r in on_runs])
    plain = statistics.median([r["plain_step_s"] for r in on_runs])
    print(f"\non/off throughput ratio per pair: {', '.join(f'{x:.4f}' for x in ratios)}")
    print(f"median ratio {ratio:.4f} -> overhead {100 * (1 - ratio):+.2f}% at health.interval {args.interval} "
          f"(target <= 5%)")
    print(f"a measured step costs {extra * 1000:.0f} ms more than an unmeasured one ({plain * 1000:.0f} ms): "
          f"~{100 * extra / (args.interval * plain):.2f}% at interval {args.interval}, "
          f"~{100 * extra / (10 * plain):.1f}% at 10, ~{100 * extra / plain:.0f}% at 1")
    print(f"uptime: {os.popen('uptime').read().strip()}")
    if args.out:
        from smoledge.io import atomic_write_json

        atomic_write_json(args.out, {"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs,
                                     "ratios": ratios, "median_ratio": ratio, "overhead_pct": 100 * (1 - ratio),
                                     "measured_step_extra_s": extra, "plain_step_s": plain})


if __name__ == "__main__":
    main()
