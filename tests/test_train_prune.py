"""Minitron pruning of a real teacher SmolLM3 into a student: an unpruned student is the teacher, depth
pruning drops the lowest Block Influence layers the RoPE pattern allows, width pruning slices the most active
channels / KV groups / neurons and keeps the rotary pairs r*j, and on real prose a pruned student starts far
below a random one."""

from __future__ import annotations

import copy
import itertools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers.models.smollm3.modeling_smollm3 import apply_rotary_pos_emb

from smoledge.errors import SmoledgeError
from smoledge.model.build import hf_config, init_model
from smoledge.model.config import ModelConfig
from smoledge.train.data import IGNORE_INDEX, pack
from smoledge.train.prune import prune_from_teacher, select_layers

VOCAB = 96


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config(vocab: int = VOCAB, **kw):
    preset = kw.pop("preset", "custom" if kw else "small")
    return hf_config(ModelConfig(preset=preset, max_position_embeddings=256, **kw), vocab_size=vocab)


def random_batches(n: int = 3, batch_size: int = 2, seq_len: int = 48, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pieces = [rng.integers(1, VOCAB, size=int(k)) for k in rng.integers(5, 40, size=12)]
        out.append(pack(pieces, batch_size=batch_size, seq_len=seq_len))
    return out


def logits(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**batch.model_inputs(), use_cache=False).logits


def test_same_shape_student_is_the_teacher():
    teacher = init_model(config(), seed=0)
    calib = random_batches()
    student, report = prune_from_teacher(teacher, config(), calib)
    assert [entry["teacher"] for entry in report["layers"]] == [0, 1, 2, 3]
    assert report["hidden_channels"] == list(range(128))
    assert student.config.tie_word_embeddings and student.lm_head.weight is student.model.embed_tokens.weight
    for batch in calib:
        torch.testing.assert_close(logits(student, batch), logits(teacher, batch), atol=1e-5, rtol=0)
    json.dumps(report)


def block_influence_by_hand(teacher, batches) -> list[float]:
    """1 - cos(layer input, layer output), averaged over the positions with a label, layer by layer."""
    total, count = torch.zeros(teacher.config.num_hidden_layers, dtype=torch.float64), 0
    with torch.no_grad():
        for b in batches:
            real = b.labels != IGNORE_INDEX
            x = teacher.model.embed_tokens(b.input_ids)
            rope = teacher.model.rotary_emb(x, b.position_ids)
            for i, layer in enumerate(teacher.model.layers):
                y = layer(x, attention_mask=b.attention_mask, position_embeddings=rope)
                total[i] += (1 - F.cosine_similarity(x[real], y[real], dim=-1)).double().sum()
                x = y
            count += int(real.sum())
    return (total / count).tolist()


@pytest.mark.parametrize("identity_layer", [0, 1, 2])
def test_depth_pruning_drops_the_near_identity_layer(identity_layer):
    """Teacher RRRN -> student RR: the NoPE layer 3 cannot fill a RoPE slot, and of the RoPE layers the one
    made an identity (zero attention and MLP outputs) has the least Block Influence."""
    teacher = init_model(config(), seed=1)
    with torch.no_grad():
        layer = teacher.model.layers[identity_layer]
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.down_proj.weight.zero_()
    calib = random_batches(seed=1)
    student, report = prune_from_teacher(teacher, config(preset="small", num_layers=2), calib)
    kept = [i for i in range(3) if i != identity_layer]
    assert [entry["teacher"] for entry in report["layers"]] == kept
    assert report["dropped_layers"] == [identity_layer, 3]
    np.testing.assert_allclose(report["block_influence"], block_influence_by_hand(teacher, calib), atol=1e-6)
    assert report["block_influence"][identity_layer] < 1e-6

    # The student is the teacher with the dropped layers deleted.
    reference = copy.deepcopy(teacher)
    reference.model.layers = torch.nn.ModuleList([reference.model.layers[i] for i in kept])
    reference.config.num_hidden_layers = len(kept)
    for batch in calib:
        torch.testing.assert_close(logits(student, batch), logits(reference, batch), atol=1e-5, rtol=0)


def brute_force(importance, teacher_rope, student_rope):
    fits = [c for c in itertools.combinations(range(len(importance)), len(student_rope))
            if all(teacher_rope[i] == s for i, s in zip(c, student_rope))]
    return list(max(fits, key=lambda c: sum(importance[i] for i in c))) if fits else None


def test_select_layers_is_the_best_selection_the_rope_pattern_allows():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 10))
        m = int(rng.integers(1, n + 1))
        importance = rng.random(n).tolist()
        teacher_rope = rng.integers(0, 2, size=n).tolist()
        student_rope = rng.integers(0, 2, size=m).tolist()
        assert select_layers(importance, teacher_rope, student_rope) == brute_force(
            importance, teacher_rope, student_rope)
    # RRRN RRRN -> RRRN: layer 7 is the most important but not a NoPE slot's only candidate; the pattern wins
    # over unconstrained top-k ({0, 4, 5, 7} breaks the order R R R N).
    importance = [0.9, 0.1, 0.1, 0.2, 0.8, 0.8, 0.1, 0.95]
    assert select_layers(importance, [1, 1, 1, 0, 1, 1, 1, 0], [1, 1, 1, 0]) == [0, 4, 5, 7]
    assert select_layers(importance, [1, 1, 1, 0, 1, 1, 1, 0], [1, 0, 1, 1]) == [0, 3, 4, 5]
    assert select_layers([1.0, 1.0], [1, 1], [0]) is None


