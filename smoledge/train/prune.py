"""Student initialisation pruned from the teacher (Minitron: Muralidharan et al. 2024, Sreenivas et al. 2024).

    from smoledge.train.prune import prune_from_teacher
    student, report = prune_from_teacher(teacher, hf_config(recipe.student, vocab_size), calib_batches)

One calibration pass over the teacher records, at the real positions of the batches (label != -100):
  - Block Influence of every layer (ShortGPT): 1 - cos(layer input, layer output);
  - mean |activation| of every hidden channel (RMSNorm outputs), MLP neuron (act(gate) * up), attention
    head (L2 norm of its output) and head dim (|q|, |k|, |attention output|).
Depth: keep the student's num_hidden_layers teacher layers with the largest total Block Influence, in their
order, each one's RoPE/NoPE matching the student slot it fills (`select_layers`, a DP over (layer, slot)).
Width: slice the best hidden channels, KV groups (with their best query heads), head dims and MLP neurons
out of the kept layers. The student is a `student_config` model (tied embeddings) holding those slices.

The teacher is any model smoledge.train.prune_fit accepts (SmolLM3, Llama, Phi-3): the same blocks as the
student, with Phi-3's q/k/v and gate/up read as row ranges of its fused projections (`_Rows`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, SmolLM3Config, SmolLM3ForCausalLM

from smoledge.errors import SmoledgeError
from smoledge.train.data import IGNORE_INDEX, Batch
from smoledge.train.prune_fit import PruneShape, check_fits, select_layers, shape_of


@dataclass(frozen=True)
class _Rows:
    """Output rows [lo, hi) of an nn.Linear: a projection of its own, or its part of a fused one."""

    linear: nn.Linear
    lo: int
    hi: int

    @classmethod
    def whole(cls, linear: nn.Linear) -> "_Rows":
        return cls(linear, 0, linear.out_features)

    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight[self.lo:self.hi]   # (rows, in), a view

    def of(self, out: torch.Tensor) -> torch.Tensor:
        return out[..., self.lo:self.hi]             # (..., rows)


@dataclass(frozen=True)
class _Block:
    """One teacher decoder layer, as the student's modules see it."""

    layer: nn.Module
    input_norm: nn.Module
    post_norm: nn.Module
    q: _Rows
    k: _Rows
    v: _Rows
    o: _Rows
    gate: _Rows
    up: _Rows
    down: _Rows

    @classmethod
    def of(cls, layer: nn.Module, t: PruneShape) -> "_Block":
        attn, mlp = layer.self_attn, layer.mlp
        if t.fused:  # Phi-3: qkv_proj rows are q | k | v, gate_up_proj rows gate | up (Phi3MLP's chunk(2))
            q, kv = t.heads * t.head_dim, t.kv * t.head_dim
            qkv, gate_up = attn.qkv_proj, mlp.gate_up_proj
            q_k_v = (_Rows(qkv, 0, q), _Rows(qkv, q, q + kv), _Rows(qkv, q + kv, q + 2 * kv))
            gate_and_up = (_Rows(gate_up, 0, t.mlp), _Rows(gate_up, t.mlp, 2 * t.mlp))
        else:
            q_k_v = (_Rows.whole(attn.q_proj), _Rows.whole(attn.k_proj), _Rows.whole(attn.v_proj))
            gate_and_up = (_Rows.whole(mlp.gate_proj), _Rows.whole(mlp.up_proj))
        return cls(layer, layer.input_layernorm, layer.post_attention_layernorm, *q_k_v, _Rows.whole(attn.o_proj),
                   *gate_and_up, _Rows.whole(mlp.down_proj))


def _blocks(teacher: nn.Module, t: PruneShape) -> list[_Block]:
    return [_Block.of(layer, t) for layer in teacher.model.layers]


def _host(x: torch.Tensor) -> torch.Tensor:
    """A per-batch float32 sum (made on the teacher's device) as float64 on the CPU, where the totals live
    (float64 keeps long sums exact enough; MPS has no float64, hence the move before the cast)."""
    return x.detach().cpu().double()


