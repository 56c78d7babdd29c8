"""Training losses on packed batches (labels already aligned with inputs: no shift here).

    loss = causal_lm_loss(logits, batch.labels)                       # mean over labelled positions
    loss = causal_lm_loss(logits, batch.labels, denom=n_global / world)
    target = teacher_targets(teacher_logits, temperature=2.0, top_k=64)   # or a cached (ids, logp)
    loss, parts = distill_loss(student_logits, target, batch.labels, alpha=0.5, temperature=2.0, kind="forward")
    loss, parts = logits_loss(logits, batch.labels, denom, z_weight=1e-4, soft=Soft(target, 2.0, "forward"), alpha=0.5)

Every loss is a *sum* over labelled positions divided by `denom` (default: this
batch's labelled count, i.e. the mean). Data-parallel ranks pass the global count
divided by the world size: DDP then averages gradients over ranks and the result
is exactly the single-process gradient of the global-batch mean, even when ranks
hold different numbers of labelled tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from smoledge.train.data import IGNORE_INDEX


def label_denominator(labels: torch.Tensor, denom: float | torch.Tensor | None) -> float | torch.Tensor:
    """What loss sums are divided by: `denom`, else this batch's labelled count (the mean)."""
    if denom is None:
        return (labels != IGNORE_INDEX).sum().clamp_min(1)
    return denom


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor,
                   denom: float | torch.Tensor | None = None) -> torch.Tensor:
    """Next-token cross-entropy summed over labelled positions / denom. logits (B, T, V), labels (B, T)."""
    vocab = logits.shape[-1]
    total = F.cross_entropy(logits.float().reshape(-1, vocab), labels.reshape(-1), ignore_index=IGNORE_INDEX,
                            reduction="sum")
    return total / label_denominator(labels, denom)


def z_loss(logits: torch.Tensor, labels: torch.Tensor, denom: float | torch.Tensor | None = None) -> torch.Tensor:
    """Squared log-partition log(Z)^2 over labelled positions / denom (PaLM): pulls logits' overall
    level toward 0 without changing the softmax, so they stay in range for bf16 and quantization."""
    log_z = torch.logsumexp(logits.float(), dim=-1)                        # (B, T)
    keep = (labels != IGNORE_INDEX).float()                                # (B, T)
    return (log_z.square() * keep).sum() / label_denominator(labels, denom)


def teacher_targets(teacher_logits: torch.Tensor, temperature: float, top_k: int
                    ) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The teacher's distribution at temperature T, as distill_loss takes it.

    top_k 0 (or >= V): (None, dense log-probs (..., V)). Otherwise (ids (..., k), log-probs (..., k + 1)):
    the k most likely tokens, then one tail bin holding the log of all the remaining mass. The tail is a
    logsumexp over the rest of the vocabulary in fp32, not 1 - sum(top-k): that difference is lost to
    rounding exactly when the tail is small, and a cache stores the top-k in fp16."""
    logp = F.log_softmax(teacher_logits.float() / temperature, dim=-1)    # (..., V)
    if top_k <= 0 or top_k >= logp.shape[-1]:
        return None, logp
    top, ids = logp.topk(top_k, dim=-1)                                    # (..., k) each
    tail = logp.scatter(-1, ids, -math.inf).logsumexp(-1, keepdim=True)    # (..., 1)
    return ids, torch.cat([top, tail], dim=-1)                             # (..., k), (..., k + 1)


def _student_bins(log_q: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The student's log-probs over the teacher's k + 1 bins: its own mass on the teacher's top-k ids,
    then everything else in the tail bin. log_q (N, V), ids (N, k) -> (N, k + 1)."""
    top = log_q.gather(-1, ids)                                            # (N, k)
    tail = log_q.scatter(-1, ids, -math.inf).logsumexp(-1, keepdim=True)   # (N, 1)
    return torch.cat([top, tail], dim=-1)


def divergence(log_p: torch.Tensor, log_q: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-row divergence between teacher log-probs log_p and student log-probs log_q over the same
    outcomes (the last dim). forward: KL(p || q), mass-covering; reverse: KL(q || p), mode-seeking
    (MiniLLM); js: Jensen-Shannon, bounded by log 2. Both inputs must be finite."""
    if kind == "forward":
        return torch.linalg.vecdot(log_p.exp(), log_p - log_q)
    if kind == "reverse":
        return torch.linalg.vecdot(log_q.exp(), log_q - log_p)
    if kind == "js":
        log_m = torch.logaddexp(log_p, log_q) - math.log(2.0)
        return 0.5 * (torch.linalg.vecdot(log_p.exp(), log_p - log_m) + torch.linalg.vecdot(log_q.exp(), log_q - log_m))
    raise ValueError(f"unknown divergence {kind!r}; use forward, reverse or js")


def distill_loss(student: torch.Tensor, target: tuple[torch.Tensor | None, torch.Tensor], labels: torch.Tensor,
                 alpha: float, temperature: float, kind: str = "forward",
                 denom: float | torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """alpha * CE(labels) + (1 - alpha) * T^2 * D(teacher_T, student_T), over labelled positions.

    `target` is teacher_targets(...)'s (ids, log-probs): dense, or top-k plus a tail bin, in which case
    the student's distribution is folded into the same k + 1 bins (sparse distillation with the missing
    mass kept, not renormalised away). T^2 keeps the soft term's gradient scale independent of the
    temperature (Hinton et al.). Unlabelled positions are weighted out rather than indexed out: a
    boolean index would copy the (N, V) logits twice more."""
    vocab = student.shape[-1]
    z = student.reshape(-1, vocab).float()                                 # (N, V)
    y = labels.reshape(-1)                                                 # (N,)
    keep = (y != IGNORE_INDEX).float()                                     # (N,)
    d = label_denominator(labels, denom)
    ce = F.cross_entropy(z, y, ignore_index=IGNORE_INDEX, reduction="sum") / d
    ids, t_logp = target
    log_q = F.log_softmax(z / temperature, dim=-1)                         # (N, V)
    log_p = t_logp.reshape(z.shape[0], -1).float().detach()                # (N, V) or (N, k + 1)
    if ids is not None:
        log_q = _student_bins(log_q, ids.reshape(z.shape[0], -1))          # (N, k + 1)
    soft = (divergence(log_p, log_q, kind) * keep).sum() / d
    loss = alpha * ce + (1.0 - alpha) * temperature ** 2 * soft
    return loss, {"ce": ce.detach(), "soft": soft.detach()}


@dataclass
class Soft:
    """The distillation term of a loss: the teacher's target (teacher_targets' (ids, log-probs)), the
    temperature and the divergence it is matched with."""

    target: tuple[torch.Tensor | None, torch.Tensor]
    temperature: float
    kind: str = "forward"


def logits_loss(logits: torch.Tensor, labels: torch.Tensor, denom: float | torch.Tensor | None = None,
                alpha: float = 1.0, z_weight: float = 0.0, soft: Soft | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """What a training step computes from its logits (B, T, V): alpha * CE, plus the soft term when
    distilling (distill_loss), plus z_weight * z-loss. Parts (detached): ce, soft, z_loss (when weighted).
    smoledge.train.fused_head computes the same from the hidden states without the whole logits."""
    if soft is None:
        ce = causal_lm_loss(logits, labels, denom)
        loss, parts = alpha * ce, {"ce": ce.detach()}
    else:
        loss, parts = distill_loss(logits, soft.target, labels, alpha, soft.temperature, soft.kind, denom)
    if z_weight > 0:
        zl = z_loss(logits, labels, denom)
        loss = loss + z_weight * zl
        parts["z_loss"] = zl.detach()
    return loss, parts
