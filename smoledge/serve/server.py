"""OpenAI-compatible HTTP server for a smoledge bundle (FastAPI + llama.cpp). Torch-free.

    smoledge serve runs/quickstart/bundle                   # http://127.0.0.1:8000/v1
    curl -s localhost:8000/v1/completions -H 'content-type: application/json' \\
         -d '{"prompt": "The", "max_tokens": 16}'

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    client.chat.completions.create(model="quickstart", messages=[{"role": "user", "content": "Hi"}])

Endpoints: POST /v1/completions, POST /v1/chat/completions (both with
stream=true over server-sent events), GET /v1/models, GET /health (the
process is up), GET /ready (the model is loaded; 503 until then).

/v1/completions also takes what lm-evaluation-harness's `local-completions`
model sends: prompts as token ids, several prompts per request (one choice
each), and `echo` + `logprobs` (OpenAI's legacy format: the prompt tokens'
log-probabilities, the first one null), with `max_tokens: 0` to score only.

The bundle's checksums are verified before the app exists; the model is
then loaded in a background thread so /health answers at once and /ready
tells an orchestrator when to send traffic.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, AsyncIterator, Callable, Iterator, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from smoledge.config import ConfigError
from smoledge.errors import SmoledgeError
from smoledge.serve.backend import Chunk, LlamaBackend, RequestError, Sampling
from smoledge.serve.bundle import Bundle, load_bundle
from smoledge.serve.config import ServeConfig

# OpenAI's legacy completions default; chat completions default to "until the context is full".
DEFAULT_COMPLETION_MAX_TOKENS = 16
MAX_STOP_SEQUENCES = 4
# Most alternatives per token `logprobs` may ask for (OpenAI's legacy API allows 5; vLLM 20).
MAX_LOGPROBS = 20
# Most prompts in one /v1/completions request: they run one after another, so this bounds a request's time.
MAX_PROMPTS = 64


# -- errors in OpenAI's shape ---------------------------------------------------


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param = status, message, type_, param


def _error_response(status: int, message: str, type_: str, param: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": None}}
    return JSONResponse(body, status_code=status)


# -- request bodies ---------------------------------------------------------------


class _Base(BaseModel):
    # Clients send many optional OpenAI fields (user, logit_bias...); the ones
    # that would change the result and are not supported are rejected below.
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: str | list[str] | None) -> list[str]:
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences, got {len(stops)}")
        if any(not s for s in stops):
            raise ValueError("stop sequences must be non-empty strings")
        return stops

    @field_validator("n")
    @classmethod
    def _n(cls, v: int | None) -> int | None:
        if v not in (None, 1):
            raise ValueError(f"only n=1 is supported, got {v}; send separate requests for more choices")
        return v

    def sampling(self, max_tokens: int | None) -> Sampling:
        return Sampling(
            max_tokens=max_tokens,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            stop=list(self.stop or []),
            seed=self.seed,
        )

    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class CompletionRequest(_Base):
    # Text, token ids, or a batch of either (one choice per prompt, in order).
    prompt: str | list[str] | list[int] | list[list[int]]
    # 0 only with echo: score the prompt, generate nothing.
    max_tokens: int | None = Field(None, ge=0)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    suffix: str | None = None

    def prompts(self) -> list[str | list[int]]:
        """The request's prompts; raises a 400 for what this server does not do."""
        if self.suffix is not None:
            raise APIError(400, "suffix is not supported (it needs a fill-in-the-middle model)", param="suffix")
        if isinstance(self.prompt, str) or (self.prompt and isinstance(self.prompt[0], int)):
            prompts: list[str | list[int]] = [self.prompt]  # type: ignore[list-item]
        else:
            prompts = list(self.prompt)  # type: ignore[arg-type]
        if not prompts:
            raise APIError(400, "prompt: the list of prompts is empty", param="prompt")
        if len(prompts) > MAX_PROMPTS:
            raise APIError(400, f"prompt: at most {MAX_PROMPTS} prompts per request, got {len(prompts)}; "
                           "split the batch", param="prompt")
        if self.stream:
            if self.echo or self.logprobs is not None:
                field = "echo" if self.echo else "logprobs"
                raise APIError(400, f"{field}: echo and logprobs come in non-streamed responses only; "
                               "set stream to false", param=field)
            if len(prompts) > 1:
                raise APIError(400, f"prompt: a streamed request takes one prompt, got a list of {len(prompts)}",
                               param="prompt")
        return prompts


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def plain(self) -> dict[str, str]:
        content = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content or [])
        # "developer" is OpenAI's newer name for the system role.
        return {"role": "system" if self.role == "developer" else self.role, "content": content}


