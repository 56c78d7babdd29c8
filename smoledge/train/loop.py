"""The training loop shared by pretraining and distillation.

    from smoledge.train.loop import train
    outcome = train(model, cfg, sampler, valid, stage_dir, progress, identity)
    outcome = train(student, cfg, sampler, valid, stage_dir, progress, identity, objective=Distill(teacher, 0.5, 2.0))
    outcome = train(student, cfg, cached_sampler, valid, stage_dir, progress, identity, objective=Distill(None, ...))
    outcome.model    # the trained HF model, whole and on the CPU (MTP heads stripped)

Each step: lr from the schedule, the next batch index from the data cursor, this
rank's slice of the global batch, forward (objective + z-loss + MTP) under autocast,
the spike/NaN guard, backward, global grad-norm clip, the guard again on the norm,
optimizer step, QK-clip. The losses come from the final hidden states `loss_chunk`
positions at a time, never from the whole (B, T, V) logits (smoledge.train.fused_head).
Every `eval_every` steps (and at the end) the validation loss is measured; every
`checkpoint_every` steps (and at step 0 and the end) a checkpoint is written.
Every `health.interval` steps the health monitors
(smoledge.train.health) measure the step into health.jsonl. Metrics go to
metrics.jsonl and TensorBoard, events (rollbacks, health alerts) to events.jsonl,
and a loss-curve PNG to loss.png.

Rollback: a step whose loss or gradient is NaN/Inf, or whose loss spikes above the
running median, is not applied. The last checkpoint is restored and the batch that
caused it is skipped from then on (steps replay exactly, then draw the next batch).

Resume: if stage_dir holds a checkpoint, training continues from it. Batch k is a
pure function of (seed, k), the cursor maps steps to batch indices, and the
checkpoint restores weights, optimizer moments, RNG and the guard's window, so a
killed-and-resumed run reproduces the loss curve of an uninterrupted one (same
thread count and machine). Under torchrun the same holds for every rank.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from smoledge.errors import SmoledgeError
from smoledge.host import local_cores
from smoledge.progress import Progress
from smoledge.train.checkpoint import (latest_checkpoint, load_checkpoint, load_module_tensors, module_tensors,
                                       save_checkpoint)
from smoledge.train.config import TrainConfig
from smoledge.train.data import IGNORE_INDEX, Batch, BatchSource
from smoledge.train.health import HealthMonitor
from smoledge.train.lean_ops import lean_activations
from smoledge.train.losses import causal_lm_loss
from smoledge.train.metrics import EVENTS, METRICS, MetricsLog, flops_per_token, peak_flops, read_metrics
from smoledge.train.module import NextToken, Objective, TrainModule
from smoledge.train.mtp import MTPHeads, mtp_labels
from smoledge.train.optim import Optimizers, build_optimizer
from smoledge.train.runtime import Runtime, barrier, unwrap
from smoledge.train.schedule import lr_factor
from smoledge.train.stability import DataCursor, Rollback, SpikeGuard


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: list[Batch]) -> float:
    """Token-weighted mean cross-entropy of a plain HF causal LM over `batches` (one process)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for b in batches:
        inputs = {k: v.to(device) for k, v in b.model_inputs().items()}
        logits = model(**inputs, use_cache=False).logits  # (B, T, V)
        total += float(causal_lm_loss(logits, b.labels.to(device), denom=1.0))
        count += b.num_targets
    model.train(was_training)
    return total / max(count, 1)


@dataclass
class TrainOutcome:
    steps: int
    """Optimizer steps completed (== cfg.max_steps)."""
    tokens: int
    """Input tokens trained on over the whole run (resumed steps included)."""
    final_train_loss: float
    """Training loss of the last step."""
    val_loss: float
    """Validation cross-entropy after the last step."""
    tokens_per_s: float
    """Mean training throughput over the logged steps (all ranks together)."""
    mfu: float
    """Mean model-FLOPs utilisation over the logged steps (0 when the peak is unknown)."""
    resumed_from: int | None
    """Step of the checkpoint this attempt resumed from, if any."""
    rollbacks: int
    """Rollbacks over the whole run (NaN/Inf or spike)."""
    model: torch.nn.Module
    """The trained language model, whole, on the CPU, without MTP heads: ready to save."""


def _thread_count(cfg: TrainConfig) -> int:
    if cfg.threads:
        return cfg.threads
    # torchrun starts LOCAL_WORLD_SIZE processes on this host; they share its cores.
    return max(1, local_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))


