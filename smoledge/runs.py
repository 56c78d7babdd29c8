"""Run directories, stage records and the incremental build.

Layout: runs/<recipe name>/<stage dir>/ holds a stage's files plus
`stage.json`, its record (resolved config, input fingerprints, outputs with
sha256, metrics, wall time, library versions). A stage is complete only
when its record exists, matches the current fingerprint and every listed
output still has its recorded checksum.

A stage's fingerprint covers its recipe sections, its external inputs and
the fingerprints of the stages it reads from, so a change anywhere upstream
re-runs that stage and everything after it. A killed stage leaves
`inprogress.json` with its fingerprint; the next build with the same
fingerprint resumes in place (training picks up its last checkpoint),
otherwise the directory is cleared first.

    from smoledge.recipe import load_recipe
    from smoledge.runs import build
    build(load_recipe("build/quickstart.yaml"), until="pretrain")
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from smoledge.io import atomic_write_json, exclusive_dir, sha256_file
from smoledge.progress import Progress

RECORD = "stage.json"
INPROGRESS = "inprogress.json"
# Bumped when a change to smoledge makes old stage outputs invalid.
FORMAT_VERSION = 1

LIBRARIES = (
    "smoledge", "torch", "transformers", "tokenizers", "datasketch", "py3langid", "gguf",
    "llama_cpp_python", "onnx", "onnxruntime", "optimum-onnx", "pyarrow", "numpy", "fastapi",
)


@dataclass(frozen=True)
class StageSpec:
    name: str
    """Stage (and CLI subcommand) name."""
    module: str
    """Module defining `run(ctx) -> StageResult`, and optionally `external_inputs(recipe) -> dict`
    (what outside the recipe the stage depends on), `not_needed(recipe) -> str | None` (why this
    recipe does not run the stage, e.g. pretraining when the teacher comes from elsewhere) and
    `preflight(ctx)` (cheap checks that raise before the stage's old outputs are cleared) and
    `archive_intact(stage_dir, record) -> bool` (for files it writes beside its directory)."""
    deps: tuple[str, ...]
    """Stages whose outputs this one reads."""
    sections: tuple[str, ...]
    """Recipe sections this stage's behaviour depends on."""
    dirname: str = ""
    """Directory under runs/<name>/ (defaults to the stage name)."""
    multiprocess: bool = False
    """Runs on every torchrun rank (training). Other stages run on rank 0 while the rest wait."""

    @property
    def dir(self) -> str:
        return self.dirname or self.name


STAGES: tuple[StageSpec, ...] = (
    StageSpec("curate", "smoledge.data.curate", (), ("seed", "data", "curate")),
    StageSpec("train-tokenizer", "smoledge.tokenizer.stage", ("curate",), ("tokenizer", "data"), "tokenizer"),
    StageSpec("pretrain", "smoledge.train.pretrain", ("train-tokenizer",), ("teacher", "pretrain"),
              multiprocess=True),
    StageSpec("teacher-cache", "smoledge.train.teacher_cache", ("train-tokenizer", "pretrain"), ()),
    StageSpec("distill", "smoledge.train.distill", ("train-tokenizer", "pretrain", "teacher-cache"),
              ("student", "distill"), multiprocess=True),
    StageSpec("export", "smoledge.export.stage", ("train-tokenizer", "distill"), ("export",)),
    StageSpec("evaluate", "smoledge.evaluate.stage", ("curate", "train-tokenizer", "export"),
              ("evaluate", "devices")),
    StageSpec("package", "smoledge.package.stage", ("export", "evaluate"), ("package", "devices"), "bundle"),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def spec(name: str) -> StageSpec:
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(f"unknown stage '{name}'; stages: {', '.join(STAGE_NAMES)}")


@dataclass
class StageResult:
    """What a stage's `run` returns."""

    outputs: list[Path]
    """Files the stage produced (inside its directory); checksummed into the record."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Numbers worth keeping (loss, counts, parity diffs...)."""
    summary: str = ""
    """The key metric, one short phrase, for the build summary table."""
    artifact: Path | None = None
    """The stage's main artifact, shown in the summary table."""


@dataclass
class StageContext:
    """What a stage's `run` receives."""

    recipe: Any
    """The validated Recipe."""
    run_dir: Path
    """runs/<recipe name>/"""
    dir: Path
    """This stage's directory (exists, may hold a previous attempt's files for resume)."""
    progress: Progress
    """Status line for this stage."""

    stages: tuple[StageSpec, ...] = STAGES
    """The pipeline this stage belongs to."""
    rank: int = 0
    """torchrun rank of this process (0 outside torchrun); only rank 0 writes shared files."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def stage_dir(self, name: str) -> Path:
        """Directory of an upstream stage."""
        for s in self.stages:
            if s.name == name:
                return self.run_dir / s.dir
        raise KeyError(f"unknown stage '{name}'")


@dataclass
class StageOutcome:
    name: str
    status: str  # "ran" | "skipped" | "not needed"
    seconds: float
    record: dict[str, Any]


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            continue
    return out


def read_record(stage_dir: Path) -> dict[str, Any] | None:
    path = stage_dir / RECORD
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, OSError):
        return None


def outputs_intact(stage_dir: Path, record: dict[str, Any]) -> bool:
    for rel, meta in record.get("outputs", {}).items():
        p = stage_dir / rel
        if not p.is_file() or p.stat().st_size != meta["bytes"] or sha256_file(p) != meta["sha256"]:
            return False
    return True


def stage_fingerprint(recipe: Any, s: StageSpec, upstream: dict[str, str], external: dict[str, Any]) -> str:
    payload = {
        "format": FORMAT_VERSION,
        "stage": s.name,
        "config": json.loads(json.dumps({k: _plain(getattr(recipe, k)) for k in s.sections}, default=str)),
        "upstream": upstream,
        "external": external,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def content_key(fp: str, record: dict[str, Any]) -> str:
    """What downstream stages see of an upstream one: its fingerprint and the checksums of what it
    wrote. A stage re-run with the same config (--force, or after a code change) that writes different
    files therefore re-runs everything that read them; one that writes the same bytes does not."""
    sums = {rel: meta["sha256"] for rel, meta in sorted(record.get("outputs", {}).items())}
    return hashlib.sha256(json.dumps({"fingerprint": fp, "outputs": sums}, sort_keys=True).encode()).hexdigest()


def _display(path: Path) -> str:
    """A path relative to the working directory when it is below it (for the summary table)."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


def _plain(v: Any) -> Any:
    return v.to_dict() if hasattr(v, "to_dict") else v


def _prepare_dir(stage_dir: Path, fingerprint: str) -> bool:
    """Make the stage dir ready; True when resuming an interrupted attempt."""
    marker = stage_dir / INPROGRESS
    if marker.exists():
        try:
            if json.loads(marker.read_text()).get("fingerprint") == fingerprint:
                return True
        except (json.JSONDecodeError, OSError):
            pass
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True)
    atomic_write_json(marker, {"fingerprint": fingerprint, "started": _now()})
    return False


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _Ranks:
    """torchrun coordination for `build`: rank 0 decides and writes, every rank runs training stages.

    Outside torchrun (WORLD_SIZE unset or 1) every method is a no-op and torch is never imported."""

    def __init__(self) -> None:
        self.rank = int(os.environ.get("RANK", 0))
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        if self.world > 1:
            from smoledge.train.runtime import ensure_process_group

            ensure_process_group()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def agree(self, flag: bool) -> bool:
        if self.world == 1:
            return flag
        from smoledge.train.runtime import agree

        return agree(flag)

    def barrier(self) -> None:
        if self.world > 1:
            from smoledge.train.runtime import barrier

            barrier()

    def close(self) -> None:
        """Leave the process group, so torchrun's workers exit cleanly."""
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def build(
    recipe: Any,
    runs_root: str | Path = "runs",
    until: str | None = None,
    force: tuple[str, ...] = (),
    out: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
    stages: tuple[StageSpec, ...] = STAGES,
) -> list[StageOutcome]:
    """Run every stage (or those up to `until`), skipping the ones that are up to date.

    Under torchrun, rank 0 takes the lock, decides what is up to date and writes every
    record; stages marked `multiprocess` run on all ranks, the others on rank 0 alone."""
    names = [s.name for s in stages]
    if until is not None:
        if until not in names:
            raise KeyError(f"unknown stage '{until}'; stages: {', '.join(names)}")
        stages = stages[: names.index(until) + 1]
    # Absolute, so stages may return paths however they built them.
    run_dir = Path(runs_root).resolve() / recipe.name
    ranks = _Ranks()
    if not ranks.is_main:
        out = lambda s: None  # noqa: E731 - rank 0 speaks for the job
    outcomes: list[StageOutcome] = []
    fingerprints: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        stack.callback(ranks.close)
        if ranks.is_main:
            stack.enter_context(exclusive_dir(
                run_dir, f"another smoledge build is using {run_dir}; wait for it or use a different recipe name"))
        for i, s in enumerate(stages, 1):
            module = importlib.import_module(s.module)
            label = f"[{i}/{len(stages)}] {s.name}"
            why_not = module.not_needed(recipe) if hasattr(module, "not_needed") else None
            if why_not:
                # A fixed fingerprint: turning the stage on again is a change downstream stages see.
                fingerprints[s.name] = "not needed"
                outcomes.append(StageOutcome(s.name, "not needed", 0.0, {"summary": why_not}))
                out(f"{label}: not needed ({why_not})")
                continue
            external = module.external_inputs(recipe) if hasattr(module, "external_inputs") else {}
            fp = stage_fingerprint(recipe, s, {d: fingerprints[d] for d in s.deps}, external)
            fingerprints[s.name] = fp
            stage_dir = run_dir / s.dir
            record = read_record(stage_dir)
            up_to_date = ranks.agree(
                s.name not in force
                and record is not None
                and record.get("fingerprint") == fp
                and outputs_intact(stage_dir, record)
                # A stage that also writes beside its directory (package: bundle.tar.gz) checks that too.
                and (not hasattr(module, "archive_intact") or module.archive_intact(stage_dir, record))
            )
            if up_to_date:
                fingerprints[s.name] = content_key(fp, record or {})
                outcomes.append(StageOutcome(s.name, "skipped", 0.0, record or {}))
                out(f"{label}: up to date, skipped")
                continue
            participates = ranks.is_main or s.multiprocess
            progress = Progress(label) if ranks.is_main else Progress(label, stream=io.StringIO())
            ctx = StageContext(recipe=recipe, run_dir=run_dir, dir=stage_dir, progress=progress, stages=stages,
                               rank=ranks.rank)
            if ranks.is_main and hasattr(module, "preflight"):
                module.preflight(ctx)  # refuses bad inputs while the previous outputs are still in place
            resuming = _prepare_dir(stage_dir, fp) if ranks.is_main else True
            ranks.barrier()  # the directory is ready before any rank writes into it
            if not participates:
                ranks.barrier()  # wait for rank 0 to finish this stage
                fingerprints[s.name] = content_key(fp, read_record(stage_dir) or {})
                outcomes.append(StageOutcome(s.name, "ran", 0.0, read_record(stage_dir) or {}))
                continue
            out(f"{label}: {'resuming' if resuming else 'running'} -> {stage_dir}")
            t0 = time.time()
            result: StageResult = module.run(ctx)
            ctx.progress.close()
            seconds = time.time() - t0
            record = (_write_record(s, stage_dir, result, fp, fingerprints, external, recipe, seconds, resuming)
                      if ranks.is_main else {})
            ranks.barrier()  # the record is on disk (and a rank-0-only stage releases the waiting ranks)
            fingerprints[s.name] = content_key(fp, record if ranks.is_main else read_record(stage_dir) or {})
            outcomes.append(StageOutcome(s.name, "ran", seconds, record))
            out(f"{label}: done in {seconds:.1f}s  {result.summary}")
    return outcomes


def _write_record(s: StageSpec, stage_dir: Path, result: StageResult, fp: str, fingerprints: dict[str, str],
                  external: dict[str, Any], recipe: Any, seconds: float, resuming: bool) -> dict[str, Any]:
    outputs = {}
    for p in result.outputs:
        p = Path(p)
        full = p.resolve() if p.is_absolute() else (stage_dir / p).resolve()
        rel = full.relative_to(stage_dir).as_posix()
        outputs[rel] = {"sha256": sha256_file(full), "bytes": full.stat().st_size}
    record = {
        "stage": s.name,
        "fingerprint": fp,
        "config": {k: _plain(getattr(recipe, k)) for k in s.sections},
        "inputs": {"upstream": {d: fingerprints[d] for d in s.deps}, "external": external},
        "outputs": outputs,
        "metrics": result.metrics,
        "summary": result.summary,
        "artifact": _display(result.artifact) if result.artifact else None,
        "wall_time_s": round(seconds, 3),
        "resumed": resuming,
        "finished": _now(),
        "versions": library_versions(),
    }
    atomic_write_json(stage_dir / RECORD, record)
    (stage_dir / INPROGRESS).unlink(missing_ok=True)
    return record


def summary_table(outcomes: list[StageOutcome]) -> str:
    """Stage, status, time, key metric, artifact path, as a plain-text table."""
    rows = [("stage", "status", "time", "key metric", "artifact")]
    for o in outcomes:
        secs = o.seconds if o.status == "ran" else o.record.get("wall_time_s", 0.0)
        status = {"ran": "ran", "skipped": "cached"}.get(o.status, o.status)
        rows.append((o.name, status, f"{secs:.1f}s", o.record.get("summary", ""), o.record.get("artifact") or ""))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