def test_width_pruning_keeps_the_most_active_channels_groups_and_neurons():
    """Weaken hidden channels 0-63 (every norm weight), KV group 0 of layer 0 (its v rows) and MLP neurons
    0-191 of layer 0 (their up rows): the student is sliced from the other halves, every tensor consistently."""
    teacher = init_model(config(), seed=2)
    tm = teacher.model
    with torch.no_grad():
        for norm in [tm.norm] + [n for layer in tm.layers for n in (layer.input_layernorm,
                                                                     layer.post_attention_layernorm)]:
            norm.weight[:64] *= 0.01
        tm.layers[0].self_attn.v_proj.weight[:32] *= 0.01
        tm.layers[0].mlp.up_proj.weight[:192] *= 0.01
    # 4 layers, hidden 64, MLP 192, 2 query heads on 1 KV head: head dim 32, the teacher's.
    student_cfg = config(num_layers=4, hidden_size=64, intermediate_size=192, num_heads=2, num_kv_heads=1)
    calib = random_batches(seed=2)
    final_norm_inputs = []
    hook = tm.norm.register_forward_pre_hook(lambda mod, args: final_norm_inputs.append(args[0]))
    for batch in calib:
        logits(teacher, batch)
    hook.remove()
    student, report = prune_from_teacher(teacher, student_cfg, calib)
    c = torch.arange(64, 128)
    assert report["hidden_channels"] == c.tolist()
    assert report["attention"][0]["kv_groups"] == [1] and report["attention"][0]["query_heads"] == [[2, 3]]
    assert report["mlp_neurons"][0] == list(range(192, 384))
    sm, t0, s0 = student.model, tm.layers[0], student.model.layers[0]
    assert torch.equal(sm.embed_tokens.weight, tm.embed_tokens.weight[:, c])
    assert torch.equal(s0.self_attn.k_proj.weight, t0.self_attn.k_proj.weight[32:64][:, c])
    assert torch.equal(s0.self_attn.v_proj.weight, t0.self_attn.v_proj.weight[32:64][:, c])
    assert torch.equal(s0.self_attn.q_proj.weight, t0.self_attn.q_proj.weight[64:128][:, c])
    assert torch.equal(s0.self_attn.o_proj.weight, t0.self_attn.o_proj.weight[c][:, 64:128])
    assert torch.equal(s0.mlp.down_proj.weight, t0.mlp.down_proj.weight[c][:, 192:])
    assert torch.equal(s0.mlp.gate_proj.weight, t0.mlp.gate_proj.weight[192:][:, c])
    # Each norm weight is scaled by sqrt(mean kept E[x^2] / mean E[x^2]) of that norm's input.
    scale = report["rms_scale"]
    x = torch.cat([h[b.labels != IGNORE_INDEX] for h, b in zip(final_norm_inputs, calib)]).double()  # (N, H)
    energy = x.pow(2).mean(0)
    assert scale["norm"] == pytest.approx(float((energy[c].mean() / energy.mean()).sqrt()), rel=1e-5)
    torch.testing.assert_close(sm.norm.weight, tm.norm.weight[c] * scale["norm"])
    torch.testing.assert_close(s0.input_layernorm.weight, t0.input_layernorm.weight[c] * scale["input_layernorm"][0])


