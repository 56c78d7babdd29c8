"""The contract between the orchestrator (smoledge.runs) and each stage: what a stage is given, what it
returns, and the hooks it may define.

A stage module ends with one `Stage` value naming its functions, e.g. smoledge/export/stage.py:

    STAGE = Stage(run=run, not_needed=not_needed, preflight=preflight)

`run` is required; every other hook has a default that does nothing, so the orchestrator calls them
all without probing the module for attributes. The orchestrator imports each stage module by name
(smoledge/runs.py), so a reader and an IDE can follow the pipeline.

Lower layer: stages import this module, smoledge.runs imports the stages.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from smoledge.io import sha256_file
from smoledge.layout import RECORD, RunFiles
from smoledge.progress import Progress
from smoledge.recipe import Recipe

LIBRARIES = (
    "smoledge", "torch", "transformers", "tokenizers", "datasketch", "py3langid", "gguf",
    "llama_cpp_python", "onnx", "onnxruntime", "optimum-onnx", "pyarrow", "numpy", "fastapi",
)


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

    recipe: Recipe
    """The validated recipe."""
    run_dir: Path
    """runs/<recipe name>/"""
    dir: Path
    """This stage's directory (exists, may hold a previous attempt's files for resume)."""
    progress: Progress
    """Status line for this stage."""
    rank: int = 0
    """torchrun rank of this process (0 outside torchrun); only rank 0 writes shared files."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def files(self) -> RunFiles:
        """Every stage's files in this run (smoledge.layout): how a stage reaches an upstream file."""
        return RunFiles(self.run_dir)


def _needed(recipe: Recipe) -> str | None:
    return None


def _no_external(recipe: Recipe) -> dict[str, Any]:
    return {}


def _no_preflight(ctx: StageContext) -> None:
    return None


def _nothing_beside(stage_dir: Path, record: dict[str, Any]) -> bool:
    return True


@dataclass(frozen=True)
class Stage:
    """One stage's entry points."""

    run: Callable[[StageContext], StageResult]
    """Does the work in ctx.dir and returns what it wrote."""
    not_needed: Callable[[Recipe], str | None] = _needed
    """Why this recipe does not run the stage (e.g. pretraining when the teacher comes from elsewhere,
    every data stage when the recipe names a model), or None."""
    external_inputs: Callable[[Recipe], dict[str, Any]] = _no_external
    """What outside the recipe the stage depends on (file checksums, device profiles): part of its
    fingerprint, so editing one re-runs the stage."""
    preflight: Callable[[StageContext], None] = _no_preflight
    """Cheap checks that raise before the stage's old outputs are cleared."""
    archive_intact: Callable[[Path, dict[str, Any]], bool] = _nothing_beside
    """For a stage that also writes beside its directory (package: bundle.tar.gz): is that still intact."""


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            continue
    return out


def read_record(stage_dir: Path) -> dict[str, Any] | None:
    """A stage's record (stage.json), or None when it is missing or unreadable."""
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
