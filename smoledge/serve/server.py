"""OpenAI-compatible HTTP server for a smoledge bundle (FastAPI + llama.cpp). Torch-free.

    smoledge serve runs/quickstart/bundle                   # http://127.0.0.1:8000/v1
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
import traceback
import uuid
from contextlib import asynccontextmanager, closing
from datetime import datetime
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from smoledge.config import ConfigError
from smoledge.errors import SmoledgeError
from smoledge.serve.backend import Backend, Chunk, Completion, Job, LlamaBackend, RequestError, Sampling
from smoledge.serve.bundle import ONNXRUNTIME, Bundle, Target, load_bundle
from smoledge.serve.config import ServeConfig
from smoledge.serve.metrics import CONTENT_TYPE, MetricsMiddleware, ServerMetrics
from smoledge.serve.security import APIKeyMiddleware, BodyLimitMiddleware, keys_from_env
from smoledge.serve.slots import Overloaded, Run, SlotPool

# OpenAI's legacy completions default; chat completions default to "until the context is full".
DEFAULT_COMPLETION_MAX_TOKENS = 16
MAX_STOP_SEQUENCES = 4
# Most alternatives per token `logprobs` may ask for (OpenAI's legacy API allows 5; vLLM 20).
MAX_LOGPROBS = 20
# Most prompts in one /v1/completions request: they run one after another, so this bounds a request's time.
MAX_PROMPTS = 64
# Retry-After (seconds) while the model loads or the server drains.
RETRY_LOADING_S = 2
# Seconds the shutdown waits for cancelled generations to stop (each stops within one token).
STOP_WAIT_S = 10.0

BackendFactory = Callable[[int], list[Backend]]
"""Makes the backends for N slots: N objects, or one object N times if it runs N sequences itself."""


# -- errors in OpenAI's shape ---------------------------------------------------


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param = status, message, type_, param
        self.headers = headers


def _error_response(status: int, message: str, type_: str, param: str | None = None,
                    headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": None}}
    return JSONResponse(body, status_code=status, headers=headers)


# -- documented answers (OpenAPI) -----------------------------------------------


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """OpenAI's error shape, the body of every 4xx/5xx answer."""

    error: ErrorDetail


def _answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error codes a route can answer, so that clients and fuzzers know them."""
    what = {
        400: "invalid request: a bad field, a prompt + max_tokens over the context, an unusable grammar",
        401: "missing or wrong API key (the server was started with --api-key)",
        404: "no such model",
        413: "request body over the server's limit",
        429: "every slot busy and the queue full; retry after Retry-After seconds",
        503: "model loading or failed, shutting down, or no slot came free in time; retry after Retry-After",
        504: "the request ran past the server's --request-timeout",
    }
    retry = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
    return {c: {"model": ErrorBody, "description": what[c], **({"headers": retry} if c in (429, 503) else {})}
            for c in codes}


# Every route but the probes takes the API key and the body limit.
GUARDED = (401, 413)
GENERATION: dict[int | str, dict[str, Any]] = {
    200: {"description": "the completion (JSON), or with stream: true its chunks as server-sent events",
          "content": {"application/json": {"schema": {"type": "object"}},
                      "text/event-stream": {}}},  # data: one JSON chunk per event, then [DONE]
    **_answers(400, 404, 429, 503, 504, *GUARDED),
}


# -- request bodies ---------------------------------------------------------------


class JSONSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    name: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None
    # llama.cpp server's shorthand: {"type": "json_object", "schema": {...}}.
    schema_: dict[str, Any] | None = Field(None, alias="schema")


class _Base(BaseModel):
    # Clients send many optional OpenAI fields (user, logit_bias...); the ones
    # that would change the result and are not supported are rejected below.
    # Strict: a "5" or a 0 is not taken for 5 or false (the schema says integer, boolean).
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(None, json_schema_extra={"minimum": 1, "maximum": 1})  # checked by _n, clearer message
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    response_format: ResponseFormat | None = None
    grammar: str | None = Field(None, min_length=1)

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

    def json_schema(self) -> dict[str, Any] | None:
        """The JSON schema response_format asks for; None: free text (or a GBNF grammar)."""
        fmt = self.response_format
        if fmt is None or fmt.type == "text":
            return None
        if self.grammar is not None:
            raise APIError(400, "grammar and response_format both constrain the output; send one of them",
                           param="grammar")
        if fmt.type == "json_object":
            return fmt.schema_ if fmt.schema_ is not None else {"type": "object"}
        schema = fmt.json_schema.schema_ if fmt.json_schema is not None else fmt.schema_
        if schema is None:
            raise APIError(400, 'response_format: type "json_schema" needs json_schema.schema, e.g. '
                           '{"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}',
                           param="response_format")
        return schema

    def sampling(self, max_tokens: int | None) -> Sampling:
        return Sampling(
            max_tokens=max_tokens,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            stop=list(self.stop or []),
            seed=self.seed,
            grammar=self.grammar,
            json_schema=self.json_schema(),
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
    suffix: str | None = Field(None, json_schema_extra={"maxLength": 0})  # no fill-in-the-middle: refused below

    def prompts(self) -> list[str | list[int]]:
        """The request's prompts; raises a 400 for what this server does not do."""
        if self.suffix:
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
    model_config = ConfigDict(strict=True)

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(strict=True)

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def plain(self) -> dict[str, str]:
        content = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content or [])
        # "developer" is OpenAI's newer name for the system role.
        return {"role": "system" if self.role == "developer" else self.role, "content": content}


