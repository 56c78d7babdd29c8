"""Config section for the deployable bundle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from smoledge.config import Section


@dataclass
class PackageConfig(Section):
    gguf_type: Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k"] = "q8_0"
    """Which exported GGUF goes into the bundle (must be among export.gguf_types or f32)."""
    host: str = "127.0.0.1"
    """Address the bundled server binds to (loopback by default)."""
    port: int = 8000
    """Port the bundled server listens on."""
    n_ctx: int = 0
    """Context length of the server (0: the model's trained length, capped by the devices' max_context)."""
    threads: int = 0
    """llama.cpp threads (0: the device profile's, else all cores)."""

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            self.fail("port", f"must be in 1..65535, got {self.port}")
        if self.n_ctx < 0 or self.threads < 0:
            self.fail("n_ctx", "n_ctx and threads must be >= 0")
