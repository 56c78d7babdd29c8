"""QK-clip (MuonClip, Kimi K2): cap each attention head's largest logit by rescaling W_q / W_k.

    from smoledge.train.qkclip import QKClip
    with QKClip(model, tau=cfg.qk_clip) as clip:       # model: the bare SmolLM3ForCausalLM
        for step ...:
            loss.backward(); optimizer.step()
            stats = clip.apply(reduce=all_reduce_max)   # {"max_attn_logit", "clipped_heads"}
    model.save_pretrained(out)                          # after close(): the stock sdpa model

Why: with Muon (and at scale with AdamW too) q.k logits can grow without bound; once a
head's softmax saturates its gradients vanish and the loss spikes. Kimi K2 fixes it at the
source: after each optimizer step, for every head h whose largest pre-softmax logit S_h over
the last step's batch (allowed positions only, after RoPE, times the 1/sqrt(d) scaling)
exceeded tau, the projections are shrunk so that logit scale returns to tau:
gamma_h = tau / S_h.

GQA: several query heads share one key head, so the key side cannot take a per-query-head
factor. For kv group g with query heads h in g:
    eta_g = sqrt(min_{h in g} min(1, gamma_h))
    k_proj rows of key head g   *= eta_g
    q_proj rows of query head h *= min(1, gamma_h) / eta_g
Every logit q_h.k_g of head h is then scaled by exactly eta_g * min(1, gamma_h) / eta_g =
min(1, gamma_h): clipped heads land on tau, their unclipped group mates keep their logits,
and the shrink is split evenly between q and k where possible (the geometric split of the
paper). RoPE rotates each head's (q, k) by the same position-dependent orthogonal map, which
commutes with scaling a head's rows, so scaling the weights scales the post-RoPE logits.
This model has no q/k biases, so the weights are all there is to scale.

How S_h is measured: transformers dispatches attention through a registry
(AttentionInterface); QKClip registers "smoledge_qkclip", a function that computes the
per-head max logit under no_grad (mask applied, GQA key heads repeated) and then calls the
sdpa implementation it replaced for the output (transformers' own, or lean_ops' GQA_SDPA), so
training is numerically unchanged. Only
modules in training mode record: evaluation passes do not count. close() switches the model
back to its original implementation (do it before export/saving; transformers 4.57 does not
write the implementation into config.json, but the in-memory model should not depend on a
registry entry that only this module provides).
"""

from __future__ import annotations

import weakref
from typing import Callable

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from smoledge.train.lean_ops import GQA_SDPA, gqa_sdpa

IMPLEMENTATION = "smoledge_qkclip"
# Each recorded attention module's layer index as a (1,) tensor buffer (non-persistent: never saved).
# torch.compile traces one graph for all decoder layers and takes buffers as its inputs; the int
# module.layer_idx would instead be a constant of the graph, one recompile per layer until dynamo's
# recompile limit sends the remaining layers back to eager.
LAYER_BUFFER = "_qkclip_layer"
# Score elements per chunk of query rows (fp32): bounds the extra memory of measuring.
_CHUNK_ELEMENTS = 1 << 24

# attention module -> the QKClip recording it. Weak keys: a dropped model leaves no trace.
_RECORDERS: "weakref.WeakKeyDictionary[nn.Module, QKClip]" = weakref.WeakKeyDictionary()


@torch.no_grad()
def head_max_logits(query: torch.Tensor, key: torch.Tensor, attention_mask: torch.Tensor | None,
                    scaling: float) -> torch.Tensor:
    """Largest allowed pre-softmax logit per query head, over batch and positions: (H,).

    query (B, H, Tq, D), key (B, H_kv, Tk, D) after RoPE. attention_mask: additive float
    (0 allowed, very negative blocked), boolean (True allowed), or None for causal (the
    queries being the last Tq of the Tk positions)."""
    B, H, Tq, D = query.shape
    Tk = key.shape[-2]
    k = repeat_kv(key, H // key.shape[1]).float().transpose(-1, -2)       # (B, H, D, Tk)
    q = query.float() * scaling                                           # (B, H, Tq, D)
    rows = max(1, _CHUNK_ELEMENTS // (B * H * Tk))
    best = torch.full((H,), float("-inf"), device=query.device)           # (H,)
    for s in range(0, Tq, rows):
        e = min(Tq, s + rows)
        scores = q[:, :, s:e] @ k                                         # (B, H, r, Tk)
        if attention_mask is None:
            i = torch.arange(s, e, device=query.device)[:, None] + (Tk - Tq)  # (r, 1)
            j = torch.arange(Tk, device=query.device)[None, :]                # (1, Tk)
            scores = scores.masked_fill(j > i, float("-inf"))
        elif attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask[:, :, s:e, :Tk], float("-inf"))
        else:
            scores = scores + attention_mask[:, :, s:e, :Tk].float()
        best = torch.maximum(best, scores.amax(dim=(0, 2, 3)))
    return best


def _recording_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         attention_mask: torch.Tensor | None, scaling: float | None = None, **kwargs):
    """The sdpa attention the recorder replaced, also recording the per-head max logit for QK-clip."""
    recorder = _RECORDERS.get(module)
    if recorder is not None and recorder.recording and module.training:
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        recorder._record(getattr(module, LAYER_BUFFER), head_max_logits(query, key, attention_mask, scale))
    attend = gqa_sdpa if recorder is not None and recorder._original == GQA_SDPA else sdpa_attention_forward
    return attend(module, query, key, value, attention_mask, scaling=scaling, **kwargs)


