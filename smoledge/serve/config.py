"""Server settings. Torch-free: this runs on boards.

Every field left None takes the bundle's server.json value (ServerSettings in
smoledge/serve/bundle.py; for a bare GGUF, ONNX or HF target, the values
smoledge/serve/targets.py reads from the model), so a bundle carries sensible
serving defaults and a flag overrides one for one run. API keys and CORS
origins never come from the bundle: they belong to the deployment, not to the
model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from smoledge.config import ConfigError

# An origin as browsers send it: scheme://host[:port], nothing after.
_ORIGIN = re.compile(r"^https?://[^/\s?#]+$")


@dataclass
class ServeConfig:
    target: str = ""
    """What to serve: a bundle directory made by `smoledge package` (or a .tar.gz of it), a .gguf file, an
    ONNX export directory, or an HF model directory with a GGUF or ONNX export (smoledge/serve/targets.py)."""
    host: str | None = None
    """Bind address; None takes the bundle's server.json (127.0.0.1 by default)."""
    port: int | None = None
    """Port; None takes the bundle's server.json."""
    threads: int | None = None
    """llama.cpp threads in all (split among the slots); None takes the bundle's server.json."""
    n_ctx: int | None = None
    """Context length; None takes the bundle's server.json (the device's with `device`)."""
    device: str | None = None
    """A target device of the bundle (server.json devices): serve the model evaluate selected for it, with its
    backend, threads and context; None: the bundle's default model (llama.cpp)."""
    slots: int | None = None
    """Requests generated at the same time (decoded in one batch, a KV cache each); None: server.json's (1 by default)."""
    queue: int | None = None
    """Requests that may wait for a slot before the next one gets a 429; None: server.json's (8)."""
    request_timeout: float | None = None
    """Seconds a request may take, queueing included (then 504, generation stopped); None: server.json's (300)."""
    shutdown_timeout: float = 30.0
    """On SIGTERM/SIGINT, seconds to let requests in flight finish before they are cancelled."""
    max_body_bytes: int | None = None
    """Largest request body (413 beyond); None: server.json's (2 MiB)."""
    api_keys: list[str] = field(default_factory=list)
    """Bearer tokens a client must send (any one of them); with SMOLEDGE_API_KEYS added. Empty: no auth."""
    cors_origins: list[str] = field(default_factory=list)
    """Browser origins allowed to call the API (CORS); empty: no CORS headers at all."""
    bundle: str | None = None
    """Another name for `target`, for callers that serve a bundle."""

    def __post_init__(self) -> None:
        if self.bundle is not None:
            if self.target and self.target != self.bundle:
                raise ConfigError(f"target ({self.target!r}) and bundle ({self.bundle!r}) name two things to serve; "
                                  "give one")
            self.target = self.bundle
        if not self.target:
            raise ConfigError("TARGET: name what to serve (a bundle, a .gguf, an ONNX or an HF directory)")
        if self.port is not None and not 0 < self.port < 65536:
            raise ConfigError(f"--port: must be in 1..65535, got {self.port}")
        if self.threads is not None and self.threads <= 0:
            raise ConfigError(f"--threads: must be > 0, got {self.threads}")
        if self.n_ctx is not None and self.n_ctx <= 0:
            raise ConfigError(f"--n-ctx: must be > 0, got {self.n_ctx}")
        if self.slots is not None and self.slots < 1:
            raise ConfigError(f"--slots: must be >= 1, got {self.slots}")
        if self.queue is not None and self.queue < 0:
            raise ConfigError(f"--queue: must be >= 0, got {self.queue}")
        if self.request_timeout is not None and self.request_timeout <= 0:
            raise ConfigError(f"--request-timeout: must be > 0 seconds, got {self.request_timeout}")
        if self.shutdown_timeout < 0:
            raise ConfigError(f"--shutdown-timeout: must be >= 0 seconds, got {self.shutdown_timeout}")
        if self.max_body_bytes is not None and self.max_body_bytes < 1024:
            raise ConfigError(f"--max-body-bytes: must be >= 1024, got {self.max_body_bytes}")
        for key in self.api_keys:
            if not key or any(c.isspace() for c in key) or not key.isprintable():
                raise ConfigError("--api-key: a key must be non-empty printable text without spaces "
                                  "(generate one with `openssl rand -hex 32`)")
        for origin in self.cors_origins:
            if origin != "*" and not _ORIGIN.match(origin):
                raise ConfigError(f"--cors-origin: {origin!r} is not an origin; write it as the browser sends it, "
                                  "e.g. https://app.example.com or http://localhost:3000 (no path), or *")