class _Calibration:
    """Sums over the real positions of the calibration batches, filled by forward hooks on the teacher."""

    def __init__(self, t: PruneShape, blocks: list[_Block]):
        zeros = lambda *shape: torch.zeros(*shape, dtype=torch.float64)  # noqa: E731
        self.t, self.blocks = t, blocks
        self.positions = 0
        self.block_influence = zeros(t.layers)         # sum of 1 - cos(in, out)
        # Hidden channels are ranked by |RMSNorm output| summed over every norm (Minitron's LayerNorm criterion):
        # each norm's outputs are on one scale, whereas the raw residual stream grows with depth and lets the
        # last layers decide (small -> tiny on prose: 5.90 nats at the start, against 5.94-5.95 for input |x|).
        self.channel = zeros(t.hidden)
        self.norm_sq = zeros(2 * t.layers + 1, t.hidden)  # per norm: sum of input^2 (for the RMS correction)
        self.neuron = zeros(t.layers, t.mlp)           # sum of |act(gate) * up|
        self.head = zeros(t.layers, t.heads)           # sum of ||attention output of head h||_2
        self.q = zeros(t.layers, t.heads, t.head_dim)  # sum of |q| (before RoPE)
        self.k = zeros(t.layers, t.kv, t.head_dim)     # sum of |k| (before RoPE)
        self.o = zeros(t.layers, t.heads, t.head_dim)  # sum of |attention output|
        self.real: torch.Tensor | None = None          # (B, T) bool, the batch being run

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        """The real positions of a (B, T, ...) activation, as float32 (N, ...) on its device."""
        return x[self.real].float()

    def hooks(self, teacher: PreTrainedModel) -> list[Any]:
        t = self.t
        handles = []

        def add(module, fn):
            handles.append(module.register_forward_hook(fn, with_kwargs=True))

        def first(args, kwargs, name):
            return args[0] if args else kwargs[name]

        def norm(idx):
            def fn(mod, args, kwargs, out):
                x = self._rows(first(args, kwargs, "hidden_states"))      # (N, H)
                self.norm_sq[idx] += _host(x.pow(2).sum(0))
                self.channel += _host(self._rows(out).abs().sum(0))
            return fn

        for i, b in enumerate(self.blocks):
            def block(mod, args, kwargs, out, i=i):
                x = self._rows(first(args, kwargs, "hidden_states"))      # (N, H)
                y = self._rows(out[0] if isinstance(out, tuple) else out)  # (N, H)
                self.block_influence[i] += _host((1 - F.cosine_similarity(x, y, dim=-1)).sum())

            def mlp_in(mod, args, kwargs, out, i=i):
                self.neuron[i] += _host(self._rows(first(args, kwargs, "input")).abs().sum(0))

            def attn_out(mod, args, kwargs, out, i=i):
                o = self._rows(first(args, kwargs, "input")).view(-1, t.heads, t.head_dim)  # (N, nh, hd)
                self.head[i] += _host(o.norm(dim=-1).sum(0))
                self.o[i] += _host(o.abs().sum(0))

            def q_out(mod, args, kwargs, out, i=i, rows=b.q):
                self.q[i] += _host(self._rows(rows.of(out)).view(-1, t.heads, t.head_dim).abs().sum(0))

            def k_out(mod, args, kwargs, out, i=i, rows=b.k):
                self.k[i] += _host(self._rows(rows.of(out)).view(-1, t.kv, t.head_dim).abs().sum(0))

            add(b.layer, block)
            add(b.input_norm, norm(2 * i))
            add(b.post_norm, norm(2 * i + 1))
            add(b.down.linear, mlp_in)
            add(b.o.linear, attn_out)
            add(b.q.linear, q_out)  # Phi-3: q and k hook the same qkv_proj, each reading its rows
            add(b.k.linear, k_out)
        add(teacher.model.norm, norm(2 * t.layers))
        return handles

    @torch.no_grad()
    def run(self, teacher: PreTrainedModel, calib: list[Batch]) -> None:
        param = next(teacher.parameters())
        handles = self.hooks(teacher)
        was_training = teacher.training
        teacher.eval()
        try:
            for batch in calib:
                self.real = (batch.labels != IGNORE_INDEX).to(param.device)  # (B, T)
                self.positions += int(self.real.sum())
                inputs = {k: v.to(param.device) for k, v in batch.model_inputs().items()}
                inputs["attention_mask"] = inputs["attention_mask"].to(param.dtype)
                teacher.model(**inputs, use_cache=False)  # the hidden states are all we need: skip lm_head
        finally:
            for h in handles:
                h.remove()
            teacher.train(was_training)
            self.real = None


def _top(scores: torch.Tensor, k: int) -> list[int]:
    """Indices of the k largest scores, in increasing index order (keeps the teacher's layout)."""
    return sorted(torch.topk(scores, k).indices.tolist())


def _rotary_dims(t_head_dim: int, s_head_dim: int) -> list[int]:
    """The teacher head dims a RoPE layer keeps: student dim j <- teacher dim r*j, and j + hd_s/2 <- r*j + hd_t/2.

    HF's rotate_half pairs dim i with i + hd/2 and rotates the pair by position * inv_freq[i], with
    inv_freq[i] = theta^(-2i/hd). The student's pair j turns at theta^(-2j/hd_s) = theta^(-2rj/hd_t), the
    teacher's pair r*j: keeping exactly those pairs preserves every kept dim's rotation, so q.k on the kept
    dims is the teacher's at every relative distance; any other choice would rotate them at the wrong speed."""
    r, half_t, half_s = t_head_dim // s_head_dim, t_head_dim // 2, s_head_dim // 2
    lower = [r * j for j in range(half_s)]
    return lower + [d + half_t for d in lower]


