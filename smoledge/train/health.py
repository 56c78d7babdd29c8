"""Training-health monitors: is the model still learning well? Measured during every training run.

    from smoledge.train.health import HealthMonitor
    monitor = HealthMonitor(model, cfg.health, guard, qk=clip_or_None, all_reduce=rt.all_reduce,
                            sharded=rt.parallel == "fsdp")
    probe = monitor.probe(step)                       # None unless `step` is a measured step
    loss = forward(batch); loss.backward()
    alerts = monitor.loss_alerts(loss, grad_norm)     # every step: NaN/Inf, loss spikes
    probe.before_update(lambda: forward(batch))       # gradients, weights, one extra no-grad forward
    clip_grad_norm_(...); optimizer.step()
    record, alerts = probe.finish()                   # a health.jsonl row, alerts for events.jsonl
    monitor.close()

The training loop (smoledge.train.loop) does this for pretraining and distillation; records go to
<stage>/health.jsonl and TensorBoard (health/<metric>/layer<i>), alerts to events.jsonl as
{"event": "alert", "alert": kind, "message": ..., ...}. `train.health` configures it (HealthConfig).

Every `health.interval` steps, per decoder layer i:
  grad_norm[i]       L2 norm of the layer's gradients before clipping (what the optimizer is handed).
  update_ratio[i]    RMS(W_after - W_before) / RMS(W_before) over the layer's parameters: how far one
                     optimizer step moves the weights relative to their size (AdamW at a sane lr: ~1e-3;
                     ~1e-1 rewrites the layer every step, ~1e-6 means it stopped learning).
  act_rms[i]         RMS of the layer's output hidden states (the residual stream); growth means blow-up.
  attn_logit[i][h]   largest pre-softmax attention logit of head h over the step's batch, recorded by
                     smoledge.train.qkclip (the very numbers QK-clip acts on); attn_logit_max[i] over heads.
  erank[i]           effective rank of the layer's output hidden states (effective_rank below).
  dead_fraction[i]   fraction of the layer's MLP units that are dead on the batch (dead_units below).
Alerts, every step: `divergence` on a NaN/Inf loss or gradient norm, `loss_spike` when the loss exceeds
health.spike_factor x the running median (train.stability's SpikeGuard test, over its window). At measured
steps: `divergence` when the running median itself rose health.divergence_factor x above its lowest, or a
statistic is not finite; `attention_logits`, `collapse` and `dead_units` past their thresholds.

Cost: only measured steps pay, and the training forward and backward are never touched. A measured step
runs one extra forward of the same batch with the same (not yet updated) weights, without gradients,
eagerly (torch.compiler's force_eager stance) with forward hooks and the attention recorder on, then
removes them: so compiled layers keep one graph with no hook in it (a hook added to a compiled layer
would recompile it; a resident one would break its graph on every step). On top: one SVD of
(health.tokens, hidden) per layer and a copy of the layer weights across the optimizer step.
BENCHMARKS.md ("Training-health monitor cost (issue 10)") has the measured overhead.
Under DDP/FSDP every statistic is reduced over ranks (sums, means or maxima; the effective rank is the
mean of each rank's), so every rank computes the same alerts and rank 0 logs them.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
from torch import nn

from smoledge.train.config import HealthConfig
from smoledge.train.lean_ops import GQA_SDPA
from smoledge.train.stability import SpikeGuard

if TYPE_CHECKING:
    from smoledge.train.qkclip import QKClip

# A SwiGLU unit is dead when its largest |activation| on the batch is below this fraction of the RMS of
# all the layer's unit activations (see dead_units).
DEAD_RELATIVE = 1e-2

Reduce = Callable[[torch.Tensor, str], torch.Tensor]


# ----------------------------------------------------------------------------- the metrics

def effective_rank(x: torch.Tensor, tol: float = 0.0) -> torch.Tensor:
    """Effective rank of a 2-D matrix (Roy & Vetterli 2007): exp of the Shannon entropy of its singular
    values normalised to sum to 1. A 0-d tensor: 1 for a rank-one matrix, n for n equal singular values
    (an orthogonal n x n matrix), in between for a spread spectrum; 0 for the zero matrix (nothing left
    to span) and NaN when x is not finite (that is divergence, not collapse). Singular values <= `tol`
    count as 0 (rounding residue)."""
    if not bool(torch.isfinite(x).all()):
        return torch.tensor(math.nan, device=x.device)
    s = torch.linalg.svdvals(x.float())                                   # (min(N, C),)
    s = torch.where(s > tol, s, torch.zeros_like(s))
    total = s.sum()
    if not total > 0:
        return torch.zeros((), device=x.device)
    p = s / total                                                         # (k,), sums to 1
    entropy = -(p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))).sum()  # 0 log 0 = 0
    return entropy.exp()


def token_rank(hidden: torch.Tensor, tokens: int) -> torch.Tensor:
    """Effective rank of up to `tokens` evenly spaced token vectors of hidden (..., C), token-centred.

    Centred because a residual stream carries a large direction shared by every token (anisotropy):
    uncentred, it would be one dominant singular value on every healthy layer. What collapse means is
    that tokens stop being distinguishable, i.e. their deviations from the mean span few directions;
    tokens that all became the same vector give the zero matrix, rank 0. What centring leaves of
    identical tokens is float rounding, so singular values under the usual numerical-rank tolerance of
    the uncentred matrix (max(n, C) * eps * its norm) count as 0."""
    flat = hidden.detach().reshape(-1, hidden.shape[-1])                  # (N, C)
    n = min(tokens, flat.shape[0])
    idx = torch.linspace(0, flat.shape[0] - 1, n, device=flat.device).round().long()  # (n,)
    x = flat[idx].float()                                                 # (n, C)
    tol = max(x.shape) * torch.finfo(torch.float32).eps * float(torch.linalg.matrix_norm(x))
    return effective_rank(x - x.mean(dim=0, keepdim=True), tol)


def unit_stats(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For MLP unit activations a (..., I): (largest |a_j| over all tokens per unit (I,), mean square of a)."""
    a = a.detach().float()
    return a.abs().reshape(-1, a.shape[-1]).amax(dim=0), a.pow(2).mean()


