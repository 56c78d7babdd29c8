"""smoledge.train.lean_ops against the stock transformers modules it swaps in for: the same outputs and
gradients (fp32 and bf16 autocast, SmolLM3 and Llama), fewer bytes saved for backward (norms, MLP, KV heads),
the stock classes and attention back after the block (also after an error), modules it cannot serve left
alone, and the training loop giving the same losses with it on and off."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from smoledge.model.build import hf_config, init_model
from smoledge.model.config import ModelConfig
from smoledge.train.lean_ops import GQA_SDPA, lean_activations

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models run on one thread

V = 256


def _smollm3() -> torch.nn.Module:
    cfg = ModelConfig(preset="custom", num_layers=2, hidden_size=64, intermediate_size=160, num_heads=4, num_kv_heads=2)
    return init_model(hf_config(cfg, vocab_size=V), seed=0)


def _llama(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, **kw))


def _step(model: torch.nn.Module, ids: torch.Tensor, lean: bool, bf16: bool):
    """Loss, logits and every parameter's gradient of one forward/backward, and the modules swapped."""
    model.zero_grad(set_to_none=True)
    with lean_activations(model, lean) as swapped, torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        out = model(ids, labels=ids)
        out.loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    return out.loss.detach(), out.logits.detach(), grads, swapped


@pytest.mark.parametrize("make", [_smollm3, _llama], ids=["smollm3", "llama"])
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
def test_outputs_and_gradients_match_the_stock_modules(make, bf16: bool) -> None:
    model = make()
    ids = torch.randint(0, V, (2, 24), generator=torch.Generator().manual_seed(1))
    loss, logits, grads, none = _step(model, ids, lean=False, bf16=bf16)
    loss_l, logits_l, grads_l, swapped = _step(model, ids, lean=True, bf16=bf16)
    assert none == 0 and swapped == 2 * 3 + 1  # per layer 2 norms and the MLP, and the final norm
    # Norms and MLPs run transformers' own ops; SDPA over shared KV heads may round differently.
    torch.testing.assert_close(logits_l, logits, rtol=1e-6, atol=1e-6 if not bf16 else 1e-2)
    torch.testing.assert_close(loss_l, loss, rtol=1e-6, atol=1e-6)
    # RMSNorm's backward is a closed form of the same derivative: equal to fp32 rounding, which under
    # autocast the next bf16 matmul's backward can turn into a bf16 ulp (2^-8 = 4e-3) of the largest entry.
    tol = dict(rtol=0.0, atol=2e-2) if bf16 else dict(rtol=1e-5, atol=1e-6)
    for name, grad in grads.items():
        scale = grad.abs().max().clamp_min(1e-12)
        torch.testing.assert_close(grads_l[name] / scale, grad / scale, **tol, msg=name)


def _saved_bytes(model: torch.nn.Module, ids: torch.Tensor, lean: bool) -> int:
    """Bytes of the distinct tensors autograd holds for backward after one forward, given the (B, 1, T, T)
    mask smoledge's packed batches always pass."""
    mask = torch.ones(ids.shape[0], 1, ids.shape[1], ids.shape[1], dtype=torch.bool).tril()  # (B, 1, T, T)
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if not isinstance(t, torch.nn.Parameter):
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with lean_activations(model, lean), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(ids, attention_mask=mask, labels=ids).loss
    return sum(seen.values())


def test_fewer_activations_are_saved_for_backward() -> None:
    model = _smollm3()
    ids = torch.randint(0, V, (2, 32), generator=torch.Generator().manual_seed(2))
    stock, lean = _saved_bytes(model, ids, False), _saved_bytes(model, ids, True)
    # Per layer one (B, T, C) normalised input per norm, and silu(gate) and the product (B, T, I) less, and the
    # final norm's; fp32. 4 query heads on 2 KV heads add 2 x 2 copied heads of 16.
    tokens, c, i, layers = ids.numel(), 64, 160, 2
    assert stock - lean >= tokens * (layers * (2 * c + 2 * i + 2 * 2 * 16) + c) * 4


