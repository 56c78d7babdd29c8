"""The server's state between requests: what it serves, its slots, and the work one request does in a
slot. Torch-free.

    served = resolve("model.gguf")
    state = ServerState(served, n_ctx=4096, threads=2, slots=2, queue=8, request_timeout=300,
                        factory=backends_for(served, 4096, 2))
    state.load()                                   # in a background thread: /ready turns 200 after it
    run = await state.start(request, jobs, stream=False)

The HTTP routes (server.py) ask this state for a backend to check a request with, then for a run on a
slot; everything here is about slots, loading and stopping, nothing about OpenAI's shapes (those are
protocol.py's). A request's generation runs in its slot's thread (slots.py), one job after another.
"""

from __future__ import annotations

import sys
import time
from contextlib import closing
from dataclasses import replace
from functools import partial
from typing import Callable

from fastapi import Request

from smoledge.serve.bundle import ONNXRUNTIME
from smoledge.serve.generation import Backend, Chunk, Job, text_completion
from smoledge.serve.llama_backend import LlamaBackend
from smoledge.serve.metrics import ServerMetrics
from smoledge.serve.protocol import APIError
from smoledge.serve.slots import Overloaded, Run, SlotPool
from smoledge.serve.targets import Served

# Retry-After (seconds) while the model loads or the server drains.
RETRY_LOADING_S = 2

BackendFactory = Callable[[int], list[Backend]]
"""Makes the backends for N slots: N objects, or one object N times if it runs N sequences itself."""


def llama_backends(served: Served, n_ctx: int, threads: int) -> BackendFactory:
    """One llama.cpp backend over the target's GGUF decoding every slot's request in the same batch on
    all `threads`, once per slot (see smoledge/serve/llama_engine.py)."""
    s = served.settings

    def make(slots: int) -> list[Backend]:
        backend = LlamaBackend(served.target.model_path, n_ctx=n_ctx, threads=threads,
                               chat_template=s.chat_template, bos_token=s.bos_token, eos_token=s.eos_token,
                               stop_tokens=s.stop_tokens, slots=slots)
        return [backend] * slots

    return make


def ort_backends(served: Served, n_ctx: int, threads: int) -> BackendFactory:
    """One onnxruntime backend running N sequences itself (one session, a KV cache per slot), once per slot."""
    s = served.settings

    def make(slots: int) -> list[Backend]:
        from smoledge.serve.ort_backend import OrtBackend

        backend = OrtBackend(served.target.model_path, n_ctx=n_ctx, threads=threads, chat_template=s.chat_template,
                             bos_token=s.bos_token, eos_token=s.eos_token, stop_tokens=s.stop_tokens,
                             tokenizer_dir=served.tokenizer_dir, slots=slots)
        return [backend] * slots

    return make


def backends_for(served: Served, n_ctx: int, threads: int) -> BackendFactory:
    if served.target.backend == ONNXRUNTIME:
        return ort_backends(served, n_ctx, threads)
    return llama_backends(served, n_ctx, threads)


class ServerState:
    """What is served (TARGET read), the serving limits and, once loaded, the slot pool."""

    def __init__(self, served: Served, n_ctx: int, threads: int, slots: int, queue: int,
                 request_timeout: float, factory: BackendFactory):
        self.served, self.target = served, served.target
        self.settings = served.settings
        self.n_ctx, self.threads, self.slots, self.queue = n_ctx, threads, slots, queue
        self.request_timeout = request_timeout
        self.factory = factory
        self.pool: SlotPool | None = None
        self.error: str | None = None
        self.draining = False
        """Set when shutdown starts: /ready turns 503 and new generations are refused."""
        self.metrics = ServerMetrics(slots=lambda: self.slots, busy=lambda: self.pool.busy if self.pool else 0,
                                     waiting=lambda: self.pool.waiting if self.pool else 0)
        self.created = served.created
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
        run = Run(pool, backend, deadline, None if stream else partial(_client_left, request), arrived)
        run.on_end = lambda: self._record(run, sum(len(j.tokens) for j in jobs))
        run.start(work_for(jobs, stream))
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


async def _client_left(request: Request) -> None:
    """Returns once the client of a request whose body was read has gone.

    After the body, the ASGI server answers receive() only when the connection closes (or the response
    is complete), so this waits without polling: starlette's is_disconnected() polled on the event loop
    costs ~50 us a check, and a check each second let a fast model run a whole generation for a client
    that had left.
    """
    while (await request.receive())["type"] != "http.disconnect":
        pass


def work_for(jobs: list[Job], stream: bool) -> Callable[[Run], None]:
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
                pieces: list[str] = []
                last = Chunk("", "length")
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
                    run.emit((i, text_completion(job, [replace(last, text="".join(pieces))])))
            if run.stop.is_set():
                return

    return work

