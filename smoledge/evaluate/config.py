"""Config section for evaluation."""

from __future__ import annotations

from dataclasses import dataclass

from smoledge.config import Section


@dataclass
class EvaluateConfig(Section):
    seq_len: int = 256
    """Context window used to score held-out text."""
    max_tokens_per_language: int = 8192
    """Held-out tokens scored per language (caps eval time)."""
    gguf: bool = True
    """Also score the GGUF artifacts through llama.cpp, next to PyTorch."""
    onnx: bool = True
    """Also score the ONNX artifacts (fp32 and each int8) through onnxruntime, when export wrote them."""

    def __post_init__(self) -> None:
        if self.seq_len < 8:
            self.fail("seq_len", f"must be >= 8, got {self.seq_len}")
        if self.max_tokens_per_language < self.seq_len:
            self.fail("max_tokens_per_language", f"must be >= seq_len ({self.seq_len})")
