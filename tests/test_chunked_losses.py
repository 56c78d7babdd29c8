"""The chunked LM-head losses (smoledge.train.fused_head) against the whole-logits computation they replace
(losses.logits_loss on hidden @ W^T): losses, parts and gradients w.r.t. the hidden states and the head's
weight, for next-token CE (ignored positions, z-loss), top-k + tail distillation (every divergence, T = 1
and T != 1), dense targets, an underflowing student tail, bf16, and the training module end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from smoledge.model.build import hf_config, init_model
from smoledge.model.config import ModelConfig
from smoledge.train import fused_head
from smoledge.train.data import IGNORE_INDEX, pack
from smoledge.train.fused_head import Head, chunked_loss
from smoledge.train.losses import Soft, logits_loss, teacher_targets
from smoledge.train.module import Distill, NextToken, TrainModule
from smoledge.train.mtp import MTPHeads

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models run on one thread

B, T, C, V, K = 3, 7, 8, 97, 5  # 21 positions, 18 labelled: the chunk sizes below leave a shorter last chunk


@pytest.fixture()
def case() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    labels = torch.randint(0, V, (B, T))
    labels[0, 0] = labels[1, 3] = labels[2, 6] = IGNORE_INDEX
    return {"hidden": torch.randn(B, T, C), "weight": torch.randn(V, C) * 0.7, "labels": labels,
            "teacher": 3 * torch.randn(B, T, V)}


def _run(fn, hidden: torch.Tensor, weight: torch.Tensor, scale: float = 0.7, **kw):
    """loss, parts, d(scale * loss)/d hidden, d(scale * loss)/d weight. A scale other than 1 checks that the
    stored gradients follow the one flowing in."""
    h, w = hidden.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    loss, parts = fn(h, w, **kw)
    (scale * loss).backward()
    return loss.detach(), parts, h.grad, w.grad


def _plain(h, w, labels, **kw):
    return logits_loss(h @ w.T, labels, **kw)                              # (B, T, V) logits


def _chunked(h, w, labels, chunk=4, **kw):
    return chunked_loss(h, w, labels, chunk=chunk, **kw)


def _same(got, want, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    loss, parts, gh, gw = got
    loss_w, parts_w, gh_w, gw_w = want
    torch.testing.assert_close(loss, loss_w, rtol=rtol, atol=atol)
    assert list(parts) == list(parts_w)
    for name in parts:
        torch.testing.assert_close(parts[name], parts_w[name], rtol=rtol, atol=atol)
    # Gradients relative to their own size: their entries span several orders of magnitude.
    torch.testing.assert_close(gh, gh_w, rtol=rtol, atol=atol * 10 * float(gh_w.abs().max()))
    torch.testing.assert_close(gw, gw_w, rtol=rtol, atol=atol * 10 * float(gw_w.abs().max()))


@pytest.mark.parametrize("chunk", [1, 4, 7, 64])
@pytest.mark.parametrize("z_weight", [0.0, 0.1])
def test_cross_entropy_and_z_loss_match_the_whole_logits(case, chunk: int, z_weight: float) -> None:
    kw = {"labels": case["labels"], "z_weight": z_weight}
    want = _run(_plain, case["hidden"], case["weight"], **kw)
    got = _run(_chunked, case["hidden"], case["weight"], chunk=chunk, **kw)
    _same(got, want)
    assert set(got[1]) == ({"ce", "z_loss"} if z_weight else {"ce"})
    # Ignored positions get no gradient, exactly as from the whole logits.
    ignored = case["labels"] == IGNORE_INDEX
    assert torch.count_nonzero(got[2][ignored]) == 0 and torch.count_nonzero(got[2][~ignored]) > 0


def test_a_global_denominator_divides_every_term(case) -> None:
    """Data-parallel ranks pass global count / world: the same division as the plain path, not the mean."""
    denom = torch.tensor(37.5)
    kw = {"labels": case["labels"], "denom": denom, "z_weight": 0.2}
    want = _run(_plain, case["hidden"], case["weight"], **kw)
    _same(_run(_chunked, case["hidden"], case["weight"], **kw), want)
    mean = _run(_chunked, case["hidden"], case["weight"], labels=case["labels"], z_weight=0.2)
    assert float(mean[0]) == pytest.approx(float(want[0]) * 37.5 / 18, rel=1e-5)


@pytest.mark.parametrize("kind", ["forward", "reverse", "js"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_top_k_distillation_matches_the_whole_logits(case, kind: str, temperature: float) -> None:
    soft = Soft(teacher_targets(case["teacher"], temperature, K), temperature, kind)
    kw = {"labels": case["labels"], "alpha": 0.3, "z_weight": 0.05, "soft": soft}
    want = _run(_plain, case["hidden"], case["weight"], **kw)
    got = _run(_chunked, case["hidden"], case["weight"], chunk=5, **kw)
    _same(got, want)
    assert list(got[1]) == ["ce", "soft", "z_loss"] and float(got[1]["soft"]) > 0


def test_pure_soft_and_pure_hard_distillation_match(case) -> None:
    """alpha 0 (the soft term alone) and 1 (CE alone, the soft part still reported)."""
    soft = Soft(teacher_targets(case["teacher"], 2.0, K), 2.0, "forward")
    for alpha in (0.0, 1.0):
        kw = {"labels": case["labels"], "alpha": alpha, "soft": soft}
        _same(_run(_chunked, case["hidden"], case["weight"], **kw), _run(_plain, case["hidden"], case["weight"], **kw))


def test_a_dense_target_matches_through_the_reference_chunks(case) -> None:
    soft = Soft(teacher_targets(case["teacher"], 2.0, 0), 2.0, "reverse")
    kw = {"labels": case["labels"], "alpha": 0.5, "soft": soft}
    _same(_run(_chunked, case["hidden"], case["weight"], **kw), _run(_plain, case["hidden"], case["weight"], **kw))


def test_an_underflowing_student_tail_stays_exact(case, monkeypatch) -> None:
    """A student 150 nats surer of the teacher's top-k than of anything else: its tail mass underflows fp32
    in the closed form, and the chunk must fall back to the plain path's masked logsumexp."""
    ids, logp = teacher_targets(case["teacher"], 1.0, K)
    weight = torch.zeros(V, C)
    hidden = torch.zeros(B, T, C)
    hidden[..., 0] = 1.0
    weight[:, 0] = torch.linspace(-1.0, 1.0, V)                          # a small spread over the tail
    weight[ids[0, 0], 0] = 150.0                                          # logits: (V,) per position
    soft = Soft((ids[:1, :1].expand(B, T, K), logp), 1.0, "forward")
    kw = {"labels": case["labels"], "alpha": 0.5, "soft": soft}
    want = _run(_plain, hidden, weight, **kw)
    assert torch.isfinite(want[1]["soft"])
    _same(_run(_chunked, hidden, weight, **kw), want)
    # Without the fallback the closed form takes log(0) for the tail: the check above is what catches it.
    monkeypatch.setattr(fused_head, "TINY_TAIL", 0.0)
    assert not torch.isfinite(_run(_chunked, hidden, weight, **kw)[1]["soft"])


