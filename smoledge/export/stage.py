"""Export stage: the distilled student as an HF directory plus GGUF files, gated by parity.

Writes runs/<name>/export/{hf/, model-f32.gguf, model-<type>.gguf..., parity.json}.
The f32 GGUF must tokenize, score and greedily decode like PyTorch or the build
stops; quantized files have their logit drift and size recorded.

    smoledge build build/quickstart.yaml --until export
    # or: from smoledge.runs import build; build(recipe, until="export")
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from smoledge.errors import SmoledgeError
from smoledge.io import atomic_dir, atomic_write_json, atomic_write_text
from smoledge.runs import StageContext, StageResult

MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def run(ctx: StageContext) -> StageResult:
    from smoledge.export.config import FROM_F16
    from smoledge.export.gguf import write_gguf
    from smoledge.export.kquant import quantize_gguf
    from smoledge.export.model_card import model_card
    from smoledge.export.parity import check_greedy, check_parity, check_tokenization, load_torch, probe_gguf

    cfg = ctx.recipe.export
    src = ctx.stage_dir("distill") / "model"
    hf = ctx.dir / "hf"
    ctx.progress.update("copying HF model")
    copy_hf_dir(src, [ctx.stage_dir("train-tokenizer"), ctx.stage_dir("train-tokenizer") / "tokenizer"], hf)

    wanted = list(dict.fromkeys(cfg.gguf_types))
    if any(t in FROM_F16 for t in wanted) and "f16" not in wanted:
        wanted.insert(0, "f16")  # the K-quants' source
    # f32 first (the reference), then smoledge's own files, then llama.cpp's quants of the f16 one.
    types = ["f32"] + [t for t in wanted if t != "f32" and t not in FROM_F16] + [t for t in wanted if t in FROM_F16]
    report: dict[str, Any] = {"limit": cfg.parity_max_abs_logit_diff, "files": {}}
    model, _ = load_torch(hf)
    for i, dtype in enumerate(types):
        path = ctx.dir / f"model-{dtype}.gguf"
        ctx.progress.update(f"writing {path.name}", i, len(types))
        notes: list[str] = []
        if dtype in FROM_F16:
            quantize_gguf(ctx.dir / "model-f16.gguf", path, dtype)
        else:
            write_gguf(hf, path, dtype, notes)
        entry: dict[str, Any] = {"bytes": path.stat().st_size, "notes": notes}
        report["files"][path.name] = entry
        ctx.progress.update(f"checking {path.name}", i, len(types))
        try:
            probe_gguf(path)  # a crashing llama.cpp build fails here with a reason, not a signal
            if dtype == "f32":
                # The gate: the reference file must be the model, token for token.
                report["tokenization"] = check_tokenization(hf, path)
                entry["logits"] = check_parity(hf, path, cfg.parity_text, cfg.parity_max_abs_logit_diff, model=model)
                entry["greedy"] = check_greedy(hf, path, cfg.parity_text, cfg.parity_greedy_tokens,
                                               tie_tol=2 * cfg.parity_max_abs_logit_diff, model=model)
            else:
                entry["logits"] = check_parity(hf, path, cfg.parity_text, None, model=model)
        except SmoledgeError as exc:
            # Keep the evidence next to the files before failing the build.
            report["failed"] = str(exc)
            atomic_write_json(ctx.dir / "parity.json", report)
            raise
    onnx_dirs = export_onnx_artifacts(ctx, hf, model, report) if cfg.onnx else []
    ctx.progress.update("done", len(types), len(types))
    atomic_write_json(ctx.dir / "parity.json", report)
    params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    card = model_card(ctx.recipe, ctx.run_dir, model.config.to_dict(), params, report)
    atomic_write_text(hf / "README.md", card)

    ggufs = [ctx.dir / name for name in report["files"]]
    onnx_files = sorted(p for d in onnx_dirs for p in d.rglob("*") if p.is_file())
    outputs = sorted(p for p in hf.rglob("*") if p.is_file()) + ggufs + onnx_files + [ctx.dir / "parity.json"]
    f32 = report["files"]["model-f32.gguf"]
    parts = [f"gguf f32 \u0394logit {f32['logits']['max_abs_diff']:.1e}"]
    for name, e in report["files"].items():
        if name != "model-f32.gguf":
            parts.append(f"{name[len('model-'):-len('.gguf')]} {_mb(e['bytes'])} \u0394logit {e['logits']['max_abs_diff']:.1e}")
    if "onnx" in report:
        parts.append(f"onnx \u0394logit {report['onnx']['model.onnx']['max_abs_diff']:.1e}")
    metrics = {
        "onnx": report.get("onnx", {}),
        "files": {n: {"bytes": e["bytes"], "max_abs_logit_diff": e["logits"]["max_abs_diff"],
                      "top1_agreement": e["logits"]["top1_agreement"]} for n, e in report["files"].items()},
        "f32_max_abs_logit_diff": f32["logits"]["max_abs_diff"],
        "greedy_matching_prefix": f32["greedy"]["matching_prefix"],
        "tokenization_texts": report["tokenization"]["texts"],
    }
    artifact = ctx.dir / f"model-{types[-1]}.gguf"
    return StageResult(outputs=outputs, metrics=metrics, summary=", ".join(parts), artifact=artifact)


def export_onnx_artifacts(ctx: StageContext, hf: Path, model: Any, report: dict[str, Any]) -> list[Path]:
    """onnx/ (fp32, gated like GGUF f32: logits and greedy decoding) and onnx-int8-<target>/ (reported)."""
    from smoledge.export.onnx import check_onnx, export_onnx, quantize_onnx

    cfg = ctx.recipe.export
    ctx.progress.update("exporting ONNX (optimum, text-generation-with-past)")
    fp32 = export_onnx(hf, ctx.dir / "onnx")
    report["onnx"] = {}
    dirs = [fp32]
    try:
        report["onnx"]["model.onnx"] = check_onnx(hf, fp32, cfg.parity_text, cfg.parity_max_abs_logit_diff,
                                                  greedy_tokens=cfg.parity_greedy_tokens, model=model)
        for target in dict.fromkeys(cfg.onnx_int8):
            ctx.progress.update(f"quantizing ONNX int8 ({target})")
            int8 = quantize_onnx(fp32, ctx.dir / f"onnx-int8-{target}", target)
            report["onnx"][f"int8-{target}"] = check_onnx(hf, int8, cfg.parity_text, None, model=model)
            dirs.append(int8)
    except SmoledgeError as exc:
        report["failed"] = str(exc)
        atomic_write_json(ctx.dir / "parity.json", report)
        raise
    return dirs


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
