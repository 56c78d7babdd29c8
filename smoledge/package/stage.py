"""Package stage: assemble the deployable bundle from the export and evaluate stages.

Writes runs/<name>/bundle/ (layout in smoledge/serve/bundle.py): the chosen
GGUF, the tokenizer files, server.json, the serving assets (Containerfile,
systemd unit, run.sh) and manifest.json, which holds the sha256 of every
file, so `smoledge serve` on a board can prove it got the bundle intact.

    smoledge package build/quickstart.yaml
    # or: from smoledge.runs import build; build(recipe, until="package")
    smoledge serve runs/quickstart/bundle
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from smoledge.errors import SmoledgeError
from smoledge.export.stage import TOKENIZER_FILES
from smoledge.io import atomic_path, atomic_write_json, file_manifest, sha256_file
from smoledge.runs import INPROGRESS, RECORD, StageContext, StageResult, library_versions, read_record
from smoledge.serve.bundle import BUILD_RECORDS, MANIFEST, MANIFEST_FORMAT, SERVER, ServerSettings

# Without these two a runtime other than llama.cpp cannot rebuild the tokenizer.
REQUIRED_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# Special tokens that end a reply in smoledge's ChatML format (see smoledge/data/bpe.py).
END_TOKENS = ("<|im_end|>",)


def serving_assets_dir() -> Path:
    """The serving/ folder of deployment assets (checkout or installed wheel)."""
    from smoledge.assets import asset_dir

    return asset_dir("serving")


def run(ctx: StageContext) -> StageResult:
    recipe = ctx.recipe
    pkg = recipe.package
    export_dir = ctx.stage_dir("export")
    hf = export_dir / "hf"
    src_gguf = export_dir / f"model-{pkg.gguf_type}.gguf"
    if not src_gguf.is_file():
        raise SmoledgeError(
            f"{src_gguf} is missing; package.gguf_type is '{pkg.gguf_type}': add it to export.gguf_types "
            "and re-run `smoledge export`"
        )
    for name in REQUIRED_TOKENIZER_FILES:
        if not (hf / name).is_file():
            raise SmoledgeError(f"{hf / name} is missing; re-run `smoledge export`")
    report_path = ctx.stage_dir("evaluate") / "report.json"
    if not report_path.is_file():
        raise SmoledgeError(f"{report_path} is missing; run `smoledge evaluate` first")

    profiles = recipe.device_profiles()
    hf_config = _json(hf / "config.json")
    tok_config = _json(hf / "tokenizer_config.json")
    n_ctx_train = int(hf_config.get("max_position_embeddings") or 0)
    if n_ctx_train <= 0:
        raise SmoledgeError(f"{hf / 'config.json'} has no max_position_embeddings; re-run `smoledge export`")
    n_ctx = pkg.n_ctx or min([n_ctx_train] + [p.max_context for p in profiles])
    if n_ctx > n_ctx_train:
        raise SmoledgeError(
            f"package.n_ctx {pkg.n_ctx} exceeds the model's trained context {n_ctx_train}; "
            f"set package.n_ctx <= {n_ctx_train} (or 0 for the default)"
        )

    # A resumed attempt may have left files of another layout: start clean,
    # keeping only the orchestrator's own records.
    for p in sorted(ctx.dir.iterdir()):
        if p.name not in (RECORD, INPROGRESS):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()

    ctx.progress.update(f"copying {src_gguf.name}")
    _copy(src_gguf, ctx.dir / src_gguf.name)
    for name in TOKENIZER_FILES:
        if (hf / name).is_file():
            _copy(hf / name, ctx.dir / "tokenizer" / name)
    assets = serving_assets_dir()
    if not (assets / "Containerfile").is_file():
        raise SmoledgeError(f"serving assets not found at {assets}; reinstall smoledge (the wheel ships them) or run from a source checkout")
    for p in sorted(assets.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(assets).parts):
            _copy(p, ctx.dir / "serving" / p.relative_to(assets))

    settings = ServerSettings(
        model_id=recipe.name,
        model_file=src_gguf.name,
        gguf_type=pkg.gguf_type,
        chat_template=_chat_template(hf, tok_config),
        bos_token=_token_text(tok_config.get("bos_token")),
        eos_token=_token_text(tok_config.get("eos_token")),
        # dict.fromkeys: a tokenizer whose EOS is <|im_end|> (SmolLM3's) lists it once.
        stop_tokens=[t for t in dict.fromkeys((*END_TOKENS, _token_text(tok_config.get("eos_token"))))
                     if t],
        n_ctx=n_ctx,
        n_ctx_train=n_ctx_train,
        threads=pkg.threads or (profiles[0].threads if profiles else 0),
        host=pkg.host,
        port=pkg.port,
    )
    atomic_write_json(ctx.dir / SERVER, settings.to_dict())

    ctx.progress.update("checksumming")
    files = file_manifest(ctx.dir, exclude=(MANIFEST, *BUILD_RECORDS))
    report = _json(report_path)
    sections = [name for name in recipe.to_dict()]
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "name": recipe.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"file": src_gguf.name, "gguf_type": pkg.gguf_type, "bytes": files[src_gguf.name]["bytes"],
                  "n_ctx_train": n_ctx_train},
        "files": files,
        "versions": library_versions(),
        "recipe": {"fingerprint": recipe.fingerprint(*sections), "sections": recipe.to_dict()},
        "upstream": {n: (read_record(ctx.stage_dir(n)) or {}).get("fingerprint") for n in ("export", "evaluate")},
        "evaluation": {
            "source": "evaluate/report.json",
            "sha256": sha256_file(report_path),
            "bundled": report.get("perplexity", {}).get(src_gguf.name),
            "reference": report.get("perplexity", {}).get("hf"),
            "quantization": report.get("quantization", {}).get(src_gguf.name),
            "gates": report.get("gates", []),
            "selection": report.get("devices", {}),
        },
        "devices": [p.to_dict() for p in profiles],
    }
    atomic_write_json(ctx.dir / MANIFEST, manifest)

    total = sum(f["bytes"] for f in files.values())
    outputs = [ctx.dir / rel for rel in files] + [ctx.dir / MANIFEST]
    summary = f"{pkg.gguf_type}, {_size(total)}, {len(outputs)} files"
    metrics = {"gguf_type": pkg.gguf_type, "bytes": total, "files": len(outputs), "n_ctx": n_ctx,
               "threads": settings.threads, "model_bytes": files[src_gguf.name]["bytes"]}
    return StageResult(outputs=outputs, metrics=metrics, summary=summary, artifact=ctx.dir)


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
        shutil.copymode(src, tmp)  # keeps run.sh executable


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SmoledgeError(f"cannot read {path} ({exc}); re-run the stage that writes it") from None
    if not isinstance(data, dict):
        raise SmoledgeError(f"{path} must hold a JSON object; re-run the stage that writes it")
    return data


def _token_text(value: Any) -> str:
    """tokenizer_config.json stores special tokens as a string or as {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else ""


def _chat_template(hf: Path, tok_config: dict[str, Any]) -> str | None:
    """The tokenizer's chat template: transformers >= 4.50 saves it as chat_template.jinja."""
    template = tok_config.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    if not template and (hf / "chat_template.jinja").is_file():
        template = (hf / "chat_template.jinja").read_text(encoding="utf-8")
    return template if isinstance(template, str) and template else None


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"