@dataclass
class _LayerPlan:
    """What one kept teacher layer contributes to its student slot."""
    teacher: int
    groups: list[int]             # kept KV heads, one per student KV head
    heads: list[list[int]]        # per kept group: its kept query heads (teacher indices)
    qk_dims: list[list[int]]      # per kept group: the teacher dims of its q/k heads
    v_dims: list[list[int]]       # per kept group: the teacher dims of its v heads (and o_proj columns)
    neurons: list[int]            # kept MLP neurons


def _plan_layer(cal: _Calibration, i: int, s: PruneShape, use_rope: bool) -> _LayerPlan:
    t = cal.t
    head = cal.head[i].view(t.kv, t.group)                          # (n_kv, group)
    best_in_group = torch.topk(head, s.group, dim=1)                # the query heads each group would keep
    groups = _top(best_in_group.values.sum(1), s.kv)
    heads = [sorted((g * t.group + best_in_group.indices[g]).tolist()) for g in groups]
    qk_dims, v_dims = [], []
    for g, hs in zip(groups, heads):
        if use_rope:
            qk_dims.append(_rotary_dims(t.head_dim, s.head_dim))
        else:
            # No rotation ties the dims together: keep those contributing most to q.k (|q| x |k|).
            qk_dims.append(_top((cal.q[i, hs] * cal.k[i, g]).sum(0), s.head_dim))
        # v is never rotated: keep the dims carrying the most attention output of the kept heads.
        v_dims.append(_top(cal.o[i, hs].sum(0), s.head_dim))
    return _LayerPlan(i, groups, heads, qk_dims, v_dims, _top(cal.neuron[i], s.mlp))


def _head_rows(heads: list[list[int]], dims: list[list[int]], head_dim: int) -> torch.Tensor:
    """Indices into a (head, head_dim) head-major axis: per kept group, its heads, each at that group's dims."""
    rows = [h * head_dim + x for group, d in zip(heads, dims) for h in group for x in d]
    return torch.tensor(rows, dtype=torch.long)


def _student_state(teacher: PreTrainedModel, t: PruneShape, blocks: list[_Block], channels: list[int],
                   plans: list[_LayerPlan], rms_scale: torch.Tensor, q_scale: float,
                   tied: bool) -> dict[str, torch.Tensor]:
    """The student's state dict: slices of the teacher's tensors (copies, float32 on the CPU)."""
    tm = teacher.model
    c = torch.tensor(channels, dtype=torch.long)
    sd: dict[str, torch.Tensor] = {}

    def take(name: str, w: torch.Tensor, rows: torch.Tensor | None, cols: torch.Tensor | None, scale: float = 1.0):
        w = w.detach()
        if rows is not None:
            w = w.index_select(0, rows.to(w.device))
        if cols is not None:
            w = w.index_select(1, cols.to(w.device))
        sd[name] = w.cpu().float() * scale  # slice on the teacher's device, then copy only the slice

    take("model.embed_tokens.weight", tm.embed_tokens.weight, None, c)                  # (V, H_s)
    for j, p in enumerate(plans):
        tb, pre = blocks[p.teacher], f"model.layers.{j}."
        q_rows = _head_rows(p.heads, p.qk_dims, t.head_dim)                             # (nh_s * hd_s,)
        kv = [[g] for g in p.groups]
        k_rows = _head_rows(kv, p.qk_dims, t.head_dim)                                  # (nkv_s * hd_s,)
        v_rows = _head_rows(kv, p.v_dims, t.head_dim)                                   # (nkv_s * hd_s,)
        o_cols = _head_rows(p.heads, p.v_dims, t.head_dim)                              # (nh_s * hd_s,)
        n = torch.tensor(p.neurons, dtype=torch.long)
        # Neither side has biases (prune_fit refuses a teacher with any): weights are all there is to slice.
        for name, part, rows, cols, scale in (                # (output side, input side) of each projection
                ("self_attn.q_proj", tb.q, q_rows, c, q_scale),
                ("self_attn.k_proj", tb.k, k_rows, c, 1.0),
                ("self_attn.v_proj", tb.v, v_rows, c, 1.0),
                ("self_attn.o_proj", tb.o, c, o_cols, 1.0),
                ("mlp.gate_proj", tb.gate, n, c, 1.0),
                ("mlp.up_proj", tb.up, n, c, 1.0),
                ("mlp.down_proj", tb.down, c, n, 1.0)):
            take(pre + name + ".weight", part.weight, rows, cols, scale)
        take(pre + "input_layernorm.weight", tb.input_norm.weight, c, None, float(rms_scale[2 * p.teacher]))
        take(pre + "post_attention_layernorm.weight", tb.post_norm.weight, c, None,
             float(rms_scale[2 * p.teacher + 1]))
    take("model.norm.weight", tm.norm.weight, c, None, float(rms_scale[-1]))
    if tied:
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    else:
        take("lm_head.weight", teacher.lm_head.weight, None, c)
    return sd


