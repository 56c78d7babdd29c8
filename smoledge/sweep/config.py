"""Config of a sweep: the search space (a recipe's `sweep:` section) and the run settings.

A recipe may carry its own sweep:

    sweep:
      method: grid                     # or random (then `trials` points)
      params:
        pretrain.lr: [1.0e-3, 3.0e-3, 1.0e-2]
        pretrain.optimizer: [adamw, muon]
      set: [pretrain.max_steps=100]    # proxy training: shorter than the real run

`SweepConfig` is what `smoledge sweep` and `run_sweep` take: the recipe, its `--set`
overrides, and axes given on the command line, which replace the recipe's.

Torch-free: recipe.py imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from smoledge.config import Section

METRICS = ("val_loss", "train_loss")


@dataclass
class SweepSpec(Section):
    method: Literal["grid", "random"] = "grid"
    """`grid`: every combination of the listed values; `random`: `trials` points drawn with `seed`."""
    params: dict[str, Any] = field(default_factory=dict)
    """Dotted recipe key -> a list of values (a grid axis, or the choices of a random draw), or, for a
    numeric key under `random`, a range {min, max, log} (log-uniform by default for learning rates,
    keys named `lr`). A section key (e.g. `teacher`) takes a list of partial mappings whose keys move
    together: teacher: [{hidden_size: 64, num_heads: 4}, {hidden_size: 128, num_heads: 8}]."""
    trials: int = 8
    """random: how many points to draw (duplicates are drawn once)."""
    seed: int = 0
    """random: seed of the draw (same seed, same points)."""
    set: list[str] = field(default_factory=list)
    """KEY=VALUE overrides of every proxy training (like --set), e.g. pretrain.max_steps=100 to keep
    points short. They are not written into the best recipe: only the swept values are."""
    stage: Literal["auto", "pretrain", "distill"] = "auto"
    """Last stage of each proxy training, the one whose model and losses the table reports. `auto`:
    distill when a swept key is in `student` or `distill`, else pretrain."""
    metric: Literal["val_loss", "train_loss"] = "val_loss"
    """What `best` minimises."""

    def __post_init__(self) -> None:
        if self.trials < 1:
            self.fail("trials", f"must be >= 1, got {self.trials}")
        for i, assignment in enumerate(self.set):
            if "=" not in assignment:
                self.fail(f"set[{i}]", f"expected KEY=VALUE like pretrain.max_steps=100, got {assignment!r}")
        # Keys and values are checked against the Recipe's fields (space.py imports recipe.py lazily).
        from smoledge.sweep.space import check_params

        check_params(self.params, self.method, prefix=f"{getattr(self, '_where', '') or 'sweep'}.params")

    def target_stage(self) -> str:
        """The stage each point trains up to."""
        if self.stage != "auto":
            return self.stage
        from smoledge.sweep.space import top_sections

        return "distill" if top_sections(self.params) & {"student", "distill"} else "pretrain"


@dataclass
class SweepConfig(Section):
    recipe: str = "build/quickstart.yaml"
    """The base recipe YAML (its `sweep:` section is the starting search space)."""
    overrides: list[str] = field(default_factory=list)
    """--set KEY=VALUE for every proxy training (after the recipe's `sweep.set`); `sweep.*` keys
    edit the search space itself. Not written into the best recipe."""
    params: dict[str, Any] = field(default_factory=dict)
    """Axes (same forms as `sweep.params`); when given they replace the recipe's `sweep.params` as a
    whole (its `set`, `stage` and `metric` still apply), so the points are exactly the ones asked for."""
    method: Literal["grid", "random"] | None = None
    """Replaces `sweep.method` when set."""
    trials: int | None = None
    """Replaces `sweep.trials` when set (implies method random on the command line)."""
    seed: int | None = None
    """Replaces `sweep.seed` when set."""
    out: str | None = None
    """Sweep directory (points, shared data, table, plots, best recipe). Default:
    <runs_dir>/<recipe name>/sweep."""
    runs_dir: str = "runs"
    """Root of run directories."""
    retry_failed: bool = False
    """Run points recorded as failed again (off: a failed point stays failed, like a finished one)."""

    def __post_init__(self) -> None:
        if self.trials is not None and self.trials < 1:
            self.fail("trials", f"must be >= 1, got {self.trials}")
        for i, assignment in enumerate(self.overrides):
            if "=" not in assignment:
                self.fail(f"overrides[{i}]", f"expected KEY=VALUE like pretrain.max_steps=50, got {assignment!r}")

    def spec(self, base: SweepSpec) -> SweepSpec:
        """The recipe's search space with this config's axes and settings on top."""
        merged = base.to_dict()
        if self.params:
            merged["params"] = dict(self.params)
        for key in ("method", "trials", "seed"):
            if getattr(self, key) is not None:
                merged[key] = getattr(self, key)
        return SweepSpec.from_dict(merged, prefix="sweep")  # type: ignore[return-value]
