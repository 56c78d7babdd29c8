"""Distillation against training from scratch, and what each distillation option buys.

    .venv/bin/python benchmarks/distill_quality.py [--runs-dir runs --threads 2 --out distill.json]
    .venv/bin/python benchmarks/distill_quality.py --variants scratch,cache,online --steps 100

The quickstart recipe (build/quickstart.yaml) is built up to its teacher-cache stage (the small
teacher, 4 layers x 128 wide, pretrained; its top-64 cache at the recipe's T = 1) unless runs/quickstart holds
it already. Then the quickstart student shape (2 layers x 64 wide, 4 heads / 2 KV heads) is trained
once per variant by smoledge's own distill stage, with the recipe's distill section (forward KL over
the top-64 + tail, alpha 0.5, T 1, AdamW lr 3e-3, WSD, 300 steps of 8 x 256 tokens, seed 1234) but
a random init, changed only as the variant says. Every run sees the
same batches in the same order and starts from the same init (except `prune`, which starts from the
pruned teacher). `scratch` is alpha = 1: cross-entropy on the labels only, the teacher's term has
weight 0, so it is training from scratch on the same tokens.

Reported per variant: the validation loss (the stage's: the same fixed batches of the valid shard)
and perplexity per language on the valid shard (each language's documents packed on their own,
up to --lang-tokens tokens), the ratio of each to scratch's (the target for distillation is a
perplexity <= 0.95 x scratch), and the training throughput (tokens/s over the logged steps).

Results: BENCHMARKS.md, "Distillation (issue 5)".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Default run: every variant but t2 (measured once, at the recipe's former T = 2: see BENCHMARKS.md).
VARIANTS: dict[str, dict[str, Any]] = {
    "scratch": {"alpha": 1.0},
    "cache": {},                                                       # the recipe: forward KL, top-64, cached
    "online": {"mode": "online"},                                      # same targets, teacher in the loop
    "dense": {"mode": "online", "top_k": 0},                           # full-vocabulary forward KL
    "reverse": {"divergence": "reverse"},
    "js": {"divergence": "js"},
    "alpha0": {"alpha": 0.0},                                          # the teacher's term only
    "alpha0.2": {"alpha": 0.2},
    "alpha0.8": {"alpha": 0.8},
    "hidden": {"mode": "online", "hidden_weight": 1.0},
    "attention": {"mode": "online", "attention_weight": 1.0},
    "prune": {"init": "prune"},
    "prune+attention": {"init": "prune", "mode": "online", "attention_weight": 1.0},
    "t2": {"mode": "online", "temperature": 2.0},                    # T = 2 (online: the cache is at the recipe's T)
}


def per_language_loss(model: Any, shard: Any, seq_len: int, batch_size: int, max_tokens: int) -> dict[str, float]:
    """Token-weighted next-token loss per language of the valid shard (documents packed per language)."""
    import numpy as np

    from smoledge.train.data import pack
    from smoledge.train.loop import evaluate

    out = {}
    need = batch_size * (seq_len + 1)
    for li, lang in enumerate(shard.languages):
        docs = [shard.doc(i) for i in range(shard.num_docs) if shard.lang[i] == li]
        batches, pieces, have, used = [], [], 0, 0
        for d in docs:
            pieces.append(np.asarray(d))
            have += len(d)
            if have >= need:
                batches.append(pack(pieces, batch_size, seq_len))
                used += need
                pieces, have = [], 0
                if used >= max_tokens:
                    break
        if batches:
            out[lang] = evaluate(model, batches)
    return out


def run_variant(name: str, changes: dict[str, Any], recipe: Any, run_dir: Path, args: argparse.Namespace,
                valid_shard: Any) -> dict[str, Any]:
    from dataclasses import replace

    from transformers import AutoModelForCausalLM

    from smoledge.progress import Progress
    from smoledge.stage import StageContext
    from smoledge.train import distill
    from smoledge.train.metrics import METRICS, read_metrics

    # A random init unless the variant prunes: the comparison with scratch is about the loss.
    changes = {"init": "random", **changes}
    cfg = replace(recipe.distill, threads=args.threads, tensorboard=False, device="cpu", **changes)
    if args.steps:
        cfg = replace(cfg, max_steps=args.steps)
    variant = replace(recipe, distill=cfg)
    stage_dir = run_dir / f"bench-distill-{name}"
    if stage_dir.exists():
        import shutil

        shutil.rmtree(stage_dir)  # a fresh run each time: no resume from an older benchmark
    stage_dir.mkdir(parents=True)
    ctx = StageContext(recipe=variant, run_dir=run_dir, dir=stage_dir, progress=Progress(name, log_every_s=30.0))
    t0 = time.perf_counter()
    result = distill.run(ctx)
    wall = time.perf_counter() - t0
    model = AutoModelForCausalLM.from_pretrained(stage_dir / "model").eval()
    langs = per_language_loss(model, valid_shard, cfg.seq_len, cfg.batch_size, args.lang_tokens)
    rows = [r for r in read_metrics(stage_dir / METRICS) if "tokens_per_s" in r]
    m = result.metrics
    out = {"name": name, "changes": changes, "val_loss": m["val_loss"], "val_ppl": math.exp(m["val_loss"]),
           "lang_loss": langs, "lang_ppl": {k: math.exp(v) for k, v in langs.items()},
           "tokens_per_s": sum(r["tokens_per_s"] for r in rows) / max(len(rows), 1), "wall_s": wall,
           "teacher_val_loss": m.get("teacher_val_loss"), "load_avg_1m": os.getloadavg()[0]}
    print(f"  {name}: val {out['val_loss']:.4f} (ppl {out['val_ppl']:.2f}), {out['tokens_per_s']:.0f} tok/s, "
          f"{wall:.0f} s", file=sys.stderr, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", type=Path, default=REPO / "build" / "quickstart.yaml")
    ap.add_argument("--runs-dir", type=Path, default=REPO / "runs")
    ap.add_argument("--variants", default=",".join(v for v in VARIANTS if v != "t2"))
    ap.add_argument("--steps", type=int, default=0, help="override distill.max_steps (0: the recipe's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lang-tokens", type=int, default=16384, help="valid tokens per language for its perplexity")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import torch

    from smoledge.tokenizer.shards import Shard
    from smoledge.recipe import load_recipe
    from smoledge.runs import build

    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe)
    build(recipe, runs_root=args.runs_dir, until="teacher-cache")
    run_dir = args.runs_dir.resolve() / recipe.name
    valid_shard = Shard.open(run_dir / "tokenizer" / "shards", "valid")
    cache_meta = json.loads((run_dir / "teacher-cache" / "cache.json").read_text())
    cache_record = json.loads((run_dir / "teacher-cache" / "stage.json").read_text())
    results = []
    for name in args.variants.split(","):
        results.append(run_variant(name, VARIANTS[name], recipe, run_dir, args, valid_shard))
    by = {r["name"]: r for r in results}
    print(f"\nmachine: {os.cpu_count()} cores, threads {args.threads}; teacher val loss "
          f"{results[0]['teacher_val_loss']}")
    print(f"teacher cache: {cache_meta['num_batches']} batches, {cache_meta['tokens']} tokens, "
          f"{cache_meta['bytes_per_token']} bytes/token after zlib ({cache_meta['raw_bytes_per_token']} raw; "
          f"dense fp32 would be {4 * cache_meta['vocab_size']}), built in {cache_record['wall_time_s']:.1f} s")
    langs = sorted(results[0]["lang_ppl"])
    print("variant    val loss  ppl     /scratch  " + "  ".join(f"{lang:>6}" for lang in langs) + "   tok/s")
    base = by.get("scratch")
    for r in results:
        ratio = f"{r['val_ppl'] / base['val_ppl']:.3f}" if base else "-"
        lang_cells = "  ".join(f"{r['lang_ppl'].get(lang, float('nan')):6.2f}" for lang in langs)
        print(f"{r['name']:<10} {r['val_loss']:.4f}    {r['val_ppl']:6.2f}  {ratio:>8}  {lang_cells}   "
              f"{r['tokens_per_s']:6.0f}")
    if base:
        print("per-language perplexity / scratch:")
        for r in results:
            print(f"  {r['name']:<10} " + "  ".join(
                f"{lang} {r['lang_ppl'][lang] / base['lang_ppl'][lang]:.3f}" for lang in langs if lang in r["lang_ppl"]))
    if "cache" in by and "online" in by:
        print(f"throughput cache / online: {by['cache']['tokens_per_s'] / by['online']['tokens_per_s']:.2f}x")
    if args.out:
        args.out.write_text(json.dumps({"cache": cache_meta, "cache_build_s": cache_record["wall_time_s"],
                                        "results": results}, indent=2))


if __name__ == "__main__":
    main()