def dead_units(peak: torch.Tensor, mean_square: torch.Tensor) -> torch.Tensor:
    """Which MLP units are dead (bool (I,)), from unit_stats over the measured batch.

    SwiGLU (SmolLM3's MLP) computes down_proj(a) with unit j's activation a_j = silu(gate_j . x) * (up_j . x).
    The ReLU notion, "never positive", does not carry over: silu is negative for negative inputs, so a unit
    whose gate stays below 0 still passes signal (silu(-1) = -0.27). A unit is dead when it passes none:
    its largest |a_j| over every token of the batch is below DEAD_RELATIVE (1%) of the RMS of all the
    layer's activations, so down_proj gets ~nothing from it. That covers a gate driven far negative
    (silu -> 0), a zeroed gate or up row, and a layer whose whole input vanished (every unit dead)."""
    return peak <= DEAD_RELATIVE * mean_square.sqrt()


def _local(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of an FSDP2 DTensor; a plain tensor as is."""
    return t.to_local() if hasattr(t, "to_local") else t


def _sum_squares(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([t.float().pow(2).sum() for t in tensors]).sum()


def _no_reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    return t


# ----------------------------------------------------------------------------- the monitor

class HealthMonitor:
    """Owns the measure-only attention recorder (when QK-clip has none) and the alert state."""

    def __init__(self, model: nn.Module, cfg: HealthConfig, guard: SpikeGuard, qk: "QKClip | None" = None,
                 all_reduce: Reduce | None = None, sharded: bool = False):
        """`model`: the bare HF causal LM (model.model.layers). `guard`: the loop's SpikeGuard (its window of
        accepted losses). `qk`: the loop's QKClip, which records every training forward; without one a
        measure-only recorder is installed (sdpa models only: the recorder computes attention with sdpa,
        so it cannot stand in for eager or flash attention). `all_reduce(t, op)` in place over ranks;
        `sharded`: parameters are FSDP2 shards (sum their squares over ranks)."""
        if cfg.interval <= 0:
            raise ValueError("HealthMonitor needs health.interval > 0 (0 means: build no monitor)")
        self.cfg, self.guard = cfg, guard
        self.layers = list(model.model.layers)
        self.reduce = all_reduce or _no_reduce
        self.sharded = sharded
        self.best_median = math.inf
        self.qk, self._own_qk = qk, None
        if qk is None and model.config._attn_implementation in ("sdpa", GQA_SDPA):
            from smoledge.train.qkclip import QKClip

            # tau = inf: measures, never clips; records only during a probe's measuring forward.
            self.qk = self._own_qk = QKClip(model, math.inf)
            self._own_qk.recording = False

    def probe(self, step: int) -> "Probe | None":
        """A probe for `step` (1-based: the step being taken), or None when it is not a measured one."""
        return Probe(self, step) if step % self.cfg.interval == 0 else None

    def loss_alerts(self, loss: float, grad_norm: float | None = None) -> list[dict[str, Any]]:
        """Every step, before the guard decides: NaN/Inf (`divergence`) or a spike (`loss_spike`)."""
        if not math.isfinite(loss) or (grad_norm is not None and not math.isfinite(grad_norm)):
            return [{"alert": "divergence", "loss": loss, "grad_norm": grad_norm,
                     "message": f"loss {loss:.4g}, gradient norm {grad_norm}: not finite, the step is rolled back; "
                                f"lower the lr, raise warmup_steps, or enable z_loss / qk_clip"}]
        reason = self.guard.spike(loss, self.cfg.spike_factor)
        if reason is None:
            return []
        return [{"alert": "loss_spike", "loss": loss, "median": self.guard.median(),
                 "threshold": self.cfg.spike_factor, "message": reason}]

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps, so a resumed run alerts like an uninterrupted one."""
        return {"best_median": None if math.isinf(self.best_median) else self.best_median}

    def load(self, state: dict[str, Any]) -> None:
        best = state.get("best_median")
        self.best_median = math.inf if best is None else float(best)

    def close(self) -> None:
        """Remove the measure-only recorder (the model gets its stock attention back)."""
        if self._own_qk is not None:
            self._own_qk.close()
            self._own_qk = None


