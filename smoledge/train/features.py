"""Feature distillation: match the student's hidden states and attention maps to the teacher's.

    from smoledge.train.features import FeatureDistill, use_eager_attention
    feats = FeatureDistill(student.config, teacher.config, hidden_weight=1.0, attention_weight=1.0)
    flags = feats.output_flags()              # {"output_hidden_states": ..., "output_attentions": ...}
    if flags["output_attentions"]:
        use_eager_attention(student); use_eager_attention(teacher)
    s_out = student.model(**batch.model_inputs(), use_cache=False, **flags)
    with torch.no_grad():
        t_out = teacher.model(**batch.model_inputs(), use_cache=False, **flags)
    loss, parts = feats(s_out, t_out, keep=batch.labels != IGNORE_INDEX, denom=denom)

This module is training scaffolding like the MTP heads: it lives inside TrainModule so its
projections are optimised and checkpointed with the student, and export never sees it.

Layers are paired evenly, the last student layer with the last teacher layer (`map_layers`);
layer i means "the output of block i" (0-based). Two losses, each per labelled position:

- hidden states (TinyBERT, Minitron): a learned W_i (C_s -> C_t, no bias) per pair,
      loss = mean_c (W_i n(h_s) - n(h_t))^2,   n(x) = x / RMS(x) over channels, per position,
  averaged over the pairs. Why normalise both sides per position: in a pre-norm transformer
  every reader of the residual stream (each block's input RMSNorm, the final norm before the
  LM head) sees only n(h) times a learned gain, so the direction is what carries information,
  while the raw scale grows with depth and width and differs between models. With unit-RMS
  targets the loss of W = 0 is exactly 1 at every layer and for every model size, so
  hidden_weight means "weight on the unexplained fraction of the target" everywhere.
  Per position (not one scale per layer over the batch) keeps every position's term local,
  so sums over ranks stay exact under data parallelism (see smoledge.train.losses) and a few
  massive-activation positions cannot set the scale of all the others. The projection
  stays scale-sensitive (W must produce unit-RMS outputs), so weight decay cannot drift it.
- attention maps (MiniLM, TinyBERT): head counts differ between student and teacher, so the
  attention probabilities are averaged over heads to one (B, T, T) map per layer, and
      loss = KL(teacher row || student row)  per query position,
  averaged over the pairs. Keys the document mask blocks have probability exactly 0 in both
  maps (exp of finfo.min underflows); their terms are 0 * (finite) = 0, never 0 * log 0.

Both are sums over kept positions / denom (data-parallel exact, like every smoledge loss).
The teacher's tensors are detached here, so no gradient can reach the teacher even if its
forward ran with autograd on.

What transformers 4.57 returns (SmolLM3Model under @check_model_inputs): `hidden_states`
has L + 1 entries, [0] = the token embeddings (input of block 0), [i] = the output of block
i - 1, and [L] = `last_hidden_state`, i.e. after the final RMSNorm (it replaces the raw last
block output). So the last pair compares the two final-normed states the LM heads read;
n(.) then removes each model's overall scale, and W absorbs the per-channel norm gain.
`attentions` has L entries of (B, H, T, T) softmax probabilities, and only the eager
implementation fills them (sdpa never materialises them): `use_eager_attention`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Stock implementations it is safe to replace; anything else (e.g. QK-clip's recorder) was
# installed on purpose and would silently stop working if switched to eager behind its back.
_STOCK_ATTENTION = {"eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention"}
# Added to the mean square in n(x): only guards an all-zero vector. Kept far below any real
# hidden state's mean square (embeddings start near init_std^2 = 4e-4) so that n(c * x) == n(x).
_RMS_EPS = 1e-12
# log() floor for attention probabilities: an allowed key whose student probability
# underflowed costs p_t * 87 instead of inf, and clamp passes no gradient to exact zeros.
_TINY = torch.finfo(torch.float32).tiny
# Fixed seed of the non-square projections' init: identical on every rank and every run.
_PROJ_SEED = 0x5EED_F0A7


def map_layers(n_student: int, n_teacher: int) -> list[tuple[int, int]]:
    """(student layer, teacher layer) pairs, evenly spaced over depth, last with last.

    min(n_student, n_teacher) pairs: pair k (1..n) takes layer round(k * L / n) - 1 of each
    model, e.g. 2 vs 4 layers -> [(0, 1), (1, 3)], equal depths -> layer i with layer i."""
    if n_student < 1 or n_teacher < 1:
        raise ValueError(f"both models need at least one layer, got {n_student} and {n_teacher}")
    n = min(n_student, n_teacher)
    # (2kL + n) // 2n == round-half-up(kL / n), in integers.
    return [((2 * k * n_student + n) // (2 * n) - 1, (2 * k * n_teacher + n) // (2 * n) - 1)
            for k in range(1, n + 1)]


def use_eager_attention(model: nn.Module) -> None:
    """Switch a transformers model (and its submodels) to eager attention, in place.

    Eager computes the same function as sdpa (up to float rounding) but materialises the
    (B, H, T, T) probabilities that output_attentions returns; it accepts the 4-D additive
    document mask of smoledge.train.data.pack unchanged. Cost: O(B H T^2) memory per layer."""
    current = model.config._attn_implementation
    if current not in _STOCK_ATTENTION:
        raise ValueError(
            f"the model uses the custom attention implementation {current!r} (QK-clip installs one); "
            "attention-map distillation needs eager attention: disable one of the two "
            "(train.qk_clip or distill.attention_weight)")
    model.set_attn_implementation("eager")
    if model.config._attn_implementation != "eager":
        raise ValueError(f"{type(model).__name__} did not switch to eager attention "
                         f"(still {model.config._attn_implementation!r})")


def _rms_normalise(x: torch.Tensor) -> torch.Tensor:
    """x / RMS(x) over the last dim, in float32 (no gain)."""
    return F.rms_norm(x.float(), (x.shape[-1],), eps=_RMS_EPS)


class FeatureDistill(nn.Module):
    def __init__(self, student_config, teacher_config, hidden_weight: float, attention_weight: float):
        super().__init__()
        if hidden_weight < 0 or attention_weight < 0:
            raise ValueError(f"feature weights must be >= 0, got hidden {hidden_weight}, "
                             f"attention {attention_weight}")
        if hidden_weight == 0 and attention_weight == 0:
            raise ValueError("FeatureDistill needs hidden_weight > 0 or attention_weight > 0")
        self.hidden_weight = float(hidden_weight)
        self.attention_weight = float(attention_weight)
        self.n_student = student_config.num_hidden_layers
        self.n_teacher = teacher_config.num_hidden_layers
        self.layer_map = map_layers(self.n_student, self.n_teacher)
        c_s, c_t = student_config.hidden_size, teacher_config.hidden_size
        # No parameters at all when hidden matching is off: nothing idle in the optimizer.
        self.proj = nn.ModuleList()
        if self.hidden_weight > 0:
            gen = torch.Generator().manual_seed(_PROJ_SEED)
            for _ in self.layer_map:
                lin = nn.Linear(c_s, c_t, bias=False)
                self._init_projection(lin.weight, gen)
                self.proj.append(lin)

    @staticmethod
    @torch.no_grad()
    def _init_projection(weight: torch.Tensor, gen: torch.Generator) -> None:
        """Identity when the widths match, else a scaled (semi-)orthogonal map.

        Identity: a student identical to the teacher (or one cut from it with the same width)
        starts at zero loss instead of first having to learn W = I through the noise of a
        random projection. Otherwise there is no channel correspondence to assume (a pruned
        student keeps an arbitrary subset of channels), so W starts as an isometry of a
        unit-RMS input, scaled so that its output is unit-RMS too: orthonormal columns
        (C_t > C_s) keep ||x|| = sqrt(C_s), hence the gain sqrt(C_t / C_s); orthonormal rows
        (C_t < C_s) keep sqrt(C_t) of it on average, already unit RMS."""
        c_t, c_s = weight.shape
        if c_t == c_s:
            nn.init.eye_(weight)
        else:
            nn.init.orthogonal_(weight, gain=max(1.0, c_t / c_s) ** 0.5, generator=gen)

    def output_flags(self) -> dict[str, bool]:
        """What both models' forward must be asked for (pass as keyword arguments)."""
        return {"output_hidden_states": self.hidden_weight > 0, "output_attentions": self.attention_weight > 0}

    def forward(self, student_out, teacher_out, keep: torch.Tensor, denom: float | torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(weighted feature loss summed over kept positions / denom, detached parts).

        student_out / teacher_out: BaseModelOutputWithPast of `model.model(...)` run with
        output_flags(). keep (B, T) bool: positions with a label. Parts: "hidden" and/or
        "attention", each the unweighted loss (only the enabled ones)."""
        weight = keep.to(torch.float32)                                        # (B, T)
        loss = weight.new_zeros(())
        parts: dict[str, torch.Tensor] = {}
        if self.hidden_weight > 0:
            per_pos = self.hidden_per_position(
                self._get(student_out, "hidden_states", self.n_student + 1, "student"),
                self._get(teacher_out, "hidden_states", self.n_teacher + 1, "teacher"))  # (B, T)
            hidden = (per_pos * weight).sum() / denom
            loss = loss + self.hidden_weight * hidden
            parts["hidden"] = hidden.detach()
        if self.attention_weight > 0:
            per_pos = self.attention_per_position(
                self._get(student_out, "attentions", self.n_student, "student"),
                self._get(teacher_out, "attentions", self.n_teacher, "teacher"))       # (B, T)
            attention = (per_pos * weight).sum() / denom
            loss = loss + self.attention_weight * attention
            parts["attention"] = attention.detach()
        return loss, parts

    def hidden_per_position(self, student: tuple[torch.Tensor, ...], teacher: tuple[torch.Tensor, ...]
                            ) -> torch.Tensor:
        """(B, T): mean over layer pairs of mean_c (W n(h_s) - n(h_t))^2."""
        total = None
        for (s, t), proj in zip(self.layer_map, self.proj):
            # Entry i + 1 is the output of block i (entry 0 holds the embeddings).
            pred = proj(_rms_normalise(student[s + 1]))                        # (B, T, C_t)
            target = _rms_normalise(teacher[t + 1].detach())                   # (B, T, C_t)
            err = (pred.float() - target).square().mean(dim=-1)                # (B, T)
            total = err if total is None else total + err
        # Mean over pairs: the weight means the same whatever the depths.
        return total / len(self.layer_map)

    def attention_per_position(self, student: tuple[torch.Tensor, ...], teacher: tuple[torch.Tensor, ...]
                               ) -> torch.Tensor:
        """(B, T): mean over layer pairs of KL(head-mean teacher row || head-mean student row)."""
        total = None
        for s, t in self.layer_map:
            # dtype= accumulates in float32 without a full-size float copy of a bf16 map.
            p_s = student[s].mean(dim=1, dtype=torch.float32)                  # (B, T, T)
            p_t = teacher[t].detach().mean(dim=1, dtype=torch.float32)         # (B, T, T)
            # Both logs through the same clamp: identical maps give exactly 0, and a blocked
            # key (p = 0 in both) contributes 0 * (finite) = 0 with a zero gradient.
            log_ratio = p_t.clamp_min(_TINY).log() - p_s.clamp_min(_TINY).log()  # (B, T, T)
            kl = (p_t * log_ratio).sum(dim=-1)                                  # (B, T)
            total = kl if total is None else total + kl
        return total / len(self.layer_map)

    @staticmethod
    def _get(out, name: str, expected: int, who: str) -> tuple[torch.Tensor, ...]:
        found = getattr(out, name, None)
        if found is None:
            raise ValueError(f"the {who} output has no {name}: run its model.model(...) with "
                             f"**FeatureDistill.output_flags()" +
                             (" and eager attention (use_eager_attention)" if name == "attentions" else ""))
        if len(found) != expected:
            raise ValueError(f"the {who} output has {len(found)} {name}, expected {expected} "
                             f"(was FeatureDistill built from this model's config?)")
        return found
