"""Which teachers `distill.init: prune` can slice a SmolLM3 student out of, decided from configs alone.

    from smoledge.train.prune_fit import check_prunable
    check_prunable(teacher_config(source), recipe.student, source)   # a stage preflight: no weights loaded

Pruning copies slices of the teacher's tensors into a SmolLM3 student (smoledge.train.prune), so a
teacher is prunable only when the student computes exactly what the teacher computes on the kept
slices: pre-norm RMSNorm blocks, GQA attention with RoPE (or NoPE) and no biases, a SiLU SwiGLU MLP.
Per HF model_type (the ones smoledge exports, smoledge.export.architectures):

    smollm3      the student's own architecture
    llama        SmolLM2, Llama 2/3.x, TinyLlama: a SmolLM3 without NoPE layers
    phi3         q/k/v fused in qkv_proj and gate/up in gate_up_proj: sliced as rows of the fused weights;
                 refused with partial RoPE (the student rotates whole heads) or longrope scaling
    qwen2        refused: q/k/v biases
    qwen3        refused: per-head RMSNorm of queries and keys
    gemma3_text  refused: embedding scale, sandwich (1 + w) norms, GELU, its own query scale

On top of the architecture, the student must also read its slices the teacher's way: the same RoPE base
and scaling, the same RMSNorm epsilon, a NoPE pattern the teacher's layers can fill, and a context the
teacher attends to in full. Every refusal names the recipe key to change, so `check_prunable` can run
before anything expensive (the teacher-cache and distill stages' preflights, on an external teacher or the
one this recipe pretrained) and `prune_from_teacher` runs the same checks on the HF configs it is given.

Not at recipe validation for the recipe's own teacher, although its shape is known there: a sweep or a
scaling run varies the teacher and stops at pretrain, where the student does not matter; and a misfit
caught after pretraining costs nothing, since the student is not part of pretrain's fingerprint.
Torch-free (configs only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from smoledge.errors import SmoledgeError
from smoledge.model.config import ModelConfig

RANDOM = "distill.init: random"
# RoPE scalings a pruned head keeps exactly: each frequency's scaled value is a function of that frequency
# alone, so the student's (every r-th of the teacher's) are the teacher's scaled ones. (YaRN's ramp is over
# dim indices and longrope lists per-dim factors: neither survives a narrower head.)
PRUNABLE_ROPE = ("llama3",)


@dataclass(frozen=True)
class PruneShape:
    """What pruning reads of one model: the shape it slices, and what the slices only mean under."""

    model_type: str
    layers: int
    hidden: int
    mlp: int
    heads: int
    kv: int
    head_dim: int
    use_rope: tuple[int, ...]  # transformers' no_rope_layers: 1 = the layer USES RoPE
    vocab: int
    rope_theta: float
    rope_scaling: dict[str, Any] | None  # None: plain RoPE
    rms_norm_eps: float
    hidden_act: str
    context: int  # max_position_embeddings
    window: int | None  # the teacher's sliding window (the student has none); None: every layer attends to all
    fused: bool  # q/k/v rows in one qkv_proj, gate/up rows in one gate_up_proj (Phi-3)

    @property
    def group(self) -> int:
        """Query heads per KV head."""
        return self.heads // self.kv


def _rope(scaling: dict[str, Any] | None) -> dict[str, Any] | None:
    """A config's rope_scaling as one comparable mapping: transformers keeps the legacy `type` beside
    `rope_type` (either may come from config.json), and `default` means none."""
    if not scaling:
        return None
    kind = scaling.get("rope_type", scaling.get("type"))
    return None if kind == "default" else {"rope_type": kind, **{k: v for k, v in scaling.items()
                                                                 if k not in ("type", "rope_type")}}


def _no_biases(cfg: Any) -> None:
    """Llama and SmolLM3 configs may switch on projection biases, which the student's projections lack."""
    for flag in ("attention_bias", "mlp_bias"):
        if getattr(cfg, flag):
            raise SmoledgeError(f"{flag} is true: the teacher's projections carry biases, and the SmolLM3 "
                                "student's have none to copy them into")