def test_sdpa_shares_the_kv_heads_instead_of_copying_them() -> None:
    # 8 query heads on 2 KV heads: under a mask stock attention saves keys and values copied to all 8
    # heads, the lean one the 2 KV heads.
    cfg = ModelConfig(preset="custom", num_layers=1, hidden_size=64, intermediate_size=160, num_heads=8, num_kv_heads=2)
    model = init_model(hf_config(cfg, vocab_size=V), seed=0)
    ids = torch.randint(0, V, (2, 32), generator=torch.Generator().manual_seed(4))
    with lean_activations(model):
        assert model.config._attn_implementation == GQA_SDPA
    assert model.config._attn_implementation == "sdpa"
    stock, lean = _saved_bytes(model, ids, False), _saved_bytes(model, ids, True)
    tokens, c, i, head_dim = ids.numel(), 64, 160, 8
    assert stock - lean >= tokens * (2 * c + 2 * i + c + 2 * (8 - 2) * head_dim) * 4


def test_a_hooked_down_proj_still_sees_its_input() -> None:
    # The health monitor reads each MLP's down_proj input through a forward pre-hook.
    model = _smollm3()
    ids = torch.randint(0, V, (2, 24), generator=torch.Generator().manual_seed(5))
    seen = []
    handle = model.model.layers[0].mlp.down_proj.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with lean_activations(model):
        loss = model(ids, labels=ids).loss
    handle.remove()
    assert len(seen) == 1 and seen[0].shape == (2, 24, 160)
    loss.backward()
    assert model.model.layers[0].mlp.down_proj.weight.grad is not None


def test_eager_attention_stays_eager() -> None:
    model = _smollm3()
    model.set_attn_implementation("eager")  # what feature distillation sets to get the attention maps
    with lean_activations(model):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == "eager"


def test_disabled_it_touches_nothing() -> None:
    model = _smollm3()
    with lean_activations(model, enabled=False) as swapped:
        assert swapped == 0 and model.config._attn_implementation == "sdpa"
        model.set_attn_implementation("eager")  # someone else's change inside the block stays theirs
    assert model.config._attn_implementation == "eager"


def test_the_stock_classes_come_back_even_after_an_error() -> None:
    model = _smollm3()
    stock = [type(m) for m in model.modules()]
    with pytest.raises(RuntimeError, match="boom"):
        with lean_activations(model):
            assert [type(m) for m in model.modules()] != stock
            raise RuntimeError("boom")
    assert [type(m) for m in model.modules()] == stock
    assert model.config._attn_implementation == "sdpa"


def test_an_mlp_it_cannot_serve_stays_stock() -> None:
    gelu = _llama(hidden_act="gelu")
    biased = _llama(mlp_bias=True)
    for model in (gelu, biased):
        with lean_activations(model) as swapped:
            assert swapped == 2 * 2 + 1  # only the norms
            assert all(type(layer.mlp).__name__ == "LlamaMLP" for layer in model.model.layers)


def test_the_training_loop_gives_the_same_losses_with_and_without(tmp_path) -> None:
    from smoledge.progress import Progress
    from smoledge.train.config import PretrainConfig
    from smoledge.train.data import Batch, pack
    from smoledge.train.loop import train
    from smoledge.train.metrics import METRICS, read_metrics

    class Source:
        def batch(self, k: int) -> Batch:
            rng = np.random.default_rng(k)
            return pack([rng.integers(0, V, n) for n in (9, 14, 20)], batch_size=2, seq_len=16)

    valid = [Source().batch(99)]
    losses = {}
    for lean in (False, True):
        cfg = PretrainConfig(max_steps=3, batch_size=2, seq_len=16, lr=1e-3, warmup_steps=1, checkpoint_every=10,
                             eval_every=10, eval_batches=1, threads=1, tensorboard=False, device="cpu",
                             lean_activations=lean)
        stage = tmp_path / f"lean-{lean}"
        outcome = train(_smollm3(), cfg, Source(), valid, stage, Progress("t", log_every_s=1e9), {"t": lean})
        assert type(outcome.model.model.norm).__name__ == "SmolLM3RMSNorm"
        losses[lean] = [r["loss"] for r in read_metrics(stage / METRICS) if "loss" in r]
    assert len(losses[True]) == 3
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)
