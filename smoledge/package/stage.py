"""Package stage: assemble the deployable bundle from the export and evaluate stages.

Writes runs/<name>/bundle/ (layout in smoledge/serve/bundle.py): the
package.gguf_type GGUF (the default model) and every artifact evaluate selected
for a target device (a GGUF, or an ONNX directory for an onnxruntime device),
the tokenizer files, server.json (default model + per-device backend, model,
threads, context), the serving assets (Containerfile, systemd unit with
MemoryMax from the device budgets, run.sh) and manifest.json, which holds the
sha256 of every file, so `smoledge serve` on a board can prove it got the
bundle intact. Then runs/<name>/bundle.tar.gz (reproducible, see
smoledge/package/archive.py) and bundle.tar.gz.sha256; the stage metrics
record the archive's sha256 too.

    smoledge package build/quickstart.yaml
    # or: from smoledge.runs import build; build(recipe, until="package")
    smoledge serve runs/quickstart/bundle
"""

from __future__ import annotations

import json
import math
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from smoledge.bench.config import DeviceProfile
from smoledge.errors import SmoledgeError
from smoledge.tokenizer.pretrained import TOKENIZER_FILES
from smoledge.io import atomic_path, atomic_write_json, atomic_write_text, file_manifest, sha256_file
from smoledge.package.archive import write_archive
from smoledge.layout import INPROGRESS, RECORD, PackageFiles
from smoledge.stage import Stage, StageContext, StageResult, library_versions, read_record
from smoledge.serve.hf_meta import chat_template, token_text
from smoledge.serve.bundle import (
    BUILD_RECORDS,
    LLAMA_CPP,
    MANIFEST,
    MANIFEST_FORMAT,
    ONNXRUNTIME,
    SERVER,
    DeviceTarget,
    ServerSettings,
)

# Without these two a runtime other than llama.cpp cannot rebuild the tokenizer.
REQUIRED_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# Special tokens that end a reply in smoledge's ChatML format (see smoledge/data/bpe.py).
END_TOKENS = ("<|im_end|>",)
UNIT = "smoledge.service"
# What the server needs besides the model's weights and KV cache (Python, FastAPI, the runtime's
# compute buffers and allocator slack): added to the largest device budget for the unit's MemoryMax.
SERVER_OVERHEAD_MIB = 512


def serving_assets_dir() -> Path:
    """The serving/ folder of deployment assets (checkout or installed wheel)."""
    from smoledge.assets import asset_dir

    return asset_dir("serving")


def _selection(report: dict[str, Any], profiles: list[DeviceProfile], report_path: Path) -> dict[str, dict[str, Any]]:
    """Each target device's choice in evaluate/report.json ("devices": {name: {artifact, backend, reason, ...}})."""
    chosen = report.get("devices") or {}
    out = {}
    for p in profiles:
        entry = chosen.get(p.name)
        if not isinstance(entry, dict):
            raise SmoledgeError(f"{report_path} selects no artifact for device '{p.name}'; re-run `smoledge evaluate` "
                                "(it picks each target device's artifact)")
        if not entry.get("artifact") or entry.get("backend") not in (LLAMA_CPP, ONNXRUNTIME):
            raise SmoledgeError(f"{report_path}: no usable artifact for device '{p.name}' "
                                f"({entry.get('reason') or 'no reason recorded'}); fix the export or the device's "
                                "budget and re-run `smoledge evaluate`")
        out[p.name] = entry
    return out


def render_unit(template: str, profiles: list[DeviceProfile]) -> str:
    """The systemd unit with MemoryMax set from the target devices: the largest model RAM budget a profile
    grants, plus what the server itself needs besides the model. No profiles: the template's own value."""
    if not profiles:
        return template
    budget_mib = math.ceil(max(p.model_ram_budget_gb for p in profiles) * 1024) + SERVER_OVERHEAD_MIB
    lines = template.splitlines(keepends=True)
    at = [i for i, line in enumerate(lines) if line.startswith("MemoryMax=")]
    if len(at) != 1:
        raise SmoledgeError(f"serving/{UNIT} must hold exactly one MemoryMax= line (found {len(at)}); reinstall "
                            "smoledge or restore the file from a source checkout")
    lines[at[0]] = f"MemoryMax={budget_mib}M\n"
    return "".join(lines)


