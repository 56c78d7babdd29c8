"""Server settings. Torch-free: this runs on boards."""

from __future__ import annotations

from dataclasses import dataclass

from smoledge.config import ConfigError


@dataclass
class ServeConfig:
    bundle: str
    """Bundle directory made by `smoledge package` (holds server.json and manifest.json), or a .tar.gz of it."""
    host: str | None = None
    """Bind address; None takes the bundle's server.json (127.0.0.1 by default)."""
    port: int | None = None
    """Port; None takes the bundle's server.json."""
    threads: int | None = None
    """llama.cpp threads; None takes the bundle's server.json."""
    n_ctx: int | None = None
    """Context length; None takes the bundle's server.json."""

    def __post_init__(self) -> None:
        if self.port is not None and not 0 < self.port < 65536:
            raise ConfigError(f"--port: must be in 1..65535, got {self.port}")
        if self.threads is not None and self.threads <= 0:
            raise ConfigError(f"--threads: must be > 0, got {self.threads}")
        if self.n_ctx is not None and self.n_ctx <= 0:
            raise ConfigError(f"--n-ctx: must be > 0, got {self.n_ctx}")
