"""Multi-token prediction: labels at document boundaries, head shapes, document isolation,
gradient flow, and a short real training run of a tiny SmolLM3 with MTP heads."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from smoledge.model.build import hf_config, init_model
from smoledge.model.config import ModelConfig
from smoledge.train.data import IGNORE_INDEX, pack
from smoledge.train.mtp import MTPHeads, mtp_labels

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models run on one thread

KINDS = ["parallel", "sequential"]
I = IGNORE_INDEX


def tiny_model(vocab: int = 64, hidden: int = 32, seed: int = 0):
    cfg = ModelConfig(preset="custom", num_layers=2, hidden_size=hidden, intermediate_size=2 * hidden,
                      num_heads=4, num_kv_heads=2, max_position_embeddings=128)
    return init_model(hf_config(cfg, vocab_size=vocab), seed=seed)


def run_heads(model, heads, input_ids, position_ids, attention_mask) -> list[torch.Tensor]:
    """Trunk forward, then the MTP heads on its final hidden state (what the training wrapper does)."""
    hidden = model.model(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
                         use_cache=False).last_hidden_state                    # (B, T, C)
    pos_emb = model.model.rotary_emb(hidden, position_ids)
    return heads(hidden, input_ids, attention_mask, pos_emb, model.model.embed_tokens, model.lm_head)


def packed_batch(doc_lengths: list[int], seq_len: int, vocab: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    pieces = [rng.integers(1, vocab, size=n) for n in doc_lengths]
    return pack(pieces, batch_size=1, seq_len=seq_len)


def setup(kind: str, k: int, seed: int, doc_lengths: list[int], seq_len: int):
    """A tiny model, k seeded heads, a one-row packed batch and the heads' logits on it."""
    model = tiny_model()
    torch.manual_seed(seed)
    heads = MTPHeads(model.config, k=k, kind=kind)
    batch = packed_batch(doc_lengths, seq_len=seq_len, vocab=64)
    return model, heads, batch, run_heads(model, heads, batch.input_ids, batch.position_ids, batch.attention_mask)


# ---------------------------------------------------------------- labels

def test_mtp_labels_hand_made_boundaries_and_row_end():
    # Row 0: document A = inputs 0..2 (its last label, at t=2, is the next document's first token),
    # document B = inputs 3..7, cut by the row end (label at t=7 would be outside the row: given).
    # Row 1: one document over the whole row.
    labels = torch.tensor([[10, 11, I, 13, 14, 15, 16, 17],
                           [20, 21, 22, 23, 24, 25, 26, 27]])
    assert torch.equal(mtp_labels(labels, 0), labels)
    assert mtp_labels(labels, 1).tolist() == [[11, I, I, 14, 15, 16, 17, I],
                                              [21, 22, 23, 24, 25, 26, 27, I]]
    assert mtp_labels(labels, 2).tolist() == [[I, I, I, 15, 16, 17, I, I],
                                              [22, 23, 24, 25, 26, 27, I, I]]
    assert mtp_labels(labels, 7).tolist() == [[I] * 8, [27] + [I] * 7]
    assert (mtp_labels(labels, 8) == I).all()
    with pytest.raises(ValueError):
        mtp_labels(labels, -1)


def test_mtp_labels_match_the_true_future_token_of_the_same_document():
    # Real packing: the depth-d label must be exactly the token d+1 ahead when it is in the
    # same document, and ignored otherwise (checked against a brute-force walk).
    rng = np.random.default_rng(3)
    lengths = [int(n) for n in rng.integers(1, 9, size=40)]
    pieces = [rng.integers(1, 50, size=n) for n in lengths]
    B, T = 3, 16
    batch = pack(pieces, batch_size=B, seq_len=T)
    tokens = np.concatenate(pieces)[: B * (T + 1)].reshape(B, T + 1)
    seg = np.repeat(np.arange(len(pieces)), lengths)[: B * (T + 1)].reshape(B, T + 1)
    for d in range(4):
        got = mtp_labels(batch.labels, d).numpy()
        for b in range(B):
            for t in range(T):
                j = t + d + 1
                want = tokens[b, j] if j <= T and seg[b, j] == seg[b, t] else I
                assert got[b, t] == want, (d, b, t)


# ---------------------------------------------------------------- heads

@pytest.mark.parametrize("kind", KINDS)
def test_heads_give_logits_for_each_depth(kind):
    _, _, _, logits = setup(kind, k=3, seed=0, doc_lengths=[5, 9, 20], seq_len=24)
    assert len(logits) == 3
    for z in logits:
        assert z.shape == (1, 24, 64)
        assert torch.isfinite(z).all()
    assert not torch.allclose(logits[0], logits[1])                 # independent depths