def _created() -> datetime:
    """Now, or SOURCE_DATE_EPOCH when set (reproducible builds: the same inputs give the same archive)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        try:
            return datetime.fromtimestamp(int(epoch), timezone.utc)
        except ValueError:
            raise SmoledgeError(f"SOURCE_DATE_EPOCH={epoch!r} is not a whole number of seconds; unset it or "
                                "set it to e.g. $(git log -1 --format=%ct)") from None
    return datetime.now(timezone.utc).replace(microsecond=0)


def run(ctx: StageContext) -> StageResult:
    recipe = ctx.recipe
    pkg = recipe.package
    export_dir = ctx.files.export.dir
    hf = ctx.files.export.hf
    gguf_type = pkg.gguf_type
    if recipe.model.is_gguf:  # the imported file is the one GGUF there is, whatever its type
        imported = ctx.files.export.ggufs()
        if not imported:
            raise SmoledgeError(f"{ctx.files.export.dir} holds no imported GGUF; re-run `smoledge export`")
        gguf_type = imported[0].stem.removeprefix("model-")
    src_gguf = ctx.files.export.gguf(gguf_type)
    if not src_gguf.is_file():
        raise SmoledgeError(
            f"{src_gguf} is missing; package.gguf_type is '{pkg.gguf_type}': add it to export.gguf_types "
            "and re-run `smoledge export`"
        )
    for name in REQUIRED_TOKENIZER_FILES:
        if not (hf / name).is_file():
            raise SmoledgeError(f"{hf / name} is missing; re-run `smoledge export`")
    report_path = ctx.files.evaluate.report
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
    report = _json(report_path)
    selection = _selection(report, profiles, report_path)
    # The default GGUF first (every CPU runs it), then what each device was given, once each.
    artifacts: dict[str, str] = {src_gguf.name: LLAMA_CPP}
    for entry in selection.values():
        artifacts.setdefault(entry["artifact"], entry["backend"])
    for name, backend in artifacts.items():
        src = export_dir / name
        if not (src.is_file() if backend == LLAMA_CPP else src.is_dir()):
            raise SmoledgeError(f"{src} is missing, but evaluate selected it for a device; re-run `smoledge export`")

    # A resumed attempt may have left files of another layout: start clean,
    # keeping only the orchestrator's own records.
    for p in sorted(ctx.dir.iterdir()):
        if p.name not in (RECORD, INPROGRESS):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()

    for name, backend in artifacts.items():
        ctx.progress.update(f"copying {name}")
        src = export_dir / name
        if backend == LLAMA_CPP:
            _copy(src, ctx.dir / name)
            continue
        for f in sorted(src.rglob("*")):
            if f.is_file() and not any(part.startswith(".") for part in f.relative_to(src).parts):
                _copy(f, ctx.dir / name / f.relative_to(src))
    for name in TOKENIZER_FILES:
        if (hf / name).is_file():
            _copy(hf / name, PackageFiles(ctx.dir).tokenizer / name)
    assets = serving_assets_dir()
    if not (assets / "Containerfile").is_file():
        raise SmoledgeError(f"serving assets not found at {assets}; reinstall smoledge (the wheel ships them) or run from a source checkout")
    for p in sorted(assets.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(assets).parts):
            _copy(p, ctx.dir / "serving" / p.relative_to(assets))
    unit = ctx.dir / "serving" / UNIT
    atomic_write_text(unit, render_unit(unit.read_text(encoding="utf-8"), profiles))

    settings = ServerSettings(
        model_id=recipe.name,
        model_file=src_gguf.name,
        gguf_type=gguf_type,
        backend=LLAMA_CPP,
        devices={p.name: DeviceTarget(backend=selection[p.name]["backend"], model_file=selection[p.name]["artifact"],
                                      threads=pkg.threads or p.threads,
                                      n_ctx=pkg.n_ctx or min(p.max_context, n_ctx_train),
                                      reason=selection[p.name].get("reason") or "")
                 for p in profiles},
        chat_template=chat_template(hf, tok_config),
        bos_token=token_text(tok_config.get("bos_token")),
        eos_token=token_text(tok_config.get("eos_token")),
        # dict.fromkeys: a tokenizer whose EOS is <|im_end|> (SmolLM3's) lists it once.
        stop_tokens=[t for t in dict.fromkeys((*END_TOKENS, token_text(tok_config.get("eos_token"))))
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
    created = _created()
    sections = [name for name in recipe.to_dict()]

    def artifact_bytes(name: str) -> int:
        return sum(m["bytes"] for rel, m in files.items() if rel == name or rel.startswith(name + "/"))

    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "name": recipe.name,
        "created": created.isoformat(timespec="seconds"),
        "model": {"file": src_gguf.name, "backend": LLAMA_CPP, "gguf_type": gguf_type,
                  "bytes": files[src_gguf.name]["bytes"], "n_ctx_train": n_ctx_train},
        "artifacts": {name: {"backend": backend, "bytes": artifact_bytes(name), "default": name == src_gguf.name,
                             "devices": sorted(d for d, e in selection.items() if e["artifact"] == name)}
                      for name, backend in artifacts.items()},
        "files": files,
        "versions": library_versions(),
        "recipe": {"fingerprint": recipe.fingerprint(*sections), "sections": recipe.to_dict()},
        "upstream": {n: (read_record(ctx.files.of(n).dir) or {}).get("fingerprint") for n in ("export", "evaluate")},
        "evaluation": {
            "source": report_path.relative_to(ctx.run_dir).as_posix(),
            "sha256": sha256_file(report_path),
            "bundled": report.get("perplexity", {}).get(src_gguf.name),
            "reference": report.get("perplexity", {}).get("hf"),
            "quantization": report.get("quantization", {}).get(src_gguf.name),
            "gates": report.get("gates", []),
            # Per device: the artifact, its backend and why it was chosen (the RAM budget, ISA and
            # quality gate it passed, and the candidates it beat), as evaluate decided.
            "selection": {name: selection_summary(d) for name, d in report.get("devices", {}).items()},
        },
        "devices": [p.to_dict() for p in profiles],
    }
    atomic_write_json(ctx.dir / MANIFEST, manifest)

    # The archive goes next to the bundle directory, not in it: the directory is what gets copied
    # (or served) as it is, the archive is the same files for a single download.
    ctx.progress.update("archiving")
    archive = PackageFiles(ctx.dir).archive
    members = [*files, MANIFEST]
    archive_sha = write_archive(ctx.dir, sorted(members), archive, top=f"{recipe.name}-bundle",
                                mtime=int(created.timestamp()))
    archive_bytes = archive.stat().st_size

    total = sum(f["bytes"] for f in files.values())
    outputs = [ctx.dir / rel for rel in files] + [ctx.dir / MANIFEST]
    extra = [n for n in artifacts if n != src_gguf.name]
    summary = (f"{gguf_type}{''.join(' + ' + n for n in extra)}, {_size(total)}, {len(outputs)} files, "
               f"{archive.name} {_size(archive_bytes)}")
    metrics = {"gguf_type": gguf_type, "bytes": total, "files": len(outputs), "n_ctx": n_ctx,
               "threads": settings.threads, "model_bytes": files[src_gguf.name]["bytes"],
               "artifacts": dict(artifacts),
               "devices": {d: e["artifact"] for d, e in selection.items()},
               "archive": {"file": archive.name, "sha256": archive_sha, "bytes": archive_bytes,
                           "sha256_file": archive.name + ".sha256"}}
    return StageResult(outputs=outputs, metrics=metrics, summary=summary, artifact=ctx.dir)


def selection_summary(device: dict[str, Any]) -> dict[str, Any]:
    """What the manifest keeps of a device's evaluation: the choice, its reason, the rejected candidates and
    the headline checks (passkey accuracy per length and where it falls off, task accuracy), not every trial."""
    keep = ("artifact", "backend", "threads", "n_ctx", "reason", "rejected", "ram_bytes", "ppl", "ppl_delta_pct")
    out = {k: device[k] for k in keep if k in device}
    if device.get("passkey"):
        out["passkey"] = {k: device["passkey"][k] for k in ("by_length", "falloff") if k in device["passkey"]}
    if device.get("tasks"):
        out["tasks"] = {t: {k: r[k] for k in ("n", "acc", "acc_norm") if k in r} for t, r in device["tasks"].items()}
    return out


def archive_intact(stage_dir: Path, record: dict[str, Any]) -> bool:
    """Whether the archive next to the bundle is still the one the recorded run wrote (the orchestrator
    checksums only the files inside a stage's directory; this covers bundle.tar.gz beside it)."""
    meta = (record.get("metrics") or {}).get("archive") or {}
    archive = PackageFiles(stage_dir).archive
    sums = archive.with_name(archive.name + ".sha256")
    return (archive.is_file() and sums.is_file() and archive.stat().st_size == meta.get("bytes")
            and sha256_file(archive) == meta.get("sha256") and sums.read_text().split()[:1] == [meta.get("sha256")])


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


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


STAGE = Stage(run=run, archive_intact=archive_intact)