def prune_from_teacher(teacher: PreTrainedModel, student_config: SmolLM3Config,
                       calib: list[Batch]) -> tuple[SmolLM3ForCausalLM, dict]:
    """A student with student_config's shape whose weights are slices of the teacher's; plus a JSON-able report
    (kept layers with their importance scores, kept heads/kv groups, hidden channels, MLP neurons).

    The student is float32 on the CPU, like a freshly initialised one; the teacher is left as it was."""
    start = time.perf_counter()
    t, s = shape_of(teacher.config), shape_of(student_config)
    try:
        check_fits(t, s)
    except SmoledgeError as exc:
        raise SmoledgeError(f"prune: {exc}") from None
    if not calib:
        raise SmoledgeError("prune: no calibration batches; give prune_from_teacher at least one batch")
    blocks = _blocks(teacher, t)
    cal = _Calibration(t, blocks)
    cal.run(teacher, calib)
    if cal.positions == 0:
        raise SmoledgeError("prune: the calibration batches have no predictable positions (all labels are -100); "
                            "calibrate on real packed batches")

    influence = (cal.block_influence / cal.positions).tolist()
    keep = select_layers(influence, list(t.use_rope), list(s.use_rope))
    if keep is None:  # check_fits found the RoPE/NoPE pattern fillable: only non-finite scores leave no choice
        raise SmoledgeError(f"prune: the teacher's Block Influence is not finite on the calibration batches "
                            f"({influence}): it computes NaN or Inf there; check the teacher's weights and dtype")

    channels = _top(cal.channel, s.hidden)
    # RMSNorm divides by the RMS over all channels; the student's covers only the kept (mostly larger) ones,
    # so scale each norm weight by sqrt(mean kept E[x^2] / mean E[x^2]) to keep its outputs' typical size.
    norm_sq = cal.norm_sq / cal.positions                                             # (2L+1, H)
    rms_scale = (norm_sq[:, channels].mean(1) / norm_sq.mean(1).clamp_min(1e-30)).sqrt()  # (2L+1,)
    if s.hidden == t.hidden:
        rms_scale = torch.ones_like(rms_scale)  # nothing dropped: keep the teacher's weights bit for bit
    # With r = hd_t / hd_s, the student's q.k sums 1/r of the teacher's per-dim products and is divided by
    # sqrt(hd_s) instead of sqrt(hd_t). Scaling q by sqrt(r) makes its attention logit r x (the teacher's q.k on
    # the kept dims) / sqrt(hd_t): the estimate of the teacher's full logit when the dims contribute alike
    # (small -> tiny on prose: 5.86 nats at the start, against 5.90 for the bare partial logit, q_scale 1/sqrt(r)).
    q_scale = math.sqrt(t.head_dim / s.head_dim)
    plans = [_plan_layer(cal, i, s, bool(s.use_rope[j])) for j, i in enumerate(keep)]

    tied = bool(student_config.tie_word_embeddings)
    state = _student_state(teacher, t, blocks, channels, plans, rms_scale, q_scale, tied)
    with torch.random.fork_rng(devices=[]):  # the throwaway random init must not move the caller's RNG
        student = SmolLM3ForCausalLM(student_config)
    student.load_state_dict(state, strict=True)  # tied: both names copy the same slice into the one matrix

    report = {
        "method": "minitron",
        "teacher_model_type": t.model_type,
        "calibration_positions": cal.positions,
        "block_influence": influence,
        "layers": [{"student": j, "teacher": i, "block_influence": influence[i], "rope": bool(s.use_rope[j])}
                   for j, i in enumerate(keep)],
        "dropped_layers": [i for i in range(t.layers) if i not in keep],
        "hidden_channels": channels,
        "rms_scale": {"input_layernorm": [float(rms_scale[2 * i]) for i in keep],
                      "post_attention_layernorm": [float(rms_scale[2 * i + 1]) for i in keep],
                      "norm": float(rms_scale[-1])},
        "q_scale": q_scale,
        "attention": [{"student": j, "teacher": p.teacher, "kv_groups": p.groups, "query_heads": p.heads,
                       "qk_dims": p.qk_dims, "v_dims": p.v_dims} for j, p in enumerate(plans)],
        "mlp_neurons": [p.neurons for p in plans],
        # An untied teacher's output head has no place in a tied student: its input embeddings serve both.
        "teacher_lm_head_dropped": tied and not teacher.config.tie_word_embeddings,
        "seconds": round(time.perf_counter() - start, 3),
    }
    return student, report