class ChatRequest(_Base):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[Any] | None = Field(None, json_schema_extra={"maxItems": 0})  # refused by the route, clearer message

    def limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(strict=True)

    content: str
    add_special: bool = False
    """Add the BOS token the model's prompts start with (llama.cpp server's default: no)."""
    with_pieces: bool = False
    """Return [{"id": 42, "piece": "fox"}, ...] instead of bare ids."""


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(strict=True)

    tokens: list[int] = Field(json_schema_extra={"items": {"type": "integer", "minimum": 0}})


# -- app --------------------------------------------------------------------------


def llama_backends(bundle: Bundle, n_ctx: int, threads: int, model_path: Path | None = None) -> BackendFactory:
    """One llama.cpp backend over `model_path` (default: the bundle's default GGUF) decoding every slot's
    request in the same batch on all `threads`, once per slot (see smoledge/serve/llama_engine.py)."""
    s = bundle.settings

    def make(slots: int) -> list[Backend]:
        backend = LlamaBackend(model_path or bundle.model_path, n_ctx=n_ctx, threads=threads,
                               chat_template=s.chat_template, bos_token=s.bos_token, eos_token=s.eos_token,
                               stop_tokens=s.stop_tokens, slots=slots)
        return [backend] * slots

    return make


def ort_backends(bundle: Bundle, model_dir: Path, n_ctx: int, threads: int) -> BackendFactory:
    """One onnxruntime backend running N sequences itself (one session, a KV cache per slot), once per slot."""
    s = bundle.settings

    def make(slots: int) -> list[Backend]:
        from smoledge.serve.ort_backend import OrtBackend

        backend = OrtBackend(model_dir, n_ctx=n_ctx, threads=threads, chat_template=s.chat_template,
                             bos_token=s.bos_token, eos_token=s.eos_token, stop_tokens=s.stop_tokens,
                             tokenizer_dir=bundle.dir / "tokenizer", slots=slots)
        return [backend] * slots

    return make


def backends_for(bundle: Bundle, target: Target, n_ctx: int, threads: int) -> BackendFactory:
    if target.backend == ONNXRUNTIME:
        return ort_backends(bundle, target.model_path, n_ctx, threads)
    return llama_backends(bundle, n_ctx, threads, target.model_path)


