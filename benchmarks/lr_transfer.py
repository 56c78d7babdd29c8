"""Learning-rate transfer: is the best lr at width w still best at 2w and 4w? AdamW vs Muon (RMS-matched).

    .venv/bin/python benchmarks/lr_transfer.py                       # 32/64/128 wide, 2 layers, 5 lrs, AdamW + Muon
    .venv/bin/python benchmarks/lr_transfer.py --widths 64,128 --lrs 3e-3,1e-2 --steps 60 --out /tmp/lrt

One `smoledge sweep` (smoledge.sweep.run_sweep) of the quickstart recipe's teacher pretraining over
width x optimizer x lr. Depth is fixed; heads scale with width at a fixed head dim (16), KV heads are
half the heads (GQA as in the presets) and the MLP is 3x wide (the presets' ratio). Muon runs through
torch.optim.Muon with adjust_lr_fn="match_rms_adamw" (smoledge/train/optim.py), so one lr means the
same update RMS for both optimizers. Curation and tokenizer are built once and shared by every point.
The sweep is resumable: run the same command again and finished points are read back, not retrained.
Each training runs on one torch thread by default (--threads): on the 2-core development box, shared
with other jobs, two threads spin-waiting on each other trained 10x slower than one (3 s vs 28 s for
30 steps at width 64); losses do not depend on the thread count.

Prints the best lr per width per optimizer and the validation loss at every lr (markdown).
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from smoledge.sweep import SweepConfig, run_sweep  # noqa: E402

HEAD_DIM = 16


def shape(width: int, layers: int) -> dict:
    heads = max(2, width // HEAD_DIM)
    return {"preset": "custom", "num_layers": layers, "hidden_size": width, "intermediate_size": 3 * width,
            "num_heads": heads, "num_kv_heads": heads // 2, "max_position_embeddings": 2048}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default=str(REPO / "build" / "quickstart.yaml"))
    ap.add_argument("--widths", default="32,64,128", help="hidden sizes (default: %(default)s)")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--lrs", default="2.5e-3,5e-3,1e-2,2e-2,4e-2", help="peak lrs, log-spaced (default: %(default)s)")
    ap.add_argument("--optimizers", default="adamw,muon")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--docs", type=int, default=2400, help="synthetic sample documents (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per training (default: %(default)s; 0: all cores)")
    ap.add_argument("--out", default="/tmp/smoledge-lr-transfer")
    args = ap.parse_args()

    widths = [int(w) for w in args.widths.split(",")]
    lrs = [float(x) for x in args.lrs.split(",")]
    optimizers = args.optimizers.split(",")
    proxy = [
        f"data.sources=[{{name: sample, kind: sample, sample_docs: {args.docs}}}]",
        f"pretrain.max_steps={args.steps}", f"pretrain.batch_size={args.batch}", f"pretrain.seq_len={args.seq}",
        f"pretrain.warmup_steps={max(1, args.steps // 10)}", f"pretrain.eval_every={args.steps}",
        "pretrain.eval_batches=8", f"pretrain.checkpoint_every={args.steps}", "pretrain.tensorboard=false", f"pretrain.threads={args.threads}",
    ]
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"uptime before: {uptime}", flush=True)
    t0 = time.time()
    result = run_sweep(SweepConfig(
        recipe=args.recipe, overrides=proxy, out=args.out,
        params={"teacher": [shape(w, args.layers) for w in widths], "pretrain.optimizer": optimizers,
                "pretrain.lr": lrs},
    ))
    elapsed = time.time() - t0
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()

    loss: dict[tuple[int, str, float], float | None] = {}
    n_params: dict[int, int] = {}
    for r in result.rows:
        key = (int(r["teacher.hidden_size"]), r["pretrain.optimizer"], float(r["pretrain.lr"]))
        ok = r["status"] == "ok" and r.get("val_loss") is not None and math.isfinite(r["val_loss"])
        loss[key] = r["val_loss"] if ok else None
        if r.get("n_params"):
            n_params[key[0]] = int(r["n_params"])

    def cell(v: float | None) -> str:
        return "diverged" if v is None else f"{v:.3f}"

    print(f"\nsweep: {len(result.rows)} points, {len(result.ran)} trained now, {len(result.reused)} reused, "
          f"{elapsed:.0f}s; {result.dir}")
    print(f"uptime after: {uptime}")
    print(f"proxy: {args.layers} layers, head dim {HEAD_DIM}, {args.steps} steps x {args.batch} x {args.seq} tokens, "
          f"{args.docs} sample docs; val loss (nats/token) after the last step\n")
    print("| optimizer | width | non-emb params | " + " | ".join(f"lr {x:g}" for x in lrs) + " | best lr |")
    print("|---|---:|---:|" + "---:|" * len(lrs) + "---:|")
    best: dict[tuple[str, int], float | None] = {}
    for opt in optimizers:
        for w in widths:
            vals = [loss.get((w, opt, x)) for x in lrs]
            finite = [(v, x) for v, x in zip(vals, lrs) if v is not None]
            best[(opt, w)] = min(finite)[1] if finite else None
            cells = [f"**{cell(v)}**" if v is not None and best[(opt, w)] == x else cell(v)
                     for v, x in zip(vals, lrs)]
            b = best[(opt, w)]
            print(f"| {opt} | {w} | {n_params.get(w, 0):,} | " + " | ".join(cells) + f" | {b if b is None else f'{b:g}'} |")
    print("\nbest lr by width:")
    for opt in optimizers:
        seq = [best[(opt, w)] for w in widths]
        shown = " -> ".join("none" if b is None else f"{b:g}" for b in seq)
        stays = len({b for b in seq}) == 1
        print(f"  {opt}: {shown}  ({'stays best' if stays else 'moves'} across widths {widths})")
    print(f"\nplots: {result.plots['lr']}  {result.plots['compute']}\ntable: {result.table}")


if __name__ == "__main__":
    main()