class ChatRequest(_Base):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[Any] | None = None

    def limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


# -- app --------------------------------------------------------------------------


class ServerState:
    """The verified bundle and, once loaded, its backend."""

    def __init__(self, bundle: Bundle, n_ctx: int, threads: int):
        self.bundle = bundle
        self.settings = bundle.settings
        self.n_ctx = n_ctx
        self.threads = threads
        self.backend: LlamaBackend | None = None
        self.error: str | None = None
        self.created = int(time.time())
        try:
            self.created = int(datetime.fromisoformat(bundle.manifest.get("created", "")).timestamp())
        except (TypeError, ValueError):
            pass
        self.on_load_failure: Callable[[], None] | None = None
        """Called from the loader thread when the model cannot be loaded (run() stops uvicorn)."""

    def load(self) -> None:
        s = self.settings
        try:
            self.backend = LlamaBackend(
                self.bundle.model_path, n_ctx=self.n_ctx, threads=self.threads, chat_template=s.chat_template,
                bos_token=s.bos_token, eos_token=s.eos_token, stop_tokens=s.stop_tokens,
            )
        except Exception as exc:  # any failure must reach /ready and the operator, not vanish in a thread
            self.error = str(exc)
            print(f"smoledge: could not load the model: {exc}", file=sys.stderr, flush=True)
            if self.on_load_failure is not None:
                self.on_load_failure()

    def ready_backend(self) -> LlamaBackend:
        if self.backend is None:
            if self.error:
                raise APIError(503, f"the model failed to load: {self.error}", "server_error")
            raise APIError(503, "the model is still loading; retry when GET /ready returns 200", "server_error")
        return self.backend

    def check_model(self, model: str | None) -> None:
        if model is not None and model != self.settings.model_id:
            raise APIError(
                404, f"model '{model}' is not served here; this server serves '{self.settings.model_id}' "
                "(see GET /v1/models)", "model_not_found", "model",
            )


def _resolve(cfg: ServeConfig, bundle: Bundle) -> tuple[int, int]:
    s = bundle.settings
    n_ctx = cfg.n_ctx or s.n_ctx
    if n_ctx > s.n_ctx_train:
        raise ConfigError(
            f"--n-ctx {n_ctx} exceeds the model's trained context of {s.n_ctx_train} tokens; "
            f"use {s.n_ctx_train} or less"
        )
    threads = cfg.threads or s.threads or os.cpu_count() or 1
    return n_ctx, threads


