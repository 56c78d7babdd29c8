"""Scaling-law prediction: fit L(N, D) on small runs, predict a larger held-out run BEFORE training it.

    .venv/bin/python benchmarks/scaling_fit.py [--out runs/scaling-bench]
    .venv/bin/python benchmarks/scaling_fit.py --widths 32,48,64,96 --steps 100,200,400 \
        --holdout-width 128 --holdout-steps 600 --sample-docs 6000
    .venv/bin/python benchmarks/scaling_fit.py --corpus /work/shared/data/prose --out runs/scaling-bench-prose \
        --steps 100,200,300 --holdout-steps 450     # natural text instead of the synthetic sample

--corpus DIR: the *.txt files in DIR (plain UTF-8 prose, one language per file) are cut into
paragraph-sized documents, written to <out>/corpus/prose.jsonl and used as the only data source (a `jsonl`
source set through overrides, so nothing in smoledge reads DIR). Only the benchmark reads it.

1. `smoledge sweep` (run_sweep) trains the quickstart teacher recipe at every width x step count:
   2 layers, hidden h, SwiGLU 3h, 4 heads / 2 KV heads, Muon lr 1e-2, WSD, batch 8 x 256 tokens;
   N (non-embedding parameters) varies with h, D (tokens) with max_steps. Data, tokenizer,
   validation batches (eval_batches fixed windows of the valid shard), seq_len and seed are the
   same for every run: curate and train-tokenizer are built once and shared.
2. The Chinchilla law is fitted to those runs (smoledge.sweep.scaling_run, bootstrap intervals).
3. The held-out run (wider AND longer than any fitted one) is sized from its recipe on the meta
   device and its loss predicted; prediction.json is written before it trains.
4. The held-out run trains in the same sweep directory (so with the same shared data and tokenizer),
   and its measured validation loss is compared with the prediction.
5. Its row is appended to a combined table and `smoledge scaling fit --holdout <id>` re-runs the
   same fit on it, writing fit.json / fit.png with the held-out point shown.

Resumable: finished points are recorded by the sweep and never re-run (the fit is deterministic,
so a re-run reproduces the same prediction without looking at the held-out result).

Results: BENCHMARKS.md, "Scaling-law prediction (issue 10)".
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def size(width: int) -> dict[str, int]:
    """The teacher shape at width h: 2 layers, SwiGLU 3h, 4 heads / 2 KV heads (head dim h/4)."""
    return {"num_layers": 2, "hidden_size": width, "intermediate_size": 3 * width, "num_heads": 4, "num_kv_heads": 2}


def prose_jsonl(corpus: Path, path: Path, min_words: int) -> dict[str, int]:
    """Cut every DIR/*.txt into documents of >= min_words words; write them as jsonl records {id, text}.

    Paragraphs are blank-line-separated blocks (books) or single lines (one-sentence-per-line corpora):
    consecutive paragraphs of one file are joined until the document has min_words words, so documents
    clear curate's minimum-length filter without mixing languages or files (a shorter fragment at a file's end is
    dropped). Languages are left to curate's language ID. Returns documents per file.
    """
    from smoledge.io import atomic_path

    counts: dict[str, int] = {}
    files = sorted(corpus.glob("*.txt"))
    if not files:
        raise SystemExit(f"--corpus {corpus}: no *.txt files there")
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for file in files:
            text = file.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
            blocks = re.split(r"\n\s*\n", text) if "\n\n" in text else text.split("\n")
            paras = [" ".join(b.split()) for b in blocks if b.strip()]
            doc: list[str] = []
            words = n = 0
            for para in paras:
                doc.append(para)
                words += len(para.split())
                if words >= min_words:
                    f.write(json.dumps({"id": f"{file.stem}:{n}", "text": "\n\n".join(doc)}, ensure_ascii=False) + "\n")
                    doc, words, n = [], 0, n + 1
            counts[file.name] = n
    return counts


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default=str(REPO / "build" / "quickstart.yaml"))
    ap.add_argument("--out", default=str(REPO / "runs" / "scaling-bench"))
    ap.add_argument("--widths", default="32,48,64,96", help="fitted widths (N)")
    ap.add_argument("--steps", default="100,200,400", help="fitted max_steps (D = steps x 8 x 256)")
    ap.add_argument("--holdout-width", type=int, default=128)
    ap.add_argument("--holdout-steps", type=int, default=600)
    ap.add_argument("--sample-docs", type=int, default=6000,
                    help="raw synthetic documents (6000 -> ~1.9M train tokens: the longest run sees each once)")
    ap.add_argument("--corpus", default=None,
                    help="directory of natural-text *.txt files to train on instead of the synthetic sample "
                         "(e.g. /work/shared/data/prose); cut into documents of --doc-words words")
    ap.add_argument("--doc-words", type=int, default=120, help="--corpus only: words per document (at least)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra recipe overrides for every run (e.g. curate.min_language_score=0.5)")
    ap.add_argument("--eval-batches", type=int, default=16, help="fixed validation batches (8 x 256 tokens each)")
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads per run (default 1: on a 2-core machine shared with other jobs one thread ran "
                         "3x faster than two, which stall whenever another process holds a core; 0: all cores)")
    args = ap.parse_args()

    from smoledge.io import atomic_write_bytes, atomic_write_json
    from smoledge.sweep import SweepConfig, run_sweep
    from smoledge.sweep.results import read_table, write_table
    from smoledge.sweep.scaling import FitConfig
    from smoledge.sweep.scaling_run import ScalingFitConfig, recipe_size, run, summary

    out = Path(args.out).resolve()
    sweep_dir = out / "sweep"
    widths = [int(w) for w in args.widths.split(",")]
    steps = [int(s) for s in args.steps.split(",")]
    if args.corpus:
        out.mkdir(parents=True, exist_ok=True)
        corpus_path = out / "corpus" / "prose.jsonl"
        corpus_path.parent.mkdir(parents=True, exist_ok=True)
        counts = prose_jsonl(Path(args.corpus), corpus_path, args.doc_words)
        print(f"[{now()}] corpus {args.corpus}: {sum(counts.values())} documents -> {corpus_path} "
              f"({', '.join(f'{k}: {v}' for k, v in counts.items())})", flush=True)
        source = f"data.sources=[{{name: prose, kind: jsonl, path: {json.dumps(str(corpus_path))}}}]"
    else:
        source = f"data.sources=[{{name: sample, kind: sample, sample_docs: {args.sample_docs}}}]"
    common = [
        source,
        f"pretrain.eval_batches={args.eval_batches}",
        "pretrain.eval_every=1000000",        # evaluate once, at the end (the loop always does)
        "pretrain.checkpoint_every=1000000",  # no mid-run checkpoints: the runs are minutes long
        "pretrain.tensorboard=false",
        f"pretrain.threads={args.threads}",
        *args.set,
    ]
    t_start = time.time()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"[{now()}] uptime: {uptime}", flush=True)

    # 1. the fitted runs
    fit_sweep = run_sweep(SweepConfig(recipe=args.recipe, overrides=common, out=str(sweep_dir),
                                      params={"teacher": [size(w) for w in widths], "pretrain.max_steps": steps}))
    fit_dir = out / "fit-table"
    fit_dir.mkdir(parents=True, exist_ok=True)
    fit_rows = read_table(fit_sweep.table)
    write_table(fit_rows, fit_sweep.swept, fit_dir)  # kept: the sweep dir's table is rewritten by step 4
    t_fit_runs = time.time() - t_start

    # 2 + 3. fit, size the held-out run from its recipe, predict it before it exists
    held_values = {**{f"teacher.{k}": v for k, v in size(args.holdout_width).items()},
                   "pretrain.max_steps": args.holdout_steps}
    held_overrides = [*common, *(f"{k}={json.dumps(v)}" for k, v in held_values.items())]
    held_size = recipe_size(args.recipe, held_overrides, "pretrain")
    fit_cfg = FitConfig(bootstrap=args.bootstrap)
    report = run(ScalingFitConfig(table=str(fit_dir / "results.csv"), out=str(out / "fit"), fit=fit_cfg,
                                  predict=[[held_size["N"], held_size["D"]]], target=args.recipe,
                                  target_overrides=held_overrides))
    print(summary(report), flush=True)
    prediction = report["predictions"][0]
    pred_path = out / "prediction.json"
    atomic_write_json(pred_path, {"made": now(), "holdout": held_values, "N": held_size["N"], "D": held_size["D"],
                                  "predicted_val_loss": prediction["loss"], "ci": [prediction["lo"], prediction["hi"]],
                                  "fit": report["fit"]["params"], "fit_table_sha256": report["table_sha256"]})
    print(f"[{now()}] PREDICTION (before training the held-out run): N={held_size['N']:.0f} D={held_size['D']:.0f} "
          f"-> val_loss {prediction['loss']:.4f} [{prediction['lo']:.4f}, {prediction['hi']:.4f}] -> {pred_path}",
          flush=True)

    # 4. train the held-out run in the same sweep dir: same shared curate/tokenizer, same valid batches
    t_held = time.time()
    held_sweep = run_sweep(SweepConfig(recipe=args.recipe, overrides=common, out=str(sweep_dir),
                                       params={"teacher": [size(args.holdout_width)],
                                               "pretrain.max_steps": [args.holdout_steps]}))
    held_row = held_sweep.rows[0]
    if held_row["status"] != "ok":
        print(f"held-out run failed: {held_row.get('error')}", file=sys.stderr)
        return 1
    if int(held_row["n_params"]) != int(held_size["N"]) or int(held_row["tokens"]) != int(held_size["D"]):
        print(f"held-out run has N={held_row['n_params']}, D={held_row['tokens']}, not the predicted point "
              f"N={held_size['N']:.0f}, D={held_size['D']:.0f}", file=sys.stderr)
        return 1
    measured = float(held_row["val_loss"])
    error = 100 * (prediction["loss"] - measured) / measured

    # 5. the same fit with the held-out row present but held out: fit.png shows it
    combined = out / "combined"
    combined.mkdir(parents=True, exist_ok=True)
    write_table([*fit_rows, held_row], sorted({*fit_sweep.swept, *held_sweep.swept}), combined)
    check = run(ScalingFitConfig(table=str(combined / "results.csv"), out=str(out / "fit-holdout"), fit=fit_cfg,
                                 holdout=[held_row["point"]]))
    assert abs(check["holdout"][0]["predicted"] - prediction["loss"]) < 1e-9, "the fit is not deterministic"

    result = {
        "finished": now(), "uptime_at_start": uptime, "wall_s": round(time.time() - t_start, 1),
        "fit_runs_wall_s": round(t_fit_runs, 1), "holdout_wall_s": round(time.time() - t_held, 1),
        "fitted_runs": [{k: r[k] for k in ("point", "teacher.hidden_size", "pretrain.max_steps", "n_params", "tokens",
                                           "val_loss", "wall_s")} for r in fit_rows],
        "fit": report["fit"]["params"], "ci": report["fit"]["ci"], "fit_rmse_pct": report["fit"]["fit_rmse_pct"],
        "holdout": {"point": held_row["point"], "N": held_size["N"], "D": held_size["D"],
                    "predicted": prediction["loss"], "ci": [prediction["lo"], prediction["hi"]],
                    "measured": measured, "error_pct": error, "wall_s": held_row["wall_s"]},
        "compute_optimal": report["compute_optimal"],
    }
    atomic_write_json(out / "benchmark.json", result)
    print(f"\nfitted runs (sweep {sweep_dir}):")
    for r in fit_rows:
        print(f"  {r['point']}  h={r['teacher.hidden_size']:>3}  steps={r['pretrain.max_steps']:>4}  "
              f"N={r['n_params']:>7}  D={r['tokens']:>8}  val_loss={r['val_loss']:.4f}  ({r['wall_s']:.0f}s)")
    print(f"\nheld-out {held_row['point']}: h={args.holdout_width}, steps={args.holdout_steps}, "
          f"N={held_size['N']:.0f}, D={held_size['D']:.0f}")
    print(f"  predicted {prediction['loss']:.4f}  [{prediction['lo']:.4f}, {prediction['hi']:.4f}]")
    print(f"  measured  {measured:.4f}")
    print(f"  error     {error:+.2f}%  (target: within 3%)")
    print(f"\nwall {result['wall_s']:.0f}s (fitted runs {t_fit_runs:.0f}s, held-out {result['holdout_wall_s']:.0f}s); "
          f"uptime now: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    atomic_write_bytes(out / "fit.png", (out / "fit-holdout" / "fit.png").read_bytes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
