"""Training losses on packed batches (labels already aligned with inputs: no shift here).

    loss = causal_lm_loss(logits, batch.labels)
    loss, parts = distill_loss(student_logits, teacher_logits, batch.labels, alpha=0.5, temperature=2.0)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from smoledge.train.data import IGNORE_INDEX


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over labelled positions. logits (B, T, V), labels (B, T)."""
    vocab = logits.shape[-1]
    return F.cross_entropy(logits.float().reshape(-1, vocab), labels.reshape(-1), ignore_index=IGNORE_INDEX)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, alpha: float,
                 temperature: float) -> tuple[torch.Tensor, dict[str, float]]:
    """alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher_T || student_T), over labelled positions.

    Forward KL makes the student cover all of the teacher's mass at each position;
    T^2 keeps the soft term's gradient scale independent of the temperature (Hinton et al.).
    Unlabelled positions are weighted out rather than indexed out: a boolean index
    would copy the (N, V) logits twice more."""
    vocab = student.shape[-1]
    z = student.reshape(-1, vocab).float()                                 # (N, V)
    y = labels.reshape(-1)                                                 # (N,)
    keep = (y != IGNORE_INDEX).float()                                     # (N,)
    ce = F.cross_entropy(z, y, ignore_index=IGNORE_INDEX)
    log_p_s = F.log_softmax(z / temperature, dim=-1)                       # (N, V)
    with torch.no_grad():
        log_p_t = F.log_softmax(teacher.reshape(-1, vocab).float() / temperature, dim=-1)  # (N, V)
        p_t = log_p_t.exp()                                                # (N, V)
        neg_entropy = torch.linalg.vecdot(p_t, log_p_t)                    # (N,)
    # KL(p_t || p_s) = sum p_t log p_t - sum p_t log p_s; only the second term has a gradient.
    kl_per_pos = neg_entropy - torch.linalg.vecdot(p_t, log_p_s)           # (N,)
    kl = (kl_per_pos * keep).sum() / keep.sum().clamp_min(1.0)
    loss = alpha * ce + (1.0 - alpha) * temperature ** 2 * kl
    return loss, {"ce": float(ce.detach()), "kl": float(kl.detach())}
