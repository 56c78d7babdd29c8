"""The HF architectures smoledge writes as GGUF, and what llama.cpp expects of each.

One typed table, ARCHITECTURES (HF `model_type` -> ArchSpec), says for each architecture what
the llama.cpp that smoledge runs (vendored in llama-cpp-python 0.3.36, `src/models/<arch>.cpp`)
computes: the llama.cpp architecture the file declares, the tensors its loader creates (GRAPHS:
required and optional, so a bias or norm it has no place for is refused, never dropped), the
RoPE layout it runs (NORM rotates adjacent pairs, so HF's Q/K rows are reordered; NEOX rotates
halves as HF does), the activations and rope_scaling types it reproduces, and the per-arch keys
and weight transforms (Gemma's (1 + w) norms and query scale, SmolLM3's NoPE pattern, Llama 3's
RoPE factors, Phi-3's sliding window). Whatever llama.cpp would run differently from transformers
is refused here with the reason and the fix.

Tensor names and GGUF keys come from the pinned `gguf` package (MODEL_ARCH, MODEL_TENSOR,
TensorNameMap, GGUFWriter.add_*), llama.cpp's own tables; what `gguf` cannot say -- which tensors
the C++ loader really creates and what its graph computes -- is written here from those sources.
tests/test_export_architectures.py holds it to PyTorch (logit parity, greedy decoding), to planted
mistakes that must fail, and to llama.cpp's converter of the same version as an oracle.

Not here: the tokenizer (smoledge.tokenizer.llama_cpp), writing the file (smoledge.export.gguf),
mixture-of-experts models, multimodal towers, and any model_type not in ARCHITECTURES.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from gguf import MODEL_ARCH, MODEL_ARCH_NAMES, TENSOR_NAMES
from gguf import MODEL_TENSOR as T

from smoledge.errors import SmoledgeError
from smoledge.export import gguf_constants as C

Slot = tuple[T, str]  # (tensor kind, "weight" | "bias")


def _w(*kinds: T) -> frozenset[Slot]:
    return frozenset((k, "weight") for k in kinds)


def _b(*kinds: T) -> frozenset[Slot]:
    return frozenset((k, "bias") for k in kinds)


@dataclass(frozen=True)
class Graph:
    """What llama.cpp's loader and graph for one architecture do (src/models/<arch>.cpp, 0.3.36)."""

    arch: MODEL_ARCH
    required: frozenset[Slot]  # created without TENSOR_NOT_REQUIRED: loading fails without them
    optional: frozenset[Slot]  # created TENSOR_NOT_REQUIRED: computed with when present
    rope_norm: bool  # llama_model_rope_type is NORM (adjacent pairs), else NEOX (HF's rotate_half)

    @property
    def name(self) -> str:
        return MODEL_ARCH_NAMES[self.arch]


_GLOBAL = _w(T.TOKEN_EMBD, T.OUTPUT_NORM)
_ATTN = _w(T.ATTN_NORM, T.ATTN_Q, T.ATTN_K, T.ATTN_V, T.ATTN_OUT)
_SWIGLU = _w(T.FFN_NORM, T.FFN_GATE, T.FFN_UP, T.FFN_DOWN)
_QK_NORM = _w(T.ATTN_Q_NORM, T.ATTN_K_NORM)
# create_tensor_qkv makes Q/K/V biases optional for every arch that calls it; the output
# projection's and the FFN's biases exist only where an arch's loader creates them itself.
_QKV_BIAS = _b(T.ATTN_Q, T.ATTN_K, T.ATTN_V)