class ServerState:
    """The verified bundle, the serving limits and, once loaded, the slot pool."""

    def __init__(self, bundle: Bundle, target: Target, n_ctx: int, threads: int, slots: int, queue: int,
                 request_timeout: float, factory: BackendFactory):
        self.bundle, self.target = bundle, target
        self.settings = bundle.settings
        self.n_ctx, self.threads, self.slots, self.queue = n_ctx, threads, slots, queue
        self.request_timeout = request_timeout
        self.factory = factory
        self.pool: SlotPool | None = None
        self.error: str | None = None
        self.draining = False
        """Set when shutdown starts: /ready turns 503 and new generations are refused."""
        self.metrics = ServerMetrics(slots=lambda: self.slots, busy=lambda: self.pool.busy if self.pool else 0,
                                     waiting=lambda: self.pool.waiting if self.pool else 0)
        self.created = int(time.time())
        try:
            self.created = int(datetime.fromisoformat(bundle.manifest.get("created", "")).timestamp())
        except (TypeError, ValueError):
            pass
        self.on_load_failure: Callable[[], None] | None = None
        """Called from the loader thread when the model cannot be loaded (run() stops uvicorn)."""

    def load(self) -> None:
        try:
            backends = self.factory(self.slots)
            self.pool = SlotPool(backends, self.queue)
        except Exception as exc:  # any failure must reach /ready and the operator, not vanish in a thread
            self.error = str(exc)
            print(f"smoledge: could not load the model: {exc}", file=sys.stderr, flush=True)
            if self.on_load_failure is not None:
                self.on_load_failure()

    def ready_backend(self) -> Backend:
        """The backend that tokenizes and checks requests (any slot's does: they share the vocabulary)."""
        if self.pool is None:
            if self.error:
                raise APIError(503, f"the model failed to load: {self.error}", "server_error")
            self.metrics.rejected.inc(reason="not_ready")
            raise APIError(503, "the model is still loading; retry when GET /ready returns 200", "server_error",
                           headers={"Retry-After": str(RETRY_LOADING_S)})
        return self.pool.backends[0]

    def check_model(self, model: str | None) -> None:
        if model is not None and model != self.settings.model_id:
            raise APIError(
                404, f"model '{model}' is not served here; this server serves '{self.settings.model_id}' "
                "(see GET /v1/models)", "model_not_found", "model",
            )

    async def start(self, request: Request, jobs: list[Job], stream: bool) -> Run:
        """Take a slot (waiting in the queue if need be) and start the jobs on it, one after another."""
        if self.draining:
            self.metrics.rejected.inc(reason="draining")
            raise APIError(503, "the server is shutting down; retry on another instance", "server_error",
                           headers={"Retry-After": str(RETRY_LOADING_S)})
        pool = self.pool
        assert pool is not None  # ready_backend() was called first
        arrived = request.scope.get("state", {}).get("arrived", time.monotonic())
        deadline = arrived + self.request_timeout
        try:
            backend = await pool.acquire(timeout=max(0.0, deadline - time.monotonic()))
        except Overloaded as exc:
            self.metrics.rejected.inc(reason="queue_full")
            raise APIError(429, str(exc), "rate_limit_error", headers={"Retry-After": str(exc.retry_after)}) from None
        except TimeoutError:
            self.metrics.rejected.inc(reason="queue_timeout")
            raise APIError(503, f"no slot came free within the request timeout of {self.request_timeout:g} s; "
                           "the server is overloaded, retry later", "server_error",
                           headers={"Retry-After": str(pool.retry_after())}) from None
        run = Run(pool, backend, deadline, request.is_disconnected, arrived)
        run.on_end = lambda: self._record(run, sum(len(j.tokens) for j in jobs))
        run.start(_work(jobs, stream))
        return run

    def _record(self, run: Run, prompt_tokens: int) -> None:
        self.metrics.generation(prompt_tokens, run.completion_tokens, run.first_token, time.monotonic(),
                                run.arrived)
        if run.reason is not None:
            self.metrics.cancelled.inc(reason=run.reason)

    def stopped_error(self, run: Run) -> APIError:
        """The answer to a non-streamed request whose generation was stopped."""
        if run.reason == "timeout":
            return APIError(504, f"the request ran past the server's timeout of {self.request_timeout:g} s and its "
                            f"generation was stopped after {run.completion_tokens} tokens; lower max_tokens, or "
                            "raise --request-timeout", "timeout")
        if run.reason == "shutdown":
            return APIError(503, "the server shut down before this request finished; retry", "server_error",
                            headers={"Retry-After": str(RETRY_LOADING_S)})
        # Nobody reads this one: it is what the access log and /metrics record (nginx's "client closed request").
        return APIError(499, "the client closed the connection; generation stopped", "client_closed")