def test_no_labelled_position_is_a_zero_loss_with_zero_gradients(case) -> None:
    labels = torch.full((B, T), IGNORE_INDEX)
    loss, parts, gh, gw = _run(_chunked, case["hidden"], case["weight"], labels=labels, z_weight=0.1)
    assert float(loss) == 0.0 and float(parts["ce"]) == 0.0
    assert torch.count_nonzero(gh) == 0 and torch.count_nonzero(gw) == 0


def test_without_gradients_the_loss_is_the_same(case) -> None:
    want = _plain(case["hidden"], case["weight"], case["labels"], z_weight=0.1)[0]
    h = case["hidden"].clone().requires_grad_()
    with torch.no_grad():
        loss, _ = chunked_loss(h, case["weight"], case["labels"], z_weight=0.1, chunk=4)
    assert loss.grad_fn is None
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)


def test_gradient_w_r_t_one_input_only(case) -> None:
    """A frozen head (or frozen hidden states) gets no gradient; the other one still matches."""
    h = case["hidden"].clone().requires_grad_()
    chunked_loss(h, case["weight"], case["labels"], chunk=4)[0].backward()
    _, _, gh, _ = _run(_plain, case["hidden"], case["weight"], scale=1.0, labels=case["labels"])
    torch.testing.assert_close(h.grad, gh, rtol=1e-5, atol=1e-6)


def test_bf16_inputs_match_the_bf16_whole_logits(case) -> None:
    """bf16 hidden and weight: bf16 matmuls, fp32 loss math, as the plain path does."""
    hidden, weight = case["hidden"].bfloat16(), case["weight"].bfloat16()
    soft = Soft(teacher_targets(case["teacher"], 1.0, K), 1.0, "forward")
    kw = {"labels": case["labels"], "alpha": 0.5, "z_weight": 0.05, "soft": soft}
    got = _run(_chunked, hidden, weight, **kw)
    want = _run(_plain, hidden, weight, **kw)
    assert got[2].dtype == got[3].dtype == torch.bfloat16
    _same(got, want, rtol=2e-2, atol=2e-3)


