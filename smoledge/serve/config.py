"""Server settings. Torch-free: this runs on boards."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServeConfig:
    bundle: str
    """Bundle directory made by `smoledge package` (holds server.json and manifest.json)."""
    host: str | None = None
    """Bind address; None takes the bundle's server.json (127.0.0.1 by default)."""
    port: int | None = None
    """Port; None takes the bundle's server.json."""
    threads: int | None = None
    """llama.cpp threads; None takes the bundle's server.json."""
    n_ctx: int | None = None
    """Context length; None takes the bundle's server.json."""
