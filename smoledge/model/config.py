"""Model shape config: a SmolLM3 (GQA, NoPE every 4th layer, tied embeddings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from smoledge.config import Section

# The keys of Llama 3's rope_scaling (transformers' _compute_llama3_parameters), rope_type first.
LLAMA3_ROPE_KEYS = ("rope_type", "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
# name -> (layers, hidden, mlp, heads, kv_heads)
PRESETS: dict[str, tuple[int, int, int, int, int]] = {
    "tiny": (2, 64, 192, 4, 2),
    "small": (4, 128, 384, 4, 2),
    "smollm2-135m": (30, 576, 1536, 9, 3),
    "smollm2-360m": (32, 960, 2560, 15, 5),
}


@dataclass
class ModelConfig(Section):
    preset: Literal["tiny", "small", "smollm2-135m", "smollm2-360m", "custom"] = "tiny"
    """Named shape; `custom` takes the explicit dimensions below. Explicit dimensions
    also override a named preset's values when given."""
    num_layers: int | None = None
    """Transformer blocks."""
    hidden_size: int | None = None
    """Residual width."""
    intermediate_size: int | None = None
    """SwiGLU hidden width."""
    num_heads: int | None = None
    """Query heads."""
    num_kv_heads: int | None = None
    """Key/value heads (GQA); must divide num_heads."""
    max_position_embeddings: int = 2048
    """Trained context length written to the config (RoPE is relative, this is a limit)."""
    rope_theta: float = 10000.0
    """RoPE base frequency."""
    rope_scaling: dict[str, Any] | None = None
    """RoPE scaling as a transformers config.json writes it; only Llama 3's, e.g. Llama 3.2's
    {rope_type: llama3, factor: 32.0, low_freq_factor: 1.0, high_freq_factor: 4.0,
    original_max_position_embeddings: 8192}: what a student pruned from such a teacher
    (distill.init: prune) must rotate with. null: plain RoPE."""
    no_rope_interval: int = 4
    """Every Nth layer uses no positional encoding (NoPE). llama.cpp fixes this at 4;
    0 disables NoPE."""
    rms_norm_eps: float = 1e-6
    """RMSNorm epsilon."""
    init_std: float = 0.02
    """Std of the normal weight init."""

    def __post_init__(self) -> None:
        if self.preset == "custom":
            missing = [
                k
                for k in ("num_layers", "hidden_size", "intermediate_size", "num_heads", "num_kv_heads")
                if getattr(self, k) is None
            ]
            if missing:
                self.fail("preset", f"'custom' needs explicit {', '.join(missing)} (or pick a preset: "
                          f"{', '.join(PRESETS)})")
        dims = self.dims()
        layers, hidden, mlp, heads, kv = dims
        for name, v in zip(("num_layers", "hidden_size", "intermediate_size", "num_heads", "num_kv_heads"), dims):
            if v <= 0:
                self.fail(name, f"must be > 0, got {v}")
        if hidden % heads:
            self.fail("num_heads", f"hidden_size {hidden} is not divisible by num_heads {heads}")
        if heads % kv:
            self.fail("num_kv_heads", f"num_heads {heads} is not divisible by num_kv_heads {kv}")
        if (hidden // heads) % 2:
            self.fail("num_heads", f"head dim {hidden // heads} must be even for RoPE")
        if self.no_rope_interval < 0:
            self.fail("no_rope_interval", f"must be >= 0, got {self.no_rope_interval}")
        if self.max_position_embeddings < 16:
            self.fail("max_position_embeddings", f"must be >= 16, got {self.max_position_embeddings}")
        if self.rope_scaling is not None:
            self._check_rope_scaling(self.rope_scaling)

    def _check_rope_scaling(self, rs: dict[str, Any]) -> None:
        if rs.get("rope_type") != "llama3" or set(rs) != set(LLAMA3_ROPE_KEYS):
            self.fail("rope_scaling", f"{rs} is not Llama 3's scaling; smoledge trains with plain RoPE or "
                      f"{{{', '.join(LLAMA3_ROPE_KEYS)}}} with rope_type llama3 (copy the teacher's config.json), "
                      "or null")
        for key in LLAMA3_ROPE_KEYS[1:]:
            if isinstance(rs[key], bool) or not isinstance(rs[key], (int, float)) or rs[key] <= 0:
                self.fail(f"rope_scaling.{key}", f"must be a number > 0, got {rs[key]!r}")
        if not all(self.use_rope_layers()):
            # llama.cpp loads Llama 3's per-frequency factors (rope_freqs) only in its llama graph, and only a
            # SmolLM3 without NoPE layers is written as one (smoledge.export.architectures).
            self.fail("rope_scaling", "Llama 3's scaling exports only without NoPE layers; set no_rope_interval: 0")

    def use_rope_layers(self) -> list[int]:
        """transformers' no_rope_layers: 1 where layer i uses RoPE, 0 on every `no_rope_interval`th (NoPE)."""
        layers, interval = self.dims()[0], self.no_rope_interval
        return [int(interval == 0 or (i + 1) % interval != 0) for i in range(layers)]

    def dims(self) -> tuple[int, int, int, int, int]:
        """(num_layers, hidden_size, intermediate_size, num_heads, num_kv_heads)."""
        base = PRESETS.get(self.preset, (0, 0, 0, 0, 0))
        explicit = (self.num_layers, self.hidden_size, self.intermediate_size, self.num_heads, self.num_kv_heads)
        return tuple(e if e is not None else b for e, b in zip(explicit, base))  # type: ignore[return-value]


@dataclass
class SourceConfig(Section):
    """An existing model to deploy instead of training one (smoledge.model.source)."""

    source: str = ""
    """A hub id (HuggingFaceTB/SmolLM2-135M-Instruct), a local HF model directory or a .gguf file. When set,
    the build runs export, evaluate and package on it, and the data and training stages are not needed.
    Empty: the model is trained from the recipe's data."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) of a hub id; None: the default branch."""

    def __post_init__(self) -> None:
        if self.revision is not None and not self.source:
            self.fail("revision", "only applies to a hub id in model.source; set model.source or drop revision")

    @property
    def is_gguf(self) -> bool:
        return self.source.endswith(".gguf")

    def not_needed(self) -> str | None:
        """Why a data or training stage does not run for this recipe, or None."""
        return f"model.source is {self.source}: nothing to curate or train" if self.source else None