def test_bf16_autocast_over_fp32_weights_matches(case) -> None:
    """The training loop's bf16 precision: autocast over fp32 parameters; gradients come back fp32."""
    kw = {"labels": case["labels"], "z_weight": 0.05}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = _run(_plain, case["hidden"], case["weight"], **kw)
        got = _run(_chunked, case["hidden"], case["weight"], **kw)
    assert got[2].dtype == got[3].dtype == torch.float32
    _same(got, want, rtol=2e-2, atol=2e-3)


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any op makes (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("distill", [False, True])
def test_the_whole_logits_are_never_made(case, distill: bool) -> None:
    soft = Soft(teacher_targets(case["teacher"], 2.0, K), 2.0, "forward") if distill else None
    kw = {"labels": case["labels"], "alpha": 0.5, "z_weight": 0.1, "soft": soft}
    largest = {}
    for name, fn in (("plain", _plain), ("chunked", _chunked)):
        with _LargestTensor() as seen:
            _run(fn, case["hidden"], case["weight"], **kw)
        largest[name] = seen.largest
    assert largest["plain"] >= B * T * V                       # the check sees whole logits when they exist
    assert largest["chunked"] <= max(4 * V, V * C)             # one chunk's logits, or the weight's gradient


def test_teacher_targets_by_chunks_equal_the_whole(case) -> None:
    linear = torch.nn.Linear(C, V, bias=False)
    hidden = case["hidden"]
    for top_k in (K, 0):
        want = teacher_targets(linear(hidden), 2.0, top_k)
        got = Head(hidden, linear, chunk=4).targets(2.0, top_k)
        assert (got[0] is None) == (want[0] is None)
        if top_k:
            assert torch.equal(got[0], want[0])
        torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ the training module end to end

def _module_grads(loss_chunk: int, objective, batch, mtp_kind: str) -> tuple[dict, dict]:
    cfg = ModelConfig(preset="custom", num_layers=2, hidden_size=32, intermediate_size=64, num_heads=4,
                      num_kv_heads=2, max_position_embeddings=64)
    model = init_model(hf_config(cfg, vocab_size=V), seed=0)
    torch.manual_seed(1)
    core = TrainModule(model, objective, MTPHeads(model.config, 2, mtp_kind), mtp_weight=0.3, z_loss=1e-2,
                       loss_chunk=loss_chunk)
    denoms = torch.tensor([30.0, 28.0, 26.0])
    loss, parts = core(**batch.model_inputs(), labels=batch.labels, denoms=denoms, **batch.teacher_inputs())
    loss.backward()
    with torch.no_grad():
        summed, _ = core(**batch.model_inputs(), labels=batch.labels, denoms=denoms, eval_only=True)
    values = {"loss": loss.detach(), "eval": summed, **parts}
    return values, {n: p.grad for n, p in core.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("objective,mtp_kind", [("next-token", "parallel"), ("cached distill", "sequential")])
def test_the_training_module_gives_the_same_loss_and_gradients(objective: str, mtp_kind: str) -> None:
    """TrainModule (objective + z-loss + MTP depths, and the eval-only sum) with chunks vs whole logits."""
    rng = np.random.default_rng(0)
    batch = pack([rng.integers(1, V, size=n) for n in (9, 14, 6, 20, 11)], batch_size=2, seq_len=24)
    if objective == "cached distill":
        torch.manual_seed(2)
        ids, logp = teacher_targets(3 * torch.randn(2, 24, V), 1.0, K)
        batch.teacher_ids, batch.teacher_logp = ids, logp
        make = lambda: Distill(None, alpha=0.4, temperature=1.0, kind="forward", top_k=K)  # noqa: E731
    else:
        make = NextToken
    want_values, want_grads = _module_grads(0, make(), batch, mtp_kind)
    got_values, got_grads = _module_grads(5, make(), batch, mtp_kind)
    assert list(got_values) == list(want_values)
    for name in want_values:
        torch.testing.assert_close(got_values[name], want_values[name], rtol=1e-5, atol=1e-6)
    # The head is tied to the embedding (named once); the MTP heads train through the chunked path too.
    assert set(got_grads) == set(want_grads) >= {"lm.model.embed_tokens.weight", "mtp.out_norms.1.weight"}
    for name, g in want_grads.items():
        torch.testing.assert_close(got_grads[name], g, rtol=1e-4, atol=1e-5 * float(g.abs().max()))
