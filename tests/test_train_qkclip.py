"""QK-clip on a real tiny GQA SmolLM3: recorded max logits against a hand reference, outputs
unchanged by the recording attention, clipping lands exactly on tau, and close() restores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import SmolLM3ForCausalLM
from transformers.models.smollm3.modeling_smollm3 import apply_rotary_pos_emb

from smoledge.model.build import hf_config, init_model
from smoledge.model.config import ModelConfig
from smoledge.train.data import IGNORE_INDEX, Batch, pack
from smoledge.train.mtp import MTPHeads
from smoledge.train import qkclip
from smoledge.train.qkclip import IMPLEMENTATION, QKClip, head_max_logits

VOCAB = 64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model(num_kv_heads: int = 2, seed: int = 0, qk_gain: float = 6.0) -> SmolLM3ForCausalLM:
    """4 layers (layer 3 is NoPE), 4 query heads. q/k weights are scaled up so the random
    model has attention logits of order 1-10, where clipping has something to do."""
    cfg = ModelConfig(preset="custom", num_layers=4, hidden_size=32, intermediate_size=64, num_heads=4,
                      num_kv_heads=num_kv_heads, max_position_embeddings=128)
    model = init_model(hf_config(cfg, vocab_size=VOCAB), seed=seed)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(qk_gain)
            layer.self_attn.k_proj.weight.mul_(qk_gain)
    return model.train()


def packed_batch(seed: int = 0, batch_size: int = 2, seq_len: int = 32):
    rng = np.random.default_rng(seed)
    pieces = [rng.integers(1, VOCAB, size=int(n)) for n in rng.integers(3, 20, size=20)]
    return pack(pieces, batch_size=batch_size, seq_len=seq_len)


def attention_inputs(model: SmolLM3ForCausalLM, batch) -> dict[int, tuple]:
    """Each layer's attention input (normed hidden, (cos, sin)) for this batch."""
    inputs = {}
    hooks = [layer.self_attn.register_forward_pre_hook(
        lambda mod, args, kwargs, i=i: inputs.__setitem__(i, (kwargs["hidden_states"], kwargs["position_embeddings"])),
        with_kwargs=True) for i, layer in enumerate(model.model.layers)]
    with torch.no_grad():
        model(**batch.model_inputs(), use_cache=False)
    for h in hooks:
        h.remove()
    return inputs


