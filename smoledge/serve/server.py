"""OpenAI-compatible HTTP server for a bundle, a GGUF, an ONNX export or an HF directory (FastAPI). Torch-free.

    smoledge serve runs/quickstart/bundle                   # http://127.0.0.1:8000/v1
    smoledge serve SmolLM2-135M-Instruct.Q4_1.gguf          # any GGUF: template, EOS, context from its metadata
    smoledge serve bundle.tar.gz --slots 2 --queue 16 --api-key "$KEY" --cors-origin https://app.example.com
    curl -s localhost:8000/v1/completions -H 'content-type: application/json' \\
         -d '{"prompt": "The", "max_tokens": 16}'

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    client.chat.completions.create(model="quickstart", messages=[{"role": "user", "content": "Hi"}])

Endpoints: POST /v1/completions, POST /v1/chat/completions (both with
stream=true over server-sent events), GET /v1/models, GET /health (the
process is up), GET /ready (the model is loaded; 503 until then and while
shutting down), GET /metrics (Prometheus), POST /tokenize and /detokenize
(llama.cpp server's names and shapes).

/v1/completions also takes what lm-evaluation-harness's `local-completions`
model sends: prompts as token ids, several prompts per request (one choice
each), and `echo` + `logprobs` (OpenAI's legacy format: the prompt tokens'
log-probabilities, the first one null), with `max_tokens: 0` to score only.
Both generation endpoints take `response_format` ({"type": "json_object"} or
{"type": "json_schema", "json_schema": {"schema": {...}}}) and `grammar`
(GBNF, llama.cpp's extension field) for constrained output.

Load: `--slots N` requests generate at once (llama.cpp: N KV sequences of one
context decoded in one batch, see llama_engine.py; onnxruntime: N KV caches);
`--queue M` more wait for a slot, and the one after gets a 429 with
Retry-After at once. A request whose client disconnects is stopped at the
next token; one that runs past `--request-timeout` is stopped and answered
504. SIGTERM lets requests in flight finish (up to `--shutdown-timeout`).

This module is the HTTP layer only: the request and error shapes are
protocol.py's, the slots and what a request does in one state.py's, what
TARGET is targets.py's, and generation the backends'. TARGET is read (a
bundle's checksums verified) before the app exists; the model is then
loaded in a background thread so /health answers at once and /ready tells
an orchestrator when to send traffic.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Iterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from smoledge.config import ConfigError
from smoledge.errors import SmoledgeError
from smoledge.serve.config import ServeConfig
from smoledge.serve.generation import Backend, Chunk, Completion, Job, RequestError, Sampling
from smoledge.serve.metrics import CONTENT_TYPE, MetricsMiddleware
from smoledge.serve.protocol import (
    DEFAULT_COMPLETION_MAX_TOKENS,
    GENERATION,
    GUARDED,
    APIError,
    ChatRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
    answers,
    error_response,
    invalid_request,
    usage,
)
from smoledge.serve.security import APIKeyMiddleware, BodyLimitMiddleware, keys_from_env
from smoledge.serve.slots import Run
from smoledge.serve.state import BackendFactory, ServerState, backends_for
from smoledge.serve.targets import Served, resolve

# Seconds the shutdown waits for cancelled generations to stop (each stops within one token).
STOP_WAIT_S = 10.0


def _limits(cfg: ServeConfig, served: Served) -> tuple[int, int]:
    """The context length and thread count to serve with: the flags', else the target's."""
    t, n_ctx_train = served.target, served.settings.n_ctx_train
    n_ctx = cfg.n_ctx or t.n_ctx
    if n_ctx > n_ctx_train:
        raise ConfigError(f"--n-ctx {n_ctx} exceeds the model's trained context of {n_ctx_train} tokens; "
                          f"use {n_ctx_train} or less")
    return n_ctx, cfg.threads or t.threads or os.cpu_count() or 1


def create_app(cfg: ServeConfig, backend_factory: BackendFactory | None = None) -> FastAPI:
    """Read TARGET (a bundle's checksums verified) and build the app; the model loads when the app starts.

    `backend_factory` makes the slots' backends (default: the target's backend, llama.cpp or onnxruntime)."""
    served = resolve(cfg.target, cfg.device)
    n_ctx, threads = _limits(cfg, served)
    s = served.settings
    slots = cfg.slots or s.slots
    queue = cfg.queue if cfg.queue is not None else s.queue
    state = ServerState(served, n_ctx, threads, slots, queue, cfg.request_timeout or s.request_timeout,
                        backend_factory or backends_for(served, n_ctx, threads))
    api_keys = list(dict.fromkeys([*cfg.api_keys, *keys_from_env()]))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = threading.Thread(target=state.load, name="smoledge-load", daemon=True)
        loader.start()
        yield
        # uvicorn has let the requests in flight finish (or cancelled them after --shutdown-timeout).
        state.draining = True
        await run_in_threadpool(loader.join)
        pool = state.pool
        if pool is not None:
            pool.cancel_all("shutdown")
            if not await pool.drain(STOP_WAIT_S):
                print(f"smoledge: {len(pool.runs)} generation(s) still running after {STOP_WAIT_S:g} s; "
                      "exiting without closing their model contexts", file=sys.stderr, flush=True)
            for backend in pool.close():
                backend.close()
        served.close()

    app = FastAPI(title="smoledge", version=_version(), lifespan=lifespan)
    app.state.smoledge = state
    app.state.api_keys = len(api_keys)
    # Added innermost first: a request meets metrics, then CORS, then the API key, then the body limit.
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.max_body_bytes or s.max_body_bytes)
    if api_keys:
        app.add_middleware(APIKeyMiddleware, keys=api_keys)
    if cfg.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=cfg.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], max_age=600)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics, router=app.router)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.type, exc.param, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unknown routes (404), wrong methods (405), bodies over the limit (413).
        return error_response(exc.status_code, str(exc.detail), "invalid_request_error", None,
                               dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        traceback.print_exception(exc, file=sys.stderr)
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}", "server_error")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid_request(list(exc.errors()))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", responses={503: {"description": "loading, failed to load, or draining"}})
    def ready() -> JSONResponse:
        if state.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        if state.pool is not None:
            return JSONResponse({"status": "ready", "model": state.settings.model_id})
        body = {"status": "failed", "error": state.error} if state.error else {"status": "loading"}
        return JSONResponse(body, status_code=503)

    @app.get("/metrics", response_class=PlainTextResponse, responses=answers(*GUARDED))
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(state.metrics.render(), media_type=CONTENT_TYPE)

    def model_card() -> dict[str, Any]:
        return {"id": state.settings.model_id, "object": "model", "created": state.created, "owned_by": "smoledge"}

    @app.get("/v1/models", responses=answers(*GUARDED))
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id}", responses=answers(404, *GUARDED))
    def model(model_id: str) -> dict[str, Any]:
        state.check_model(model_id)
        return model_card()

    @app.post("/tokenize", responses=answers(400, 503, *GUARDED))
    async def tokenize(req: TokenizeRequest) -> dict[str, Any]:
        backend = state.ready_backend()
        tokens = await run_in_threadpool(_call, backend.tokenize, req.content, req.add_special)
        if req.with_pieces:
            return {"tokens": [{"id": t, "piece": backend.piece(t)} for t in tokens]}
        return {"tokens": tokens}

    @app.post("/detokenize", responses=answers(400, 503, *GUARDED))
    async def detokenize(req: DetokenizeRequest) -> dict[str, str]:
        backend = state.ready_backend()
        return {"content": await run_in_threadpool(_call, backend.detokenize, req.tokens)}

    @app.post("/v1/completions", response_model=None, responses=GENERATION)
    async def completions(req: CompletionRequest, request: Request) -> dict[str, Any] | StreamingResponse:
        state.check_model(req.model)
        backend = state.ready_backend()
        prompts = req.prompts()
        max_tokens = req.max_tokens if req.max_tokens is not None else DEFAULT_COMPLETION_MAX_TOKENS
        sampling = req.sampling(max_tokens)
        # Every prompt is checked before any is run: a bad one fails the request at once.
        jobs = [await run_in_threadpool(_prepare, backend, p, sampling, req.echo, req.logprobs, i, len(prompts))
                for i, p in enumerate(prompts)]
        head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": state.settings.model_id}
        run = await state.start(request, jobs, req.stream)
        if req.stream:
            (job,) = jobs

            def render(c: Chunk) -> Iterator[dict[str, Any]]:
                yield {**head, "choices": [{"text": c.text, "index": 0, "logprobs": None,
                                            "finish_reason": c.finish_reason}]}
                if c.finish_reason and req.include_usage():
                    yield {**head, "choices": [], "usage": usage(len(job.tokens), c.completion_tokens)}
            return _sse(state, run, render)
        outs = await _collect(state, run)
        choices = []
        for i, out in enumerate(outs):
            lp = out.logprobs.to_dict() if out.logprobs is not None else None
            choices.append({"text": out.text, "index": i, "logprobs": lp, "finish_reason": out.finish_reason})
        total = usage(sum(o.prompt_tokens for o in outs), sum(o.completion_tokens for o in outs))
        return {**head, "choices": choices, "usage": total}

    @app.post("/v1/chat/completions", response_model=None, responses=GENERATION)
    async def chat(req: ChatRequest, request: Request) -> dict[str, Any] | StreamingResponse:
        state.check_model(req.model)
        req.unsupported()
        backend = state.ready_backend()
        prompt = _call(backend.render_chat, [m.plain() for m in req.messages])
        sampling = req.sampling(req.limit())
        job = await run_in_threadpool(_prepare, backend, prompt, sampling)
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": state.settings.model_id}
        run = await state.start(request, [job], req.stream)
        if req.stream:
            head["object"] = "chat.completion.chunk"
            started = False

            def render(c: Chunk) -> Iterator[dict[str, Any]]:
                nonlocal started
                if not started:
                    started = True
                    yield {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                "finish_reason": None}]}
                if c.text:
                    yield {**head, "choices": [{"index": 0, "delta": {"content": c.text}, "finish_reason": None}]}
                if c.finish_reason:
                    yield {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": c.finish_reason}]}
                    if req.include_usage():
                        yield {**head, "choices": [], "usage": usage(len(job.tokens), c.completion_tokens)}
            return _sse(state, run, render)
        (out,) = await _collect(state, run)
        return {**head, "choices": [{"index": 0, "message": {"role": "assistant", "content": out.text},
                                     "logprobs": None, "finish_reason": out.finish_reason}],
                "usage": usage(out.prompt_tokens, out.completion_tokens)}

    return app


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except RequestError as exc:
        raise APIError(400, str(exc), param=exc.param) from None


def _prepare(backend: Backend, prompt: str | list[int], sampling: Sampling, echo: bool = False,
             logprobs: int | None = None, index: int = 0, count: int = 1) -> Job:
    try:
        return backend.prepare(prompt, sampling, echo, logprobs)
    except RequestError as exc:
        where = f"prompt {index}: " if count > 1 else ""
        raise APIError(400, f"{where}{exc}", param=exc.param) from None


async def _collect(state: ServerState, run: Run) -> list[Completion]:
    """A non-streamed request's completions, one per job; raises the error a stopped run gets."""
    outs: list[Completion] = []
    try:
        async for _, out in run.results():
            outs.append(out)
    finally:
        # This handler cancelled (uvicorn's shutdown timeout): stop the generation too.
        run.cancel("shutdown" if state.draining else "disconnect")
    if run.reason is not None:
        raise state.stopped_error(run)
    return outs