@pytest.mark.parametrize("kind", KINDS)
def test_heads_init_is_deterministic_and_hf_like(kind):
    model = tiny_model()
    torch.manual_seed(7)
    a = MTPHeads(model.config, k=2, kind=kind)
    torch.manual_seed(7)
    b = MTPHeads(model.config, k=2, kind=kind)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    std = model.config.initializer_range
    for name, p in a.named_parameters():
        if p.ndim == 2:
            assert abs(p.std().item() - std) < 0.25 * std, name
        else:
            assert torch.equal(p, torch.ones_like(p)), name


@pytest.mark.parametrize("kind", KINDS)
def test_heads_never_attend_across_documents(kind):
    vocab, T = 64, 24
    model = tiny_model(vocab).eval()
    torch.manual_seed(1)
    heads = MTPHeads(model.config, k=2, kind=kind).eval()
    batch = packed_batch([7, 30], seq_len=T, vocab=vocab)       # doc 1: inputs 0..6, doc 2: 7..23
    doc1 = torch.zeros(T, dtype=torch.bool)
    doc1[:7] = True
    assert (batch.position_ids[0, 7:] == torch.arange(T - 7)).all()
    perturbed = batch.input_ids.clone()
    perturbed[0, doc1] = (perturbed[0, doc1] + 17) % vocab

    def logits(ids, mask):
        with torch.no_grad():
            return run_heads(model, heads, ids, batch.position_ids, mask)

    base, moved = logits(batch.input_ids, batch.attention_mask), logits(perturbed, batch.attention_mask)
    for z0, z1 in zip(base, moved):
        torch.testing.assert_close(z1[0, ~doc1], z0[0, ~doc1], rtol=0, atol=1e-6)
        assert (z1[0, doc1] - z0[0, doc1]).abs().max() > 1e-3     # doc 1 itself did change
    # The check can fail: with a plain causal mask (no document blocks) document 2 does see document 1.
    causal = torch.zeros_like(batch.attention_mask)
    causal.masked_fill_(~torch.ones(T, T, dtype=torch.bool).tril(), torch.finfo(torch.float32).min)
    leak = logits(perturbed, causal)[0][0, ~doc1] - logits(batch.input_ids, causal)[0][0, ~doc1]
    assert leak.abs().max() > 1e-3


@pytest.mark.parametrize("kind", KINDS)
def test_mtp_gradients_reach_heads_and_trunk(kind):
    model, heads, batch, logits = setup(kind, k=2, seed=2, doc_lengths=[10, 6, 30], seq_len=32)
    loss = sum(F.cross_entropy(z.flatten(0, 1), mtp_labels(batch.labels, d).flatten(), ignore_index=I)
               for d, z in enumerate(logits, start=1))
    loss.backward()
    for name, p in heads.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # Only the MTP loss was used, so these gradients flow through the heads into the trunk.
    for name in ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                 "model.layers.1.mlp.down_proj.weight", "model.norm.weight"):
        g = model.get_parameter(name).grad
        assert g is not None and g.abs().sum() > 0, name


# ---------------------------------------------------------------- training

@pytest.mark.parametrize("kind", KINDS)
def test_short_training_lowers_depth1_loss(kind, prose_texts):
    """30 AdamW steps of a tiny byte-level SmolLM3 with MTP heads on real prose: the depth-1
    (two-ahead) cross-entropy falls well below its uniform start, ln V."""
    vocab, B, T, steps = 256, 8, 64, 30
    docs = [np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.int64) for t in prose_texts]
    docs = [np.append(d, 0) for d in docs if len(d) > 0]            # 0 = EOS, never a UTF-8 byte here
    model = tiny_model(vocab, hidden=64, seed=0).train()
    torch.manual_seed(0)
    heads = MTPHeads(model.config, k=2, kind=kind).train()
    params = list(model.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=3e-3, betas=(0.9, 0.95), weight_decay=0.0)
    rng = np.random.default_rng(0)

    def batch():
        start = int(rng.integers(0, len(docs) - 64))
        return pack(docs[start:start + 64], batch_size=B, seq_len=T)

    first = last = None
    for step in range(steps):
        b = batch()
        hidden = model.model(input_ids=b.input_ids, position_ids=b.position_ids,
                             attention_mask=b.attention_mask, use_cache=False).last_hidden_state
        pos_emb = model.model.rotary_emb(hidden, b.position_ids)
        main = F.cross_entropy(model.lm_head(hidden).flatten(0, 1), b.labels.flatten(), ignore_index=I)
        logits = heads(hidden, b.input_ids, b.attention_mask, pos_emb, model.model.embed_tokens, model.lm_head)
        depth_ce = [F.cross_entropy(z.flatten(0, 1), mtp_labels(b.labels, d).flatten(), ignore_index=I)
                    for d, z in enumerate(logits, start=1)]
        loss = main + 0.3 * sum(depth_ce) / len(depth_ce)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step == 0:
            first = depth_ce[0].item()
        last = depth_ce[0].item()
    assert abs(first - math.log(vocab)) < 0.3, first       # starts near uniform
    assert last < 0.7 * math.log(vocab), (first, last)
