"""Config sections for pretraining (teacher) and distillation (student)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from smoledge.config import Section


@dataclass
class TrainConfig(Section):
    max_steps: int = 300
    """Optimizer steps."""
    batch_size: int = 8
    """Packed sequences per step (global batch)."""
    seq_len: int = 256
    """Tokens per packed sequence."""
    optimizer: Literal["adamw", "muon"] = "adamw"
    """AdamW everywhere, or Muon on 2-D hidden matrices with AdamW on the rest."""
    lr: float = 3e-3
    """Peak learning rate (AdamW's; Muon's is RMS-matched to it)."""
    min_lr_ratio: float = 0.0
    """Final lr as a fraction of the peak."""
    weight_decay: float = 0.1
    """Decoupled weight decay (never on embeddings or norms)."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.95
    """AdamW beta2."""
    schedule: Literal["wsd", "cosine"] = "wsd"
    """Warmup-stable-decay, or warmup then cosine."""
    warmup_steps: int = 20
    """Linear warmup steps."""
    decay_fraction: float = 0.1
    """WSD: fraction of steps spent in the final linear decay."""
    grad_clip: float = 1.0
    """Global gradient-norm clip (0 disables)."""
    checkpoint_every: int = 50
    """Steps between resumable checkpoints."""
    eval_every: int = 100
    """Steps between validation-loss evaluations."""
    eval_batches: int = 4
    """Validation batches per evaluation."""
    threads: int = 0
    """torch intra-op threads (0: all local cores)."""
    seed: int = 1234
    """Seed for init and data order."""

    def __post_init__(self) -> None:
        for key in ("max_steps", "batch_size", "seq_len", "checkpoint_every", "eval_every", "eval_batches"):
            if getattr(self, key) <= 0:
                self.fail(key, f"must be > 0, got {getattr(self, key)}")
        if self.lr <= 0:
            self.fail("lr", f"must be > 0, got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            self.fail("min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")
        if not 0 <= self.warmup_steps < self.max_steps:
            self.fail("warmup_steps", f"must be in [0, max_steps={self.max_steps}), got {self.warmup_steps}")
        if not 0.0 <= self.decay_fraction <= 1.0:
            self.fail("decay_fraction", f"must be in [0, 1], got {self.decay_fraction}")
        for key in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, key) < 1.0:
                self.fail(key, f"must be in [0, 1), got {getattr(self, key)}")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.threads < 0:
            self.fail("weight_decay", "weight_decay, grad_clip and threads must be >= 0")


@dataclass
class PretrainConfig(TrainConfig):
    """Teacher pretraining on the tokenized shards."""


@dataclass
class DistillConfig(TrainConfig):
    alpha: float = 0.5
    """Weight of the hard-label cross-entropy; (1 - alpha) goes to the KL term."""
    temperature: float = 2.0
    """Softmax temperature of the KL term (scaled by T^2)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.alpha <= 1.0:
            self.fail("alpha", f"must be in [0, 1], got {self.alpha}")
        if self.temperature <= 0:
            self.fail("temperature", f"must be > 0, got {self.temperature}")
