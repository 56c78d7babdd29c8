"""RMSNorm, SwiGLU and GQA attention for training that keep fewer activations for backward, same function.

    from smoledge.train.lean_ops import lean_activations
    with lean_activations(model):          # smoledge's SmolLM3 (or a Llama): norms, MLPs, attention swapped
        loss = ...; loss.backward()         # same values and gradients, less memory held in between
    # on exit every module is its stock transformers class again, and the attention sdpa

Why: on a CPU step with SmolLM2's vocabulary the chunked LM head (smoledge.train.fused_head) already
keeps the logits from existing whole, and what is left at the peak, the end of forward, is mostly the
activations autograd saves for backward. transformers' modules save more than backward needs:
  RMSNorm  `weight * (x.float() * rsqrt(mean(x^2) + eps)).to(dtype)` saves the normalised x (one
           (B, T, C) tensor) for the weight's gradient, beside x itself. Here only x and the (B, T, 1)
           inverse RMS are saved; backward recomputes the normalised x from them.
  SwiGLU   `down(silu(gate(x)) * up(x))` saves gate (for silu), silu(gate) and up (for the product),
           and the product (for down). Here only gate and up are saved: backward remakes silu(gate) and
           the product from them (two elementwise passes) for the gradients and down's weight gradient.
  GQA      transformers' sdpa attention copies each KV head to its query heads (repeat_kv) whenever a mask
           is given, which smoledge's packed batches always give, and autograd keeps the copies. Here
           SDPA gets the KV heads as they are (enable_gqa) and keeps those: 2 x (H - KV) x head_dim floats
           a token less, and no copy or sum over the copies.
Per decoder layer that is 2 x C + 2 x I + 2 x (H - KV) x head_dim floats a token less, for one extra
elementwise pass per norm and MLP in backward (Liger-Kernel's RMSNorm and SwiGLU kernels make the same
trade on GPUs, in Triton; here it is eager PyTorch, which is what a CPU step runs). On the recipe's student
(20 x 384, MLP 1024, 8 x 256 tokens, fp32) the tensors held for backward go from 1408 to 855 MiB and the
peak RSS from 2998 to 2507 MiB (BENCHMARKS.md, "A real student from a real teacher").

Equality: the norms' and MLPs' forward is transformers' own sequence of ops (bit-identical); SwiGLU's
backward calls the same aten kernels autograd would (silu_backward, mul, the matmuls under the same
autocast); RMSNorm's backward is the closed form of the same derivative, and SDPA over shared KV heads the
same attention: all equal within float rounding. tests/test_lean_ops.py checks outputs and gradients
against the stock modules in fp32 and under bf16 autocast.

What it does not do: RoPE (autograd keeps only cos and sin for it already), MLPs with biases or an
activation other than SiLU (left stock), attention other than sdpa (eager, which feature distillation
needs for the maps, stays), and any other model family's modules (left stock).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.models.llama.modeling_llama import LlamaMLP, LlamaRMSNorm
from transformers.models.smollm3.modeling_smollm3 import SmolLM3MLP, SmolLM3RMSNorm


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:  # type: ignore[override]
        xf = x.to(torch.float32)
        rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)                  # (..., 1)
        ctx.save_for_backward(x, weight, rstd)
        return weight * (xf * rstd).to(x.dtype)                                      # (..., C)

    @staticmethod
    def backward(ctx, grad: torch.Tensor  # type: ignore[override]
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x, weight, rstd = ctx.saved_tensors
        n = x.to(torch.float32) * rstd                                               # (..., C)
        grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = (grad * n.to(x.dtype)).reshape(-1, n.shape[-1]).sum(0).to(weight.dtype)  # (C,)
        grad_x = None
        if ctx.needs_input_grad[0]:
            gn = (grad * weight).to(torch.float32)                                   # (..., C)
            # d/dx of x * (mean(x^2) + eps)^-1/2: rstd * (gn - n * mean(gn * n)).
            grad_x = (rstd * (gn - n * (gn * n).mean(-1, keepdim=True))).to(x.dtype)
        return grad_x, grad_w, None


class _SwiGLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(gate, up)
        return F.silu(gate) * up                                                     # (..., I)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        gate, up = ctx.saved_tensors
        grad_up = grad * F.silu(gate)                                                # (..., I)
        grad_gate = torch.ops.aten.silu_backward(grad * up, gate)                    # (..., I)
        return grad_gate, grad_up


def gqa_sdpa(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
              is_causal: bool | None = None, **kwargs: object) -> tuple[torch.Tensor, None]:
    """transformers' sdpa_attention_forward with the KV heads shared by SDPA instead of copied.
    query (B, H, T, D), key and value (B, KV, S, D), mask (B, 1, T, S) or None."""
    if attention_mask is not None and attention_mask.ndim == 4:
        attention_mask = attention_mask[:, :, :, : key.shape[-2]]
    if is_causal is None:
        is_causal = query.shape[2] > 1 and attention_mask is None and getattr(module, "is_causal", True)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=dropout,
                                         scale=scaling, is_causal=is_causal, enable_gqa=True)  # (B, H, T, D)
    return out.transpose(1, 2).contiguous(), None                                            # (B, T, H, D)


# The attention implementation's name in transformers' registries; its masks are sdpa's. (QKClip's recording
# attention wraps either sdpa.)
GQA_SDPA = "smoledge_gqa_sdpa"
AttentionInterface.register(GQA_SDPA, gqa_sdpa)
AttentionMaskInterface.register(GQA_SDPA, sdpa_mask)


class _SwiGLUDown(torch.autograd.Function):
    """down(silu(gate) * up) keeping gate and up only: backward remakes the product for down's weight
    gradient. Its matmuls run under the autocast the forward ran under, as the stock down_proj's do."""

    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor,  # type: ignore[override]
                weight: torch.Tensor) -> torch.Tensor:
        device = gate.device.type
        ctx.autocast = (device, torch.get_autocast_dtype(device), torch.is_autocast_enabled(device))
        ctx.save_for_backward(gate, up, weight)
        return F.linear(F.silu(gate) * up, weight)                                   # (..., C)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # type: ignore[override]
        gate, up, weight = ctx.saved_tensors
        device, dtype, enabled = ctx.autocast
        silu = F.silu(gate)                                                          # (..., I)
        with torch.autocast(device, dtype=dtype, enabled=enabled):
            prod = (silu * up).reshape(-1, up.shape[-1])                             # (N, I)
            grad_w = grad.reshape(-1, grad.shape[-1]).T.mm(prod)                     # (C, I)
            grad_prod = grad.matmul(weight)                                          # (..., I)
        grad_up = grad_prod * silu
        grad_gate = torch.ops.aten.silu_backward(grad_prod * up, gate)
        return grad_gate, grad_up, grad_w.to(weight.dtype)