def _smollm3(cfg: Any) -> PruneShape:
    _no_biases(cfg)
    # transformers' own rule (SmolLM3Attention): head_dim from the config when it names one.
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    # Only NoPE layers slide (SmolLM3Config.layer_types).
    sliding = cfg.use_sliding_window and cfg.sliding_window is not None and not all(cfg.no_rope_layers)
    return PruneShape("smollm3", cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size,
                      cfg.num_attention_heads, cfg.num_key_value_heads, head_dim,
                      tuple(int(u) for u in cfg.no_rope_layers), cfg.vocab_size, float(cfg.rope_theta),
                      _rope(cfg.rope_scaling), float(cfg.rms_norm_eps), cfg.hidden_act,
                      cfg.max_position_embeddings, cfg.sliding_window if sliding else None, fused=False)


def _llama(cfg: Any) -> PruneShape:
    _no_biases(cfg)
    # Every Llama layer rotates: as a SmolLM3, that is no_rope_layers all 1.
    return PruneShape("llama", cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size,
                      cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, (1,) * cfg.num_hidden_layers,
                      cfg.vocab_size, float(cfg.rope_theta), _rope(cfg.rope_scaling), float(cfg.rms_norm_eps),
                      cfg.hidden_act, cfg.max_position_embeddings, None, fused=False)


def _phi3(cfg: Any) -> PruneShape:
    if cfg.partial_rotary_factor != 1.0:
        raise SmoledgeError(f"partial_rotary_factor is {cfg.partial_rotary_factor}: the teacher rotates only part "
                            "of each head, and the SmolLM3 student rotates whole heads")
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads  # Phi3Attention's rule
    return PruneShape("phi3", cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads,
                      cfg.num_key_value_heads, head_dim, (1,) * cfg.num_hidden_layers, cfg.vocab_size,
                      float(cfg.rope_theta), _rope(cfg.rope_scaling), float(cfg.rms_norm_eps), cfg.hidden_act,
                      cfg.max_position_embeddings, cfg.sliding_window, fused=True)


READERS: dict[str, Callable[[Any], PruneShape]] = {"smollm3": _smollm3, "llama": _llama, "phi3": _phi3}
# Exportable model_types that are not prunable, and why: what they compute that a SmolLM3 cannot.
REFUSED: dict[str, str] = {
    "qwen2": "Qwen2 adds biases to every query, key and value projection, and the SmolLM3 student's projections "
             "have none; without them every attention score would change",
    "qwen3": "Qwen3 RMS-normalises every query and key head (q_norm, k_norm) before RoPE, which the SmolLM3 "
             "student does not; its q/k weights only mean what they mean through those norms",
    "gemma3_text": "Gemma 3 scales its embeddings by sqrt(hidden_size), wraps attention and the MLP in pre- and "
                   "post-norms that multiply by (1 + w), runs a GELU MLP and scales queries by "
                   "query_pre_attn_scalar; the SmolLM3 student computes none of these",
}


def shape_of(cfg: Any, where: str = "") -> PruneShape:
    """The PruneShape of an HF config (a teacher's, or the student's SmolLM3Config); a model_type pruning
    cannot slice, or a config it cannot reproduce, is refused naming the type, what is prunable and the fix."""
    model_type = cfg.model_type
    head = f"distill.init: prune cannot slice a student out of the teacher{where} (model_type '{model_type}')"
    fix = (f"Use {RANDOM} (distillation itself takes any causal LM that speaks the shards' tokenizer), or a "
           f"teacher of a prunable type: {', '.join(READERS)}")
    if model_type not in READERS:
        why = REFUSED.get(model_type, f"smoledge prunes only {', '.join(READERS)} models")
        raise SmoledgeError(f"{head}: {why}. {fix}")
    try:
        return READERS[model_type](cfg)
    except SmoledgeError as exc:
        raise SmoledgeError(f"{head}: {exc}. {fix}") from None


