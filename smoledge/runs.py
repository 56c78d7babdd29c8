"""Run directories, stage records and the incremental build.

Layout (smoledge.layout): runs/<recipe name>/<stage dir>/ holds a stage's files plus
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
import io
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from smoledge.config import Section
from smoledge.data import curate
from smoledge.evaluate import stage as evaluate
from smoledge.export import stage as export
from smoledge.io import atomic_write_json, drop_partial_writes, exclusive_dir, sha256_file
from smoledge.layout import BY_STAGE, INPROGRESS, RECORD
from smoledge.package import stage as package
from smoledge.progress import Progress
from smoledge.recipe import Recipe
from smoledge.stage import (
    Stage,
    StageContext,
    StageResult,
    library_versions,
    outputs_intact,
    read_record,
)
from smoledge.tokenizer import stage as train_tokenizer
from smoledge.train import distill, pretrain, teacher_cache

# Bumped when a change to smoledge makes old stage outputs invalid.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class StageSpec:
    name: str
    """Stage (and CLI subcommand) name."""
    stage: Stage
    """Its entry points (smoledge.stage.Stage): `run` and the optional hooks."""
    deps: tuple[str, ...]
    """Stages whose outputs this one reads (smoledge.layout.READS says which files)."""
    sections: tuple[str, ...]
    """Recipe sections this stage's behaviour depends on."""
    dirname: str = ""
    """Directory under runs/<name>/ (defaults to the stage's in smoledge.layout, else its name)."""
    multiprocess: bool = False
    """Runs on every torchrun rank (training). Other stages run on rank 0 while the rest wait."""

    @property
    def dir(self) -> str:
        return self.dirname or (BY_STAGE[self.name].DIR if self.name in BY_STAGE else self.name)


STAGES: tuple[StageSpec, ...] = (
    StageSpec("curate", curate.STAGE, (), ("seed", "data", "curate")),
    StageSpec("train-tokenizer", train_tokenizer.STAGE, ("curate",), ("tokenizer", "data")),
    StageSpec("pretrain", pretrain.STAGE, ("train-tokenizer",), ("teacher", "pretrain"), multiprocess=True),
    StageSpec("teacher-cache", teacher_cache.STAGE, ("train-tokenizer", "pretrain"), ()),
    StageSpec("distill", distill.STAGE, ("train-tokenizer", "pretrain", "teacher-cache"),
              ("student", "distill"), multiprocess=True),
    StageSpec("export", export.STAGE, ("train-tokenizer", "distill"), ("export", "model")),
    StageSpec("evaluate", evaluate.STAGE, ("curate", "train-tokenizer", "export"), ("evaluate", "devices")),
    StageSpec("package", package.STAGE, ("export", "evaluate"), ("package", "devices")),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def spec(name: str) -> StageSpec:
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(f"unknown stage '{name}'; stages: {', '.join(STAGE_NAMES)}")


@dataclass
class StageOutcome:
    name: str
    status: str  # "ran" | "skipped" | "not needed"
    seconds: float
    record: dict[str, Any]


def stage_fingerprint(recipe: Recipe, s: StageSpec, upstream: dict[str, str], external: dict[str, Any]) -> str:
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
    return v.to_dict() if isinstance(v, Section) else v


def _prepare_dir(stage_dir: Path, fingerprint: str) -> bool:
    """Make the stage dir ready; True when resuming an interrupted attempt."""
    marker = stage_dir / INPROGRESS
    if marker.exists():
        try:
            if json.loads(marker.read_text()).get("fingerprint") == fingerprint:
                # What the killed attempt was writing (a teacher-cache stage's half-made topk.bin: tens of MB)
                # is garbage: a stage resumes from its finished files and checkpoints, never from a temp file.
                drop_partial_writes(stage_dir)
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
    recipe: Recipe,
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
            stage = s.stage
            label = f"[{i}/{len(stages)}] {s.name}"
            why_not = stage.not_needed(recipe)
            if why_not:
                # A fixed fingerprint: turning the stage on again is a change downstream stages see.
                fingerprints[s.name] = "not needed"
                outcomes.append(StageOutcome(s.name, "not needed", 0.0, {"summary": why_not}))
                out(f"{label}: not needed ({why_not})")
                continue
            external = stage.external_inputs(recipe)
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
                and stage.archive_intact(stage_dir, record)
            )
            if up_to_date:
                fingerprints[s.name] = content_key(fp, record or {})
                outcomes.append(StageOutcome(s.name, "skipped", 0.0, record or {}))
                out(f"{label}: up to date, skipped")
                continue
            participates = ranks.is_main or s.multiprocess
            progress = Progress(label) if ranks.is_main else Progress(label, stream=io.StringIO())
            ctx = StageContext(recipe=recipe, run_dir=run_dir, dir=stage_dir, progress=progress, rank=ranks.rank)
            if ranks.is_main:
                stage.preflight(ctx)  # refuses bad inputs while the previous outputs are still in place
            resuming = _prepare_dir(stage_dir, fp) if ranks.is_main else True
            ranks.barrier()  # the directory is ready before any rank writes into it
            if not participates:
                ranks.barrier()  # wait for rank 0 to finish this stage
                fingerprints[s.name] = content_key(fp, read_record(stage_dir) or {})
                outcomes.append(StageOutcome(s.name, "ran", 0.0, read_record(stage_dir) or {}))
                continue
            out(f"{label}: {'resuming' if resuming else 'running'} -> {stage_dir}")
            t0 = time.time()
            result = stage.run(ctx)
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
                  external: dict[str, Any], recipe: Recipe, seconds: float, resuming: bool) -> dict[str, Any]:
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
