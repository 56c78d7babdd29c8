"""Quantization quality table: perplexity of every GGUF and ONNX artifact against its fp32 reference.

    .venv/bin/python benchmarks/quant_quality.py --run runs/quickstart --work /work/bench-work/quant135 \
        [--steps 60 --batch-size 4 --seq-len 256 --lr 3e-3 --max-tokens 2048 --out quant135.json]
    # the same weights (reused), K-quants without the importance matrix, no ONNX:
    .venv/bin/python benchmarks/quant_quality.py --run runs/quickstart --work /work/bench-work/quant135 \
        --no-imatrix --no-onnx --gguf-types f32,q6_k,q5_k_m,q4_k_m --export-name export-noimatrix
    # an existing student, no training (the quickstart one is 64 wide: no K-quant blocks):
    .venv/bin/python benchmarks/quant_quality.py --run runs/quickstart --hf runs/quickstart/export/hf \
        --work /work/bench-work/quanttiny --gguf-types f32,f16,q8_0,q4_0 --no-imatrix --max-tokens 8192

Issue 6 asks for the table on a student shaped like SmolLM2-135M, not only on the 2-layer 64-wide
quickstart one: llama.cpp's K-quants work on 256-wide super-blocks and its legacy quants on 32-wide
blocks, so a model's row widths decide which kernels (or which fallbacks) it gets at all.

1. The student: smoledge's own model code (ModelConfig preset "smollm2-135m": 30 layers, hidden 576,
   9 heads / 3 KV heads, SwiGLU 1536, tied embeddings, NoPE every 4th layer) with the quickstart
   tokenizer's vocabulary, built by hf_config + init_model.
2. Brief training on the quickstart run's train shard with smoledge's own loop (smoledge.train.loop:
   PackedSampler batches, AdamW, WSD), so the outputs are no longer the near-uniform ones of a random
   init, where quantization error hides. Saved with save_model_dir (safetensors + tokenizer) to
   <work>/hf; a rerun with the same settings (<work>/hf-settings.json) reuses it.
3. Export with the export stage's own export_model, configured like build/smollm3-135m-distill.yaml's
   export section (every GGUF type, K-quants with an importance matrix, onnx/, dynamic and static int8
   ONNX; one CPU target, avx2; calibration windows from the train shard, as the stage takes them),
   with the stage's parity gates, into <work>/<export-name>; reused when made from the same weights
   and export config.
4. Scoring with the evaluate stage's own pieces: held_out_ids (per-language token ids from the curated
   valid split), score with TorchScorer / GGUFScorer / ORTScorer at --seq-len-eval, quant_table and
   quant_markdown. Delta ppl is against the fp32 artifact of the same runtime (model-f32.gguf, onnx/).

Prints the quantization table, the per-language table, the tensor type mix of each GGUF (where llama.cpp
kept a tensor in a wider type) and the training summary; --out gets everything as JSON.
Results: BENCHMARKS.md, "Quality table: 135M-shaped student".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GGUF_TYPES = ("f32", "f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0")
PRESET = "smollm2-135m"
ROPE_THETA = 100000.0  # SmolLM2-135M's, as build/smollm3-135m-distill.yaml sets it


def run_inputs(run: Path) -> dict[str, Path]:
    """The pieces of an existing run this benchmark reads; a clear error naming the build command if absent."""
    paths = {
        "tokenizer": run / "tokenizer" / "tokenizer",
        "shards": run / "tokenizer" / "shards",
        "parquet": run / "curate" / "curated.parquet",
    }
    needed = [paths["tokenizer"] / "tokenizer.json", paths["shards"] / "train.meta.json",
              paths["shards"] / "valid.meta.json", paths["parquet"]]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise SystemExit(f"{run} lacks {', '.join(missing)}; build the run's data first: "
                         f".venv/bin/smoledge build build/quickstart.yaml --runs-dir {run.parent} "
                         f"(the curate and train-tokenizer stages are all this needs)")
    return paths


# ----------------------------------------------------------------------------- 1-2. the student

def train_settings(args: argparse.Namespace, inputs: dict[str, Path]) -> dict[str, Any]:
    """What decides the trained weights: a cached <work>/hf is reused only if these match."""
    from smoledge.io import sha256_file

    return {
        "preset": PRESET, "shape": args.shape, "rope_theta": ROPE_THETA, "steps": args.steps, "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "optimizer": args.optimizer, "lr": args.lr, "warmup_steps": args.warmup, "decay_fraction": 0.2,
        "seed": args.seed, "threads": args.threads,
        "tokenizer_sha256": sha256_file(inputs["tokenizer"] / "tokenizer.json"),
        "train_shard": json.loads((inputs["shards"] / "train.meta.json").read_text()),
    }


def model_config(shape: str) -> Any:
    """'smollm2-135m', or LAYERSxHIDDENxMLP (64-wide heads, a KV head per two query heads) for a student
    whose rows are all multiples of 256, so that every matrix takes llama.cpp's K-quant blocks."""
    from smoledge.model.config import ModelConfig

    if shape == PRESET:
        return ModelConfig(preset=PRESET, rope_theta=ROPE_THETA)
    layers, hidden, mlp = (int(x) for x in shape.split("x"))
    return ModelConfig(preset="custom", num_layers=layers, hidden_size=hidden, intermediate_size=mlp,
                       num_heads=hidden // 64, num_kv_heads=hidden // 128, rope_theta=ROPE_THETA)


def train_student(args: argparse.Namespace, inputs: dict[str, Path]) -> tuple[Path, dict[str, Any]]:
    """<work>/hf: the 135M-shaped student after args.steps steps, and a summary of its training."""
    import torch
    from transformers import AutoTokenizer

    from smoledge.tokenizer.shards import Shard
    from smoledge.io import atomic_write_json
    from smoledge.model.build import hf_config, init_model, num_params, special_ids
    from smoledge.progress import Progress
    from smoledge.train.checkpoint import save_model_dir
    from smoledge.train.config import PretrainConfig
    from smoledge.train.data import PackedSampler, validation_batches
    from smoledge.train.loop import evaluate, train
    from smoledge.train.metrics import METRICS, read_metrics

    hf, record = args.work / "hf", args.work / "hf-settings.json"
    settings = train_settings(args, inputs)
    if (hf / "config.json").exists() and record.exists():
        saved = json.loads(record.read_text())
        if saved.get("settings") == settings:
            print(f"reusing {hf} (same training settings, {record})", file=sys.stderr)
            return hf, saved["training"]
    shutil.rmtree(hf, ignore_errors=True)

    tok = AutoTokenizer.from_pretrained(inputs["tokenizer"])
    config = hf_config(model_config(args.shape), vocab_size=len(tok), **special_ids(tok))
    model = init_model(config, seed=args.seed)
    train_shard, valid_shard = Shard.open(inputs["shards"], "train"), Shard.open(inputs["shards"], "valid")
    cfg = PretrainConfig(
        max_steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len, optimizer=args.optimizer,
        lr=args.lr, warmup_steps=args.warmup, decay_fraction=0.2, seed=args.seed, threads=args.threads,
        # One checkpoint at the end (plus the loop's step-0 one): each is ~1.3 GB at this size.
        checkpoint_every=args.steps, eval_every=args.steps, eval_batches=args.eval_batches,
        device="cpu", precision="fp32", compile="off", tensorboard=False,
    )
    sampler = PackedSampler(train_shard, cfg.batch_size, cfg.seq_len, cfg.seed)
    valid = validation_batches(valid_shard, cfg.batch_size, cfg.seq_len, cfg.eval_batches)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    val_start = evaluate(model, valid)
    stage = args.work / "train"  # the loop resumes from its checkpoint here if a run was interrupted
    outcome = train(model, cfg, sampler, valid, stage, Progress(f"train {args.shape}", log_every_s=30.0),
                    {"bench": "quant_quality", **settings})
    wall = time.perf_counter() - t0
    rows = [r for r in read_metrics(stage / METRICS) if "loss" in r]
    save_model_dir(outcome.model, inputs["tokenizer"], hf)
    shutil.rmtree(stage / "checkpoints", ignore_errors=True)  # only needed to resume; hf/ is the result
    summary = {
        "params": num_params(outcome.model), "steps": outcome.steps, "tokens": outcome.tokens,
        "first_loss": rows[0]["loss"] if rows else None, "last_loss": outcome.final_train_loss,
        "val_loss_start": val_start, "val_loss_end": outcome.val_loss,
        "tokens_per_s": outcome.tokens_per_s, "minutes": wall / 60, "resumed_from": outcome.resumed_from,
        "rollbacks": outcome.rollbacks, "load_avg_1m_end": os.getloadavg()[0],
        "loss_curve": [(r["step"], round(r["loss"], 4)) for r in rows],
    }
    atomic_write_json(record, {"settings": settings, "training": summary})
    return hf, summary


# ----------------------------------------------------------------------------- 3. export

def export_all(hf: Path, args: argparse.Namespace, inputs: dict[str, Path]) -> tuple[Path, dict[str, Any], float]:
    """<work>/export written by the export stage's export_model; reused if made from the same weights and config."""
    from dataclasses import asdict

    from transformers import AutoConfig

    from smoledge.export.config import ExportConfig
    from smoledge.export.stage import calibration, export_model
    from smoledge.io import atomic_write_json, sha256_file
    from smoledge.progress import Progress

    cfg = ExportConfig(gguf_types=args.gguf_types, onnx=args.onnx, onnx_int8=args.onnx_int8 if args.onnx else [],
                       onnx_int8_static=args.onnx_int8_static if args.onnx else [], imatrix=args.imatrix,
                       calibration_windows=args.calibration_windows)
    out, record = args.work / args.export_name, args.work / f"{args.export_name}-settings.json"
    settings = {"weights_sha256": sorted(sha256_file(p) for p in hf.glob("*.safetensors")), "config": asdict(cfg)}
    if (out / "parity.json").exists() and record.exists() and json.loads(record.read_text()) == settings:
        print(f"reusing {out} (same weights and export config, {record})", file=sys.stderr)
        return out, json.loads((out / "parity.json").read_text()), 0.0
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    windows = calibration(inputs["shards"], cfg, AutoConfig.from_pretrained(hf).max_position_embeddings)
    report = export_model(hf, out, cfg, windows, Progress("export", log_every_s=30.0))
    wall = time.perf_counter() - t0
    atomic_write_json(record, settings)
    return out, report, wall


# ----------------------------------------------------------------------------- 4. scoring

def artifacts(hf: Path, export: Path, report: dict[str, Any], seq_len: int
              ) -> list[tuple[str, Callable[[], Any], list[Path] | None]]:
    """(name, scorer factory, model files) in the evaluate stage's naming: hf, GGUFs by file name, ONNX by dir."""
    from smoledge.evaluate.perplexity import GGUFScorer, ORTScorer, TorchScorer
    from smoledge.bench.select import onnx_files
    from smoledge.evaluate.tables import HF_ARTIFACT

    out: list[tuple[str, Callable[[], Any], list[Path] | None]] = [(HF_ARTIFACT, lambda: TorchScorer(hf), None)]
    for dtype in report["order"]:
        p = export / f"model-{dtype}.gguf"
        out.append((p.name, lambda p=p: GGUFScorer(p, seq_len), [p]))
    for name in report.get("onnx", {}):
        d = export / name
        out.append((name, lambda d=d: ORTScorer(d), onnx_files(d)))
    return out


def score_all(hf: Path, export: Path, report: dict[str, Any], inputs: dict[str, Path],
              args: argparse.Namespace) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from smoledge.evaluate.perplexity import Score, score, token_byte_lengths
    from smoledge.evaluate.stage import count_params, held_out_ids
    from smoledge.evaluate.tables import quant_table

    tok = AutoTokenizer.from_pretrained(hf)
    token_bytes = token_byte_lengths(tok)
    by_lang = held_out_ids(inputs["parquet"], tok, args.max_tokens)
    per_lang: dict[str, dict[str, dict[str, float]]] = {}
    overall: dict[str, Score] = {}
    files: dict[str, list[Path]] = {}
    seconds: dict[str, float] = {}
    for name, make_scorer, model_files in artifacts(hf, export, report, args.seq_len_eval):
        t0 = time.perf_counter()
        scorer = make_scorer()
        per_lang[name], overall[name] = {}, Score(0.0, 0, 0)
        for lang, ids in by_lang.items():
            s = score(scorer, ids, token_bytes, args.seq_len_eval)
            per_lang[name][lang] = {"ppl": s.ppl, "bpb": s.bpb, "tokens": s.tokens}
            overall[name] = overall[name] + s
        del scorer
        seconds[name] = time.perf_counter() - t0
        if model_files is not None:
            files[name] = model_files
        print(f"  scored {name}: ppl {overall[name].ppl:.4f} ({seconds[name]:.0f} s, load "
              f"{os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    params = count_params(hf)
    return {
        "params": params, "languages": sorted(by_lang), "tokens_per_language": {l: len(i) for l, i in by_lang.items()},
        "per_language": per_lang,
        "overall": {n: {"ppl": s.ppl, "bpb": s.bpb, "tokens": s.tokens} for n, s in overall.items()},
        "quantization": quant_table(overall, files, params),
        "score_seconds": seconds,
    }


# ----------------------------------------------------------------------------- 5. report

def type_mix_markdown(report: dict[str, Any], hf_ppl: float, overall: dict[str, dict[str, float]]) -> str:
    """Per GGUF: its ggml tensor types (a fallback shows as a wider type than the file's name) and the
    export stage's logit drift on the parity text; per ONNX artifact the same drift."""
    lines = ["| artifact | tensor types | max abs Δlogit (parity text) | top-1 agreement | Δ ppl vs PyTorch |",
             "|---|---|---:|---:|---:|"]
    for name, e in report["files"].items():
        mix = ", ".join(f"{t} {n}" for t, n in e.get("tensor_types", {}).items())
        lines.append(f"| {name} | {mix} | {e['logits']['max_abs_diff']:.3g} | {e['logits']['top1_agreement']:.3f} | "
                     f"{100 * (overall[name]['ppl'] / hf_ppl - 1):+.2f}% |")
    for name, e in report.get("onnx", {}).items():
        q = e.get("meta", {}).get("quantization")
        kind = f"int8 {q['mode']} ({q.get('format', '')})" if q else "fp32"
        lines.append(f"| {name} | {kind} | {e['max_abs_diff']:.3g} | {e['top1_agreement']:.3f} | "
                     f"{100 * (overall[name]['ppl'] / hf_ppl - 1):+.2f}% |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=REPO / "runs" / "quickstart",
                    help="an existing run: its tokenizer, token shards and curated parquet are used")
    ap.add_argument("--work", type=Path, required=True, help="scratch dir (trained model, exports; reused)")
    ap.add_argument("--hf", type=Path, default=None, help="score this HF student instead of training the 135M one")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--shape", default=PRESET, help=f"{PRESET} or LAYERSxHIDDENxMLP, e.g. 4x256x768")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256, help="training sequence length")
    ap.add_argument("--optimizer", choices=("adamw", "muon"), default="adamw")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=6)
    ap.add_argument("--eval-batches", type=int, default=2, help="validation batches for the loss before/after")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gguf-types", default=",".join(GGUF_TYPES),
                    help="GGUF types, comma-separated (a 64-wide model has no K-quant blocks: leave them out)")
    ap.add_argument("--onnx-int8", default="avx2", help="dynamic int8 ONNX targets, comma-separated")
    ap.add_argument("--onnx-int8-static", default="avx2", help="static (QDQ) int8 ONNX targets, comma-separated")
    ap.add_argument("--onnx", action=argparse.BooleanOptionalAction, default=True, help="export and score ONNX")
    ap.add_argument("--imatrix", action=argparse.BooleanOptionalAction, default=True,
                    help="give llama.cpp's K-quants an importance matrix (as build/smollm3-135m-distill.yaml does)")
    ap.add_argument("--calibration-windows", type=int, default=32, help="windows of 256 train tokens (imatrix, static)")
    ap.add_argument("--export-name", default="export", help="subdir of --work for this export config's artifacts")
    ap.add_argument("--seq-len-eval", type=int, default=256)
    ap.add_argument("--max-tokens", type=int, default=2048, help="held-out tokens per language")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    args.gguf_types = [t for t in args.gguf_types.split(",") if t]
    args.onnx_int8 = [t for t in args.onnx_int8.split(",") if t]
    args.onnx_int8_static = [t for t in args.onnx_int8_static.split(",") if t]
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)

    import torch

    torch.set_num_threads(args.threads)
    inputs = run_inputs(args.run.resolve())
    t_start = time.perf_counter()
    if args.hf is not None:
        hf, training = args.hf.resolve(), None
    else:
        hf, training = train_student(args, inputs)
    export, report, export_s = export_all(hf, args, inputs)
    scores = score_all(hf, export, report, inputs, args)

    from smoledge.evaluate.tables import HF_ARTIFACT, markdown_table, quant_markdown, reference_note

    hf_ppl = scores["overall"][HF_ARTIFACT]["ppl"]
    print()
    print(quant_markdown(scores["quantization"], reference_note({}, {})))
    print(f"PyTorch (hf, fp32) ppl {hf_ppl:.4f}; {scores['params']:,} parameters; seq_len {args.seq_len_eval}, "
          f"up to {args.max_tokens} held-out tokens per language ({sum(scores['tokens_per_language'].values())} "
          f"in all)\n")
    print(type_mix_markdown(report, hf_ppl, scores["overall"]))
    print(markdown_table(scores["per_language"]))
    if training is not None:
        print(f"training: {training['steps']} steps x {args.batch_size} x {args.seq_len} tokens = "
              f"{training['tokens']:,} tokens, {training['minutes']:.1f} min ({training['tokens_per_s']:.0f} tok/s), "
              f"train loss {training['first_loss']:.3f} -> {training['last_loss']:.3f}, "
              f"val loss {training['val_loss_start']:.3f} -> {training['val_loss_end']:.3f}")
    print(f"export {export_s / 60:.1f} min (0 = reused), scoring {sum(scores['score_seconds'].values()) / 60:.1f} min "
          f"({', '.join(f'{n} {s:.0f}s' for n, s in scores['score_seconds'].items())}); "
          f"load average {os.getloadavg()[0]:.1f} (1 min)")

    result = {
        "hf": str(hf), "export_dir": str(export), "args": {k: str(v) if isinstance(v, Path) else v
                                                          for k, v in vars(args).items()},
        "training": training, "export_seconds": export_s, "parity": report, **scores,
        "wall_seconds": time.perf_counter() - t_start, "load_avg": os.getloadavg(), "cores": os.cpu_count(),
    }
    if args.out is not None:
        from smoledge.io import atomic_write_json

        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.out, result)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