def train(
    model: torch.nn.Module,
    cfg: TrainConfig,
    sampler: BatchSource,
    valid: list[Batch],
    stage_dir: Path,
    progress: Progress,
    identity: dict[str, Any],
    objective: Objective | None = None,
    features: torch.nn.Module | None = None,
) -> TrainOutcome:
    """`sampler` is anything with `.batch(k) -> Batch` (cached distillation adds the teacher's targets);
    `features` (a FeatureDistill) is trained and checkpointed with the model, never exported."""
    with training_threads(cfg), lean_activations(model, cfg.lean_activations):
        return _Run(model, cfg, sampler, valid, Path(stage_dir), progress, identity, objective or NextToken(),
                    features).run()


@contextlib.contextmanager
def training_threads(cfg: TrainConfig) -> Iterator[None]:
    """torch's intra-op threads for this config; the count is process-wide, so it is restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(_thread_count(cfg))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _Run:
    """One attempt at a training run: holds what the step, rollback and resume logic share."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, sampler: BatchSource, valid: list[Batch],
                 stage_dir: Path, progress: Progress, identity: dict[str, Any], objective: Objective,
                 features: torch.nn.Module | None = None):
        self.cfg, self.sampler, self.valid, self.stage_dir = cfg, sampler, valid, stage_dir
        self.progress, self.identity = progress, identity
        self.lm = model
        n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
        self.rt = Runtime.from_config(cfg, n_params)
        mtp = None
        if cfg.mtp_heads and cfg.mtp_weight > 0:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed + 1)  # heads get their own init stream: the trunk's is unchanged
                mtp = MTPHeads(model.config, cfg.mtp_heads, cfg.mtp_kind)
        teacher = getattr(objective, "teacher", None)
        if teacher is not None:
            teacher.to(self.rt.device)
        self.qk = None
        if cfg.qk_clip > 0:
            from smoledge.train.qkclip import QKClip

            self.qk = QKClip(model, cfg.qk_clip)
        self.guard = SpikeGuard(cfg.spike_factor, cfg.spike_window)
        self.health = None
        if cfg.health.interval > 0:  # like QKClip, before wrap: its attention recorder lives in the model
            self.health = HealthMonitor(model, cfg.health, self.guard, qk=self.qk, all_reduce=self.rt.all_reduce,
                                        sharded=self.rt.parallel == "fsdp")
        core = TrainModule(model, objective, mtp, cfg.mtp_weight, cfg.z_loss, features, cfg.loss_chunk)
        self.module = self.rt.wrap(core, core.blocks())
        self.core: TrainModule = unwrap(self.module)
        self.optim: Optimizers = build_optimizer(self.core, cfg, fused=self.rt.parallel != "fsdp")
        self.params = [p for p in self.core.parameters() if p.requires_grad]
        self.cursor = DataCursor()
        self.rollbacks = 0
        self.tokens_per_step = cfg.batch_size * cfg.seq_len
        dtype = self.rt.autocast_dtype or torch.float32
        peak, self.peak_source = peak_flops(self.rt.device, dtype)
        self.peak_total = peak * self.rt.world
        self.flops_per_token = flops_per_token(model.config, cfg.seq_len)
        self.log: MetricsLog | None = None

    # -- checkpoints -------------------------------------------------------------------------------
    def _extra(self) -> dict[str, Any]:
        extra = {"data": self.cursor.state(), "guard": self.guard.state(), "rollbacks": self.rollbacks}
        if self.health is not None:
            extra["health"] = self.health.state()
        return extra

    def _save(self, step: int) -> None:
        save_checkpoint(self.stage_dir, step, self.core, self.optim, self.identity, self._extra())

    def _restore(self, path: Path, also_skip: set[int] = frozenset()) -> int:
        state = load_checkpoint(path, self.core, self.optim, self.identity)
        extra = state.get("extra", {})
        self.cursor = DataCursor.from_state(extra.get("data", {"next_index": state["step"]}), also_skip)
        self.guard.load(extra.get("guard", {}))
        if self.health is not None:
            self.health.load(extra.get("health", {}))
        self.rollbacks = max(self.rollbacks, int(extra.get("rollbacks", 0)))
        return int(state["step"])

    def _open_log(self, resume_step: int | None) -> None:
        if self.rt.is_main:
            self.log = MetricsLog(self.stage_dir, self.cfg.tensorboard, resume_step)

    # -- one step ----------------------------------------------------------------------------------
    def _denoms(self, labels: torch.Tensor) -> torch.Tensor:
        """Per depth: global labelled count / world (see smoledge.train.losses)."""
        counts = torch.stack([(mtp_labels(labels, d) != IGNORE_INDEX).sum()
                              for d in range(self.core.depths + 1)]).double()    # (1 + k,)
        return (self.rt.all_reduce(counts) / self.rt.world).clamp_min(1.0 / self.rt.world).float()

    def _step(self, step: int) -> dict[str, Any]:
        cfg, rt = self.cfg, self.rt
        t0 = time.perf_counter()
        lr = self.optim.set_lr_factor(lr_factor(step, cfg))
        index = self.cursor.take()
        batch = rt.local_rows(self.sampler.batch(index))
        denoms = self._denoms(batch.labels)
        with rt.autocast():
            loss, parts = self.module(**batch.model_inputs(), labels=batch.labels, denoms=denoms,
                                      **batch.teacher_inputs())
        # Each rank's loss is (its sum) / (global count / world): their mean is the global mean.
        values = rt.all_reduce(torch.stack([loss.detach(), *parts.values()]).double(), "avg")
        loss_value = float(values[0])
        grad_norm, probe = None, None
        reason = self.guard.check(loss_value)
        if reason is None:
            loss.backward()
            probe = self.health.probe(step + 1) if self.health is not None else None  # None: not measured
            if probe is not None:
                probe.before_update(lambda: self._measuring_forward(batch, denoms))
            clip = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
            norm = torch.nn.utils.clip_grad_norm_(self.params, clip)
            grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
            reason = self.guard.check(loss_value, grad_norm)
        if self.health is not None:
            self._alert(step + 1, self.health.loss_alerts(loss_value, grad_norm))
        if reason is not None:
            self.optim.zero_grad()
            raise Rollback(reason, step + 1, index, loss_value)
        self.optim.step()
        self.optim.zero_grad()
        if probe is not None:  # before QK-clip's apply() resets the attention-logit record
            record, alerts = probe.finish()
            if self.log is not None:
                self.log.health(record)
            self._alert(step + 1, alerts)
        row: dict[str, Any] = {"step": step + 1, "loss": loss_value,
                               **{k: float(v) for k, v in zip(parts, values[1:].tolist())},
                               "lr": lr, "grad_norm": grad_norm, "batch": index}
        if self.qk is not None:
            row.update(self.qk.apply(reduce=lambda t: rt.all_reduce(t, "max")))
        self.guard.accept(loss_value)
        elapsed = time.perf_counter() - t0
        row["tokens_per_s"] = self.tokens_per_step / elapsed
        row["mfu"] = row["tokens_per_s"] * self.flops_per_token / self.peak_total if self.peak_total else 0.0
        return row

    def _measuring_forward(self, batch: Batch, denoms: torch.Tensor) -> None:
        """The step's batch through the model once more for the health probe's hooks (no gradients; the LM and
        its loss only: MTP heads and distillation terms are not what it measures)."""
        with self.rt.autocast():
            self.module(**batch.model_inputs(), labels=batch.labels, denoms=denoms, eval_only=True)
        if self.rt.parallel == "fsdp":
            # FSDP2 keeps the root's parameters gathered after a forward until the next backward; gathered
            # now, before the optimizer step, the next step's forward would run on these old values.
            self.module.reshard()

    def _alert(self, step: int, alerts: list[dict[str, Any]]) -> None:
        """Health alerts to events.jsonl (rank 0) and the status line."""
        for alert in alerts:
            if self.log is not None:
                self.log.event("alert", step, **alert)
            self.progress.update(f"alert at step {step}: {alert['message']}", step, self.cfg.max_steps)

    @torch.no_grad()
    def _evaluate(self) -> float:
        self.module.eval()
        total = torch.zeros(2, dtype=torch.float64)
        ones = torch.ones(self.core.depths + 1)
        for b in self.valid:
            local = self.rt.local_rows(b)
            with self.rt.autocast():
                summed, _ = self.module(**local.model_inputs(), labels=local.labels, denoms=ones, eval_only=True)
            total += torch.tensor([float(summed), local.num_targets], dtype=torch.float64)
        self.module.train()
        self.rt.all_reduce(total)
        return float(total[0] / total[1].clamp_min(1))

    # -- the run -----------------------------------------------------------------------------------
    def _rollback(self, rb: Rollback) -> int:
        self.rollbacks += 1
        last = latest_checkpoint(self.stage_dir)
        info = {"reason": rb.reason, "batch": rb.batch_index, "loss": rb.loss, "restored": last.name if last else None,
                "rollbacks": self.rollbacks}
        if self.log is not None:
            self.log.event("rollback", rb.step, **info)
        self.progress.update(f"rollback at step {rb.step}: {rb.reason}; skipping batch {rb.batch_index}",
                             rb.step, self.cfg.max_steps)
        if self.rollbacks > self.cfg.max_rollbacks:
            raise SmoledgeError(
                f"training rolled back {self.rollbacks} times (last at step {rb.step}: {rb.reason}); this is more "
                f"than bad batches: lower the lr, raise warmup_steps, or enable z_loss / qk_clip in the recipe "
                f"(events: {self.stage_dir / EVENTS}; last good checkpoint: {last})"
            )
        if last is None:
            raise SmoledgeError(
                f"training must roll back at step {rb.step} ({rb.reason}) but {self.stage_dir / 'checkpoints'} "
                f"holds no checkpoint (removed while the run was going?); rerun the stage to start over"
            )
        # The skipped batch joins the restored cursor; steps after the checkpoint replay exactly.
        skip = {*self.cursor.skipped, rb.batch_index}
        step = self._restore(last, skip)
        if self.log is not None:
            self.log.rewind(step)
        return step

    def run(self) -> TrainOutcome:
        cfg = self.cfg
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        ckpt = latest_checkpoint(self.stage_dir)
        # Every rank must take the same branch: had rank 0 written its step-0 checkpoint before
        # another rank looked, that rank would resume while rank 0 starts fresh, and their
        # collectives would pair up wrongly (a hang, or an abort on mismatched tensors).
        barrier()
        resumed_from = None
        if ckpt is not None:
            start = resumed_from = self._restore(ckpt)
            self._open_log(start)
            self.progress.update(f"resumed from {ckpt.name}", start, cfg.max_steps)
        else:
            start = 0
            self._open_log(None)
            self._save(0)  # a NaN before the first periodic checkpoint still has somewhere to roll back to
        self.module.train()
        val_loss = math.nan
        step = start
        try:
            while step < cfg.max_steps:
                try:
                    row = self._step(step)
                except Rollback as rb:
                    step = self._rollback(rb)
                    continue
                step = done = row["step"]
                if done % cfg.eval_every == 0 or done == cfg.max_steps:
                    val_loss = row["val_loss"] = self._evaluate()
                if self.log is not None:
                    self.log.log(row)
                if done % cfg.checkpoint_every == 0 or done == cfg.max_steps:
                    self._save(done)
                shown = f"loss {row['loss']:.3f}" + (f" val {val_loss:.3f}" if "val_loss" in row else "")
                self.progress.update(f"{shown} lr {row['lr']:.2e} {row['tokens_per_s']:.0f} tok/s "
                                     f"mfu {100 * row['mfu']:.1f}%", done, cfg.max_steps)
            if math.isnan(val_loss):
                val_loss = self._evaluate()  # resumed from the final checkpoint: nothing ran
        finally:
            if self.log is not None:
                self.log.close()
            if self.qk is not None:
                self.qk.close()  # the saved config must name the stock attention implementation
            if self.health is not None:
                self.health.close()  # its hooks and measure-only attention recorder too
        rows = [r for r in read_metrics(self.stage_dir / METRICS) if "loss" in r] if self.rt.is_main else []
        return TrainOutcome(
            steps=cfg.max_steps,
            tokens=cfg.max_steps * self.tokens_per_step,
            final_train_loss=rows[-1]["loss"] if rows else math.nan,
            val_loss=val_loss,
            tokens_per_s=sum(r["tokens_per_s"] for r in rows) / max(len(rows), 1),
            mfu=sum(r.get("mfu", 0.0) for r in rows) / max(len(rows), 1),
            resumed_from=resumed_from,
            rollbacks=self.rollbacks,
            model=self._whole_lm(),
        )

    def _whole_lm(self) -> torch.nn.Module:
        """The trained LM as one plain CPU model (FSDP2 shards gathered: every rank calls this)."""
        if self.rt.parallel != "fsdp":
            return self.lm.to("cpu")
        tensors = module_tensors(self.lm)
        plain = type(self.lm)(self.lm.config)
        load_module_tensors(plain, tensors, self.stage_dir)
        return plain
