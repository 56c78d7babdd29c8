"""Hyperparameter sweeps: many small proxy trainings of one recipe, a results table, plots, the best recipe.

    smoledge sweep build/quickstart.yaml --set pretrain.max_steps=60 \
        --grid pretrain.lr=1e-3,3e-3,1e-2 --grid pretrain.optimizer=adamw,muon

    from smoledge.sweep import SweepConfig, run_sweep
    result = run_sweep(SweepConfig(recipe="build/quickstart.yaml", overrides=["pretrain.max_steps=60"],
                                   params={"pretrain.lr": [1e-3, 3e-3, 1e-2]}))
    result.table            # results.csv (also result.parquet), columns in smoledge/sweep/results.py
    result.best             # the row with the lowest val_loss
    result.best_recipe      # best.yaml: the recipe with the best values, ready for `smoledge build`

config.py (SweepSpec: a recipe's `sweep:` section; SweepConfig: what run_sweep takes), space.py
(keys, values, grid and random points), runner.py (trains the points, resumable), results.py (the
table), plots.py, best.py (the best recipe YAML).
"""

from __future__ import annotations

from typing import Any

from smoledge.sweep.config import SweepConfig, SweepSpec

__all__ = ["SweepConfig", "SweepSpec", "SweepResult", "run_sweep"]


def __getattr__(name: str) -> Any:
    # Lazy: recipe.py imports sweep.config, and the runner imports recipe.py.
    if name in ("run_sweep", "SweepResult"):
        from smoledge.sweep import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'smoledge.sweep' has no attribute {name!r}")
