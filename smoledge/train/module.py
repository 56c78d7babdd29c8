"""What one training step computes: the language model, its objective and the auxiliary losses.

    from smoledge.train.module import TrainModule, NextToken, Distill
    tm = TrainModule(model, NextToken(), mtp=MTPHeads(model.config, 2, "parallel"), mtp_weight=0.3, z_loss=1e-4,
                     loss_chunk=512)
    loss, parts = tm(**batch.model_inputs(), labels=batch.labels, denoms=denoms, **batch.teacher_inputs())

Everything the optimizer updates lives in this one nn.Module (the HF model under
`lm`, the multi-token heads under `mtp`, feature-distillation projections under
`features`), so DDP and FSDP2 wrap a single module
whose forward returns the loss, and a checkpoint is one state. Export saves only
`lm`: the MTP heads are training scaffolding and never reach a device.

`denoms` holds, per prediction depth (0 = next token, d = MTP depth d), the
number that loss sums are divided by: the global labelled count / world size
(see smoledge.train.losses). The objective is a plain callable, not a submodule,
so a distillation teacher is neither trained, checkpointed nor sharded.

No loss here makes the whole (B, T, V) logits: the objective, the z-loss and every MTP depth take their
losses from a fused_head.Head (hidden states + the LM head), `loss_chunk` positions at a time
(`loss_chunk` 0: whole logits, the reference path).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import torch

from smoledge.train.data import IGNORE_INDEX, Batch
from smoledge.train.fused_head import DEFAULT_CHUNK, Head
from smoledge.train.losses import Soft
from smoledge.train.mtp import MTPHeads, mtp_labels

if TYPE_CHECKING:
    from smoledge.train.features import FeatureDistill


class Objective(Protocol):
    """The step's loss from the student's head (its z-loss included), the batch and the denominator."""

    def __call__(self, head: Head, batch: Batch, denom: torch.Tensor, student_out: Any = None,
                 features: "FeatureDistill | None" = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


class NextToken:
    """Plain next-token cross-entropy (pretraining)."""

    def __call__(self, head: Head, batch: Batch, denom: torch.Tensor, student_out: Any = None,
                 features: "FeatureDistill | None" = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return head.loss(batch.labels, denom)


class Distill:
    """Hard-label CE plus a temperature-scaled divergence to the teacher (see losses.distill_loss).

    The teacher's distribution comes from the batch when it carries cached top-k targets, else from
    running `teacher` (online). With `features`, the teacher's hidden states / attention maps are matched
    too (online only)."""

    def __init__(self, teacher: torch.nn.Module | None, alpha: float, temperature: float,
                 kind: str = "forward", top_k: int = 0):
        self.teacher = teacher
        self.alpha = alpha
        self.temperature = temperature
        self.kind = kind
        self.top_k = top_k

    def __call__(self, head: Head, batch: Batch, denom: torch.Tensor, student_out: Any = None,
                 features: "FeatureDistill | None" = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        teacher_out = None
        if batch.teacher_ids is not None:
            target = (batch.teacher_ids, batch.teacher_logp)             # (B, T, k), (B, T, k + 1)
        elif self.teacher is None:
            raise RuntimeError("Distill without a teacher needs batches carrying cached teacher targets")
        else:
            flags = features.output_flags() if features is not None else {}
            with torch.no_grad():
                teacher_out = self.teacher.model(**batch.model_inputs(), use_cache=False, **flags)
                t_head = Head(teacher_out.last_hidden_state, self.teacher.lm_head, head.chunk)
                target = t_head.targets(self.temperature, self.top_k)   # (B, T, k), (B, T, k + 1)
        loss, parts = head.loss(batch.labels, denom, self.alpha, Soft(target, self.temperature, self.kind))
        if features is not None:
            if teacher_out is None:
                raise RuntimeError("feature distillation needs the teacher in the loop (distill.mode: online)")
            keep = batch.labels != IGNORE_INDEX                                 # (B, T)
            feat, feat_parts = features(student_out, teacher_out, keep, denom)
            loss = loss + feat
            parts.update(feat_parts)
        return loss, parts


class TrainModule(torch.nn.Module):
    def __init__(self, lm: torch.nn.Module, objective: Objective, mtp: MTPHeads | None = None,
                 mtp_weight: float = 0.0, z_loss: float = 0.0, features: "FeatureDistill | None" = None,
                 loss_chunk: int = DEFAULT_CHUNK):
        super().__init__()
        self.lm = lm
        self.loss_chunk = loss_chunk
        self.mtp = mtp
        self.features = features
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
                attention_mask: torch.Tensor, denoms: torch.Tensor, eval_only: bool = False,
                teacher_ids: torch.Tensor | None = None, teacher_logp: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, detached parts). With eval_only: (summed next-token CE, {}) and nothing else runs."""
        batch = Batch(input_ids=input_ids, labels=labels, position_ids=position_ids, attention_mask=attention_mask,
                      teacher_ids=teacher_ids, teacher_logp=teacher_logp)
        features = None if eval_only else self.features
        flags = features.output_flags() if features is not None else {}
        out = self.lm.model(**batch.model_inputs(), use_cache=False, **flags)
        hidden = out.last_hidden_state                                                     # (B, T, C)
        if eval_only:
            return Head(hidden, self.lm.lm_head, self.loss_chunk).loss(labels, denom=1.0)[0], {}
        head = Head(hidden, self.lm.lm_head, self.loss_chunk, z_weight=self.z_loss)
        loss, parts = self.objective(head, batch, denoms[0], student_out=out, features=features)
        if self.mtp is not None and self.mtp_weight > 0:
            rope = self.lm.model.rotary_emb(hidden, position_ids)
            extra = self.mtp.hidden_states(hidden, input_ids, attention_mask, rope, self.lm.model.embed_tokens)
            per_depth = [Head(h, self.lm.lm_head, self.loss_chunk).loss(mtp_labels(labels, d), denoms[d])[0]
                         for d, h in enumerate(extra, start=1)]                    # h: (B, T, C)
            mtp = torch.stack(per_depth).mean()
            loss = loss + self.mtp_weight * mtp
            parts["mtp"] = mtp.detach()
        return loss, parts