def _work(jobs: list[Job], stream: bool) -> Callable[[Run], None]:
    """What a slot's thread does for one request: each job in turn, chunk by chunk (complete() for
    log-probabilities), stopping between chunks when the run is cancelled. A stream hands every chunk
    to the event loop; otherwise the text is joined here and each job's Completion handed over once
    (one hop between threads per job, not per token)."""

    def work(run: Run) -> None:
        backend = run.backend
        for i, job in enumerate(jobs):
            job.cancel = run.stop
            done = run.completion_tokens
            if job.logprobs is not None:
                out = backend.complete(job)
                run.completion_tokens = done + out.completion_tokens
                run.emit((i, out))
            else:
                pieces, last = [], Chunk("", "length")
                with closing(backend.stream(job)) as chunks:
                    for last in chunks:
                        if run.first_token is None and last.completion_tokens:
                            run.first_token = time.monotonic()
                        run.completion_tokens = done + last.completion_tokens
                        if stream:
                            run.emit((i, last))
                        else:
                            pieces.append(last.text)
                        if run.stop.is_set():
                            break
                if not stream:
                    text = "".join(pieces)
                    run.emit((i, Completion(job.prompt_text + text if job.echo else text,
                                            last.finish_reason or "length", len(job.tokens),
                                            last.completion_tokens)))
            if run.stop.is_set():
                return

    return work


def _resolve(cfg: ServeConfig, bundle: Bundle) -> tuple[Target, int, int]:
    """What to serve (the default model or --device's), its context length and thread count."""
    s = bundle.settings
    target = bundle.target(cfg.device)
    n_ctx = cfg.n_ctx or target.n_ctx
    if n_ctx > s.n_ctx_train:
        raise ConfigError(
            f"--n-ctx {n_ctx} exceeds the model's trained context of {s.n_ctx_train} tokens; "
            f"use {s.n_ctx_train} or less"
        )
    threads = cfg.threads or target.threads or os.cpu_count() or 1
    return target, n_ctx, threads


