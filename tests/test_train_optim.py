"""LR schedules, optimizer parameter groups and the distillation loss."""

from __future__ import annotations

import math

import pytest
import torch

from smoledge.config import ConfigError
from smoledge.model.build import hf_config, init_model
from smoledge.model.config import ModelConfig
from smoledge.train.config import PretrainConfig
from smoledge.train.optim import build_optimizer, param_groups
from smoledge.train.schedule import lr_factor

HIDDEN = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def test_wsd_warms_up_holds_then_decays_to_the_floor() -> None:
    cfg = PretrainConfig(max_steps=100, warmup_steps=10, decay_fraction=0.2, min_lr_ratio=0.1)
    f = [lr_factor(s, cfg) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(f[:10], f[1:10]))             # linear warmup
    assert f[10:80] == [1.0] * 70                                    # stable phase
    assert all(a > b for a, b in zip(f[79:], f[80:]))               # linear decay ...
    assert f[99] == pytest.approx(0.1)                               # ... to the floor
    steps = [f[i] - f[i + 1] for i in range(80, 99)]
    assert max(steps) - min(steps) < 1e-9                            # linear


def test_cosine_is_monotone_after_warmup() -> None:
    cfg = PretrainConfig(max_steps=50, warmup_steps=5, schedule="cosine", min_lr_ratio=0.0)
    f = [lr_factor(s, cfg) for s in range(50)]
    assert all(a >= b for a, b in zip(f[4:], f[5:]))
    assert f[4] == pytest.approx(1.0) and f[49] == pytest.approx(0.0, abs=1e-12)
    assert f[27] == pytest.approx(0.5 * (1 + math.cos(math.pi * 23 / 45)))


def test_bad_schedule_values_are_rejected() -> None:
    with pytest.raises(ConfigError, match="warmup_steps"):
        PretrainConfig(max_steps=10, warmup_steps=10)
    with pytest.raises(ConfigError, match="min_lr_ratio"):
        PretrainConfig(min_lr_ratio=1.5)


def _model():
    return init_model(hf_config(ModelConfig(preset="tiny"), vocab_size=300), seed=0)


def _names(model, params) -> set[str]:
    by_id = {id(p): n for n, p in model.named_parameters()}
    return {by_id[id(p)] for p in params}


def test_adamw_decays_only_hidden_matrices() -> None:
    model = _model()
    groups = param_groups(model, PretrainConfig(optimizer="adamw"))["adamw"]
    decay, no_decay = (_names(model, g["params"]) for g in groups)
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    assert decay and all(n.split(".")[-2] in HIDDEN for n in decay)
    assert "model.embed_tokens.weight" in no_decay
    assert {n for n in no_decay if "norm" in n} == {n for n, _ in model.named_parameters() if "norm" in n}
    # Every parameter exactly once (the tied lm_head is the embedding).
    assert decay | no_decay == {n for n, _ in model.named_parameters()} and not decay & no_decay


def test_muon_gets_only_2d_hidden_matrices() -> None:
    model = _model()
    opt = build_optimizer(model, PretrainConfig(optimizer="muon"))
    muon, adamw = opt.optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    muon_params = [p for g in muon.param_groups for p in g["params"]]
    assert all(p.ndim == 2 for p in muon_params)
    assert _names(model, muon_params) == {n for n, _ in model.named_parameters() if n.split(".")[-2] in HIDDEN}
    assert muon.param_groups[0]["adjust_lr_fn"] == "match_rms_adamw"
    rest = _names(model, [p for g in adamw.param_groups for p in g["params"]])
    assert "model.embed_tokens.weight" in rest and all("proj" not in n for n in rest)
    assert all(g["weight_decay"] == 0.0 for g in adamw.param_groups)
    # One step moves both kinds of parameters, and the schedule sets one lr everywhere.
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert opt.set_lr_factor(0.5) == pytest.approx(1.5e-3)
    ids = torch.randint(0, 300, (2, 16))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert "model.layers.0.self_attn.q_proj.weight" in moved and "model.embed_tokens.weight" in moved
    assert all(g["lr"] == pytest.approx(1.5e-3) for o in opt.optimizers for g in o.param_groups)


def test_distill_loss_matches_its_definition() -> None:
    import torch.nn.functional as F

    from smoledge.train.data import IGNORE_INDEX
    from smoledge.train.losses import distill_loss, teacher_targets

    torch.manual_seed(0)
    s, t = torch.randn(2, 5, 11, requires_grad=True), torch.randn(2, 5, 11)
    y = torch.randint(0, 11, (2, 5))
    y[0, 2] = y[1, 4] = IGNORE_INDEX
    dense = teacher_targets(t, 2.0, top_k=0)
    loss, parts = distill_loss(s, dense, y, alpha=0.3, temperature=2.0)
    keep = y.flatten() != IGNORE_INDEX
    sk, tk = s.reshape(-1, 11)[keep], t.reshape(-1, 11)[keep]
    kl = F.kl_div(F.log_softmax(sk / 2, -1), F.log_softmax(tk / 2, -1), reduction="batchmean", log_target=True)
    ce = F.cross_entropy(sk, y.flatten()[keep])
    assert float(parts["soft"]) == pytest.approx(kl.item(), rel=1e-5)
    assert float(parts["ce"]) == pytest.approx(ce.item(), rel=1e-5)
    assert loss.item() == pytest.approx((0.3 * ce + 0.7 * 4 * kl).item(), rel=1e-5)
    # A student equal to the teacher has zero KL; alpha=1 is plain cross-entropy.
    same = teacher_targets(t, 3.0, top_k=0)
    assert float(distill_loss(t.clone(), same, y, 0.0, 3.0)[1]["soft"]) == pytest.approx(0.0, abs=1e-6)
    assert distill_loss(s, teacher_targets(t, 2.0, 0), y, 1.0, 2.0)[0].item() == pytest.approx(ce.item(), rel=1e-6)