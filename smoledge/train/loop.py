"""The training loop shared by pretraining and distillation.

    from smoledge.train.loop import train
    outcome = train(model, cfg, sampler, valid_batches, stage_dir, progress, identity)
    # distillation passes its own loss: loss_fn(model, batch) -> (loss, {"ce": ..., "kl": ...})

Each step: lr from the schedule, forward on a packed batch, backward, global
grad-norm clip, optimizer step. Every `eval_every` steps (and at the end) the
validation loss is measured; every `checkpoint_every` steps (and at the end) a
checkpoint is written. One JSON line per step goes to stage_dir/metrics.jsonl.

Resume: if stage_dir holds a checkpoint, training continues from it. Batch k
is a pure function of (seed, k) and the checkpoint restores weights, optimizer
moments and RNG exactly, so a killed-and-resumed run reproduces the loss curve
of an uninterrupted one (same thread count, same machine).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from smoledge.errors import SmoledgeError
from smoledge.io import atomic_write_text
from smoledge.progress import Progress
from smoledge.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from smoledge.train.config import TrainConfig
from smoledge.train.data import Batch, PackedSampler
from smoledge.train.losses import causal_lm_loss
from smoledge.train.optim import build_optimizer
from smoledge.train.schedule import lr_factor

METRICS = "metrics.jsonl"

LossFn = Callable[[torch.nn.Module, Batch], tuple[torch.Tensor, dict[str, float]]]


def local_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def lm_loss(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
    logits = model(**batch.model_inputs(), use_cache=False).logits  # (B, T, V)
    return causal_lm_loss(logits, batch.labels), {}


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: list[Batch]) -> float:
    """Token-weighted mean cross-entropy over `batches`."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for b in batches:
        logits = model(**b.model_inputs(), use_cache=False).logits  # (B, T, V)
        n = b.num_targets
        total += float(causal_lm_loss(logits, b.labels)) * n
        count += n
    model.train(was_training)
    return total / max(count, 1)


@dataclass
class TrainOutcome:
    steps: int
    """Optimizer steps completed (== cfg.max_steps)."""
    tokens: int
    """Input tokens seen over the whole run (resumed steps included)."""
    final_train_loss: float
    """Training loss of the last step."""
    val_loss: float
    """Validation cross-entropy after the last step."""
    tokens_per_s: float
    """Mean training throughput over the logged steps."""
    resumed_from: int | None
    """Step of the checkpoint this attempt resumed from, if any."""


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Well-formed lines of a metrics.jsonl (a line cut by a kill is dropped)."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop lines logged after the checkpoint we resume from: those steps run again."""
    rows = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def train(
    model: torch.nn.Module,
    cfg: TrainConfig,
    sampler: PackedSampler,
    valid: list[Batch],
    stage_dir: Path,
    progress: Progress,
    identity: dict[str, Any],
    loss_fn: LossFn = lm_loss,
) -> TrainOutcome:
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads or local_cores())
    try:
        return _train(model, cfg, sampler, valid, Path(stage_dir), progress, identity, loss_fn)
    finally:
        torch.set_num_threads(threads)  # the thread count is process-wide; leave it as found


def _train(model: torch.nn.Module, cfg: TrainConfig, sampler: PackedSampler, valid: list[Batch],
           stage_dir: Path, progress: Progress, identity: dict[str, Any], loss_fn: LossFn) -> TrainOutcome:
    stage_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = stage_dir / METRICS
    optim = build_optimizer(model, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    tokens_per_step = cfg.batch_size * cfg.seq_len

    start, resumed_from = 0, None
    ckpt = latest_checkpoint(stage_dir)
    if ckpt is not None:
        state = load_checkpoint(ckpt, model, optim, identity)
        start = resumed_from = state["step"]
        _truncate_metrics(metrics_path, start)
        progress.update(f"resumed from {ckpt.name}", start, cfg.max_steps)
    elif metrics_path.exists():
        metrics_path.unlink()  # a previous attempt died before its first checkpoint

    model.train()
    val_loss = math.nan
    with open(metrics_path, "a") as log:
        for step in range(start, cfg.max_steps):
            t0 = time.perf_counter()
            lr = optim.set_lr_factor(lr_factor(step, cfg))
            batch = sampler.batch(step)
            loss, parts = loss_fn(model, batch)
            if not torch.isfinite(loss):
                last = latest_checkpoint(stage_dir)
                raise SmoledgeError(
                    f"training loss became {float(loss.detach())} at step {step + 1} (lr {lr:.3g}); lower the "
                    f"lr or raise warmup_steps in the recipe"
                    + (f" (the last good checkpoint is {last})" if last else "")
                )
            loss.backward()
            clip = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
            optim.step()
            optim.zero_grad()
            elapsed = time.perf_counter() - t0
            done = step + 1
            row: dict[str, Any] = {
                "step": done, "loss": float(loss.detach()), **parts, "lr": lr, "grad_norm": grad_norm,
                "tokens_per_s": tokens_per_step / elapsed,
            }
            if done % cfg.eval_every == 0 or done == cfg.max_steps:
                val_loss = evaluate(model, valid)
                row["val_loss"] = val_loss
            log.write(json.dumps(row) + "\n")
            log.flush()
            if done % cfg.checkpoint_every == 0 or done == cfg.max_steps:
                save_checkpoint(stage_dir, done, model, optim, identity)
            shown = f"loss {row['loss']:.3f}" + (f" val {val_loss:.3f}" if "val_loss" in row else "")
            progress.update(f"{shown} lr {lr:.2e} {row['tokens_per_s']:.0f} tok/s", done, cfg.max_steps)

    rows = [r for r in read_metrics(metrics_path) if "loss" in r]
    if math.isnan(val_loss):
        # Resumed from the final checkpoint: nothing ran, take the logged value (or measure it).
        logged = [r["val_loss"] for r in rows if r.get("step") == cfg.max_steps and "val_loss" in r]
        val_loss = logged[-1] if logged else evaluate(model, valid)
    return TrainOutcome(
        steps=cfg.max_steps,
        tokens=cfg.max_steps * tokens_per_step,
        final_train_loss=rows[-1]["loss"] if rows else math.nan,
        val_loss=val_loss,
        tokens_per_s=sum(r["tokens_per_s"] for r in rows) / max(len(rows), 1),
        resumed_from=resumed_from,
    )
