"""Evaluate stage: held-out perplexity and bits-per-byte per language, per artifact.

Scores the curated `valid` split with the exported HF model (PyTorch) and, when
evaluate.gguf is set, with every GGUF the export stage wrote (llama.cpp), so a
quantization's cost shows up per language. Writes runs/<name>/evaluate/
{report.json, report.md}.

    smoledge build build/quickstart.yaml --until evaluate
    # or: from smoledge.runs import build; build(recipe, until="evaluate")
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from smoledge.errors import SmoledgeError
from smoledge.io import atomic_write_json, atomic_write_text
from smoledge.runs import StageContext, StageResult

HF_ARTIFACT = "hf"
# The fp32 reference each runtime's quantized artifacts are compared with.
GGUF_FP32, ONNX_FP32 = "model-f32.gguf", "onnx"


def run(ctx: StageContext) -> StageResult:
    from transformers import AutoConfig, AutoTokenizer

    from smoledge.evaluate.perplexity import GGUFScorer, ORTScorer, Score, TorchScorer, score, token_byte_lengths

    cfg = ctx.recipe.evaluate
    export_dir = ctx.stage_dir("export")
    hf = export_dir / "hf"
    if not (hf / "config.json").exists():
        raise SmoledgeError(f"no exported model at {hf}; run the export stage first")
    max_pos = AutoConfig.from_pretrained(hf).max_position_embeddings
    if cfg.seq_len > max_pos:
        raise SmoledgeError(f"evaluate.seq_len {cfg.seq_len} exceeds the model's context ({max_pos}); "
                            f"set evaluate.seq_len <= {max_pos}")
    tok = AutoTokenizer.from_pretrained(hf)
    token_bytes = token_byte_lengths(tok)
    ctx.progress.update("tokenizing held-out text")
    by_lang = held_out_ids(ctx.stage_dir("curate") / "curated.parquet", tok, cfg.max_tokens_per_language)

    artifacts: list[tuple[str, Any]] = [(HF_ARTIFACT, lambda: TorchScorer(hf))]
    files: dict[str, list[Path]] = {}
    if cfg.gguf:
        ggufs = sorted(export_dir.glob("model-*.gguf"))
        if not ggufs:
            raise SmoledgeError(f"evaluate.gguf is true but {export_dir} holds no model-*.gguf; "
                                "re-run export or set evaluate.gguf: false")
        artifacts += [(p.name, lambda p=p: GGUFScorer(p, cfg.seq_len)) for p in ggufs]
        files.update({p.name: [p] for p in ggufs})
    if cfg.onnx:
        # onnx/ first: it is the reference its int8 variants are compared with.
        dirs = sorted((d for d in export_dir.glob("onnx*") if d.is_dir() and any(d.glob("*.onnx"))),
                      key=lambda d: (d.name != ONNX_FP32, d.name))
        artifacts += [(d.name, lambda d=d: ORTScorer(d)) for d in dirs]
        files.update({d.name: onnx_model_files(d) for d in dirs})

    report: dict[str, dict[str, dict[str, float]]] = {}
    overall: dict[str, Score] = {}
    jobs, done = len(artifacts) * len(by_lang), 0
    for name, make_scorer in artifacts:
        scorer = make_scorer()
        report[name], overall[name] = {}, Score(0.0, 0, 0)
        for lang, ids in by_lang.items():
            ctx.progress.update(f"{name} {lang}", done, jobs)
            s = score(scorer, ids, token_bytes, cfg.seq_len)
            report[name][lang] = {"ppl": s.ppl, "bpb": s.bpb, "tokens": s.tokens}
            overall[name] = overall[name] + s
            done += 1
        del scorer
    ctx.progress.update("done", jobs, jobs)

    table = quant_table(overall, files, count_params(hf))
    atomic_write_json(ctx.dir / "report.json", report)
    atomic_write_text(ctx.dir / "report.md", markdown_table(report) + quant_markdown(table))
    metrics = {
        "overall": {n: {"ppl": s.ppl, "bpb": s.bpb, "tokens": s.tokens} for n, s in overall.items()},
        "quantization": table,
        "languages": sorted(by_lang),
        "seq_len": cfg.seq_len,
    }
    return StageResult(outputs=[ctx.dir / "report.json", ctx.dir / "report.md"], metrics=metrics,
                       summary=summary_line(report, overall, table), artifact=ctx.dir / "report.md")


def count_params(hf: Path) -> int:
    """Parameters of the exported model, from its safetensors headers (no weights loaded)."""
    from safetensors import safe_open

    total = 0
    for path in sorted(hf.glob("*.safetensors")):
        with safe_open(str(path), "np") as f:
            for name in f.keys():
                total += math.prod(f.get_slice(name).get_shape())
    return total


def onnx_model_files(onnx_dir: Path) -> list[Path]:
    """The graph and weight files of an ONNX artifact (its tokenizer and configs are not the model)."""
    from smoledge.export.onnx import model_file

    graph = onnx_dir / model_file(onnx_dir)
    return [graph] + sorted(p for p in onnx_dir.glob(graph.name + "_data*"))


def quant_table(overall: dict[str, Any], files: dict[str, list[Path]], params: int) -> dict[str, dict[str, float]]:
    """Per GGUF or ONNX artifact: bytes on disk, bits per weight (file bits / parameters: for a GGUF its
    metadata and tokenizer included, as a device stores them), overall perplexity and its change vs the
    fp32 artifact of the same runtime (model-f32.gguf for GGUF files, onnx/ for ONNX ones)."""
    table = {}
    for name, s in overall.items():
        if name not in files:
            continue
        ref = overall.get(GGUF_FP32 if name.endswith(".gguf") else ONNX_FP32)
        size = sum(p.stat().st_size for p in files[name])
        delta = 100 * (s.ppl / ref.ppl - 1) if ref is not None and ref.ppl > 0 else float("nan")
        table[name] = {"bytes": size, "bits_per_weight": 8 * size / max(params, 1), "ppl": s.ppl,
                       "ppl_delta_pct_vs_fp32": delta}
    return table


def quant_markdown(table: dict[str, dict[str, float]]) -> str:
    if not table:
        return ""
    lines = ["# Quantization", "",
             "Δ ppl is against the fp32 artifact of the same runtime (model-f32.gguf, onnx).", "",
             "| artifact | size | bits/weight | ppl | Δ ppl vs fp32 |", "|---|---:|---:|---:|---:|"]
    for name, row in table.items():
        lines.append(f"| {name} | {row['bytes'] / 1e6:.2f} MB | {row['bits_per_weight']:.2f} | {row['ppl']:.3f} | "
                     f"{row['ppl_delta_pct_vs_fp32']:+.2f}% |")
    return "\n".join(lines) + "\n"


def held_out_ids(parquet: Path, tok, max_tokens: int) -> dict[str, list[int]]:
    """Per language, the `valid` documents' ids (each followed by EOS, as in training), capped."""
    import pyarrow.parquet as pq

    if not parquet.exists():
        raise SmoledgeError(f"{parquet} is missing; run the curate stage first")
    missing = {"text", "lang", "split"} - set(pq.read_schema(parquet).names)
    if missing:
        raise SmoledgeError(f"{parquet} lacks column(s) {sorted(missing)}; re-run the curate stage")
    # Only the held-out rows are read: the training split can be large.
    rows = pq.read_table(parquet, columns=["text", "lang", "split"], filters=[("split", "==", "valid")]).to_pylist()
    eos = tok.eos_token_id
    out: dict[str, list[int]] = {}
    for row in rows:
        if row["split"] != "valid" or not row["text"]:
            continue
        ids = out.setdefault(row["lang"], [])
        if len(ids) >= max_tokens:
            continue
        ids.extend(tok.encode(row["text"], add_special_tokens=False) + ([eos] if eos is not None else []))
    out = {lang: ids[:max_tokens] for lang, ids in sorted(out.items()) if len(ids) >= 2}
    if not out:
        raise SmoledgeError(f"{parquet} has no rows with split == 'valid'; raise data.valid_fraction "
                            "or add more documents")
    return out