def test_head_dim_halving_keeps_the_rotary_pairs():
    """Teacher head dim 32 -> student 16 (r = 2): the student's post-RoPE q and k are the teacher's at dims
    {2j} and {16 + 2j} at every position, so its attention logits are r x the teacher's restricted to them."""
    teacher = init_model(config(num_layers=1, hidden_size=128, intermediate_size=256, num_heads=4,
                                num_kv_heads=2), seed=3)
    student_cfg = config(num_layers=1, hidden_size=64, intermediate_size=256, num_heads=4, num_kv_heads=2)
    student, report = prune_from_teacher(teacher, student_cfg, random_batches(seed=3))
    dims = [2 * j for j in range(8)] + [16 + 2 * j for j in range(8)]
    assert report["attention"][0]["qk_dims"] == [dims, dims]

    channels = torch.tensor(report["hidden_channels"])
    x_s = torch.randn(1, 60, 64)                                         # (B, T, H_s) normed hidden
    x_t = torch.zeros(1, 60, 128)
    x_t[..., channels] = x_s                                             # what the student's inputs see
    pos = torch.arange(60)[None]

    def rotated(model, x, hd):
        attn = model.model.layers[0].self_attn
        cos, sin = model.model.rotary_emb(x, pos)
        q = attn.q_proj(x).view(1, 60, -1, hd).transpose(1, 2)           # (B, nh, T, hd)
        k = attn.k_proj(x).view(1, 60, -1, hd).transpose(1, 2)           # (B, nkv, T, hd)
        return apply_rotary_pos_emb(q, k, cos, sin)

    with torch.no_grad():
        q_t, k_t = rotated(teacher, x_t, 32)
        q_s, k_s = rotated(student, x_s, 16)
    q_scale = report["q_scale"]
    assert q_scale == pytest.approx(2 ** 0.5)
    torch.testing.assert_close(q_s, q_t[..., dims] * q_scale, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(k_s, k_t[..., dims], atol=1e-5, rtol=1e-5)
    kv_t = k_t.repeat_interleave(2, dim=1)[..., dims]
    kv_s = k_s.repeat_interleave(2, dim=1)
    logit_t = q_t[..., dims] @ kv_t.transpose(-1, -2) * 32 ** -0.5      # (B, nh, T, T)
    logit_s = q_s @ kv_s.transpose(-1, -2) * 16 ** -0.5
    torch.testing.assert_close(logit_s, 2 * logit_t, atol=1e-4, rtol=1e-4)
    # The naive first-16 slice would rotate the kept dims at the wrong frequencies: it does not match.
    naive = list(range(8)) + list(range(16, 24))
    assert not torch.allclose(q_s, q_t[..., naive] * q_scale, atol=1e-3)


def test_nope_layers_keep_their_most_active_head_dims():
    """RRRN RRRN -> RRRN with head dim 32 -> 16: the NoPE slot has no rotary pairs to respect, so it keeps the
    q/k dims with the largest |q| x |k| and the v dims with the most attention output."""
    teacher = init_model(config(preset="small", num_layers=8), seed=4)
    with torch.no_grad():
        for i in (3, 7):
            attn = teacher.model.layers[i].self_attn
            attn.q_proj.weight.view(4, 32, 128)[:, 16:] *= 0.01   # (heads, head_dim, hidden): weak q dims 16-31
            attn.v_proj.weight.view(2, 32, 128)[:, :16] *= 0.01   # weak v dims 0-15
    student_cfg = config(num_layers=4, hidden_size=64, intermediate_size=192, num_heads=4, num_kv_heads=2)
    student, report = prune_from_teacher(teacher, student_cfg, random_batches(seed=4))
    rotary = [2 * j for j in range(8)] + [16 + 2 * j for j in range(8)]
    assert [entry["rope"] for entry in report["layers"]] == [True, True, True, False]
    assert report["layers"][3]["teacher"] in (3, 7)
    for entry in report["attention"][:3]:
        assert entry["qk_dims"] == [rotary, rotary]
    assert report["attention"][3]["qk_dims"] == [list(range(16)), list(range(16))]
    assert report["attention"][3]["v_dims"] == [list(range(16, 32)), list(range(16, 32))]
    assert torch.isfinite(logits(student, random_batches(n=1)[0])).all()


@pytest.mark.parametrize("student_kw, field", [
    (dict(num_layers=5, hidden_size=128, intermediate_size=384, num_heads=4, num_kv_heads=2), "num_layers"),
    (dict(num_layers=2, hidden_size=256, intermediate_size=384, num_heads=8, num_kv_heads=2), "hidden_size"),
    (dict(num_layers=2, hidden_size=64, intermediate_size=512, num_heads=4, num_kv_heads=2), "intermediate_size"),
    (dict(num_layers=2, hidden_size=64, intermediate_size=192, num_heads=4, num_kv_heads=4), "num_kv_heads"),
    (dict(num_layers=2, hidden_size=64, intermediate_size=192, num_heads=8, num_kv_heads=2), "num_heads"),
    (dict(num_layers=2, hidden_size=96, intermediate_size=192, num_heads=4, num_kv_heads=2), "num_heads"),
    (dict(num_layers=2, hidden_size=64, intermediate_size=192, num_heads=4, num_kv_heads=2, rope_theta=5e5),
     "rope_theta"),
])
def test_students_that_do_not_fit_are_refused(student_kw, field):
    teacher = init_model(config(), seed=0)
    with pytest.raises(SmoledgeError, match=field) as err:
        prune_from_teacher(teacher, config(**student_kw), random_batches(n=1))
    assert "distill.init: random" in str(err.value)


def test_vocab_rope_pattern_and_calibration_errors():
    teacher = init_model(config(), seed=0)
    with pytest.raises(SmoledgeError, match="vocab_size"):
        prune_from_teacher(teacher, config(vocab=VOCAB + 1, preset="tiny"), random_batches(n=1))
    # An all-RoPE teacher has no layer for the student's NoPE slot 3.
    all_rope = init_model(config(preset="small", no_rope_interval=0), seed=0)
    with pytest.raises(SmoledgeError, match="RoPE/NoPE pattern RRRN.*distill.init: random"):
        prune_from_teacher(all_rope, config(), random_batches(n=1))
    with pytest.raises(SmoledgeError, match="no calibration batches"):
        prune_from_teacher(teacher, config(preset="tiny"), [])
    unlabelled = random_batches(n=1)[0]
    unlabelled.labels[:] = IGNORE_INDEX
    with pytest.raises(SmoledgeError, match="no predictable positions"):
        prune_from_teacher(teacher, config(preset="tiny"), [unlabelled])


def prose_batches(tokenizer_dir, texts, batch_size, seq_len):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    docs = [np.array(ids + [tok.eos_token_id]) for ids in tok(texts)["input_ids"]]
    docs = [docs[i] for i in np.random.default_rng(0).permutation(len(docs))]
    out, pieces, have = [], [], 0
    for doc in docs:
        pieces.append(doc)
        have += len(doc)
        if have >= batch_size * (seq_len + 1):
            out.append(pack(pieces, batch_size, seq_len))
            pieces, have = [], 0
    return out, len(tok)


def mean_loss(model, batches) -> float:
    total = count = 0
    for b in batches:
        lg = logits(model, b)
        total += F.cross_entropy(lg.flatten(0, 1), b.labels.flatten(), ignore_index=IGNORE_INDEX,
                                 reduction="sum").item()
        count += b.num_targets
    return total / count


@pytest.mark.slow
def test_pruned_student_starts_far_below_a_random_one(tiny_tokenizer_dir, prose_texts):
    """Quickstart shapes (teacher small -> student tiny: 4 -> 2 layers, 128 -> 64 wide, head dim 32 -> 16,
    MLP 384 -> 192) on real prose: the teacher after 300 AdamW steps, then both students before any training."""
    n_valid = 300
    valid, vocab = prose_batches(tiny_tokenizer_dir, prose_texts[:n_valid], 8, 128)
    train, _ = prose_batches(tiny_tokenizer_dir, prose_texts[n_valid:], 16, 32)
    valid = valid[:4]
    teacher = init_model(hf_config(ModelConfig(preset="small"), vocab_size=vocab), seed=0)
    opt = torch.optim.AdamW(teacher.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.0)
    teacher.train()
    for step in range(300):
        b = train[step % (len(train) - 4)]
        out = teacher(**b.model_inputs(), use_cache=False)
        loss = F.cross_entropy(out.logits.flatten(0, 1), b.labels.flatten(), ignore_index=IGNORE_INDEX)
        opt.zero_grad()
        loss.backward()
        opt.step()

    student_cfg = hf_config(ModelConfig(preset="tiny"), vocab_size=vocab)
    pruned, report = prune_from_teacher(teacher, student_cfg, train[-4:])   # calibration: unseen batches
    random_loss = mean_loss(init_model(student_cfg, seed=0), valid)
    pruned_loss, teacher_loss = mean_loss(pruned, valid), mean_loss(teacher, valid)
    print(f"teacher {teacher_loss:.3f}  pruned {pruned_loss:.3f}  random {random_loss:.3f}  "
          f"prune {report['seconds']:.2f}s")
    assert teacher_loss < pruned_loss < random_loss - 1.0
    assert len(report["layers"]) == 2 and 3 in report["dropped_layers"]  # layer 3 is NoPE, the student has none
    json.dumps(report)
