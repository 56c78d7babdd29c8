"""Feature distillation (hidden-state matching + attention-map transfer) on real tiny SmolLM3
models and real prose packed the way training packs it."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from smoledge.model.build import EOS_ID, hf_config, init_model
from smoledge.model.config import ModelConfig
from smoledge.train.data import IGNORE_INDEX, Batch, pack
from smoledge.train.features import FeatureDistill, map_layers, use_eager_attention

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models run on one thread

B, T = 2, 96


def config(layers: int, hidden: int, heads: int, kv: int, vocab: int):
    cfg = ModelConfig(preset="custom", num_layers=layers, hidden_size=hidden, intermediate_size=2 * hidden,
                      num_heads=heads, num_kv_heads=kv, max_position_embeddings=256)
    return hf_config(cfg, vocab_size=vocab)


@pytest.fixture(scope="module")
def batch(prose_texts, tiny_tokenizer_dir) -> Batch:
    """Real prose, each line its own EOS-terminated document, packed into (B, T)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    pieces, have = [], 0
    for text in prose_texts[::7]:
        ids = np.array(tok(text[:200])["input_ids"] + [EOS_ID], dtype=np.int64)
        pieces.append(ids)
        have += len(ids)
        if have > B * (T + 1):
            break
    out = pack(pieces, batch_size=B, seq_len=T)
    assert (out.labels == IGNORE_INDEX).sum() >= 2, "the batch must cross document boundaries"
    return out


@pytest.fixture(scope="module")
def vocab(tiny_tokenizer_dir) -> int:
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(tiny_tokenizer_dir))


def teacher_model(vocab: int):
    """4 layers, 64 wide, 4 heads; q and k scaled up so its attention is peaked like a trained
    model's (a random init's is near uniform, which would make the attention loss trivially small)."""
    model = init_model(config(4, 64, 4, 2, vocab), seed=1)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(8.0)
            layer.self_attn.k_proj.weight.mul_(8.0)
    use_eager_attention(model)
    return model


def student_model(vocab: int, seed: int = 2):
    """2 layers, 32 wide, 2 heads: different depth, width and head count from the teacher."""
    model = init_model(config(2, 32, 2, 1, vocab), seed=seed)
    use_eager_attention(model)
    return model


def run(model, batch: Batch, feats: FeatureDistill):
    return model.model(**batch.model_inputs(), use_cache=False, **feats.output_flags())


def feature_loss(feats, student, teacher, batch, keep=None, denom=None):
    keep = batch.labels != IGNORE_INDEX if keep is None else keep
    denom = keep.sum().clamp_min(1) if denom is None else denom
    with torch.no_grad():
        t_out = run(teacher, batch, feats)
    return feats(run(student, batch, feats), t_out, keep, denom)


# ---------------------------------------------------------------- layer map

def test_layer_map_even_spacing_last_to_last(vocab):
    assert map_layers(2, 4) == [(0, 1), (1, 3)]
    assert map_layers(4, 4) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert map_layers(4, 2) == [(1, 0), (3, 1)]
    assert map_layers(3, 4) == [(0, 0), (1, 2), (2, 3)]
    for ls, lt in [(30, 32), (2, 24), (7, 3), (1, 5)]:
        pairs = map_layers(ls, lt)
        assert len(pairs) == min(ls, lt) and pairs[-1] == (ls - 1, lt - 1)
        s, t = zip(*pairs)
        assert list(s) == sorted(set(s)) and list(t) == sorted(set(t))  # strictly increasing
        assert min(s) >= 0 and min(t) >= 0
    feats = FeatureDistill(config(2, 32, 2, 1, vocab), config(4, 64, 4, 2, vocab), 1.0, 0.0)
    assert feats.layer_map == [(0, 1), (1, 3)] and len(feats.proj) == 2
    assert feats.output_flags() == {"output_hidden_states": True, "output_attentions": False}
    attn_only = FeatureDistill(config(2, 32, 2, 1, vocab), config(4, 64, 4, 2, vocab), 0.0, 0.5)
    assert len(attn_only.proj) == 0 and not list(attn_only.parameters())
    assert attn_only.output_flags() == {"output_hidden_states": False, "output_attentions": True}
    with pytest.raises(ValueError, match="hidden_weight > 0 or attention_weight > 0"):
        FeatureDistill(config(2, 32, 2, 1, vocab), config(4, 64, 4, 2, vocab), 0.0, 0.0)