def create_app(cfg: ServeConfig, backend_factory: BackendFactory | None = None) -> FastAPI:
    """Verify the bundle and build the app; the model loads when the app starts.

    `backend_factory` makes the slots' backends (default: the target's backend, llama.cpp or onnxruntime)."""
    bundle = load_bundle(cfg.bundle)
    target, n_ctx, threads = _resolve(cfg, bundle)
    s = bundle.settings
    slots = cfg.slots or s.slots
    queue = cfg.queue if cfg.queue is not None else s.queue
    state = ServerState(bundle, target, n_ctx, threads, slots, queue, cfg.request_timeout or s.request_timeout,
                        backend_factory or backends_for(bundle, target, n_ctx, threads))
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
        bundle.remove_unpacked()

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
        return _error_response(exc.status, exc.message, exc.type, exc.param, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unknown routes (404), wrong methods (405), bodies over the limit (413).
        return _error_response(exc.status_code, str(exc.detail), "invalid_request_error", None,
                               dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        traceback.print_exception(exc, file=sys.stderr)
        return _error_response(500, f"internal error: {type(exc).__name__}: {exc}", "server_error")

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

    @app.get("/ready", responses={503: {"description": "loading, failed to load, or draining"}})
    def ready() -> JSONResponse:
        if state.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        if state.pool is not None:
            return JSONResponse({"status": "ready", "model": state.settings.model_id})
        body = {"status": "failed", "error": state.error} if state.error else {"status": "loading"}
        return JSONResponse(body, status_code=503)

    @app.get("/metrics", response_class=PlainTextResponse, responses=_answers(*GUARDED))
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(state.metrics.render(), media_type=CONTENT_TYPE)

    def model_card() -> dict[str, Any]:
        return {"id": state.settings.model_id, "object": "model", "created": state.created, "owned_by": "smoledge"}

    @app.get("/v1/models", responses=_answers(*GUARDED))
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id}", responses=_answers(404, *GUARDED))
    def model(model_id: str) -> dict[str, Any]:
        state.check_model(model_id)
        return model_card()

    @app.post("/tokenize", responses=_answers(400, 503, *GUARDED))
    async def tokenize(req: TokenizeRequest) -> dict[str, Any]:
        backend = state.ready_backend()
        tokens = await run_in_threadpool(_call, backend.tokenize, req.content, req.add_special)
        if req.with_pieces:
            return {"tokens": [{"id": t, "piece": backend.piece(t)} for t in tokens]}
        return {"tokens": tokens}

    @app.post("/detokenize", responses=_answers(400, 503, *GUARDED))
    async def detokenize(req: DetokenizeRequest) -> dict[str, str]:
        backend = state.ready_backend()
        return {"content": await run_in_threadpool(_call, backend.detokenize, req.tokens)}

    @app.post("/v1/completions", response_model=None, responses=GENERATION)
    async def completions(req: CompletionRequest, request: Request) -> dict[str, Any] | StreamingResponse:
        state.check_model(req.model)
        backend = state.ready_backend()
        prompts = req.prompts()
        max_tokens = req.max_tokens if req.max_tokens is not None else DEFAULT_COMPLETION_MAX_TOKENS
        sampling = _check_constraint(backend, req.sampling(max_tokens))
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
                    yield {**head, "choices": [], "usage": _usage(len(job.tokens), c.completion_tokens)}
            return _sse(state, run, render)
        outs = await _collect(state, run)
        choices = []
        for i, out in enumerate(outs):
            lp = out.logprobs.to_dict() if out.logprobs is not None else None
            choices.append({"text": out.text, "index": i, "logprobs": lp, "finish_reason": out.finish_reason})
        usage = _usage(sum(o.prompt_tokens for o in outs), sum(o.completion_tokens for o in outs))
        return {**head, "choices": choices, "usage": usage}

    @app.post("/v1/chat/completions", response_model=None, responses=GENERATION)
    async def chat(req: ChatRequest, request: Request) -> dict[str, Any] | StreamingResponse:
        state.check_model(req.model)
        if req.tools:
            raise APIError(400, "tools are not supported by this server", param="tools")
        backend = state.ready_backend()
        prompt = _call(backend.render_chat, [m.plain() for m in req.messages])
        sampling = _check_constraint(backend, req.sampling(req.limit()))
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
                        yield {**head, "choices": [], "usage": _usage(len(job.tokens), c.completion_tokens)}
            return _sse(state, run, render)
        (out,) = await _collect(state, run)
        return {**head, "choices": [{"index": 0, "message": {"role": "assistant", "content": out.text},
                                     "logprobs": None, "finish_reason": out.finish_reason}],
                "usage": _usage(out.prompt_tokens, out.completion_tokens)}

    return app


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except RequestError as exc:
        raise APIError(400, str(exc), param=exc.param) from None


def _check_constraint(backend: Backend, sampling: Sampling) -> Sampling:
    if (sampling.grammar is not None or sampling.json_schema is not None) and \
            not getattr(backend, "supports_grammar", False):
        raise APIError(400, "grammar / response_format constrained output needs the llama.cpp backend; "
                       "this server runs another one", param="grammar" if sampling.grammar else "response_format")
    return sampling


def _prepare(backend: Backend, prompt: str | list[int], sampling: Sampling, echo: bool = False,
             logprobs: int | None = None, index: int = 0, count: int = 1) -> Job:
    try:
        return backend.prepare(prompt, sampling, echo, logprobs)
    except RequestError as exc:
        where = f"prompt {index}: " if count > 1 else ""
        raise APIError(400, f"{where}{exc}", param=exc.param) from None


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


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
    print(
        f"smoledge: serving '{s.model_id}' ({t.model_path.name} on {t.backend}{device}, n_ctx {state.n_ctx}, "
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
