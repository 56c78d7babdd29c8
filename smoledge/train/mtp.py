"""Multi-token prediction (MTP): auxiliary heads that predict tokens further ahead.

    from smoledge.train.mtp import MTPHeads, mtp_labels
    heads = MTPHeads(model.config, k=cfg.mtp_heads, kind=cfg.mtp_kind)
    out = model.model(**batch.model_inputs(), use_cache=False)
    hidden = out.last_hidden_state                                  # (B, T, C), final-normed
    pos_emb = model.model.rotary_emb(hidden, batch.position_ids)    # (cos, sin)
    logits = heads(hidden, batch.input_ids, batch.attention_mask, pos_emb,
                   model.model.embed_tokens, model.lm_head)         # k x (B, T, V)
    for d, z in enumerate(logits, start=1):
        mtp_loss += causal_lm_loss(z, mtp_labels(batch.labels, d)) / k

Depth d (1..k) at input position t predicts the token d+1 positions ahead
(depth 0 is the model's own next-token head). Two kinds:

- `parallel` (Gloeckle et al. 2024, "Better & Faster Large Language Models via
  Multi-token Prediction"): k independent heads on the shared trunk. Head d is one
  transformer block plus its own RMSNorm reading the trunk's final hidden state;
  its logits go through the model's (tied) lm_head. Forcing the trunk to serve
  several futures at once is what improves it.
- `sequential` (DeepSeek-V3 MTP modules): depth d refines depth d-1 with the
  embedding of the token it has just been told:
      h'_d = W_d [RMSNorm(h_{d-1}); RMSNorm(Emb(x_{t+d}))]     W_d: 2C -> C
      h_d  = Block_d(h'_d),   logits_d = lm_head(RMSNorm_d(h_d)),   h_0 = trunk hidden
  so the causal chain of predictions is kept at every depth.

Every block runs with the trunk's own 4-D document mask and RoPE (cos, sin), so a
head never looks across documents either. The heads are a separate nn.Module, not
part of the HF model: the training loop keeps them next to it (and checkpoints
them), while export saves only the HF model, which stays a plain SmolLM3 that
llama.cpp and transformers load as is. They exist only to shape the trunk's
representation through the auxiliary loss; nothing at inference uses them.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from transformers import SmolLM3Config
from transformers.models.smollm3.modeling_smollm3 import SmolLM3DecoderLayer, SmolLM3RMSNorm

from smoledge.train.data import IGNORE_INDEX

MTPKind = Literal["parallel", "sequential"]


def mtp_labels(labels: torch.Tensor, depth: int) -> torch.Tensor:
    """Labels for MTP depth `depth`: the token depth+1 positions after each input position.

    labels (B, T) are the next-token labels of a packed batch: labels[t] is IGNORE_INDEX
    where token t+1 lies in another document or outside the row. The depth-d label at t is
    labels[t+d] when labels[t], ..., labels[t+d] are all valid (the whole chain stays in one
    document and row), else IGNORE_INDEX; positions with t+d >= T are IGNORE_INDEX."""
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    if depth == 0:
        return labels
    B, T = labels.shape
    out = torch.full_like(labels, IGNORE_INDEX)                            # (B, T)
    if depth >= T:
        return out
    invalid = (labels == IGNORE_INDEX).to(torch.int32)                     # (B, T)
    # seen[:, t] = invalid labels among positions < t, so a window [t, t+d] is clean iff
    # seen[:, t+d+1] == seen[:, t]: one cumsum instead of a loop over depths or positions.
    seen = torch.nn.functional.pad(invalid.cumsum(dim=1), (1, 0))          # (B, T+1)
    clean = seen[:, depth + 1:] == seen[:, :T - depth]                     # (B, T-d)
    out[:, :T - depth] = torch.where(clean, labels[:, depth:], IGNORE_INDEX)
    return out


def _head_layer_index(config: SmolLM3Config) -> int:
    """A layer index whose attention uses RoPE (no_rope_layers[i] == 1), so the heads see the
    same relative positions as most of the trunk. A trunk with no RoPE layer at all gets NoPE
    heads too (index 0), matching it."""
    for i, uses_rope in enumerate(config.no_rope_layers):
        if uses_rope:
            return i
    return 0


class MTPHeads(nn.Module):
    def __init__(self, config: SmolLM3Config, k: int, kind: MTPKind):
        super().__init__()
        if k <= 0:
            raise ValueError(f"MTPHeads needs k >= 1 depths, got {k}")
        if kind not in ("parallel", "sequential"):
            raise ValueError(f"mtp kind must be 'parallel' or 'sequential', got {kind!r}")
        if config._attn_implementation is None:
            # A bare SmolLM3Config has no attention implementation until a model is built from it.
            raise ValueError("MTPHeads needs the config of an instantiated model: pass model.config")
        self.k = k
        self.kind = kind
        self.init_std = config.initializer_range
        C, eps = config.hidden_size, config.rms_norm_eps
        # The blocks share the trunk's config object, so they follow its attention
        # implementation (sdpa, or QK-clip's recording wrapper, which passes them through).
        layer_idx = _head_layer_index(config)
        self.blocks = nn.ModuleList(SmolLM3DecoderLayer(config, layer_idx) for _ in range(k))
        self.out_norms = nn.ModuleList(SmolLM3RMSNorm(C, eps=eps) for _ in range(k))
        if kind == "sequential":
            self.hidden_norms = nn.ModuleList(SmolLM3RMSNorm(C, eps=eps) for _ in range(k))
            self.embed_norms = nn.ModuleList(SmolLM3RMSNorm(C, eps=eps) for _ in range(k))
            self.projs = nn.ModuleList(nn.Linear(2 * C, C, bias=False) for _ in range(k))
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        # Same scheme as SmolLM3PreTrainedModel: N(0, initializer_range) matrices, unit norms.
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=self.init_std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, SmolLM3RMSNorm):
            nn.init.ones_(module.weight)

    def forward(self, hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_embeddings: tuple[torch.Tensor, torch.Tensor], embed_tokens: nn.Embedding,
                lm_head: nn.Linear) -> list[torch.Tensor]:
        """Logits (B, T, V) for depths 1..k: lm_head over `hidden_states(...)` (same arguments)."""
        return [lm_head(h) for h in self.hidden_states(hidden, input_ids, attention_mask, position_embeddings,
                                                       embed_tokens)]                # k x (B, T, V)

    def hidden_states(self, hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      position_embeddings: tuple[torch.Tensor, torch.Tensor], embed_tokens: nn.Embedding
                      ) -> list[torch.Tensor]:
        """The normed hidden state (B, T, C) each depth 1..k feeds the LM head: the training loop takes their
        losses chunk by chunk (smoledge.train.fused_head) instead of making k whole logits tensors.

        hidden: the trunk's final (normed) hidden state (B, T, C); input_ids (B, T);
        attention_mask: the trunk's 4-D mask (B, 1, T, T); position_embeddings: the trunk's
        (cos, sin); embed_tokens: the model's shared (tied) embedding."""
        block_kwargs = {"attention_mask": attention_mask, "position_embeddings": position_embeddings,
                        "use_cache": False}
        out = []
        h = hidden                                                              # (B, T, C)
        for d in range(1, self.k + 1):
            i = d - 1
            if self.kind == "parallel":
                h = self.blocks[i](hidden, **block_kwargs)                      # (B, T, C)
            else:
                # x_{t+d}: ids shifted left by d. Past the row end the label is ignored, so any id
                # will do; a constant (not a wrap-around) keeps those rows free of other documents.
                ahead = torch.nn.functional.pad(input_ids[:, d:], (0, d), value=0)  # (B, T)
                e = embed_tokens(ahead)                                         # (B, T, C)
                mixed = torch.cat([self.hidden_norms[i](h), self.embed_norms[i](e)], dim=-1)  # (B, T, 2C)
                h = self.blocks[i](self.projs[i](mixed), **block_kwargs)        # (B, T, C)
            out.append(self.out_norms[i](h))                                    # (B, T, C)
        return out
