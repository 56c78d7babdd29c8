"""Export stage: the distilled student as an HF directory, GGUF files and ONNX models, gated by parity.

Writes runs/<name>/export/{hf/, model-f32.gguf, model-<type>.gguf..., onnx/, onnx-int8-<target>/,
onnx-int8-static-<target>/, imatrix.gguf, parity.json}. The f32 GGUF and the fp32 ONNX model must
tokenize, score and greedily decode like PyTorch or the build stops; quantized files have their
logit drift and size recorded (the evaluate stage then measures their perplexity).

    smoledge build build/quickstart.yaml --until export
    # or: from smoledge.runs import build; build(recipe, until="export")
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from smoledge.errors import SmoledgeError
from smoledge.io import atomic_dir, atomic_write_json, atomic_write_text
from smoledge.export.from_source import import_gguf
from smoledge.layout import ExportFiles
from smoledge.model.source import fetch, model_identity
from smoledge.recipe import Recipe
from smoledge.stage import Stage, StageContext, StageResult
from smoledge.tokenizer.pretrained import TOKENIZER_FILES

MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors.index.json")


def run(ctx: StageContext) -> StageResult:
    from smoledge.export.model_card import model_card
    from smoledge.export.parity import load_torch
    from smoledge.export.yarn import apply_yarn

    cfg, source = ctx.recipe.export, ctx.recipe.model
    hf = ExportFiles(ctx.dir).hf
    if source.source:
        local = fetch(source.source, source.revision)
        if local.suffix == ".gguf":
            return imported_result(ctx, import_gguf(local, ctx.dir))
        ctx.progress.update(f"copying {source.source}")
        copy_hf_dir(local, [], hf)
    else:
        ctx.progress.update("copying HF model")
        copy_hf_dir(ctx.files.distill.model, [ctx.files.tokenizer.tokenizer], hf)
    apply_yarn(hf, cfg.yarn_factor)
    model, _ = load_torch(hf)
    # A model.source build curates no data to calibrate on (the recipe refuses imatrix and static int8 then).
    windows = None if source.source else calibration(ctx.files.tokenizer.shards, cfg,
                                                     model.config.max_position_embeddings)
    report = export_model(hf, ctx.dir, cfg, windows, ctx.progress, model=model)
    if not source.source:  # an imported model keeps its authors' card; this one describes a smoledge training
        params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
        card = model_card(ctx.recipe, ctx.files, model.config.to_dict(), params, report)
        atomic_write_text(hf / "README.md", card)

    ggufs = [ctx.dir / name for name in report["files"]]
    onnx_files = sorted(p for name in report.get("onnx", {}) for p in (ctx.dir / name).rglob("*") if p.is_file())
    extra = [ExportFiles(ctx.dir).imatrix] if "imatrix" in report else []
    outputs = (sorted(p for p in hf.rglob("*") if p.is_file()) + ggufs + onnx_files + extra
               + [ExportFiles(ctx.dir).parity])
    f32 = report["files"]["model-f32.gguf"]
    parts = [f"gguf f32 \u0394logit {f32['logits']['max_abs_diff']:.1e}"]
    for name, e in report["files"].items():
        if name != "model-f32.gguf":
            parts.append(f"{name[len('model-'):-len('.gguf')]} {_mb(e['bytes'])} \u0394logit {e['logits']['max_abs_diff']:.1e}")
    if "onnx" in report:
        parts.append(f"onnx \u0394logit {report['onnx']['onnx']['max_abs_diff']:.1e}")
    metrics = {
        "onnx": report.get("onnx", {}),
        "files": {n: {"bytes": e["bytes"], "max_abs_logit_diff": e["logits"]["max_abs_diff"],
                      "top1_agreement": e["logits"]["top1_agreement"]} for n, e in report["files"].items()},
        "f32_max_abs_logit_diff": f32["logits"]["max_abs_diff"],
        "greedy_matching_prefix": f32["greedy"]["matching_prefix"],
        "tokenization_texts": report["tokenization"]["texts"],
        "calibration": report.get("calibration"),
    }
    artifact = ExportFiles(ctx.dir).gguf(report["order"][-1])
    return StageResult(outputs=outputs, metrics=metrics, summary=", ".join(parts), artifact=artifact)


def preflight(ctx: StageContext) -> None:
    """An HF model.source whose architecture export cannot write is refused before anything is replaced."""
    import json

    from smoledge.export.architectures import arch_spec

    source = ctx.recipe.model
    if not source.source or source.is_gguf:
        return
    config = fetch(source.source, source.revision) / "config.json"
    arch_spec(json.loads(config.read_text()).get("model_type"), f" (model.source {source.source})")


def external_inputs(recipe: Recipe) -> dict[str, Any]:
    """An imported model by content (or hub id): replacing the weights behind the same path re-exports."""
    if not recipe.model.source:
        return {}
    return {"model": model_identity(str(fetch(recipe.model.source, recipe.model.revision)), "model.source")}


def imported_result(ctx: StageContext, report: dict[str, Any]) -> StageResult:
    files = ExportFiles(ctx.dir)
    (name, entry), = report["files"].items()
    outputs = sorted(p for p in files.hf.rglob("*") if p.is_file()) + [ctx.dir / name, files.parity]
    return StageResult(outputs=outputs, metrics={"imported": report["source"], "files": {name: {"bytes": entry["bytes"]}}},
                       summary=f"imported {name} ({_mb(entry['bytes'])}), loads in llama.cpp; no PyTorch reference",
                       artifact=ctx.dir / name)


def calibration(shards: Path, cfg: Any, context: int) -> list[list[int]] | None:
    """Calibration windows from the curated training split, when static int8 or the imatrix needs them."""
    from smoledge.tokenizer.shards import Shard
    from smoledge.export.calibration import calibration_windows

    if not (cfg.onnx_int8_static or cfg.imatrix):
        return None
    if cfg.calibration_seq_len > context:
        raise SmoledgeError(f"export.calibration_seq_len {cfg.calibration_seq_len} exceeds the model's context "
                            f"({context}); set it to at most {context}")
    if not (shards / "train.meta.json").exists():
        raise SmoledgeError(f"{shards}/train.meta.json is missing: calibration text comes from the curated "
                            "training split; run the train-tokenizer stage first")
    return calibration_windows(Shard.open(shards, "train"), cfg.calibration_windows, cfg.calibration_seq_len)


def export_model(hf: Path, out_dir: Path, cfg: Any, windows: list[list[int]] | None = None,
                 progress: Any = None, model: Any = None) -> dict[str, Any]:
    """Write every artifact `cfg` (an ExportConfig) asks for from the HF directory `hf` into `out_dir`:
    model-<type>.gguf, onnx/, onnx-int8-<target>/, onnx-int8-static-<target>/, imatrix.gguf, and
    parity.json. Gates fp32 artifacts (tokenization, logits, greedy decoding) and measures the rest;
    returns the parity report. `windows` (calibration token ids) are needed for static int8 and imatrix."""
    from smoledge.export.config import FROM_F16
    from smoledge.export.gguf import write_gguf
    from smoledge.export.kquant import quantize_gguf, tensor_types
    from smoledge.export.parity import check_greedy, check_parity, check_tokenization, load_torch, probe_gguf
    from smoledge.export.yarn import parity_text_beyond_trained

    files = ExportFiles(out_dir)
    progress = progress if progress is not None else _Silent()
    model = model if model is not None else load_torch(hf)[0]
    if (cfg.onnx_int8_static or cfg.imatrix) and not windows:
        raise SmoledgeError("export.onnx_int8_static and export.imatrix need calibration windows from the curated "
                            "training split; none were given")
    wanted = cfg.intermediate_types() + list(dict.fromkeys(cfg.gguf_types))
    # f32 first (the reference), then smoledge's own files, then llama.cpp's quants of the f16 one.
    types = ["f32"] + [t for t in wanted if t != "f32" and t not in FROM_F16] + [t for t in wanted if t in FROM_F16]
    report: dict[str, Any] = {"limit": cfg.parity_max_abs_logit_diff, "files": {}, "order": types}
    long_text = parity_text_beyond_trained(hf, cfg.parity_text)  # None unless the model has YaRN
    if windows:
        report["calibration"] = {"source": "curated training split", "windows": len(windows),
                                 "tokens": sum(len(w) for w in windows)}
    imatrix = None
    if cfg.imatrix:
        from smoledge.export.imatrix import collect_imatrix, write_imatrix_gguf

        progress.update("measuring the importance matrix")
        imatrix = collect_imatrix(model, windows)
        write_imatrix_gguf(imatrix, files.imatrix, "smoledge curated training split", len(windows[0]))
        report["imatrix"] = {"file": files.imatrix.name, "tensors": len(imatrix)}
    try:
        for i, dtype in enumerate(types):
            path = files.gguf(dtype)
            progress.update(f"writing {path.name}", i, len(types))
            notes: list[str] = []
            t0 = time.perf_counter()
            if dtype in FROM_F16:
                quantize_gguf(files.gguf("f16"), path, dtype, imatrix=imatrix)
            else:
                write_gguf(hf, path, dtype, notes)
            entry: dict[str, Any] = {"bytes": path.stat().st_size, "notes": notes, "tensor_types": tensor_types(path),
                                     "imatrix": dtype in FROM_F16 and imatrix is not None,
                                     "write_s": round(time.perf_counter() - t0, 2)}
            report["files"][path.name] = entry
            progress.update(f"checking {path.name}", i, len(types))
            probe_gguf(path)  # a crashing llama.cpp build fails here with a reason, not a signal
            if dtype == "f32":
                # The gate: the reference file must be the model, token for token.
                report["tokenization"] = check_tokenization(hf, path)
                entry["logits"] = check_parity(hf, path, cfg.parity_text, cfg.parity_max_abs_logit_diff, model=model)
                entry["greedy"] = check_greedy(hf, path, cfg.parity_text, cfg.parity_greedy_tokens,
                                               tie_tol=2 * cfg.parity_max_abs_logit_diff, model=model)
                if long_text:  # YaRN: also where only the scaled RoPE reaches, past the trained context
                    entry["logits_beyond_trained"] = check_parity(hf, path, long_text,
                                                                  cfg.parity_max_abs_logit_diff, model=model)
            else:
                entry["logits"] = check_parity(hf, path, cfg.parity_text, None, model=model)
        if cfg.onnx:
            export_onnx_artifacts(hf, out_dir, cfg, model, report, windows, progress)
            if long_text:
                from smoledge.export.onnx import check_onnx

                report["onnx"]["onnx"]["beyond_trained"] = check_onnx(hf, files.onnx, long_text,
                                                                      cfg.parity_max_abs_logit_diff, model=model)
    except SmoledgeError as exc:
        # Keep the evidence next to the files before failing the build.
        report["failed"] = str(exc)
        atomic_write_json(files.parity, report)
        raise
    progress.update("done", len(types), len(types))
    atomic_write_json(files.parity, report)
    return report


def export_onnx_artifacts(hf: Path, out_dir: Path, cfg: Any, model: Any, report: dict[str, Any],
                          windows: list[list[int]] | None, progress: Any) -> None:
    """onnx/ (fp32, gated like GGUF f32: logits and greedy decoding), onnx-int8-<target>/ (dynamic) and
    onnx-int8-static-<target>/ (QDQ, calibrated), the int8 ones measured against PyTorch."""
    from smoledge.export.onnx import check_onnx, export_onnx, quantize_onnx, quantize_onnx_static, read_meta

    files = ExportFiles(out_dir)
    progress.update(f"exporting ONNX (optimum, text-generation-with-past, {cfg.onnx_optimization} optimisation)")
    t0 = time.perf_counter()
    fp32 = export_onnx(hf, files.onnx, optimization=cfg.onnx_optimization)
    seconds = time.perf_counter() - t0
    report["onnx"] = {}
    report["onnx"]["onnx"] = check_onnx(hf, fp32, cfg.parity_text, cfg.parity_max_abs_logit_diff,
                                        greedy_tokens=cfg.parity_greedy_tokens, model=model)
    report["onnx"]["onnx"]["write_s"] = round(seconds, 2)
    jobs = [(files.onnx_int8(t).name, lambda d, t=t: quantize_onnx(fp32, d, t)) for t in dict.fromkeys(cfg.onnx_int8)]
    jobs += [(files.onnx_int8(t, static=True).name, lambda d, t=t: quantize_onnx_static(fp32, d, t, windows))
             for t in dict.fromkeys(cfg.onnx_int8_static)]
    for name, make in jobs:
        progress.update(f"quantizing {name}")
        t0 = time.perf_counter()
        make(out_dir / name)
        seconds = time.perf_counter() - t0
        report["onnx"][name] = check_onnx(hf, out_dir / name, cfg.parity_text, None, model=model)
        report["onnx"][name]["write_s"] = round(seconds, 2)
    for name in report["onnx"]:
        report["onnx"][name]["meta"] = read_meta(out_dir / name)


class _Silent:
    def update(self, *args: Any, **kwargs: Any) -> None:
        pass


def copy_hf_dir(src: Path, tokenizer_dirs: list[Path], dst: Path) -> Path:
    """Copy model weights, config, generation config and tokenizer into `dst`, atomically.

    The tokenizer comes from `src` when it was saved with the model, else from the first
    of `tokenizer_dirs` holding a tokenizer.json."""
    if not (src / "config.json").exists():
        raise SmoledgeError(f"no model at {src} (config.json missing); run the distill stage first")
    weights = sorted(src.glob("*.safetensors"))
    if not weights:
        raise SmoledgeError(f"no *.safetensors weights in {src}; the distill stage must save with safetensors")
    tok_src = next((d for d in [src, *tokenizer_dirs] if (d / "tokenizer.json").exists()), None)
    if tok_src is None:
        looked = ", ".join(str(d) for d in [src, *tokenizer_dirs])
        raise SmoledgeError(f"no tokenizer.json in {looked}; run the train-tokenizer stage first")
    with atomic_dir(dst) as tmp:
        for p in weights + [src / n for n in MODEL_FILES if (src / n).exists()]:
            shutil.copy2(p, tmp / p.name)
        for name in TOKENIZER_FILES:
            if (tok_src / name).exists():
                shutil.copy2(tok_src / name, tmp / name)
        if not (tmp / "generation_config.json").exists():
            # Serving and HF generate() read stop ids from here.
            from transformers import AutoConfig, GenerationConfig

            GenerationConfig.from_model_config(AutoConfig.from_pretrained(tmp)).save_pretrained(tmp)
    return dst


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


STAGE = Stage(run=run, external_inputs=external_inputs, preflight=preflight)
