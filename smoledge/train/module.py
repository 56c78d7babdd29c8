"""What one training step computes: the language model, its objective and the auxiliary losses.

    from smoledge.train.module import TrainModule, NextToken, Distill
    tm = TrainModule(model, NextToken(), mtp=MTPHeads(model.config, 2, "parallel"), mtp_weight=0.3, z_loss=1e-4)
    loss, parts = tm(**batch.model_inputs(), labels=batch.labels, denoms=denoms)

Everything the optimizer updates lives in this one nn.Module (the HF model under
`lm`, the multi-token heads under `mtp`), so DDP and FSDP2 wrap a single module
whose forward returns the loss, and a checkpoint is one state. Export saves only
`lm`: the MTP heads are training scaffolding and never reach a device.

`denoms` holds, per prediction depth (0 = next token, d = MTP depth d), the
number that loss sums are divided by: the global labelled count / world size
(see smoledge.train.losses). The objective is a plain callable, not a submodule,
so a distillation teacher is neither trained, checkpointed nor sharded.
"""

from __future__ import annotations

from typing import Protocol

import torch

from smoledge.train.data import Batch
from smoledge.train.losses import causal_lm_loss, distill_loss, z_loss
from smoledge.train.mtp import MTPHeads, mtp_labels


class Objective(Protocol):
    def __call__(self, logits: torch.Tensor, batch: Batch, denom: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


class NextToken:
    """Plain next-token cross-entropy (pretraining)."""

    def __call__(self, logits: torch.Tensor, batch: Batch, denom: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ce = causal_lm_loss(logits, batch.labels, denom)
        return ce, {"ce": ce.detach()}


class Distill:
    """Hard-label CE plus temperature-scaled KL to a frozen teacher (see losses.distill_loss)."""

    def __init__(self, teacher: torch.nn.Module, alpha: float, temperature: float):
        self.teacher = teacher
        self.alpha = alpha
        self.temperature = temperature

    def __call__(self, logits: torch.Tensor, batch: Batch, denom: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.no_grad():
            t_logits = self.teacher(**batch.model_inputs(), use_cache=False).logits  # (B, T, V)
        return distill_loss(logits, t_logits, batch.labels, self.alpha, self.temperature, denom)


class TrainModule(torch.nn.Module):
    def __init__(self, lm: torch.nn.Module, objective: Objective, mtp: MTPHeads | None = None,
                 mtp_weight: float = 0.0, z_loss: float = 0.0):
        super().__init__()
        self.lm = lm
        self.mtp = mtp
        self.objective = objective
        self.mtp_weight = mtp_weight
        self.z_loss = z_loss

    @property
    def depths(self) -> int:
        """Prediction depths beyond the next token."""
        return 0 if self.mtp is None else self.mtp.k

    def blocks(self) -> list[torch.nn.Module]:
        """The repeated blocks: the unit of torch.compile and of FSDP2 sharding."""
        return [*self.lm.model.layers, *([] if self.mtp is None else self.mtp.blocks)]

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, position_ids: torch.Tensor,
                attention_mask: torch.Tensor, denoms: torch.Tensor, eval_only: bool = False
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, detached parts). With eval_only: (summed next-token CE, {}) and nothing else runs."""
        batch = Batch(input_ids=input_ids, labels=labels, position_ids=position_ids, attention_mask=attention_mask)
        hidden = self.lm.model(**batch.model_inputs(), use_cache=False).last_hidden_state  # (B, T, C)
        logits = self.lm.lm_head(hidden)                                                    # (B, T, V)
        if eval_only:
            return causal_lm_loss(logits, labels, denom=1.0), {}
        loss, parts = self.objective(logits, batch, denoms[0])
        if self.z_loss > 0:
            zl = z_loss(logits, labels, denoms[0])
            loss = loss + self.z_loss * zl
            parts["z_loss"] = zl.detach()
        if self.mtp is not None and self.mtp_weight > 0:
            rope = self.lm.model.rotary_emb(hidden, position_ids)
            extra = self.mtp(hidden, input_ids, attention_mask, rope, self.lm.model.embed_tokens, self.lm.lm_head)
            per_depth = [causal_lm_loss(lg, mtp_labels(labels, d), denoms[d])    # lg: (B, T, V)
                         for d, lg in enumerate(extra, start=1)]
            mtp = torch.stack(per_depth).mean()
            loss = loss + self.mtp_weight * mtp
            parts["mtp"] = mtp.detach()
        return loss, parts
