"""Learning-rate schedules as pure functions of the step (resume needs no scheduler state).

    from smoledge.train.schedule import lr_factor
    lr = cfg.lr * lr_factor(step, cfg)   # step counts from 0; multiply the peak lr

WSD (warmup-stable-decay, as MiniCPM/SmolLM3): linear warmup, a long constant
phase, then a linear decay over the last `decay_fraction` of the steps down to
`min_lr_ratio`. Cosine: linear warmup, then a half cosine down to `min_lr_ratio`.
"""

from __future__ import annotations

import math

from smoledge.train.config import TrainConfig


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the peak lr for optimizer step `step` (0-based)."""
    if step < cfg.warmup_steps:
        # (step + 1): the very first update already moves, so warmup never wastes a step at lr 0.
        return (step + 1) / cfg.warmup_steps
    floor = cfg.min_lr_ratio
    if cfg.schedule == "wsd":
        decay_steps = int(round(cfg.decay_fraction * cfg.max_steps))
        decay_start = cfg.max_steps - decay_steps
        if decay_steps == 0 or step < decay_start:
            return 1.0
        # Reaches exactly `floor` on the last step (max_steps - 1).
        progress = (step - decay_start + 1) / decay_steps
        return 1.0 - (1.0 - floor) * min(progress, 1.0)
    span = max(cfg.max_steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps + 1) / span, 1.0)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