def create_app(cfg: ServeConfig) -> FastAPI:
    """Verify the bundle and build the app; the model loads when the app starts."""
    bundle = load_bundle(cfg.bundle)
    n_ctx, threads = _resolve(cfg, bundle)
    state = ServerState(bundle, n_ctx, threads)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = threading.Thread(target=state.load, name="smoledge-load", daemon=True)
        loader.start()
        yield
        await run_in_threadpool(loader.join)
        if state.backend is not None:
            state.backend.close()

    app = FastAPI(title="smoledge", version=_version(), lifespan=lifespan)
    app.state.smoledge = state

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return _error_response(exc.status, exc.message, exc.type, exc.param)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":
            detail = (first.get("ctx") or {}).get("error", "")
            return _error_response(400, f"the request body is not valid JSON ({detail})", "invalid_request_error")
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        message = f"{where}: {msg}" if where else f"request body: {msg} (send a JSON object)"
        return _error_response(400, message, "invalid_request_error", where or None)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> JSONResponse:
        if state.backend is not None:
            return JSONResponse({"status": "ready", "model": state.settings.model_id})
        body = {"status": "failed", "error": state.error} if state.error else {"status": "loading"}
        return JSONResponse(body, status_code=503)

    def model_card() -> dict[str, Any]:
        return {"id": state.settings.model_id, "object": "model", "created": state.created, "owned_by": "smoledge"}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id}")
    def model(model_id: str) -> dict[str, Any]:
        state.check_model(model_id)
        return model_card()

    @app.post("/v1/completions", response_model=None)
    async def completions(req: CompletionRequest) -> dict[str, Any] | StreamingResponse:
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
        if req.stream:
            (job,) = jobs

            def render(c: Chunk) -> Iterator[dict[str, Any]]:
                yield {**head, "choices": [{"text": c.text, "index": 0, "logprobs": None,
                                            "finish_reason": c.finish_reason}]}
                if c.finish_reason and req.include_usage():
                    yield {**head, "choices": [], "usage": _usage(len(job.tokens), c.completion_tokens)}
            return _sse(backend.stream(job), render)
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for i, job in enumerate(jobs):
            # One job at a time through the worker pool, so other requests interleave between prompts.
            out = await run_in_threadpool(backend.complete, job)
            lp = out.logprobs.to_dict() if out.logprobs is not None else None
            choices.append({"text": out.text, "index": i, "logprobs": lp, "finish_reason": out.finish_reason})
            prompt_tokens += out.prompt_tokens
            completion_tokens += out.completion_tokens
        return {**head, "choices": choices, "usage": _usage(prompt_tokens, completion_tokens)}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(req: ChatRequest) -> dict[str, Any] | StreamingResponse:
        state.check_model(req.model)
        if req.tools:
            raise APIError(400, "tools are not supported by this server", param="tools")
        backend = state.ready_backend()
        prompt = _call(backend.render_chat, [m.plain() for m in req.messages])
        job = await run_in_threadpool(_prepare, backend, prompt, req.sampling(req.limit()))
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": state.settings.model_id}
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
                        yield {**head, "choices": [], "usage": _usage(len(job.tokens), c.completion_tokens)}
            return _sse(backend.stream(job), render)
        out = await run_in_threadpool(backend.complete, job)
        return {**head, "choices": [{"index": 0, "message": {"role": "assistant", "content": out.text},
                                     "logprobs": None, "finish_reason": out.finish_reason}],
                "usage": _usage(out.prompt_tokens, out.completion_tokens)}

    return app


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except RequestError as exc:
        raise APIError(400, str(exc), param=exc.param) from None


def _prepare(backend: LlamaBackend, prompt: str | list[int], sampling: Sampling, echo: bool = False,
             logprobs: int | None = None, index: int = 0, count: int = 1) -> Any:
    try:
        return backend.prepare(prompt, sampling, echo, logprobs)
    except RequestError as exc:
        where = f"prompt {index}: " if count > 1 else ""
        raise APIError(400, f"{where}{exc}", param=exc.param) from None


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _sse(chunks: Iterator[Chunk], render: Callable[[Chunk], Iterator[dict[str, Any]]]) -> StreamingResponse:
    """Server-sent events in OpenAI's format: `data: {json}` per chunk, then `data: [DONE]`."""

    async def events() -> AsyncIterator[str]:
        try:
            while True:
                # Generation blocks, so each step runs in a worker thread. If the
                # client goes away, the step in flight finishes first (anyio does
                # not abandon threads), then close() below ends the generation and
                # releases the backend lock.
                chunk = await run_in_threadpool(next, chunks, None)
                if chunk is None:
                    break
                for event in render(chunk):
                    yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
        except Exception as exc:  # the status line is already sent: report in-band
            error = {"error": {"message": f"generation failed: {exc}", "type": "server_error",
                               "param": None, "code": None}}
            yield f"data: {json.dumps(error)}\n\n"
        finally:
            chunks.close()
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _version() -> str:
    from smoledge import __version__

    return __version__


def run(cfg: ServeConfig) -> None:
    """Serve until interrupted; raise SmoledgeError if the model cannot be loaded."""
    import uvicorn

    app = create_app(cfg)
    state: ServerState = app.state.smoledge
    host = cfg.host or state.settings.host
    port = cfg.port or state.settings.port
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info"))

    def stop() -> None:
        server.should_exit = True

    state.on_load_failure = stop
    s = state.settings
    print(
        f"smoledge: serving '{s.model_id}' ({s.gguf_type}, n_ctx {state.n_ctx}, {state.threads} threads) "
        f"at http://{host}:{port}/v1 (GET /ready turns 200 once the model is loaded)",
        file=sys.stderr, flush=True,
    )
    server.run()
    if state.error:
        raise SmoledgeError(f"the server stopped: the model failed to load: {state.error}")