def reference_max_logits(model: SmolLM3ForCausalLM, batch, inputs: dict | None = None) -> torch.Tensor:
    """(L, H) max allowed logit, by hand: q_proj/k_proj on each layer's attention input, RoPE
    where the layer uses it, scores q.k / sqrt(d), blocked positions taken out of the max.
    `inputs` pins the attention inputs (else they come from a forward of the current model)."""
    inputs = inputs or attention_inputs(model, batch)
    cfg = model.config
    H, G = cfg.num_attention_heads, cfg.num_key_value_heads
    D = cfg.hidden_size // H
    allowed = batch.attention_mask == 0                                         # (B, 1, T, T)
    rows = []
    for i, layer in enumerate(model.model.layers):
        x, (cos, sin) = inputs[i]                                               # (B, T, C)
        B, T, _ = x.shape
        with torch.no_grad():
            q = layer.self_attn.q_proj(x).view(B, T, H, D).transpose(1, 2)      # (B, H, T, D)
            k = layer.self_attn.k_proj(x).view(B, T, G, D).transpose(1, 2)      # (B, G, T, D)
            if cfg.no_rope_layers[i]:
                q, k = apply_rotary_pos_emb(q, k, cos, sin)
            k = k.repeat_interleave(H // G, dim=1)                              # (B, H, T, D)
            scores = (q @ k.transpose(-1, -2)) / D ** 0.5                       # (B, H, T, T)
        rows.append(scores.masked_fill(~allowed, float("-inf")).amax(dim=(0, 2, 3)))
    return torch.stack(rows)                                                    # (L, H)


@pytest.fixture
def clipped_model():
    model = tiny_model()
    clip = QKClip(model, tau=1e9)
    yield model, clip
    clip.close()


# ---------------------------------------------------------------- measuring

@pytest.mark.parametrize("num_kv_heads", [1, 2, 4])
def test_recorded_max_logits_match_hand_reference(num_kv_heads):
    model = tiny_model(num_kv_heads)
    batch = packed_batch()
    want = reference_max_logits(model, batch)
    assert want.abs().max() > 1.0                       # large enough for the check to mean something
    with QKClip(model, tau=1e9) as clip:
        assert torch.isinf(clip.max_logits()).all()
        model(**batch.model_inputs(), use_cache=False)
        torch.testing.assert_close(clip.max_logits(), want, rtol=1e-5, atol=1e-5)
        # The record is a running max over forwards since the last apply.
        model(**packed_batch(seed=1).model_inputs(), use_cache=False)
        both = torch.maximum(want, reference_max_logits(model, packed_batch(seed=1)))
        torch.testing.assert_close(clip.max_logits(), both, rtol=1e-5, atol=1e-5)


def causal_mask(T: int) -> torch.Tensor:
    """(1, 1, T, T) additive plain causal mask: one document over the whole row."""
    blocked = ~torch.ones(T, T, dtype=torch.bool).tril()
    return torch.zeros(1, 1, T, T).masked_fill(blocked, torch.finfo(torch.float32).min)


def test_document_mask_is_respected():
    # Layer 0 sees the same inputs under either mask; with a plain causal mask it also scores
    # cross-document pairs, so its max can only grow, and must grow here for some head (else the
    # packed-mask check above would prove nothing about masking).
    model = tiny_model()
    batch = packed_batch()
    with QKClip(model, tau=1e9) as clip:
        model(**batch.model_inputs(), use_cache=False)
        packed = clip.max_logits()[0]                                               # (H,)
        clip.apply()
        model(input_ids=batch.input_ids, position_ids=batch.position_ids, attention_mask=causal_mask(32),
              use_cache=False)
        causal = clip.max_logits()[0]                                               # (H,)
    assert (causal >= packed).all() and (causal > packed).any()


@pytest.mark.parametrize("chunk", [1 << 24, 2 * 4 * 9 * 2])  # one pass / two query rows at a time
def test_mask_forms_agree(chunk, monkeypatch):
    # None (causal), boolean (True = allowed) and additive float masks give the same maximum,
    # whether the scores are taken in one piece or in chunks of query rows (long sequences).
    monkeypatch.setattr(qkclip, "_CHUNK_ELEMENTS", chunk)
    torch.manual_seed(0)
    q = torch.randn(2, 4, 9, 8)                                                 # (B, H, T, D)
    k = torch.randn(2, 2, 9, 8)                                                 # (B, G, T, D)
    allowed = torch.ones(9, 9, dtype=torch.bool).tril()[None, None].expand(2, 1, 9, 9)
    additive = torch.zeros(2, 1, 9, 9).masked_fill(~allowed, torch.finfo(torch.float32).min)
    a = head_max_logits(q, k, None, 0.3)
    torch.testing.assert_close(head_max_logits(q, k, allowed, 0.3), a, rtol=0, atol=0)
    torch.testing.assert_close(head_max_logits(q, k, additive, 0.3), a, rtol=0, atol=0)
    # Causal with fewer queries than keys (a cache): query i sits at key position i + (Tk - Tq).
    last = head_max_logits(q[:, :, -3:], k, None, 0.3)
    scores = (q @ k.repeat_interleave(2, dim=1).transpose(-1, -2) * 0.3).masked_fill(~allowed, float("-inf"))
    torch.testing.assert_close(last, scores[:, :, -3:].amax(dim=(0, 2, 3)))


def test_unmasked_forward_records_causally(clipped_model):
    # No mask given and a cache object (use_cache default): attention gets no mask and is causal.
    model, clip = clipped_model
    batch = packed_batch(batch_size=1)
    single_doc = Batch(batch.input_ids, batch.labels, torch.arange(32)[None], causal_mask(32))
    want = reference_max_logits(model, single_doc)
    model(input_ids=batch.input_ids)
    torch.testing.assert_close(clip.max_logits(), want, rtol=1e-5, atol=1e-5)


def test_outputs_equal_stock_sdpa():
    model = tiny_model()
    batch = packed_batch()
    with torch.no_grad():
        stock_packed = model(**batch.model_inputs(), use_cache=False).logits
        stock_plain = model(input_ids=batch.input_ids).logits
        with QKClip(model, tau=1e9):
            assert model.config._attn_implementation == IMPLEMENTATION
            assert torch.equal(model(**batch.model_inputs(), use_cache=False).logits, stock_packed)
            assert torch.equal(model(input_ids=batch.input_ids).logits, stock_plain)


def test_eval_mode_does_not_record(clipped_model):
    model, clip = clipped_model
    model.eval()
    model(**packed_batch().model_inputs(), use_cache=False)
    assert torch.isinf(clip.max_logits()).all()
    assert clip.apply() == {"max_attn_logit": float("-inf"), "clipped_heads": 0}


def test_mtp_heads_pass_through_unrecorded(clipped_model):
    # MTP heads share the trunk's config, so they run through the recording implementation too:
    # they must give the same logits as under stock sdpa and must not touch the trunk's record.
    model, clip = clipped_model
    torch.manual_seed(0)
    heads = MTPHeads(model.config, k=2, kind="parallel")
    batch = packed_batch()
    with torch.no_grad():
        hidden = model.model(**batch.model_inputs(), use_cache=False).last_hidden_state
    record = clip.max_logits()
    pos_emb = model.model.rotary_emb(hidden, batch.position_ids)
    args = (hidden, batch.input_ids, batch.attention_mask, pos_emb, model.model.embed_tokens, model.lm_head)
    with torch.no_grad():
        ours = heads(*args)
        clip.close()
        stock = heads(*args)
    assert torch.equal(clip.max_logits(), record)
    for a, b in zip(ours, stock):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- clipping

@pytest.mark.parametrize("num_kv_heads", [1, 2, 4])
def test_apply_brings_clipped_heads_to_tau(num_kv_heads):
    model = tiny_model(num_kv_heads)
    batch = packed_batch()
    inputs = attention_inputs(model, batch)
    before = reference_max_logits(model, batch, inputs)                         # (L, H)
    tau = float(before.flatten().quantile(0.6))
    over = before > tau
    assert 0 < int(over.sum()) < over.numel()
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    with QKClip(model, tau=tau) as clip:
        model(**batch.model_inputs(), use_cache=False)
        stats = clip.apply()
        assert stats["clipped_heads"] == int(over.sum())
        assert stats["max_attn_logit"] == pytest.approx(float(before.max()), rel=1e-5)
        assert torch.isinf(clip.max_logits()).all()                         # record reset
    # Same attention inputs as before: clipping layer l also changes what later layers see,
    # but the guarantee is per head, on the logits the record was taken from.
    after = reference_max_logits(model, batch, inputs)
    torch.testing.assert_close(after[over], torch.full_like(after[over], tau), rtol=1e-4, atol=0)
    torch.testing.assert_close(after[~over], before[~over], rtol=1e-5, atol=1e-6)

    H, G = model.config.num_attention_heads, num_kv_heads
    D = model.config.hidden_size // H
    for name, p in model.named_parameters():
        old = weights[name]
        if ".q_proj." in name or ".k_proj." in name:
            layer = int(name.split(".")[2])
            heads = over[layer].view(G, H // G).any(dim=1)                    # (G,) group has a clipped head
            per = (H // G) * D if ".q_proj." in name else D                   # rows per kv group
            for g in range(G):
                rows = slice(g * per, (g + 1) * per)
                same = torch.equal(p[rows], old[rows])
                assert same != bool(heads[g]), (name, g)                      # changed iff group clipped
        else:
            assert torch.equal(p, old), name                                  # v, o, MLP, norms, embeddings


def test_heads_below_tau_leave_weights_bit_identical(clipped_model):
    model, clip = clipped_model
    batch = packed_batch()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model(**batch.model_inputs(), use_cache=False)
    clip.tau = float(clip.max_logits().max()) + 1.0
    assert clip.apply()["clipped_heads"] == 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_reduce_runs_first_and_sets_the_factors(clipped_model):
    # Under DDP the lead passes an in-place all_reduce(MAX): factors must come from the reduced
    # record. Here another "replica" saw a logit of 3 tau in layer 0, head 1.
    model, clip = clipped_model
    model(**packed_batch().model_inputs(), use_cache=False)
    clip.tau = float(clip.max_logits().max()) + 1.0

    def reduce(t: torch.Tensor) -> None:
        t[0, 1] = 3 * clip.tau

    stats = clip.apply(reduce)
    assert stats == {"max_attn_logit": pytest.approx(3 * clip.tau), "clipped_heads": 1}
    model(**packed_batch().model_inputs(), use_cache=False)
    assert clip.max_logits()[0, 1] < clip.tau / 2                             # shrunk by a third


def copy_batch(seed: int):
    """Documents that repeat their first half: learning to copy sharpens attention, so the
    largest logits grow quickly from the first steps on."""
    rng = np.random.default_rng(seed)
    pieces = []
    for _ in range(8):
        half = rng.integers(1, VOCAB, size=16)
        pieces.append(np.concatenate([half, half, [0]]))
    return pack(pieces, batch_size=4, seq_len=32)


def train_copy(clip_tau: float | None, steps: int = 20) -> list[float]:
    """Per-step recorded max logit of a short AdamW run, with or without QK-clip."""
    model = tiny_model(qk_gain=2.0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    maxima = []
    with QKClip(model, tau=clip_tau or 1e9) as clip:
        for step in range(steps):
            batch = copy_batch(step)
            logits = model(**batch.model_inputs(), use_cache=False).logits               # (B, T, V)
            loss = F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten(), ignore_index=IGNORE_INDEX)
            opt.zero_grad()
            loss.backward()
            opt.step()
            maxima.append(clip.apply()["max_attn_logit"])
    return maxima


def test_training_with_qkclip_keeps_logits_bounded():
    # Unclipped, the max logit climbs well past tau; with apply() after every step it stays near
    # tau (a step's record can exceed tau only by what the last optimizer step and a new batch add).
    tau = 2.0
    free = train_copy(None)
    assert free[-1] > 1.5 * tau, free
    clipped = train_copy(tau)
    first = next(i for i, m in enumerate(clipped) if m > tau)
    assert clipped[:first] == free[:first]                                     # identical until it bites
    assert max(clipped[first + 1:]) < 1.3 * tau, clipped
    assert clipped[-1] < free[-1] - 0.5 * tau


# ---------------------------------------------------------------- restoring

def test_close_restores_stock_attention(tmp_path):
    model = tiny_model()
    batch = packed_batch()
    clip = QKClip(model, tau=1e9)
    with pytest.raises(ValueError, match="already has a QKClip"):
        QKClip(model, tau=1e9)
    clip.close()
    assert model.config._attn_implementation == "sdpa"
    model(**batch.model_inputs(), use_cache=False)
    assert torch.isinf(clip.max_logits()).all()                               # no longer recording
    model.save_pretrained(tmp_path)
    assert "smoledge" not in (tmp_path / "config.json").read_text()
    assert "attn_implementation" not in json.loads((tmp_path / "config.json").read_text())
    reloaded = SmolLM3ForCausalLM.from_pretrained(tmp_path)
    assert reloaded.config._attn_implementation == "sdpa"
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(**batch.model_inputs(), use_cache=False).logits,
                                   model.eval()(**batch.model_inputs(), use_cache=False).logits)
    # A fresh QKClip can attach once the old one is closed.
    QKClip(model, tau=1e9).close()


def test_rejects_bad_tau():
    with pytest.raises(ValueError, match="tau"):
        QKClip(tiny_model(), tau=0.0)


# ---------------------------------------------------------------- sharded (FSDP2)

def _fsdp_worker(rank: int, port: int) -> None:
    """Two gloo ranks, each with its own batch, q/k weights sharded by FSDP2 (DTensor rows).
    apply() with an all_reduce(MAX) must give exactly the weights of one replica that saw both."""
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        batches = [packed_batch(seed=0), packed_batch(seed=1)]
        reference = tiny_model()
        with QKClip(reference, tau=1.0) as clip:
            for b in batches:
                reference(**b.model_inputs(), use_cache=False)
            want = clip.apply()
        model = tiny_model()
        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
        with QKClip(model, tau=1.0) as clip:
            model(**batches[rank].model_inputs(), use_cache=False)
            got = clip.apply(lambda t: dist.all_reduce(t, op=dist.ReduceOp.MAX))
        assert got["clipped_heads"] == want["clipped_heads"] > 0
        assert got["max_attn_logit"] == pytest.approx(want["max_attn_logit"], rel=1e-6)
        for layer, ref in zip(model.model.layers, reference.model.layers):
            for proj in ("q_proj", "k_proj"):
                w = getattr(layer.self_attn, proj).weight
                assert isinstance(w, DTensor) and w.to_local().shape[0] < w.shape[0]  # really sharded
                torch.testing.assert_close(w.full_tensor(), getattr(ref.self_attn, proj).weight,
                                           rtol=1e-6, atol=1e-7)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes, each importing torch and transformers
def test_fsdp2_sharded_weights_clip_like_one_replica():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_fsdp_worker, args=(port,), nprocs=2, join=True)