GRAPHS: dict[MODEL_ARCH, Graph] = {g.arch: g for g in (
    Graph(MODEL_ARCH.LLAMA, _GLOBAL | _ATTN | _SWIGLU,
          _w(T.OUTPUT, T.ROPE_FREQS) | _QKV_BIAS | _b(T.ATTN_OUT, T.FFN_GATE, T.FFN_UP, T.FFN_DOWN), rope_norm=True),
    Graph(MODEL_ARCH.SMOLLM3, _GLOBAL | _ATTN | _SWIGLU, _w(T.OUTPUT) | _QKV_BIAS, rope_norm=True),
    Graph(MODEL_ARCH.QWEN2, _GLOBAL | _ATTN | _SWIGLU, _w(T.OUTPUT) | _b(T.OUTPUT) | _QKV_BIAS, rope_norm=False),
    Graph(MODEL_ARCH.QWEN3, _GLOBAL | _ATTN | _QK_NORM | _SWIGLU, _w(T.OUTPUT) | _QKV_BIAS, rope_norm=False),
    # gguf calls Gemma's pre-FFN norm FFN_PRE_NORM; its file name, blk.N.ffn_norm, is the loader's LLM_TENSOR_FFN_NORM.
    Graph(MODEL_ARCH.GEMMA3, _GLOBAL | _ATTN | _QK_NORM | _w(T.ATTN_POST_NORM, T.FFN_PRE_NORM, T.FFN_GATE, T.FFN_UP,
                                                             T.FFN_DOWN, T.FFN_POST_NORM),
          _w(T.OUTPUT) | _QKV_BIAS, rope_norm=False),
    # Q/K/V fused in one attn_qkv (rows q, k, v); the FFN is one ffn_up of 2*n_ff rows, gate then up,
    # split in half by SwiGLU -- HF's gate_up_proj as it is.
    Graph(MODEL_ARCH.PHI3, _GLOBAL | _w(T.ATTN_NORM, T.ATTN_QKV, T.ATTN_OUT, T.FFN_NORM, T.FFN_UP, T.FFN_DOWN),
          _w(T.OUTPUT, T.ROPE_FACTORS_LONG, T.ROPE_FACTORS_SHORT) | _b(T.ATTN_QKV), rope_norm=False),
)}

# rope_scaling types an ArchSpec does not list -> why; the default: llama.cpp may well compute it, but no
# parity test here covers it on that graph, and an unproven mapping is not written.
ROPE_SCALING_REASONS: dict[str, str] = {
    "dynamic": "llama.cpp has no dynamic NTK scaling (transformers rescales RoPE per sequence length); "
               "it would run plain RoPE",
    "longrope": "llama.cpp picks long or short factors once, from the context size it is started with "
                "(n_ctx > original_max_position_embeddings: long), while transformers picks them per forward "
                "from the sequence length, so one prompt gets different RoPE depending on llama.cpp's n_ctx",
    "llama3": "only llama.cpp's llama graph loads the rope_freqs tensor that carries Llama 3's factors (a SmolLM3 "
              "is written as that graph when it has no NoPE layers: no_rope_interval 0)",
}
ROPE_SCALING_REASONS["su"] = ROPE_SCALING_REASONS["longrope"]
UNPROVEN_SCALING = "smoledge has no parity test proving llama.cpp runs it like transformers on this graph"
ROPE_SCALING_NAMES = {"yarn": "YaRN (export.yarn_factor)", "linear": "linear", "llama3": "llama3"}

# Private test hooks of write_gguf: deliberately wrong files the parity gate must reject.
MISTAKES: dict[str, str] = {
    "rope_order": "Q/K rows in the other RoPE layout than the graph runs",
    "drop_qkv_bias": "Q/K/V biases left out",
    "norm_shift": "Gemma norms written as w instead of 1 + w",
    "swa_pattern": "no per-layer sliding-window pattern (llama.cpp then assumes every 6th layer global)",
    "rope_freqs": "Llama 3's RoPE factors left out",
}


@dataclass
class Extra:
    """What an architecture adds to the common hparams: the graph it is written as (when it depends
    on the config), GGUF keys as (GGUFWriter method, value), the RoPE dimension and a factor folded
    into q_norm."""

    arch: MODEL_ARCH | None = None
    keys: list[tuple[str, Any]] = field(default_factory=list)
    rope_dim: int | None = None
    q_norm_scale: float = 1.0


def _no_extra(conf: Any, where: str) -> Extra:
    return Extra()


@dataclass(frozen=True)
class ArchSpec:
    """One HF model_type: how its config and checkpoint become a llama.cpp graph."""

    model_type: str
    graph: MODEL_ARCH
    activations: tuple[str, ...]  # config values of act_attr whose function the llama.cpp FFN computes
    rope_scalings: tuple[str, ...]  # rope_scaling types llama.cpp reproduces for this model (+ llama3 by the graph)
    q_width_free: bool  # the loader sizes Q by n_head*head_dim (else by n_embd: head_dim must be hidden/heads)
    bias_flags: dict[str, frozenset[Slot]] = field(default_factory=dict)  # config flag -> biases HF then adds
    norm_shift: float = 0.0  # added to every *norm.weight: Gemma's RMSNorm multiplies by (1 + w)
    act_attr: str = "hidden_act"
    extra: Callable[[Any, str], Extra] = _no_extra  # arch-specific refusals and keys