# Mask creation must match sdpa's exactly (same 4-D pass-through, packed-sequence detection
# and causal skip), so the recording implementation gets sdpa's mask function too.
AttentionInterface.register(IMPLEMENTATION, _recording_attention)
AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)


def _scale_rows(weight: torch.Tensor, scale: torch.Tensor) -> None:
    """weight (out, in) *= scale (out,)[:, None], in place; FSDP2-sharded (DTensor) weights too."""
    col = scale.to(dtype=weight.dtype)[:, None]                           # (out, 1)
    if torch.distributed.is_available():
        from torch.distributed.tensor import DTensor, distribute_tensor

        if isinstance(weight, DTensor):
            # Every rank holds the same (reduced) scale; shard it the way the weight is sharded.
            col = distribute_tensor(col.to(weight.to_local().device), weight.device_mesh, weight.placements)
    weight.mul_(col)


class QKClip:
    def __init__(self, model: nn.Module, tau: float):
        if tau <= 0:
            raise ValueError(f"QK-clip tau must be > 0, got {tau}")
        self.model = model
        self.tau = float(tau)
        # A measure-only recorder (tau = inf, smoledge.train.health) is switched on only for the health
        # probe's measuring forward: recording costs a second QK^T per layer.
        self.recording = True
        self.attns = [layer.self_attn for layer in model.model.layers]
        cfg = model.config
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = cfg.num_key_value_heads
        self.head_dim = self.attns[0].head_dim
        device = self.attns[0].q_proj.weight.device
        self._max = torch.full((len(self.attns), self.num_heads), float("-inf"), device=device)  # (L, H)
        self._original = cfg._attn_implementation
        for attn in self.attns:
            if attn in _RECORDERS:
                raise ValueError("this model already has a QKClip attached; close() it first")
            _RECORDERS[attn] = self
            attn.register_buffer(LAYER_BUFFER, torch.tensor([attn.layer_idx], device=device), persistent=False)
        model.set_attn_implementation(IMPLEMENTATION)

    def _record(self, layer: torch.Tensor, head_max: torch.Tensor) -> None:
        """Row `layer` ((1,) index tensor) of the record = max(itself, head_max (H,))."""
        if self._max.device != head_max.device:  # the model moved after QKClip was built
            self._max = self._max.to(head_max.device)
        row = self._max.index_select(0, layer)                            # (1, H)
        self._max.index_copy_(0, layer, torch.maximum(row, head_max[None]))

    def max_logits(self) -> torch.Tensor:
        """(L, H) largest attention logit per layer and head since the last apply (-inf if none)."""
        return self._max.clone()

    @torch.no_grad()
    def apply(self, reduce: Callable[[torch.Tensor], None] | None = None) -> dict[str, float | int]:
        """Shrink q/k projections of every head whose recorded max logit exceeded tau, reset the
        record, and return {"max_attn_logit", "clipped_heads"}.

        `reduce(max_logits)` runs first and must update the (L, H) tensor in place, e.g. an
        all_reduce(MAX) under DDP/FSDP, so that every replica applies identical factors."""
        s = self._max                                                     # (L, H)
        if reduce is not None:
            reduce(s)
        over = s > self.tau                                               # (L, H)
        factor = torch.where(over, self.tau / s, torch.ones_like(s))      # (L, H): min(1, gamma_h)
        G, rep, hd = self.num_kv_heads, self.num_heads // self.num_kv_heads, self.head_dim
        clipped_layers = over.any(dim=1).tolist()                         # one device sync
        for layer, attn in enumerate(self.attns):
            if not clipped_layers[layer]:
                continue  # untouched: weights stay bit-identical
            f = factor[layer].view(G, rep)                                # (G, rep)
            eta = f.amin(dim=1).sqrt()                                    # (G,)
            q_scale = (f / eta[:, None]).reshape(-1)                      # (H,)
            # Rows of q_proj / k_proj are laid out head by head, head_dim rows each.
            _scale_rows(attn.q_proj.weight, q_scale.repeat_interleave(hd))  # (H*hd,)
            _scale_rows(attn.k_proj.weight, eta.repeat_interleave(hd))      # (G*hd,)
        stats = {"max_attn_logit": float(s.max()), "clipped_heads": int(over.sum())}
        self._max.fill_(float("-inf"))
        return stats

    def close(self) -> None:
        """Restore the model's original attention implementation and stop recording."""
        for attn in self.attns:
            if _RECORDERS.get(attn) is self:
                del _RECORDERS[attn]
                delattr(attn, LAYER_BUFFER)
        if self.model.config._attn_implementation == IMPLEMENTATION:
            self.model.set_attn_implementation(self._original)

    def __enter__(self) -> "QKClip":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