class _RunResponse(StreamingResponse):
    """A stream that stops its generation however the response ends, even before its first byte."""

    def __init__(self, state: ServerState, run: Run, content: AsyncIterator[str]):
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self.state, self.run = state, run

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.run.cancel("shutdown" if self.state.draining else "disconnect")


def _sse(state: ServerState, run: Run, render: Callable[[Chunk], Iterator[dict[str, Any]]]) -> StreamingResponse:
    """Server-sent events in OpenAI's format: `data: {json}` per chunk, then `data: [DONE]`."""

    async def events() -> AsyncIterator[str]:
        try:
            async for _, chunk in run.results():
                if chunk.finish_reason == "cancelled":
                    break
                for event in render(chunk):
                    yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
        except Exception as exc:  # the status line is already sent: report in-band
            traceback.print_exception(exc, file=sys.stderr)
            error = {"error": {"message": f"generation failed: {exc}", "type": "server_error",
                               "param": None, "code": None}}
            yield f"data: {json.dumps(error)}\n\n"
        if run.reason in ("timeout", "shutdown"):
            err = state.stopped_error(run)
            yield f"data: {json.dumps({'error': {'message': err.message, 'type': err.type, 'param': None, 'code': None}})}\n\n"
        yield "data: [DONE]\n\n"

    return _RunResponse(state, run, events())


