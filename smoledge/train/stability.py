"""Loss-spike and NaN guard: decides when a step must be rolled back, and which batches to skip.

    guard = SpikeGuard(factor=3.0, window=50)
    reason = guard.check(loss, grad_norm)   # None, or why this step must not be applied
    guard.accept(loss)                      # after a healthy step

A step is refused when its loss or gradient norm is not finite, or when its loss
exceeds `factor` x the median of the last `window` accepted losses (PaLM saw
spikes that a rollback plus skipped data avoided; a median ignores the spike's own
outliers where a mean would chase them). The loop then restores the last
checkpoint and marks the batch as skipped, so the replay draws the next one.

The guard's state (its window, the skipped batch indices) is part of a checkpoint,
so a resumed run makes the same decisions as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any


class Rollback(Exception):
    """Raised inside a step that must not be applied; the loop restores the last checkpoint."""

    def __init__(self, reason: str, step: int, batch_index: int, loss: float):
        super().__init__(reason)
        self.reason = reason
        self.step = step
        self.batch_index = batch_index
        self.loss = loss


@dataclass
class SpikeGuard:
    factor: float
    """A loss above factor x the window median is a spike (0: only NaN/Inf count)."""
    window: int
    """Accepted losses the median is taken over; no spike test until it is full."""
    history: deque = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.history = deque(self.history, maxlen=self.window)

    def median(self) -> float:
        ordered = sorted(self.history)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])

    def check(self, loss: float, grad_norm: float | None = None) -> str | None:
        if not math.isfinite(loss):
            return f"loss is {loss}"
        if grad_norm is not None and not math.isfinite(grad_norm):
            return f"gradient norm is {grad_norm}"
        return self.spike(loss, self.factor)

    def spike(self, loss: float, factor: float) -> str | None:
        """Why `loss` is a spike at `factor` x the window median, or None (also while the window is not
        full, or factor is 0). The health monitors alert at their own factor over this same window."""
        if factor > 0 and len(self.history) == self.window:
            median = self.median()
            if loss > factor * median:
                return f"loss spike: {loss:.4g} > {factor:g} x running median {median:.4g}"
        return None

    def accept(self, loss: float) -> None:
        self.history.append(loss)

    def state(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    def load(self, state: dict[str, Any]) -> None:
        self.history = deque(state.get("history", []), maxlen=self.window)


@dataclass
class DataCursor:
    """Which batch index each step consumes: step order, minus the batches skipped by rollbacks."""

    next_index: int = 0
    """Index of the next batch to draw from the sampler."""
    skipped: set[int] = field(default_factory=set)
    """Batch indices never to train on (each caused a rollback)."""

    def take(self) -> int:
        while self.next_index in self.skipped:
            self.next_index += 1
        index = self.next_index
        self.next_index += 1
        return index

    def state(self) -> dict[str, Any]:
        return {"next_index": self.next_index, "skipped": sorted(self.skipped)}

    @classmethod
    def from_state(cls, state: dict[str, Any], also_skip: set[int] = frozenset()) -> "DataCursor":
        return cls(next_index=int(state.get("next_index", 0)), skipped={*state.get("skipped", []), *also_skip})