class Probe:
    """One measured step: before_update() (gradients, weights, the measuring forward), then finish()."""

    def __init__(self, monitor: HealthMonitor, step: int):
        self.m, self.step = monitor, step
        self.act_ms: dict[int, torch.Tensor] = {}
        self.erank: dict[int, torch.Tensor] = {}
        self.mlp_peak: dict[int, torch.Tensor] = {}
        self.mlp_ms: dict[int, torch.Tensor] = {}
        self.grad_sq: torch.Tensor | None = None
        self.before: list[list[torch.Tensor]] = []

    def _params(self) -> list[list[torch.Tensor]]:
        # Looked up each time: FSDP2 replaces the parameters when it shards the model.
        return [[p for p in layer.parameters() if p.requires_grad] for layer in self.m.layers]

    @torch.no_grad()
    def before_update(self, forward: Callable[[], Any]) -> None:
        """After backward, before clipping and the optimizer step: per-layer gradient norms, a copy of the
        weights, and `forward()` (the training batch through the model, in training mode) run once more
        without gradients, eagerly, with the hooks and the attention recorder on."""
        params = self._params()
        self.grad_sq = torch.stack([_sum_squares([_local(p.grad) for p in ps if p.grad is not None])
                                    for ps in params])                   # (L,)
        self.before = [[_local(p).detach().clone() for p in ps] for ps in params]
        with self._hooks(), torch.compiler.set_stance("force_eager"):
            forward()

    @contextlib.contextmanager
    def _hooks(self) -> Iterator[None]:
        handles = []
        for i, layer in enumerate(self.m.layers):
            handles.append(layer.register_forward_hook(functools.partial(self._layer_output, i)))
            handles.append(layer.mlp.down_proj.register_forward_pre_hook(functools.partial(self._mlp_input, i)))
        own = self.m._own_qk
        if own is not None:
            own.recording = True
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            if own is not None:
                own.recording = False

    def _layer_output(self, i: int, module: nn.Module, args: Any, output: Any) -> None:
        h = output[0] if isinstance(output, tuple) else output            # (B, T, C)
        self.act_ms[i] = h.detach().float().pow(2).mean()
        self.erank[i] = token_rank(h, self.m.cfg.tokens)

    def _mlp_input(self, i: int, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self.mlp_peak[i], self.mlp_ms[i] = unit_stats(args[0])           # (I,), ()

    @torch.no_grad()
    def finish(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """After the optimizer step (and before QK-clip resets its record): (health.jsonl row, alerts)."""
        m, L = self.m, len(self.m.layers)
        if self.grad_sq is None or len(self.act_ms) < L or len(self.mlp_peak) < L:
            raise RuntimeError("a health probe needs before_update() (with a forward through every layer) first")
        params = self._params()
        update_sq = torch.stack([_sum_squares([_local(p).detach() - b for p, b in zip(ps, bs)])
                                 for ps, bs in zip(params, self.before)])  # (L,)
        weight_sq = torch.stack([_sum_squares(bs) for bs in self.before])    # (L,)
        sums = torch.stack([self.grad_sq, update_sq, weight_sq])             # (3, L)
        if m.sharded:
            m.reduce(sums, "sum")
        means = torch.stack([torch.stack([self.act_ms[i], self.erank[i].to(self.act_ms[i].device),
                                          self.mlp_ms[i]]) for i in range(L)]).T.contiguous()  # (3, L)
        m.reduce(means, "avg")
        peaks = torch.stack([self.mlp_peak[i] for i in range(L)])           # (L, I)
        m.reduce(peaks, "max")
        dead = dead_units(peaks, means[2][:, None]).float().mean(dim=1)     # (L,)
        record: dict[str, Any] = {
            "step": self.step,
            "grad_norm": sums[0].sqrt().tolist(),
            "update_ratio": (sums[1] / sums[2]).sqrt().tolist(),
            "act_rms": means[0].sqrt().tolist(),
            "erank": means[1].tolist(),
            "dead_fraction": dead.tolist(),
        }
        if m.qk is not None:
            logits = m.qk.max_logits()                                       # (L, H)
            m.reduce(logits, "max")
            record["attn_logit"] = logits.tolist()
            record["attn_logit_max"] = logits.amax(dim=1).tolist()
            if m._own_qk is not None:
                m._own_qk.apply()  # tau = inf: clips nothing, resets the record for the next probe
        self.before = []
        return record, self._alerts(record)

    def _alerts(self, r: dict[str, Any]) -> list[dict[str, Any]]:
        cfg, guard, m = self.m.cfg, self.m.guard, self.m
        alerts: list[dict[str, Any]] = []
        if cfg.divergence_factor > 0 and len(guard.history) == guard.window:
            median = guard.median()
            if median > cfg.divergence_factor * m.best_median:
                alerts.append({"alert": "divergence", "median": median, "lowest_median": m.best_median,
                               "threshold": cfg.divergence_factor,
                               "message": f"running median loss {median:.4g} > {cfg.divergence_factor:g} x its "
                                          f"lowest {m.best_median:.4g}: the run is diverging; lower the lr"})
            m.best_median = min(m.best_median, median)
        bad = {k: [i for i, v in enumerate(r[k]) if not math.isfinite(v)]
               for k in ("grad_norm", "update_ratio", "act_rms", "erank")}
        bad = {k: v for k, v in bad.items() if v}
        if bad:
            alerts.append({"alert": "divergence", "layers": bad,
                           "message": "not finite: " + ", ".join(f"{k} of layers {v}" for k, v in bad.items())})
        if "attn_logit" in r:
            over = [[i, h, v] for i, row in enumerate(r["attn_logit"]) for h, v in enumerate(row)
                    if v > cfg.max_attn_logit]
            if over:
                i, h, v = max(over, key=lambda x: x[2])
                alerts.append({"alert": "attention_logits", "value": v, "threshold": cfg.max_attn_logit,
                               "heads": over,
                               "message": f"max attention logit {v:.4g} > {cfg.max_attn_logit:g} (layer {i} head {h}, "
                                          f"{len(over)} heads over): softmax saturates; lower the lr or set qk_clip"})
        low = [[i, v] for i, v in enumerate(r["erank"]) if v < cfg.min_rank]
        if low:
            alerts.append({"alert": "collapse", "layers": low, "threshold": cfg.min_rank,
                           "message": f"effective rank of hidden states below {cfg.min_rank:g} in layers "
                                      f"{[i for i, _ in low]} ({', '.join(f'{v:.3g}' for _, v in low)}): "
                                      f"tokens no longer distinguishable (feature collapse)"})
        dead = [[i, v] for i, v in enumerate(r["dead_fraction"]) if v > cfg.max_dead_fraction]
        if dead:
            alerts.append({"alert": "dead_units", "layers": dead, "threshold": cfg.max_dead_fraction,
                           "message": f"dead MLP units over {cfg.max_dead_fraction:.0%} in layers "
                                      f"{[i for i, _ in dead]} ({', '.join(f'{v:.0%}' for _, v in dead)})"})
        return alerts