def test_projection_init_identity_when_square_else_unit_rms_isometry(vocab):
    same = FeatureDistill(config(2, 64, 4, 2, vocab), config(4, 64, 4, 2, vocab), 1.0, 0.0)
    assert all(torch.equal(p.weight, torch.eye(64)) for p in same.proj)
    x = torch.nn.functional.rms_norm(torch.randn(500, 32), (32,))           # unit-RMS inputs
    wider = FeatureDistill(config(2, 32, 2, 1, vocab), config(4, 64, 4, 2, vocab), 1.0, 0.0)
    y = wider.proj[0](x)                                                     # (500, 64)
    assert y.square().mean().sqrt().item() == pytest.approx(1.0, rel=1e-4)   # exact isometry * gain
    narrower = FeatureDistill(config(2, 64, 4, 2, vocab), config(2, 32, 2, 1, vocab), 1.0, 0.0)
    x = torch.nn.functional.rms_norm(torch.randn(2000, 64), (64,))
    y = narrower.proj[0](x)                                                  # (2000, 32)
    assert y.square().mean().sqrt().item() == pytest.approx(1.0, rel=0.05)   # on average
    # Deterministic: the same init on every rank and every run, whatever the global RNG did.
    torch.manual_seed(123)
    again = FeatureDistill(config(2, 32, 2, 1, vocab), config(4, 64, 4, 2, vocab), 1.0, 0.0)
    assert torch.equal(again.proj[1].weight, wider.proj[1].weight)


# ---------------------------------------------------------------- losses