def markdown_table(report: dict[str, dict[str, dict[str, float]]]) -> str:
    """Rows: artifacts; columns: ppl / bpb per language."""
    langs = sorted({lang for per in report.values() for lang in per})
    head = "| artifact | " + " | ".join(f"{l} ppl | {l} bpb" for l in langs) + " |"
    sep = "|---|" + "---:|---:|" * len(langs)
    lines = ["# Held-out perplexity", "", head, sep]
    for name, per in report.items():
        cells = [f"{per[l]['ppl']:.2f} | {per[l]['bpb']:.3f}" if l in per else "- | -" for l in langs]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    tokens = ", ".join(f"{l} {next(iter(report.values()))[l]['tokens']}" for l in langs
                       if l in next(iter(report.values())))
    lines += ["", f"Tokens scored per language: {tokens}.", ""]
    return "\n".join(lines)


def summary_line(report: dict[str, dict[str, dict[str, float]]], overall: dict[str, Any],
                 table: dict[str, dict[str, float]] | None = None) -> str:
    """e.g. 'ppl en 21.3 fr 24.0 (q8_0 8.5 bpw Δ +0.3%)': HF per language, GGUF size and drift overall."""
    ref = report[HF_ARTIFACT]
    parts = ["ppl " + " ".join(f"{lang} {v['ppl']:.1f}" for lang, v in ref.items())]
    base = overall[HF_ARTIFACT].ppl
    drifts = []
    for name, s in overall.items():
        if name != HF_ARTIFACT and math.isfinite(base) and base > 0:
            label = name.removeprefix("model-").removesuffix(".gguf")
            bpw = f" {table[name]['bits_per_weight']:.1f} bpw" if table and name in table else ""
            drifts.append(f"{label}{bpw} \u0394 {100 * (s.ppl / base - 1):+.2f}%")
    if drifts:
        parts.append("(" + ", ".join(drifts) + ")")
    return " ".join(parts)
