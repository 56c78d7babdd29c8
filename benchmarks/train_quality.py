"""Training quality at equal tokens: Muon vs AdamW, and multi-token prediction on vs off.

    .venv/bin/python benchmarks/train_quality.py optimizer [--steps 300 --sweep-steps 0 \
        --lrs 3e-3,6e-3,1e-2,2e-2 --horizons 0.8 --threads 2 --out optimizer.json]
    .venv/bin/python benchmarks/train_quality.py optimizer --sweep-steps 100 \
        --lrs 1e-3,3e-3,6e-3,1e-2,2e-2,4e-2        # the wider, shorter sweep that chose that bracket
    .venv/bin/python benchmarks/train_quality.py mtp [--steps 300 --optimizer adamw --lr 6e-3 \
        --mtp-weight 0.3 --threads 2 --out mtp.json]

Both train the quickstart teacher (build/quickstart.yaml: preset "small", 4 layers x 128 wide,
4 heads / 2 KV heads, vocab 4096) on the quickstart corpus with smoledge's own loop
(smoledge.train.loop.train), with the quickstart's pretrain section (batch 8 x 256 tokens, WSD:
20 warm-up steps, the last 10% a linear decay to 0, weight decay 0.1, clip 1.0, seed 1234) except
for what each benchmark varies. Every run starts from the same init (same seed) and sees the same
batches in the same order (PackedSampler: batch k is a function of (seed, k)). The validation loss
(next-token cross-entropy on the same fixed --eval-batches batches of the valid shard) is measured
before training and every --eval-every steps. The data is runs/quickstart/tokenizer/shards; if it is
missing the script first builds the recipe up to train-tokenizer (about 20 s).

optimizer: an lr sweep, then the comparison. Sweep: for each lr in --lrs, one AdamW and one Muon
run of --sweep-steps steps, each with the whole WSD schedule over those steps (Muon on the hidden 2-D
matrices with adjust_lr_fn="match_rms_adamw", so its lr is on AdamW's scale; AdamW on embeddings and
norms). The best lr of each optimizer (lowest final validation loss) is then trained for --steps.
L* = AdamW's final validation loss there. For each full-length run: the first step at which its
validation curve reaches L*, linearly interpolated between the two evaluations around the crossing,
and that step / --steps (the target for Muon is <= 0.8). A crossing before the last decay_fraction of
a run scheduled for --steps steps happens at full lr, before the decay that lowers the loss most,
so as a second reading the best Muon lr is also trained with the whole schedule compressed to each fraction in --horizons (WSD over round(f x steps)
steps): its final loss against L* needs no interpolation.

mtp: one run each with mtp_heads 0, 2 parallel heads (Gloeckle et al.) and 2 sequential
DeepSeek-V3 modules, weight --mtp-weight, at --lr with --optimizer. The reported validation loss is
next-token only, so the heads are judged by what they do to the model that is exported.

Results: BENCHMARKS.md, "Muon vs AdamW (issue 4)" and "Multi-token prediction (issue 4)".
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@dataclass
class Corpus:
    """The quickstart recipe and its tokenized shards: what every run trains and validates on."""
    recipe: Any
    train: Any
    valid: Any
    vocab_size: int


def load_corpus(recipe_path: Path, runs_root: Path) -> Corpus:
    from transformers import AutoTokenizer

    from smoledge.tokenizer.shards import Shard
    from smoledge.recipe import load_recipe
    from smoledge.runs import build

    recipe = load_recipe(recipe_path)
    root = runs_root / recipe.name / "tokenizer"
    if not (root / "shards" / "valid.meta.json").exists():
        build(recipe, runs_root=runs_root, until="train-tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
    return Corpus(recipe, Shard.open(root / "shards", "train"), Shard.open(root / "shards", "valid"), len(tokenizer))


def train_run(corpus: Corpus, args: argparse.Namespace, name: str, **changes: Any) -> dict[str, Any]:
    """One training run of the teacher: the recipe's pretrain section with `changes` applied.

    Returns its validation curve [(step, val_loss)] from step 0, its training curve and timings."""
    import torch

    from smoledge.errors import SmoledgeError
    from smoledge.model.build import hf_config, init_model
    from smoledge.progress import Progress
    from smoledge.train.data import PackedSampler, mixture_weights, validation_batches
    from smoledge.train.loop import evaluate, train
    from smoledge.train.metrics import METRICS, read_metrics

    base = corpus.recipe.pretrain
    cfg = replace(base, eval_every=args.eval_every, eval_batches=args.eval_batches, threads=args.threads,
                  tensorboard=False, device="cpu", **changes)
    model = init_model(hf_config(corpus.recipe.teacher, vocab_size=corpus.vocab_size), seed=cfg.seed)
    weights = mixture_weights(corpus.train, corpus.recipe.data)
    sampler = PackedSampler(corpus.train, cfg.batch_size, cfg.seq_len, cfg.seed, weights)
    valid = validation_batches(corpus.valid, cfg.batch_size, cfg.seq_len, cfg.eval_batches)
    if args.threads:
        torch.set_num_threads(args.threads)
    start_loss = evaluate(model, valid)  # step 0, so a crossing before the first evaluation interpolates too
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="smoledge-quality-") as tmp:
        try:
            outcome = train(model, cfg, sampler, valid, Path(tmp), Progress(name, log_every_s=30.0),
                            {"bench": "train_quality", "run": name})
            final_val, rollbacks, failure = outcome.val_loss, outcome.rollbacks, None
        except SmoledgeError as exc:  # too many rollbacks: an lr that diverges is a sweep result, not a crash
            final_val, rollbacks, failure = None, cfg.max_rollbacks + 1, str(exc)
        rows = read_metrics(Path(tmp) / METRICS)
    wall = time.perf_counter() - t0
    curve = [(0, start_loss)] + [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    steps = [r for r in rows if "tokens_per_s" in r]
    result = {
        "name": name, "optimizer": cfg.optimizer, "lr": cfg.lr, "steps": cfg.max_steps,
        "mtp_heads": cfg.mtp_heads, "mtp_kind": cfg.mtp_kind, "mtp_weight": cfg.mtp_weight,
        "final_val_loss": final_val, "rollbacks": rollbacks, "failure": failure,
        "tokens_per_s": sum(r["tokens_per_s"] for r in steps) / max(len(steps), 1), "wall_s": wall,
        "load_avg_1m": os.getloadavg()[0], "val_curve": curve,
        "train_curve": [{k: r[k] for k in ("step", "loss", "ce", "mtp", "lr") if k in r} for r in rows],
    }
    print(f"  {name}: final val {loss_text(final_val)}, {rollbacks} rollbacks, {result['tokens_per_s']:.0f} tok/s, "
          f"{wall:.0f} s" + (f" ({failure})" if failure else ""), file=sys.stderr, flush=True)
    return result


def steps_to_reach(curve: list[tuple[int, float]], target: float) -> float | None:
    """First step at which the curve is <= target, interpolated linearly between evaluations."""
    for (s0, v0), (s1, v1) in zip(curve, curve[1:]):
        if v1 <= target:
            if v0 <= target:
                return float(s0)
            return s0 + (v0 - target) / (v0 - v1) * (s1 - s0)
    return None


def val_at(curve: list[tuple[int, float]], step: int) -> float | None:
    """The validation loss measured at `step` (an evaluation step); None if the run stopped before it."""
    return dict(curve).get(step)


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """A Markdown table: pasted as-is into BENCHMARKS.md."""
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def loss_text(loss: float | None) -> str:
    return "diverged" if loss is None else f"{loss:.4f}"


def final_loss(run: dict[str, Any]) -> float:
    """For ranking: a run that diverged ranks last."""
    return math.inf if run["final_val_loss"] is None else run["final_val_loss"]


def lr_text(lr: float) -> str:
    return f"{lr:.0e}".replace("e-0", "e-")


# ----------------------------------------------------------------------------- benchmarks

def bench_optimizer(corpus: Corpus, args: argparse.Namespace) -> dict[str, Any]:
    sweep_steps = args.sweep_steps or args.steps
    sweep = {opt: [train_run(corpus, args, f"{opt} lr {lr_text(lr)} x{sweep_steps}", optimizer=opt, lr=lr,
                             max_steps=sweep_steps) for lr in args.lrs] for opt in ("adamw", "muon")}
    best_lr = {opt: min(rs, key=final_loss)["lr"] for opt, rs in sweep.items()}
    print(f"\nlr sweep, {sweep_steps} steps each (the whole WSD schedule over {sweep_steps} steps)\n")
    print_table(["optimizer", "lr", "final val loss", "rollbacks"],
                [[r["optimizer"] + (" (best)" if r["lr"] == best_lr[r["optimizer"]] else ""), lr_text(r["lr"]),
                  loss_text(r["final_val_loss"]), str(r["rollbacks"])] for rs in sweep.values() for r in rs])

    if sweep_steps == args.steps:
        full = [r for opt in ("adamw", "muon") for r in sweep[opt]]
    else:
        full = [train_run(corpus, args, f"{opt} lr {lr_text(best_lr[opt])}", optimizer=opt, lr=best_lr[opt],
                          max_steps=args.steps) for opt in ("adamw", "muon")]
    best = {opt: next(r for r in full if r["optimizer"] == opt and r["lr"] == best_lr[opt]) for opt in best_lr}
    target = best["adamw"]["final_val_loss"]
    if target is None:
        raise SystemExit("every AdamW run diverged: there is no L* to reach; sweep lower --lrs")
    horizon = [train_run(corpus, args, f"muon lr {lr_text(best_lr['muon'])} x{round(f * args.steps)}",
                         optimizer="muon", lr=best_lr["muon"], max_steps=round(f * args.steps))
               for f in args.horizons]

    print(f"\nL* = final validation loss of AdamW at its best lr ({lr_text(best_lr['adamw'])}) after {args.steps} "
          f"steps = {target:.4f}; steps to reach it interpolated linearly between evaluations "
          f"(every {args.eval_every} steps)\n")
    table = []
    for r in full + horizon:
        reached = steps_to_reach(r["val_curve"], target)
        r["steps_to_target"] = reached
        r["ratio"] = None if reached is None else reached / args.steps
        table.append([r["optimizer"], lr_text(r["lr"]), str(r["steps"]), loss_text(r["final_val_loss"]),
                      "not reached" if reached is None else f"{reached:.0f}",
                      "-" if reached is None else f"{reached / args.steps:.2f}x"])
    print_table(["optimizer", "lr", "steps scheduled", "final val loss", "steps to reach L*",
                 f"ratio (/ {args.steps})"], table)
    return {"target_loss": target, "best_lr": best_lr, "sweep_steps": sweep_steps,
            "sweep_runs": [r for rs in sweep.values() for r in rs], "runs": full, "horizon_runs": horizon}


MTP_VARIANTS = (("off", 0, "parallel"), ("2 parallel", 2, "parallel"), ("2 sequential", 2, "sequential"))


def bench_mtp(corpus: Corpus, args: argparse.Namespace) -> dict[str, Any]:
    runs = [train_run(corpus, args, f"mtp {label}", optimizer=args.optimizer, lr=args.lr, max_steps=args.steps,
                      mtp_heads=heads, mtp_kind=kind, mtp_weight=args.mtp_weight)
            for label, heads, kind in MTP_VARIANTS]
    mtp_table(runs, args)
    return {"runs": runs}


def mtp_table(runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    off = runs[0]
    half = (args.steps // 2) // args.eval_every * args.eval_every
    print(f"\n{args.optimizer} lr {lr_text(args.lr)}, {args.steps} steps, mtp_weight {args.mtp_weight}; "
          f"next-token validation loss\n")
    table = []
    for (label, _, _), r in zip(MTP_VARIANTS, runs):
        both = r is not off and None not in (r["final_val_loss"], off["final_val_loss"])
        delta = f"{r['final_val_loss'] - off['final_val_loss']:+.4f}" if both else "-"
        reached = None if off["final_val_loss"] is None else steps_to_reach(r["val_curve"], off["final_val_loss"])
        table.append([label, loss_text(val_at(r["val_curve"], half)), loss_text(r["final_val_loss"]), delta,
                      "not reached" if reached is None else f"{reached:.0f}", f"{r['tokens_per_s']:.0f}"])
    print_table(["MTP", f"val loss @ {half}", f"val loss @ {args.steps}", "Δ vs off", "steps to off's final loss",
                 "train tokens/s"], table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="bench", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--recipe", type=Path, default=REPO / "build" / "quickstart.yaml")
    common.add_argument("--runs-root", type=Path, default=REPO / "runs", help="where the recipe's shards live")
    common.add_argument("--steps", type=int, default=300, help="optimizer steps per run (the quickstart's 300)")
    common.add_argument("--eval-every", type=int, default=10, help="steps between validation evaluations")
    common.add_argument("--eval-batches", type=int, default=4, help="validation batches (8 x 256 tokens each)")
    common.add_argument("--threads", type=int, default=2, help="torch intra-op threads (0: all cores)")
    common.add_argument("--out", type=Path, help="write the runs' curves and the results here as JSON")
    o = sub.add_parser("optimizer", parents=[common], help="Muon vs AdamW: steps to AdamW's final loss")
    o.add_argument("--lrs", type=lambda s: [float(x) for x in s.split(",")], default=[3e-3, 6e-3, 1e-2, 2e-2],
                   help="peak lrs swept for both optimizers (comma-separated)")
    o.add_argument("--sweep-steps", type=int, default=0,
                   help="steps of each lr-sweep run (0: --steps); the best lr of each is then run for --steps")
    o.add_argument("--horizons", type=lambda s: [float(x) for x in s.split(",") if x], default=[0.8],
                   help="fractions of --steps the best Muon lr is also trained for, whole schedule compressed")
    m = sub.add_parser("mtp", parents=[common], help="next-token validation loss with MTP off / parallel / sequential")
    m.add_argument("--optimizer", choices=("adamw", "muon"), default="adamw")
    m.add_argument("--lr", type=float, default=6e-3, help="the best AdamW lr of the optimizer benchmark")
    m.add_argument("--mtp-weight", type=float, default=0.3)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    corpus = load_corpus(args.recipe, args.runs_root)
    t0 = time.time()
    result = (bench_optimizer if args.bench == "optimizer" else bench_mtp)(corpus, args)
    print(f"\n({time.time() - t0:.0f} s of training, {args.threads} threads)")
    if args.out:
        from smoledge.io import atomic_write_json

        meta = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        atomic_write_json(args.out, {"args": meta, **result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