# ---------------------------------------------------------------- per-architecture checks


def _refuse_sliding(conf: Any, model_type: str, where: str) -> None:
    """Qwen2/Qwen3 (and SmolLM3) mark sliding layers in layer_types; their llama.cpp graphs attend to
    the whole context, which is the same only while no sequence outgrows the window."""
    window = getattr(conf, "sliding_window", None)
    sliding = [i for i, t in enumerate(getattr(conf, "layer_types", None) or []) if t == "sliding_attention"]
    if sliding and window and window < conf.max_position_embeddings:
        raise SmoledgeError(
            f"layers {sliding}{where} use a {window}-token sliding window; llama.cpp's {model_type} graph attends "
            f"to the whole context, so past {window} tokens it would compute a different model. Train with "
            f"use_sliding_window: false, or set max_position_embeddings <= {window}")


def _smollm3(conf: Any, where: str) -> Extra:
    if getattr(conf, "use_sliding_window", False):
        raise SmoledgeError(f"use_sliding_window=true{where}: llama.cpp's smollm3 graph has no sliding window; "
                            "train with full attention")
    layers = conf.num_hidden_layers
    use_rope = list(conf.no_rope_layers or [1] * layers)
    if len(use_rope) != layers:
        raise SmoledgeError(f"no_rope_layers has {len(use_rope)} entries for {layers} layers{where}; "
                            "the config is corrupt")
    if all(use_rope):
        return Extra(arch=MODEL_ARCH.LLAMA)
    expected = [int((i + 1) % C.LLAMA_CPP_NOPE_INTERVAL != 0) for i in range(layers)]
    if [int(bool(x)) for x in use_rope] != expected:
        nope = [i for i, x in enumerate(use_rope) if not x]
        want = [i for i, x in enumerate(expected) if not x]
        raise SmoledgeError(
            f"NoPE layers {nope}{where} do not follow llama.cpp's fixed pattern (every "
            f"{C.LLAMA_CPP_NOPE_INTERVAL}th layer: {want}); llama.cpp would run a different model. "
            f"Train with no_rope_interval: {C.LLAMA_CPP_NOPE_INTERVAL} (or 0 for no NoPE layers)")
    return Extra()


def _qwen(conf: Any, where: str) -> Extra:
    _refuse_sliding(conf, conf.model_type, where)
    return Extra()


def _gemma3(conf: Any, where: str) -> Extra:
    if getattr(conf, "use_bidirectional_attention", False):
        raise SmoledgeError(f"use_bidirectional_attention=true{where}: llama.cpp's gemma3 graph is causal; this is an "
                            "embedding model (EmbeddingGemma), which smoledge does not export")
    if conf.attn_logit_softcapping is not None:
        raise SmoledgeError(
            f"attn_logit_softcapping={conf.attn_logit_softcapping}{where}: llama.cpp's gemma3 graph reads no "
            "attention soft-cap (Gemma 2's graph had one) and would attend uncapped. Train with "
            "attn_logit_softcapping: null, as Gemma 3 is")
    extra = Extra()
    if conf.final_logit_softcapping:
        extra.keys.append(("add_final_logit_softcapping", float(conf.final_logit_softcapping)))
    sliding = [t == "sliding_attention" for t in conf.layer_types]
    if any(sliding):
        # llama.cpp masks key p0 for query p1 when p1 - p0 >= n_swa: transformers' window exactly.
        extra.keys += [("add_sliding_window", int(conf.sliding_window)),
                       ("add_sliding_window_pattern", sliding),
                       ("add_rope_freq_base_swa", float(conf.rope_local_base_freq))]
    # llama.cpp scales queries by 1/sqrt(head_dim) (1/sqrt(hidden/heads) for 62-layer models, Gemma 3
    # 27B), transformers by query_pre_attn_scalar**-0.5. Q is RMS-normed before RoPE (linear), so the
    # ratio folds exactly into q_norm's weight.
    base = conf.hidden_size // conf.num_attention_heads if conf.num_hidden_layers == 62 else conf.head_dim
    extra.q_norm_scale = math.sqrt(base / float(conf.query_pre_attn_scalar))
    return extra