def _version() -> str:
    from smoledge import __version__

    return __version__


def _loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")


def run(cfg: ServeConfig) -> None:
    """Serve until interrupted; raise SmoledgeError if the model cannot be loaded."""
    import uvicorn

    app = create_app(cfg)
    state: ServerState = app.state.smoledge
    host = cfg.host or state.settings.host
    port = cfg.port or state.settings.port

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            # From the first moment of a shutdown, /ready says so and new generations get a 503.
            state.draining = True
            await super().shutdown(sockets)

    server = Server(uvicorn.Config(app, host=host, port=port, log_level="info",
                                   timeout_graceful_shutdown=cfg.shutdown_timeout))  # type: ignore[arg-type]

    def stop() -> None:
        server.should_exit = True

    state.on_load_failure = stop
    s, t = state.settings, state.target
    auth = f"{app.state.api_keys} API key(s)" if app.state.api_keys else "no API key"
    threads = f"{state.threads} threads shared"
    device = f" for {t.device}" if t.device else ""
    source = f"{state.served.note}: " if state.served.note else ""
    print(
        f"smoledge: serving '{s.model_id}' ({source}{t.model_path.name} on {t.backend}{device}, n_ctx {state.n_ctx}, "
        f"{state.slots} slot(s), {threads}, queue {state.queue}, timeout {state.request_timeout:g} s, {auth}) "
        f"at http://{host}:{port}/v1 (GET /ready turns 200 once the model is loaded)",
        file=sys.stderr, flush=True,
    )
    if not _loopback(host) and not app.state.api_keys:
        print(f"smoledge: WARNING: listening on {host} without an API key: anyone who can reach this port can "
              "use the model; add --api-key (or SMOLEDGE_API_KEYS) or bind 127.0.0.1 behind a proxy",
              file=sys.stderr, flush=True)
    server.run()
    if state.error:
        raise SmoledgeError(f"the server stopped: the model failed to load: {state.error}")
