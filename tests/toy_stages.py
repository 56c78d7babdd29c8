"""Two tiny stages for testing the build orchestrator itself (not the ML stages)."""

from __future__ import annotations

import os

from smoledge.io import atomic_write_text
from smoledge.runs import StageSpec
from smoledge.stage import Stage, StageResult

# Set by tests: name of a stage that should crash half-way (after writing part.txt).
CRASH_IN = {"stage": None}
CALLS: list[str] = []
# Set by tests: extra text the first stage writes, to change its output without changing the recipe.
FIRST_EXTRA = {"text": ""}


def not_needed(recipe):
    return "this recipe says so" if recipe.description == "nothing to do" else None


def preflight(ctx):
    if ctx.recipe.description == "refuse":
        raise ValueError(f"{ctx.dir.name}: refused before running")


def run(ctx):
    name = "first" if ctx.dir.name == "first" else "second"
    CALLS.append(name)
    if name == "first":
        out = atomic_write_text(ctx.dir / "a.txt", f"seed={ctx.recipe.seed}\n{FIRST_EXTRA['text']}")
        return StageResult(outputs=[out], summary="wrote a", artifact=out)
    partial = ctx.dir / "part.txt"
    resumed_from = partial.read_text() if partial.exists() else ""
    atomic_write_text(partial, "half\n")
    if CRASH_IN["stage"] == "second":
        raise RuntimeError("planted crash")
    a = (ctx.run_dir / "first" / "a.txt").read_text()
    out = atomic_write_text(ctx.dir / "b.txt", a + ctx.recipe.description + "\n")
    return StageResult(outputs=[out], metrics={"resumed_from": resumed_from, "pid": os.getpid()}, summary="wrote b")


TOY = Stage(run=run, not_needed=not_needed, preflight=preflight)
STAGES = (
    StageSpec("first", TOY, (), ("seed",)),
    StageSpec("second", TOY, ("first",), ("description",), "second-dir"),
)