def test_identical_student_and_teacher_give_zero(vocab, batch):
    teacher = teacher_model(vocab)
    student = copy.deepcopy(teacher)
    feats = FeatureDistill(student.config, teacher.config, hidden_weight=1.0, attention_weight=1.0)
    loss, parts = feature_loss(feats, student, teacher, batch)
    assert loss.item() == 0.0 and parts["hidden"].item() == 0.0 and parts["attention"].item() == 0.0
    loss.backward()  # 0 * log(clamped 0) at blocked keys: the gradient must still be finite
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_different_student_positive_finite_and_gradient_never_reaches_teacher(vocab, batch):
    teacher, student = teacher_model(vocab), student_model(vocab)
    feats = FeatureDistill(student.config, teacher.config, hidden_weight=1.0, attention_weight=1.0)
    flags = feats.output_flags()
    # Teacher forward WITH autograd on: the module itself must cut the teacher off.
    t_out = teacher.model(**batch.model_inputs(), use_cache=False, **flags)
    assert t_out.hidden_states[-1].requires_grad
    s_out = student.model(**batch.model_inputs(), use_cache=False, **flags)
    keep = batch.labels != IGNORE_INDEX
    loss, parts = feats(s_out, t_out, keep, keep.sum())
    assert torch.isfinite(loss) and parts["hidden"] > 0.1 and parts["attention"] > 1e-3
    assert loss.item() == pytest.approx(parts["hidden"].item() + parts["attention"].item(), rel=1e-6)
    assert not parts["hidden"].requires_grad and not parts["attention"].requires_grad
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    for name, p in [*student.named_parameters(), *feats.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # Both losses reach the student: its q projections only get gradient through the attention
    # maps and the hidden states they shape.
    assert student.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_attention_maps_are_probabilities_zero_across_documents(vocab, batch):
    student = student_model(vocab)
    out = student.model(**batch.model_inputs(), use_cache=False, output_attentions=True)
    assert len(out.attentions) == 2
    att = out.attentions[0]                                                  # (B, H, T, T)
    assert att.shape == (B, 2, T, T)
    torch.testing.assert_close(att.sum(-1), torch.ones(B, 2, T))
    blocked = (batch.attention_mask != 0).expand_as(att)                     # (B, H, T, T)
    assert blocked.any() and (att[blocked] == 0).all()


def test_unlabelled_positions_do_not_contribute(vocab, batch):
    """A document's last input token (its EOS: label -100, the next token is another document)
    is visible to no other position, so changing it changes only its own features, which the
    loss must ignore; and the loss is a plain sum over kept positions."""
    teacher, student = teacher_model(vocab), student_model(vocab)
    feats = FeatureDistill(student.config, teacher.config, hidden_weight=1.0, attention_weight=1.0)
    keep = batch.labels != IGNORE_INDEX
    with torch.no_grad():
        base, base_parts = feature_loss(feats, student, teacher, batch, denom=1.0)
        changed = copy.copy(batch)
        changed.input_ids = torch.where(keep, batch.input_ids, (batch.input_ids + 17) % vocab)
        other, other_parts = feature_loss(feats, student, teacher, changed, keep=keep, denom=1.0)
        torch.testing.assert_close(other, base, rtol=1e-5, atol=1e-6)
        # The change is real: the unlabelled positions' own loss moved.
        on_unlabelled = feature_loss(feats, student, teacher, batch, keep=~keep, denom=1.0)[0]
        changed_unlabelled = feature_loss(feats, student, teacher, changed, keep=~keep, denom=1.0)[0]
        assert abs(changed_unlabelled.item() - on_unlabelled.item()) > 1e-3
        # Additive over disjoint position sets, zero over none, / denom.
        first = keep & (torch.arange(T) < T // 2)
        second = keep & ~first
        split = (feature_loss(feats, student, teacher, batch, keep=first, denom=1.0)[0]
                 + feature_loss(feats, student, teacher, batch, keep=second, denom=1.0)[0])
        torch.testing.assert_close(split, base, rtol=1e-5, atol=1e-6)
        none = torch.zeros_like(keep)
        assert feature_loss(feats, student, teacher, batch, keep=none, denom=1.0)[0].item() == 0.0
        halved = feature_loss(feats, student, teacher, batch, denom=2.0)[0]
        torch.testing.assert_close(halved, base / 2)


def test_data_parallel_split_with_global_denominator_is_exact(vocab, batch):
    """Rows on two 'ranks', each dividing by the global labelled count / world size: the mean of
    the ranks' losses (what DDP's gradient average computes) equals the single-process loss."""
    teacher, student = teacher_model(vocab), student_model(vocab)
    feats = FeatureDistill(student.config, teacher.config, hidden_weight=1.0, attention_weight=1.0)
    keep = batch.labels != IGNORE_INDEX
    with torch.no_grad():
        whole = feature_loss(feats, student, teacher, batch)[0]
        ranks = []
        for r in range(2):
            part = Batch(batch.input_ids[r:r + 1], batch.labels[r:r + 1], batch.position_ids[r:r + 1],
                         batch.attention_mask[r:r + 1])
            ranks.append(feature_loss(feats, student, teacher, part, denom=keep.sum() / 2)[0])
    torch.testing.assert_close((ranks[0] + ranks[1]) / 2, whole, rtol=1e-5, atol=1e-6)


def test_hidden_loss_is_scale_free(vocab, batch):
    """Rescaling the teacher's hidden states (a wider or deeper teacher's residual stream is
    larger) leaves the loss unchanged: the weight means the same across model sizes."""
    teacher, student = teacher_model(vocab), student_model(vocab)
    feats = FeatureDistill(student.config, teacher.config, hidden_weight=1.0, attention_weight=0.0)
    keep = batch.labels != IGNORE_INDEX
    with torch.no_grad():
        t_out = run(teacher, batch, feats)
        s_out = run(student, batch, feats)
        base = feats(s_out, t_out, keep, keep.sum())[0]
        t_out.hidden_states = tuple(h * 37.0 for h in t_out.hidden_states)
        torch.testing.assert_close(feats(s_out, t_out, keep, keep.sum())[0], base)
        # A zero projection explains nothing: loss exactly 1 (unit-RMS targets), whatever the teacher.
        for p in feats.proj:
            p.weight.zero_()
        assert feats(s_out, t_out, keep, keep.sum())[0].item() == pytest.approx(1.0, abs=1e-5)


def test_missing_outputs_name_the_fix(vocab, batch):
    teacher, student = teacher_model(vocab), student_model(vocab)
    feats = FeatureDistill(student.config, teacher.config, hidden_weight=1.0, attention_weight=1.0)
    keep = batch.labels != IGNORE_INDEX
    with torch.no_grad():
        plain = student.model(**batch.model_inputs(), use_cache=False)
        t_out = run(teacher, batch, feats)
        with pytest.raises(ValueError, match="output_flags"):
            feats(plain, t_out, keep, keep.sum())
        with pytest.raises(ValueError, match="expected 3"):   # teacher and student swapped
            feats(t_out, t_out, keep, keep.sum())


def test_optimising_only_the_feature_loss_reduces_it(vocab, batch):
    teacher, student = teacher_model(vocab), student_model(vocab)
    feats = FeatureDistill(student.config, teacher.config, hidden_weight=1.0, attention_weight=1.0)
    opt = torch.optim.AdamW([*student.parameters(), *feats.parameters()], lr=1e-2, weight_decay=0.0)
    with torch.no_grad():
        t_out = run(teacher, batch, feats)
    keep = batch.labels != IGNORE_INDEX
    history = []
    for _ in range(30):
        loss, parts = feats(run(student, batch, feats), t_out, keep, keep.sum())
        history.append({k: v.item() for k, v in parts.items()})
        opt.zero_grad()
        loss.backward()
        opt.step()
    first, last = history[0], history[-1]
    assert last["hidden"] < 0.5 * first["hidden"], history
    assert last["attention"] < 0.5 * first["attention"], history


# ---------------------------------------------------------------- eager switch

def test_eager_switch_keeps_the_model_and_returns_attentions(vocab, batch):
    model = init_model(config(4, 64, 4, 2, vocab), seed=3)
    assert model.config._attn_implementation == "sdpa"
    with torch.no_grad():
        sdpa_logits = model(**batch.model_inputs(), use_cache=False).logits    # (B, T, V)
        use_eager_attention(model)
        assert model.config._attn_implementation == "eager"
        out = model(**batch.model_inputs(), use_cache=False, output_attentions=True)
    torch.testing.assert_close(out.logits, sdpa_logits, rtol=1e-4, atol=1e-5)
    assert len(out.attentions) == 4 and out.attentions[3].shape == (B, 4, T, T)


def test_eager_switch_refuses_to_replace_qk_clip(vocab):
    from smoledge.train.qkclip import QKClip

    model = init_model(config(2, 32, 2, 1, vocab), seed=4)
    with QKClip(model, tau=100.0):
        with pytest.raises(ValueError, match="qk_clip"):
            use_eager_attention(model)
