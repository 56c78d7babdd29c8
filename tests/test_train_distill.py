"""Distillation losses: top-k targets with a tail bin, and the three divergences, against their definitions."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from smoledge.train.data import IGNORE_INDEX
from smoledge.train.losses import distill_loss, divergence, teacher_targets

V = 50


@pytest.fixture()
def logits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    student = torch.randn(2, 6, V, requires_grad=True)
    teacher = 3 * torch.randn(2, 6, V)  # peaked, like a trained teacher
    labels = torch.randint(0, V, (2, 6))
    labels[0, 0] = labels[1, 5] = IGNORE_INDEX
    return student, teacher, labels


def test_top_k_targets_keep_the_tail_mass(logits) -> None:
    _, teacher, _ = logits
    ids, logp = teacher_targets(teacher, temperature=2.0, top_k=8)
    assert ids.shape == (2, 6, 8) and logp.shape == (2, 6, 9)
    full = F.log_softmax(teacher / 2.0, -1)
    assert torch.allclose(logp[..., :-1], full.gather(-1, ids))
    # The k + 1 bins are a distribution: the tail is exactly the mass outside the top-k.
    assert torch.allclose(logp.exp().sum(-1), torch.ones(2, 6), atol=1e-6)
    assert (logp[..., -1] < logp[..., :-1].min(-1).values + math.log(V)).all()
    assert teacher_targets(teacher, 2.0, top_k=0)[0] is None
    assert teacher_targets(teacher, 2.0, top_k=V)[0] is None  # k >= V is the dense case


def _binned_reference(student: torch.Tensor, teacher: torch.Tensor, k: int, t: float) -> torch.Tensor:
    """KL between the teacher's and the student's distributions coarse-grained to top-k + 'other', by loops."""
    out = []
    for s_row, t_row in zip(student.reshape(-1, V), teacher.reshape(-1, V)):
        p, q = F.softmax(t_row / t, -1), F.softmax(s_row / t, -1)
        top = p.topk(k).indices.tolist()
        rest = [i for i in range(V) if i not in top]
        p_bins = [p[i] for i in top] + [p[rest].sum()]
        q_bins = [q[i] for i in top] + [q[rest].sum()]
        out.append(sum(pb * (pb.log() - qb.log()) for pb, qb in zip(p_bins, q_bins)))
    return torch.stack(out)


def test_sparse_forward_kl_is_the_kl_of_the_binned_distributions(logits) -> None:
    student, teacher, labels = logits
    keep = labels.flatten() != IGNORE_INDEX
    _, parts = distill_loss(student, teacher_targets(teacher, 2.0, 8), labels, 0.5, 2.0, "forward")
    want = _binned_reference(student.detach(), teacher, 8, 2.0)[keep].mean()
    assert float(parts["soft"]) == pytest.approx(float(want), rel=1e-5)
    # Coarse-graining can only lose information: the sparse KL never exceeds the dense one.
    _, dense = distill_loss(student, teacher_targets(teacher, 2.0, 0), labels, 0.5, 2.0, "forward")
    assert float(parts["soft"]) <= float(dense["soft"]) + 1e-6


def test_reverse_kl_and_js_match_their_definitions(logits) -> None:
    student, teacher, labels = logits
    keep = labels.flatten() != IGNORE_INDEX
    p = F.softmax(teacher.reshape(-1, V), -1)[keep]
    q = F.softmax(student.detach().reshape(-1, V), -1)[keep]
    m = (p + q) / 2
    want = {
        "forward": (p * (p / q).log()).sum(-1).mean(),
        "reverse": (q * (q / p).log()).sum(-1).mean(),
        "js": (0.5 * (p * (p / m).log()).sum(-1) + 0.5 * (q * (q / m).log()).sum(-1)).mean(),
    }
    for kind, value in want.items():
        _, parts = distill_loss(student, teacher_targets(teacher, 1.0, 0), labels, 0.0, 1.0, kind)
        assert float(parts["soft"]) == pytest.approx(float(value), rel=1e-4), kind
    assert 0 < float(want["js"]) < math.log(2)
    # Identical distributions: every divergence is zero.
    lp = F.log_softmax(teacher, -1)
    for kind in want:
        assert float(divergence(lp, lp, kind).abs().max()) < 1e-6


@pytest.mark.parametrize("kind", ["forward", "reverse", "js"])
def test_the_gradient_reaches_the_student_only_and_lowers_the_divergence(logits, kind: str) -> None:
    student, teacher, labels = logits
    teacher = teacher.clone().requires_grad_(True)
    target = teacher_targets(teacher.detach(), 2.0, 8)
    student = student.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([student], lr=0.1)
    first = None
    for _ in range(40):
        loss, parts = distill_loss(student, target, labels, 0.0, 2.0, kind)
        first = float(parts["soft"]) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert teacher.grad is None
    assert float(parts["soft"]) < 0.5 * first
    # Unlabelled positions get no gradient at all.
    assert float(student.grad[0, 0].abs().max()) == 0.0 and float(student.grad[1, 5].abs().max()) == 0.0


def test_temperature_scaling_keeps_the_gradient_scale(logits) -> None:
    """T^2 (Hinton): at large T the soft gradient's size stays of order one instead of vanishing as 1/T^2."""
    student, teacher, labels = logits
    norms = []
    for t in (4.0, 8.0):
        s = student.detach().clone().requires_grad_(True)
        loss, _ = distill_loss(s, teacher_targets(teacher, t, 0), labels, 0.0, t, "forward")
        loss.backward()
        norms.append(float(s.grad.norm()))
    assert 0.6 < norms[1] / norms[0] < 1.6