def _phi3(conf: Any, where: str) -> Extra:
    window = conf.sliding_window
    if window is not None and window < conf.max_position_embeddings:
        raise SmoledgeError(
            f"sliding_window={window}{where}: llama.cpp 0.3.36's phi3 graph disables sliding-window attention "
            f"and attends to the whole context, so past {window} tokens it computes a different model than "
            f"transformers. Set max_position_embeddings <= {window} in config.json (the GGUF then declares "
            "the context both agree on), or sliding_window: null if the model was trained without it")
    head_dim = conf.hidden_size // conf.num_attention_heads
    rope_dim = int(head_dim * conf.partial_rotary_factor)
    if rope_dim % 2 or not 0 < rope_dim <= head_dim:
        raise SmoledgeError(f"partial_rotary_factor {conf.partial_rotary_factor}{where} rotates {rope_dim} of "
                            f"{head_dim} head dims; llama.cpp rotates an even count of at most head_dim. "
                            "Fix the config")
    return Extra(rope_dim=rope_dim)


_ATTN_BIASES = _QKV_BIAS | _b(T.ATTN_OUT)
_MLP_BIASES = _b(T.FFN_GATE, T.FFN_UP, T.FFN_DOWN)

ARCHITECTURES: dict[str, ArchSpec] = {s.model_type: s for s in (
    ArchSpec("llama", MODEL_ARCH.LLAMA, C.SUPPORTED_ACTIVATIONS, ("yarn",), q_width_free=True,
             bias_flags={"attention_bias": _ATTN_BIASES, "mlp_bias": _MLP_BIASES}),
    ArchSpec("smollm3", MODEL_ARCH.SMOLLM3, C.SUPPORTED_ACTIVATIONS, ("yarn",), q_width_free=True,
             bias_flags={"attention_bias": _ATTN_BIASES, "mlp_bias": _MLP_BIASES}, extra=_smollm3),
    # Qwen2's q/k/v biases are unconditional in transformers (no config flag); the graph loads them.
    ArchSpec("qwen2", MODEL_ARCH.QWEN2, C.SUPPORTED_ACTIVATIONS, ("yarn",), q_width_free=False, extra=_qwen),
    ArchSpec("qwen3", MODEL_ARCH.QWEN3, C.SUPPORTED_ACTIVATIONS, ("yarn",), q_width_free=True,
             bias_flags={"attention_bias": _ATTN_BIASES}, extra=_qwen),
    # LLM_FFN_GELU is ggml_gelu, the tanh approximation (CPU: through an fp16 lookup table).
    ArchSpec("gemma3_text", MODEL_ARCH.GEMMA3, ("gelu_pytorch_tanh", "gelu_new"), ("linear",),
             q_width_free=True, bias_flags={"attention_bias": _ATTN_BIASES}, norm_shift=1.0,
             act_attr="hidden_activation", extra=_gemma3),
    ArchSpec("phi3", MODEL_ARCH.PHI3, C.SUPPORTED_ACTIVATIONS, (), q_width_free=False, extra=_phi3),
)}
# model_types one step away from an exportable one: the fix names it.
NEAR_MISSES = {"gemma3": "export the text model alone (Gemma3ForCausalLM, model_type gemma3_text)",
               "qwen2_moe": "mixture-of-experts models are not exported", "qwen3_moe": "mixture-of-experts models "
               "are not exported", "phimoe": "mixture-of-experts models are not exported"}


def arch_spec(model_type: Any, where: str = "") -> ArchSpec:
    """The table entry for `model_type`; anything else is refused, naming what is exportable."""
    if model_type not in ARCHITECTURES:
        hint = NEAR_MISSES.get(str(model_type), "")
        raise SmoledgeError(f"model_type '{model_type}'{where} is not exportable; smoledge exports "
                            f"{', '.join(ARCHITECTURES)} models (smoledge.export.architectures): "
                            + (hint if hint else "export a model of one of those types"))
    return ARCHITECTURES[model_type]


