"""Request guards for the server: API keys and the request body size limit. Torch-free.

    smoledge serve BUNDLE --api-key "$(openssl rand -hex 32)"     # or SMOLEDGE_API_KEYS=key1,key2
    curl -H "Authorization: Bearer $KEY" localhost:8000/v1/models

API keys: every route but the liveness and readiness probes (/health, /ready, which
an orchestrator calls without credentials and which say nothing but "up"/"loaded")
needs `Authorization: Bearer <key>`; /metrics, /docs and /openapi.json included.
The token is checked against every key with hmac.compare_digest on sha256 digests:
equal-length inputs, so the time taken does not depend on how much of a guess is
right, on the key lengths, nor on which key matched.

Body size: a Content-Length over the limit is refused before anything is read; a
chunked body is counted as it arrives and refused when it passes the limit. Both 413.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Routes that answer without a key: probes that reveal nothing an attacker can use.
OPEN_PATHS = frozenset({"/health", "/ready"})
ENV_KEYS = "SMOLEDGE_API_KEYS"


def keys_from_env(environ: dict[str, str] | None = None) -> list[str]:
    """SMOLEDGE_API_KEYS: keys separated by commas or whitespace (a systemd EnvironmentFile line works)."""
    raw = (environ if environ is not None else os.environ).get(ENV_KEYS, "")
    return [k for k in raw.replace(",", " ").split() if k]


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


async def _send_error(send: Send, status: int, message: str, type_: str, code: str | None,
                      headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class APIKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: list[str]):
        if not keys:
            raise ValueError("APIKeyMiddleware needs at least one key")
        self.app = app
        self._digests = [_digest(k.encode("utf-8")) for k in keys]

    def authorized(self, header: bytes | None) -> bool:
        scheme, _, token = (header or b"").strip().partition(b" ")
        given = _digest(token.strip())
        ok = False
        # No early exit: every key is compared whatever the outcome.
        for key in self._digests:
            ok |= hmac.compare_digest(given, key)
        return ok and scheme.lower() == b"bearer"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization")
        if self.authorized(header):
            await self.app(scope, receive, send)
            return
        if header is None:
            message = "missing API key: send the header `Authorization: Bearer <key>`"
            challenge = 'Bearer realm="smoledge"'
        else:
            message = "invalid API key: the bearer token matches none of this server's keys"
            challenge = 'Bearer realm="smoledge", error="invalid_token"'
        await _send_error(send, 401, message, "invalid_request_error", "invalid_api_key",
                          {"WWW-Authenticate": challenge})


class BodyTooLarge(HTTPException):
    """Raised from `receive` inside a handler; the app's HTTPException handler answers 413."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is larger than this server's limit of {limit} bytes "
                              "(--max-body-bytes); send a smaller request")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"").strip()
        if length.isdigit() and int(length) > self.max_bytes:
            # Answered before reading a byte of it; the connection is closed rather than drained.
            await _send_error(send, 413, BodyTooLarge(self.max_bytes).detail, "invalid_request_error",
                              "body_too_large", {"Connection": "close"})
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted, send)