def model_shape(cfg: ModelConfig, vocab: int) -> PruneShape:
    """The PruneShape of the SmolLM3 a recipe section builds (smoledge.model.build.hf_config), read from the
    section itself, so that a refusal speaks of its keys."""
    layers, hidden, mlp, heads, kv = cfg.dims()
    return PruneShape("smollm3", layers, hidden, mlp, heads, kv, hidden // heads, tuple(cfg.use_rope_layers()),
                      vocab, cfg.rope_theta, _rope(cfg.rope_scaling), cfg.rms_norm_eps, "silu",
                      cfg.max_position_embeddings, None, fused=False)


def select_layers(importance: list[float], teacher_rope: list[int], student_rope: list[int]) -> list[int] | None:
    """The increasing teacher layer indices, one per student slot, with the largest total importance,
    where teacher layer i may fill slot j only if teacher_rope[i] == student_rope[j]; None if none can.

    best[i][j] = the best total filling the first j slots from the first i layers (O(layers x slots))."""
    n, m = len(importance), len(student_rope)
    none = -math.inf
    best = [[0.0] + [none] * m for _ in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            take = none
            if teacher_rope[i - 1] == student_rope[j - 1] and best[i - 1][j - 1] > none:
                take = best[i - 1][j - 1] + importance[i - 1]
            best[i][j] = max(best[i - 1][j], take)
    if best[n][m] == none:
        return None
    keep, j = [], m
    for i in range(n, 0, -1):
        if j == 0:
            break
        if (teacher_rope[i - 1] == student_rope[j - 1] and best[i - 1][j - 1] > none
                and best[i - 1][j - 1] + importance[i - 1] == best[i][j]):
            keep.append(i - 1)
            j -= 1
    return keep[::-1]


def rope_pattern(use_rope: tuple[int, ...] | list[int]) -> str:
    """R = a RoPE layer, N = a NoPE layer."""
    return "".join("R" if x else "N" for x in use_rope)


def _f32(x: float) -> float:
    """x as the model computes with it: RMSNorm adds eps to a float32 mean, RoPE raises a float32 base.
    (An HF directory made from a GGUF stores 1e-5 as 9.999999747378752e-06: the same float32.)"""
    import struct

    return struct.unpack("f", struct.pack("f", x))[0]


def _shortest(x: float) -> str:
    """The shortest decimal that is the same float32 as x (what to write in the recipe)."""
    for digits in range(1, 18):
        text = f"{x:.{digits}g}"
        if _f32(float(text)) == _f32(x):
            return repr(float(text))
    return repr(x)


def check_fits(t: PruneShape, s: PruneShape) -> None:
    """Every way the student cannot be a slice of the teacher, as an error naming the student.* key and the fix."""
    if s.vocab != t.vocab:
        raise SmoledgeError(
            f"the student's vocab_size {s.vocab} differs from the teacher's {t.vocab}; pruning "
            f"slices the teacher's embeddings, so both must use the teacher's tokenizer (or use {RANDOM})")
    for key, name, sv, tv in (("num_layers", "layers", s.layers, t.layers),
                              ("hidden_size", "hidden size", s.hidden, t.hidden),
                              ("intermediate_size", "MLP width", s.mlp, t.mlp),
                              ("num_kv_heads", "KV heads", s.kv, t.kv)):
        if sv > tv:
            raise SmoledgeError(
                f"student.{key} {sv} > the teacher's {tv}; pruning only removes {name}, so set "
                f"student.{key} <= {tv} or use {RANDOM}")
    if s.group > t.group:
        raise SmoledgeError(
            f"the student has {s.group} query heads per KV head (student.num_heads / num_kv_heads), the "
            f"teacher only {t.group}; pruning keeps whole KV groups, so use student.num_heads <= "
            f"{t.group} x student.num_kv_heads, or {RANDOM}")
    if s.head_dim > t.head_dim or t.head_dim % s.head_dim:
        raise SmoledgeError(
            f"the student's head dim (hidden_size / num_heads = {s.head_dim}) must divide the teacher's "
            f"{t.head_dim}, so that its RoPE frequencies are a subset of the teacher's; change student.num_heads "
            f"or student.hidden_size, or use {RANDOM}")
    if select_layers([0.0] * t.layers, list(t.use_rope), list(s.use_rope)) is None:
        all_rope = all(t.use_rope)
        fix = ("set student.no_rope_interval: 0 (a teacher without NoPE layers gives a student without them)"
               if all_rope else "use a student.num_layers / no_rope_interval whose pattern is a subsequence of "
                                "the teacher's")
        raise SmoledgeError(
            f"no {s.layers} of the teacher's layers fit the student's RoPE/NoPE pattern "
            f"{rope_pattern(s.use_rope)} in order (teacher: {rope_pattern(t.use_rope)}; R = RoPE, N = NoPE); a kept "
            f"layer must use RoPE iff its student slot does. {fix[0].upper() + fix[1:]}, or use {RANDOM}")
    if any(s.use_rope):
        if _f32(s.rope_theta) != _f32(t.rope_theta):
            raise SmoledgeError(
                f"student.rope_theta {s.rope_theta} differs from the teacher's {t.rope_theta}; the kept q/k "
                f"dims only keep their meaning under the same rotary frequencies, so set student.rope_theta: "
                f"{_shortest(t.rope_theta)} or use {RANDOM}")
        if t.rope_scaling is not None and t.rope_scaling["rope_type"] not in PRUNABLE_ROPE:
            raise SmoledgeError(
                f"the teacher's rope_scaling is {t.rope_scaling['rope_type']!r} ({t.rope_scaling}); a pruned "
                f"student keeps the teacher's rotary frequencies only under plain RoPE or "
                f"{' / '.join(PRUNABLE_ROPE)} scaling, whose scaled frequencies depend on each frequency alone. "
                f"Use {RANDOM}")
        if s.rope_scaling != t.rope_scaling:
            want = "null" if t.rope_scaling is None else _flow(t.rope_scaling)
            raise SmoledgeError(
                f"student.rope_scaling {s.rope_scaling} differs from the teacher's {t.rope_scaling}; the kept "
                f"q/k dims only keep their meaning under the same rotary frequencies, so set student.rope_scaling: "
                f"{want} or use {RANDOM}")
    if _f32(s.rms_norm_eps) != _f32(t.rms_norm_eps):
        raise SmoledgeError(
            f"student.rms_norm_eps {s.rms_norm_eps} differs from the teacher's {t.rms_norm_eps}; every kept "
            f"norm would scale its inputs differently, so set student.rms_norm_eps: {_shortest(t.rms_norm_eps)} "
            f"or use {RANDOM}")
    if s.hidden_act != t.hidden_act:
        raise SmoledgeError(
            f"the teacher's MLP activation is {t.hidden_act!r} and the SmolLM3 student's {s.hidden_act!r}; "
            f"its kept neurons would compute another function. Use {RANDOM}")
    if t.window is not None and t.window < s.context:
        raise SmoledgeError(
            f"the teacher attends through a {t.window}-token sliding window, the student to its whole "
            f"context of {s.context}; past {t.window} tokens they would compute different models. Set "
            f"student.max_position_embeddings <= {t.window} or use {RANDOM}")


def _flow(mapping: dict[str, Any]) -> str:
    """A mapping as a YAML flow mapping, to paste into the recipe."""
    return "{" + ", ".join(f"{k}: {v}" for k, v in mapping.items()) + "}"


def check_prunable(teacher: Any, student: ModelConfig, where: str = "") -> PruneShape:
    """Refuse, before any work, a recipe whose student (recipe.student) cannot be pruned from `teacher` (its HF
    config). The student takes the teacher's vocabulary (distill sizes it from the teacher). Returns the
    teacher's shape."""
    t = shape_of(teacher, where)
    try:
        check_fits(t, model_shape(student, t.vocab))
    except SmoledgeError as exc:
        head = f"distill.init: prune from the teacher{where} (model_type '{t.model_type}')"
        raise SmoledgeError(f"{head}: {exc}") from None
    return t
