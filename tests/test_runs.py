"""The incremental build: records, skipping, upstream invalidation, resume, locking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import toy_stages

from smoledge.recipe import Recipe
from smoledge.errors import SmoledgeError
from smoledge.io import exclusive_dir
from smoledge.runs import build, summary_table
from smoledge.layout import RECORD


@pytest.fixture(autouse=True)
def _reset():
    toy_stages.CALLS.clear()
    toy_stages.CRASH_IN["stage"] = None
    toy_stages.FIRST_EXTRA["text"] = ""


def _build(recipe, root):
    return build(recipe, runs_root=root, stages=toy_stages.STAGES, out=lambda s: None)


def test_record_then_skip(tmp_path: Path) -> None:
    recipe = Recipe(name="toy", description="hello")
    outcomes = _build(recipe, tmp_path)
    assert [o.status for o in outcomes] == ["ran", "ran"]
    record = json.loads((tmp_path / "toy" / "second-dir" / RECORD).read_text())
    assert record["outputs"]["b.txt"]["sha256"]
    assert record["config"] == {"description": "hello"}
    assert "torch" in record["versions"] and record["wall_time_s"] >= 0
    assert (tmp_path / "toy" / "second-dir" / "b.txt").read_text() == "seed=1234\nhello\n"

    toy_stages.CALLS.clear()
    outcomes = _build(recipe, tmp_path)
    assert [o.status for o in outcomes] == ["skipped", "skipped"]
    assert toy_stages.CALLS == []
    table = summary_table(outcomes)
    assert "cached" in table and "wrote b" in table


def test_upstream_change_reruns_downstream(tmp_path: Path) -> None:
    _build(Recipe(name="toy", description="x"), tmp_path)
    toy_stages.CALLS.clear()
    _build(Recipe(name="toy", description="x", seed=7), tmp_path)
    assert toy_stages.CALLS == ["first", "second"]
    assert (tmp_path / "toy" / "second-dir" / "b.txt").read_text() == "seed=7\nx\n"


def test_downstream_only_change(tmp_path: Path) -> None:
    _build(Recipe(name="toy", description="x"), tmp_path)
    toy_stages.CALLS.clear()
    _build(Recipe(name="toy", description="y"), tmp_path)
    assert toy_stages.CALLS == ["second"]


def test_tampered_output_reruns_that_stage(tmp_path: Path) -> None:
    recipe = Recipe(name="toy")
    _build(recipe, tmp_path)
    (tmp_path / "toy" / "second-dir" / "b.txt").write_text("tampered")
    toy_stages.CALLS.clear()
    _build(recipe, tmp_path)
    assert toy_stages.CALLS == ["second"]
    assert (tmp_path / "toy" / "second-dir" / "b.txt").read_text() != "tampered"


def _crash_second(recipe: Recipe, runs: Path) -> Path:
    """Build `recipe` with stage "second" crashing half-way; its stage directory. The next build runs clean."""
    toy_stages.CRASH_IN["stage"] = "second"
    with pytest.raises(RuntimeError, match="planted crash"):
        _build(recipe, runs)
    toy_stages.CRASH_IN["stage"] = None
    return runs / "toy" / "second-dir"


def test_interrupted_stage_resumes_in_place(tmp_path: Path) -> None:
    recipe = Recipe(name="toy")
    stage_dir = _crash_second(recipe, tmp_path)
    assert not (stage_dir / RECORD).exists(), "a crashed stage must not look complete"
    assert (stage_dir / "inprogress.json").exists()
    outcomes = _build(recipe, tmp_path)
    assert [o.status for o in outcomes] == ["skipped", "ran"]
    assert outcomes[1].record["resumed"] is True
    assert outcomes[1].record["metrics"]["resumed_from"] == "half\n"
    assert not (stage_dir / "inprogress.json").exists()


def test_a_resumed_stage_drops_what_the_killed_attempt_was_writing(tmp_path: Path) -> None:
    recipe = Recipe(name="toy")
    stage_dir = _crash_second(recipe, tmp_path)
    # What SIGKILL leaves mid-write: io.atomic_path's temp file and io.atomic_dir's temp directory.
    (stage_dir / ".topk.bin.k1lled.tmp").write_bytes(b"half")
    (stage_dir / "model" / ".weights.x.tmp").mkdir(parents=True)
    (stage_dir / "model" / ".weights.x.tmp" / "a.bin").write_bytes(b"half")
    outcomes = _build(recipe, tmp_path)
    assert outcomes[1].record["resumed"] is True
    assert outcomes[1].record["metrics"]["resumed_from"] == "half\n"  # finished files are kept
    assert not list(stage_dir.rglob("*.tmp"))


def test_interrupted_stage_with_new_config_starts_clean(tmp_path: Path) -> None:
    toy_stages.CRASH_IN["stage"] = "second"
    with pytest.raises(RuntimeError):
        _build(Recipe(name="toy", description="a"), tmp_path)
    toy_stages.CRASH_IN["stage"] = None
    outcomes = _build(Recipe(name="toy", description="b"), tmp_path)
    assert outcomes[1].record["resumed"] is False
    assert outcomes[1].record["metrics"]["resumed_from"] == ""


def test_force_and_until(tmp_path: Path) -> None:
    recipe = Recipe(name="toy")
    outcomes = build(recipe, runs_root=tmp_path, stages=toy_stages.STAGES, until="first", out=lambda s: None)
    assert [o.name for o in outcomes] == ["first"]
    toy_stages.CALLS.clear()
    build(recipe, runs_root=tmp_path, stages=toy_stages.STAGES, force=("first",), out=lambda s: None)
    assert toy_stages.CALLS == ["first", "second"]
    with pytest.raises(KeyError, match="unknown stage 'third'"):
        build(recipe, runs_root=tmp_path, stages=toy_stages.STAGES, until="third", out=lambda s: None)


def test_a_forced_stage_reruns_downstream_only_when_its_files_change(tmp_path: Path) -> None:
    """Same recipe, stage re-run: downstream read the old files, so it re-runs if and only if they changed."""
    recipe = Recipe(name="toy")
    _build(recipe, tmp_path)
    toy_stages.CALLS.clear()
    build(recipe, runs_root=tmp_path, stages=toy_stages.STAGES, force=("first",), out=lambda s: None)
    assert toy_stages.CALLS == ["first"]  # identical bytes: second is still up to date
    toy_stages.CALLS.clear()
    toy_stages.FIRST_EXTRA["text"] = "new code wrote this\n"
    build(recipe, runs_root=tmp_path, stages=toy_stages.STAGES, force=("first",), out=lambda s: None)
    assert toy_stages.CALLS == ["first", "second"]
    assert "new code wrote this" in (tmp_path / "toy" / "second-dir" / "b.txt").read_text()
    toy_stages.CALLS.clear()
    _build(recipe, tmp_path)
    assert toy_stages.CALLS == []


def test_concurrent_build_refused(tmp_path: Path) -> None:
    with exclusive_dir(tmp_path / "toy", "held by this test"):
        with pytest.raises(SmoledgeError, match="another smoledge build is using"):
            _build(Recipe(name="toy"), tmp_path)


def test_a_stage_the_recipe_does_not_need_is_reported_and_not_run(tmp_path: Path) -> None:
    from smoledge.runs import summary_table

    toy_stages.CALLS.clear()
    recipe = Recipe.from_dict({"name": "toy", "description": "nothing to do"})
    outcomes = _build(recipe, tmp_path)
    assert [o.status for o in outcomes] == ["not needed", "not needed"] and toy_stages.CALLS == []
    assert not (tmp_path / "toy" / "first").exists()
    assert "not needed" in summary_table(outcomes) and "this recipe says so" in summary_table(outcomes)


def test_a_refused_preflight_keeps_the_previous_outputs(tmp_path: Path) -> None:
    _build(Recipe.from_dict({"name": "toy", "seed": 1}), tmp_path)
    before = (tmp_path / "toy" / "first" / "a.txt").read_text()
    with pytest.raises(ValueError, match="first: refused before running"):
        _build(Recipe.from_dict({"name": "toy", "seed": 2, "description": "refuse"}), tmp_path)
    assert (tmp_path / "toy" / "first" / "a.txt").read_text() == before