def hf_config(cfg: dict[str, Any], where: str = "") -> Any:
    """The config as transformers builds the model from it: the class fills the defaults config.json
    leaves out (Gemma 3's query_pre_attn_scalar, SmolLM3's NoPE layers...), which the GGUF must match."""
    from transformers import CONFIG_MAPPING

    try:
        return CONFIG_MAPPING[cfg["model_type"]].from_dict(dict(cfg))
    except Exception as exc:  # transformers raises plain KeyError/ValueError for a malformed config
        raise SmoledgeError(f"transformers cannot build the config{where} ({type(exc).__name__}: {exc}); "
                            "fix config.json so AutoConfig.from_pretrained loads it") from exc


def check_biases(spec: ArchSpec, graph: Graph, conf: Any, where: str) -> None:
    """Refuse config flags that give HF's model biases the llama.cpp graph does not load."""
    for flag, slots in spec.bias_flags.items():
        missing = slots - graph.required - graph.optional
        if getattr(conf, flag, False) and missing:
            names = sorted(f"{TENSOR_NAMES[k].format(bid='N')}.{s}" for k, s in missing)
            raise SmoledgeError(f"{flag}=true{where}: llama.cpp's {graph.name} graph has no {', '.join(names)}, so "
                                f"it would run without those biases; train with {flag}: false")


# ---------------------------------------------------------------- RoPE scaling


def rope_scaling(spec: ArchSpec, graph: Graph, conf: Any, where: str, head_dim: int) -> dict[str, Any]:
    """GGUF RoPE scaling for the config: {"yarn": {...} | None, "linear": factor | None,
    "rope_freqs": per-frequency divisors | None}; refuses scaling llama.cpp would compute differently."""
    out: dict[str, Any] = {"yarn": None, "linear": None, "rope_freqs": None}
    rs = getattr(conf, "rope_scaling", None)
    kind = (rs or {}).get("rope_type", (rs or {}).get("type"))
    if not rs or kind == "default":
        return out
    # Llama 3's factors travel as the rope_freqs tensor: any model written as a graph that loads it (Llama, and
    # a SmolLM3 without NoPE layers, which is written as Llama) runs them.
    scalings = spec.rope_scalings + (("llama3",) if (T.ROPE_FREQS, "weight") in graph.optional else ())
    if kind not in scalings:
        allowed = " or ".join(["plain RoPE", *(ROPE_SCALING_NAMES[k] for k in scalings)])
        reason = ROPE_SCALING_REASONS.get(str(kind), UNPROVEN_SCALING)
        raise SmoledgeError(f"rope_scaling{where} is {kind!r} ({rs}); smoledge exports {allowed} for "
                            f"{spec.model_type}: {reason}. Remove rope_scaling from the model config "
                            "(or use a variant of the model without it)")
    if kind == C.YARN_ROPE_TYPE:
        out["yarn"] = yarn_hparams({"rope_scaling": rs, "max_position_embeddings": conf.max_position_embeddings}, where)
    elif kind == "linear":
        out["linear"] = _factor(rs, where)
    elif kind == "llama3":
        out["rope_freqs"] = llama3_rope_freqs(rs, float(conf.rope_theta), head_dim, where)
    return out


def _factor(rs: dict[str, Any], where: str) -> float:
    factor = float(rs.get("factor") or 0.0)
    if factor < 1.0:
        raise SmoledgeError(f"rope_scaling.factor{where} is {factor}; it must be >= 1")
    return factor


def llama3_rope_freqs(rs: dict[str, Any], theta: float, head_dim: int, where: str = "") -> np.ndarray:
    """(head_dim/2,) divisors of each RoPE frequency: transformers' Llama 3 scaling (its
    _compute_llama3_parameters) keeps short wavelengths, divides long ones by `factor` and blends
    between; llama.cpp divides frequency i by rope_freqs[i], so each entry is inv_freq / scaled_inv_freq."""
    factor = _factor(rs, where)
    low, high = float(rs["low_freq_factor"]), float(rs["high_freq_factor"])
    old_ctx = float(rs["original_max_position_embeddings"])
    if high <= low:
        raise SmoledgeError(f"rope_scaling{where}: high_freq_factor {high} must exceed low_freq_factor {low}")
    inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)  # (head_dim/2,)
    wavelen = 2 * math.pi / inv_freq
    smooth = (old_ctx / wavelen - low) / (high - low)
    blended = 1.0 / ((1 - smooth) / factor + smooth)
    divisor = np.where(wavelen < old_ctx / high, 1.0, np.where(wavelen > old_ctx / low, factor, blended))
    return divisor.astype(np.float32)


