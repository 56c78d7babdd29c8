"""Training losses on packed batches (labels already aligned with inputs: no shift here).

    loss = causal_lm_loss(logits, batch.labels)                       # mean over labelled positions
    loss = causal_lm_loss(logits, batch.labels, denom=n_global / world)
    loss, parts = distill_loss(student_logits, teacher_logits, batch.labels, alpha=0.5, temperature=2.0)

Every loss is a *sum* over labelled positions divided by `denom` (default: this
batch's labelled count, i.e. the mean). Data-parallel ranks pass the global count
divided by the world size: DDP then averages gradients over ranks and the result
is exactly the single-process gradient of the global-batch mean, even when ranks
hold different numbers of labelled tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from smoledge.train.data import IGNORE_INDEX


def _denom(labels: torch.Tensor, denom: float | torch.Tensor | None) -> float | torch.Tensor:
    if denom is None:
        return (labels != IGNORE_INDEX).sum().clamp_min(1)
    return denom


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor,
                   denom: float | torch.Tensor | None = None) -> torch.Tensor:
    """Next-token cross-entropy summed over labelled positions / denom. logits (B, T, V), labels (B, T)."""
    vocab = logits.shape[-1]
    total = F.cross_entropy(logits.float().reshape(-1, vocab), labels.reshape(-1), ignore_index=IGNORE_INDEX,
                            reduction="sum")
    return total / _denom(labels, denom)


def z_loss(logits: torch.Tensor, labels: torch.Tensor, denom: float | torch.Tensor | None = None) -> torch.Tensor:
    """Squared log-partition log(Z)^2 over labelled positions / denom (PaLM): pulls logits' overall
    level toward 0 without changing the softmax, so they stay in range for bf16 and quantization."""
    log_z = torch.logsumexp(logits.float(), dim=-1)                        # (B, T)
    keep = (labels != IGNORE_INDEX).float()                                # (B, T)
    return (log_z.square() * keep).sum() / _denom(labels, denom)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, alpha: float,
                 temperature: float, denom: float | torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher_T || student_T), over labelled positions.

    Forward KL makes the student cover all of the teacher's mass at each position;
    T^2 keeps the soft term's gradient scale independent of the temperature (Hinton et al.).
    Unlabelled positions are weighted out rather than indexed out: a boolean index
    would copy the (N, V) logits twice more."""
    vocab = student.shape[-1]
    z = student.reshape(-1, vocab).float()                                 # (N, V)
    y = labels.reshape(-1)                                                 # (N,)
    keep = (y != IGNORE_INDEX).float()                                     # (N,)
    d = _denom(labels, denom)
    ce = F.cross_entropy(z, y, ignore_index=IGNORE_INDEX, reduction="sum") / d
    log_p_s = F.log_softmax(z / temperature, dim=-1)                       # (N, V)
    with torch.no_grad():
        log_p_t = F.log_softmax(teacher.reshape(-1, vocab).float() / temperature, dim=-1)  # (N, V)
        p_t = log_p_t.exp()                                                # (N, V)
        neg_entropy = torch.linalg.vecdot(p_t, log_p_t)                    # (N,)
    # KL(p_t || p_s) = sum p_t log p_t - sum p_t log p_s; only the second term has a gradient.
    kl_per_pos = neg_entropy - torch.linalg.vecdot(p_t, log_p_s)           # (N,)
    kl = (kl_per_pos * keep).sum() / d
    loss = alpha * ce + (1.0 - alpha) * temperature ** 2 * kl
    return loss, {"ce": ce.detach(), "kl": kl.detach()}
