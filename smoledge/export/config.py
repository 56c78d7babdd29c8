"""Config section for export: HF directory plus GGUF files."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from smoledge.config import Section

GGUF_TYPES = ("f32", "f16", "q8_0")


@dataclass
class ExportConfig(Section):
    gguf_types: list[Literal["f32", "f16", "q8_0"]] = field(default_factory=lambda: ["f32", "q8_0"])
    """GGUF files to write. f32 is always written too: it is the parity reference."""
    parity_max_abs_logit_diff: float = 1e-3
    """Fail the export if GGUF f32 logits differ from PyTorch by more than this."""
    parity_text: str = "The quick brown fox. Le renard brun. El zorro marrón. Der braune Fuchs."
    """Text whose logits are compared between PyTorch and llama.cpp."""

    def __post_init__(self) -> None:
        if not self.gguf_types:
            self.fail("gguf_types", f"needs at least one of {', '.join(GGUF_TYPES)}")
        if self.parity_max_abs_logit_diff <= 0:
            self.fail("parity_max_abs_logit_diff", f"must be > 0, got {self.parity_max_abs_logit_diff}")