def _swiglu_mlp(mlp: SmolLM3MLP | LlamaMLP, x: torch.Tensor) -> torch.Tensor:
    gate, up = mlp.gate_proj(x), mlp.up_proj(x)                                      # (..., I) each
    if mlp.down_proj._forward_pre_hooks or mlp.down_proj._forward_hooks:
        # A hooked down_proj (the health monitor reads its input) must be called as a module.
        return mlp.down_proj(_SwiGLU.apply(gate, up))
    return _SwiGLUDown.apply(gate, up, mlp.down_proj.weight)


class _LeanSmolLM3RMSNorm(SmolLM3RMSNorm):
    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return _RMSNorm.apply(hidden_states, self.weight, self.variance_epsilon)


class _LeanLlamaRMSNorm(LlamaRMSNorm):
    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return _RMSNorm.apply(hidden_states, self.weight, self.variance_epsilon)


class _LeanSmolLM3MLP(SmolLM3MLP):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _swiglu_mlp(self, x)


class _LeanLlamaMLP(LlamaMLP):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _swiglu_mlp(self, x)


# Stock class -> its lean subclass: the same parameters and buffers, only forward differs, so a module's
# class can be swapped in place and back (state dicts, hooks and isinstance checks are unaffected).
LEAN_CLASSES: dict[type[nn.Module], type[nn.Module]] = {
    SmolLM3RMSNorm: _LeanSmolLM3RMSNorm,
    LlamaRMSNorm: _LeanLlamaRMSNorm,
    SmolLM3MLP: _LeanSmolLM3MLP,
    LlamaMLP: _LeanLlamaMLP,
}


def _swappable(module: nn.Module) -> bool:
    if isinstance(module, (SmolLM3MLP, LlamaMLP)):
        # The lean forward hard-codes SiLU and bias-free projections.
        return module.config.hidden_act == "silu" and module.gate_proj.bias is None
    return True


@contextlib.contextmanager
def lean_activations(model: PreTrainedModel, enabled: bool = True) -> Iterator[int]:
    """Swap `model`'s stock RMSNorm and MLP modules for their lean subclasses, and its sdpa attention for
    GQA_SDPA; restore them on exit. Yields how many modules were swapped (0 when disabled or when the model
    has none of these classes)."""
    swapped: list[tuple[nn.Module, type[nn.Module]]] = []
    gqa = enabled and model.config._attn_implementation == "sdpa"
    if enabled:
        for module in model.modules():
            lean = LEAN_CLASSES.get(type(module))
            if lean is not None and _swappable(module):
                swapped.append((module, type(module)))
                module.__class__ = lean
        if gqa:
            model.set_attn_implementation(GQA_SDPA)
    try:
        yield len(swapped)
    finally:
        for module, stock in swapped:
            module.__class__ = stock
        # Only what this block changed goes back (QK-clip's recorder, inside it, restores its own swap).
        if gqa and model.config._attn_implementation != "sdpa":
            model.set_attn_implementation("sdpa")