def yarn_hparams(cfg: dict[str, Any], where: str = "") -> dict[str, float] | None:
    """The GGUF YaRN keys for a config's rope_scaling (None for plain RoPE); refuses scaling llama.cpp
    would compute differently. `attn_factor` multiplies llama.cpp's own 0.1 ln(factor) + 1, so it is
    transformers' attention factor divided by that (1.0 unless the config sets its own)."""
    rs = cfg.get("rope_scaling")
    if not rs:
        return None
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "default":
        return None
    if kind != C.YARN_ROPE_TYPE:
        raise SmoledgeError(f"rope_scaling{where} is {kind!r} ({rs}); smoledge exports plain RoPE or YaRN only "
                            "(export.yarn_factor); remove rope_scaling from the model config")
    unknown = sorted(set(rs) - set(C.YARN_KEYS))
    if unknown:
        raise SmoledgeError(f"rope_scaling{where} has {unknown}, which smoledge cannot map to llama.cpp's YaRN; "
                            f"use only {', '.join(C.YARN_KEYS)}")
    for key, fixed in C.YARN_FIXED.items():
        if rs.get(key) is not None and rs[key] != fixed:
            raise SmoledgeError(f"rope_scaling.{key}{where} is {rs[key]!r}; llama.cpp's YaRN runs with {key}={fixed} "
                                "(no GGUF key changes it), so the GGUF would compute a different model. Remove it")
    factor = float(rs["factor"])
    if factor < 1.0:
        raise SmoledgeError(f"rope_scaling.factor{where} is {factor}; YaRN extends the context, it must be >= 1")

    def mscale(scale: float, m: float = 1.0) -> float:  # transformers' get_mscale
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention = rs.get("attention_factor")
    if attention is None:
        attention = (mscale(factor, rs["mscale"]) / mscale(factor, rs["mscale_all_dim"])
                     if rs.get("mscale") and rs.get("mscale_all_dim") else mscale(factor))
    return {
        "factor": factor,
        "original_context_length": int(rs.get("original_max_position_embeddings")
                                       or cfg.get("max_position_embeddings", 2048)),
        "attn_factor": float(attention) / mscale(factor),
    }


# ---------------------------------------------------------------- tensors


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF rotates the two halves of each head (rotate_half); llama.cpp's NORM RoPE rotates
    adjacent pairs. Reordering each head's rows from [x0..x_{d/2-1}, y0..] to [x0, y0, x1, y1..]
    makes llama.cpp rotate the same pairs. Applied to Q and K alike, the q.k products of
    NoPE layers are unchanged, so every layer gets it. Biases (1-D) are reordered the same way."""
    rows = w.shape[0]
    hd = rows // n_head
    return w.reshape(n_head, 2, hd // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)  # (n_head*hd, cols)


def reorder_rope_rows(kind: T, arr: np.ndarray, hp: dict[str, Any]) -> np.ndarray:
    """`arr` (a Q, K or fused QKV weight or bias) with Q's and K's rows permuted (permute_qk)."""
    heads, kv, hd = hp["num_heads"], hp["num_kv_heads"], hp["head_dim"]
    if kind == T.ATTN_Q:
        return permute_qk(arr, heads)
    if kind == T.ATTN_K:
        return permute_qk(arr, kv)
    if kind == T.ATTN_QKV:
        q, k, v = np.split(arr, [heads * hd, (heads + kv) * hd])  # (heads*hd, ...), (kv*hd, ...), (kv*hd, ...)
        return np.concatenate([permute_qk(q, heads), permute_qk(k, kv), v])
    return arr


def gguf_name(kind: T, bid: int | None, suffix: str) -> str:
    """llama.cpp's file name of one tensor (blk.{bid}.attn_q.weight, token_embd.weight...)."""
    return TENSOR_NAMES[kind].format(bid=bid) + "." + suffix


def expected_names(graph: Graph, n_layers: int, slots: frozenset[Slot]) -> list[str]:
    """GGUF names of `slots`, per layer for block tensors."""
    names = []
    for kind, suffix in sorted(slots, key=lambda s: (s[0].value, s[1])):
        template = TENSOR_NAMES[kind]
        names += ([gguf_name(kind, i, suffix) for i in range(n_layers)] if "{bid}" in template
                  else [gguf_name(kind, None, suffix)])
    return names
