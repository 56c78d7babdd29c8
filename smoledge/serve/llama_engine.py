"""Batched decoding: every running request advances in one llama.cpp decode per step. Torch-free.

    engine = LlamaEngine(llm, n_seq=4, n_ctx_seq=2048, threads=2)   # llm: a llama_cpp.Llama (model, vocab)
    request = engine.submit(EngineJob(seq=0, tokens=[...], max_tokens=32, temperature=0.0, ...))
    for event in request.events():                                    # Token(...) per token, then Done(...)
        ...
    engine.close()

Why: a decode step on a small model is bound by reading the weights, not by arithmetic.
llama.cpp reads them once per `llama_decode` whatever the batch holds, so one decode with
the next token of four requests costs ~1.8x one decode with one token (135M shape, q8_0,
2 cores: 14 ms -> 26 ms), where four contexts decoding one token each cost 4x. N contexts
also split the cores N ways; one context uses them all, for one request or sixteen.

One llama.cpp context holds `n_seq` KV sequences (n_seq_max, kv_unified off: each sequence
has its own n_ctx_seq cells). A scheduler thread owns the context: each step it puts into one
llama_batch the last sampled token of every generating request and, in the room left (n_batch),
chunks of prompts still to be read, decodes, and samples every request whose logits came out,
with that request's own sampler chain (grammar, temperature, top-p, a seeded draw). Generation
tokens go first so that a long prompt arriving slows the running requests by one chunk per step
instead of stalling them for the whole prompt.

A sequence keeps its tokens in the KV cache after its request ends; the next request on that
sequence reuses the longest common prefix (a chat's history, a fixed system prompt) and reads
only the rest. Echo with logprobs reads the whole prompt with logits at every position,
ECHO_CHUNK positions per step, so llama.cpp's output buffer stays ECHO_CHUNK x vocab.

The engine knows tokens, not text: stop strings, UTF-8 and OpenAI's shapes are the backend's
(smoledge/serve/llama_backend.py). It stops a request on an end-of-generation token, at max_tokens,
when `cancel` is set (client gone, timeout, shutdown, or the backend saw a stop string), and on
a decode error, which fails only the requests of that step.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from smoledge.serve.generation import Token, log_softmax, top_alternatives

# Prompt positions read per step when every position's logits are wanted (echo + logprobs).
ECHO_CHUNK = 64
# Tokens per llama_decode: generation tokens plus prompt chunks.
N_BATCH = 512


@dataclass
class Scores:
    """Log-probabilities of some tokens: each one's own, and the `k` most likely alternatives."""

    chosen: list[float] = field(default_factory=list)
    top_ids: list[np.ndarray] = field(default_factory=list)
    top_vals: list[np.ndarray] = field(default_factory=list)

    def add(self, logits: np.ndarray, targets: np.ndarray, k: int) -> None:
        """logits (rows, V) predicting targets (rows,)."""
        logp = log_softmax(logits)  # (rows, V)
        ids, vals = top_alternatives(logp, k)  # (rows, k)
        self.chosen += [float(x) for x in logp[np.arange(len(targets)), targets]]
        self.top_ids += list(ids)
        self.top_vals += list(vals)


@dataclass
class EngineJob:
    seq: int
    """The KV sequence to run on (the backend owns which sequences are free)."""
    tokens: list[int]
    max_tokens: int
    """Tokens to generate; 0: read (and with `score_prompt`, score) the prompt only."""
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    grammar: str | None = None
    """GBNF text, already checked by llama.cpp's parser (the backend's prepare)."""
    logprobs: int | None = None
    """Score each generated token with this many alternatives; None: no scores."""
    score_prompt: bool = False
    """Also score every prompt token (echo + logprobs)."""
    stop_ids: frozenset[int] = frozenset()
    cancel: threading.Event = field(default_factory=threading.Event)
    """Set by the backend when it has what it wants (a stop string, an early return)."""
    also_cancel: threading.Event | None = None
    """The server's cancel (client gone, timeout, shutdown): checked every step, even mid-prompt."""


@dataclass
class Done:
    reason: str
    """"stop" (end token), "length" (max_tokens), "cancelled", or "error"."""
    prompt_scores: Scores | None = None
    """With score_prompt: scores of prompt tokens 1.. (token 0 has nothing before it)."""
    error: str | None = None


class Request:
    """One job in the engine; the backend reads its events in order."""

    def __init__(self, job: EngineJob):
        self.job = job
        self._events: queue.SimpleQueue[Token | Done] = queue.SimpleQueue()
        # Scheduler-side state.
        self.pending: list[int] = []
        """Prompt tokens not yet decoded."""
        self.pos = 0
        """Position of the next token to decode."""
        self.generated = 0
        self.last: int | None = None
        """The sampled token to decode next."""
        self.sampler: Any = None
        self.prompt_scores: Scores | None = Scores() if job.score_prompt else None
        self.done: Done | None = None
        """The last event, once the reader has seen it."""

    def events(self) -> Iterator[Token | Done]:
        while self.done is None:
            event = self._events.get()
            if isinstance(event, Done):
                self.done = event
            yield event

    def stop(self) -> None:
        """Cancel if still running and wait until the engine has let go of the sequence."""
        if self.done is None:
            self.job.cancel.set()
            for _ in self.events():
                pass

    def put(self, event: Token | Done) -> None:
        self._events.put(event)


class LlamaEngine:
    """The scheduler thread and the one context it owns (see the module docstring)."""

    def __init__(self, llm: Any, n_seq: int, n_ctx_seq: int, threads: int):
        import llama_cpp

        self._lib, self.llm = llama_cpp, llm
        self.n_seq, self.n_ctx_seq = n_seq, n_ctx_seq
        self.n_vocab = llm.n_vocab()
        self.vocab = llama_cpp.llama_model_get_vocab(llm.model)
        # llama-cpp-python's own settings (F16 KV cache, flash attention off, ...), so that a request
        # computes what `Llama` computes; only the size and the sequences differ.
        params = type(llm.context_params).from_buffer_copy(llm.context_params)
        params.n_ctx = n_ctx_seq * n_seq
        params.n_batch = params.n_ubatch = N_BATCH
        params.n_seq_max = n_seq
        params.kv_unified = False
        params.n_threads = params.n_threads_batch = threads
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(llm.model, params)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp could not make a context of {n_seq} x {n_ctx_seq} positions")
        self._memory = llama_cpp.llama_get_memory(self.ctx)
        self._batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)
        self.cached: list[list[int]] = [[] for _ in range(n_seq)]
        """Tokens each sequence holds in the KV cache (what a next request may reuse). Scheduler-owned."""
        self.prompt_tokens_read = 0
        """Prompt tokens decoded so far (a reused prefix is not read again)."""
        self._inbox: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="smoledge-llama-engine", daemon=True)
        self._thread.start()

    # -- caller side ------------------------------------------------------------

    def submit(self, job: EngineJob) -> Request:
        request = Request(job)
        self._inbox.put(request)
        return request

    def close(self) -> None:
        """Stop the scheduler (requests still running end "cancelled") and free the context."""
        self._inbox.put(None)
        self._thread.join()
        self._lib.llama_batch_free(self._batch)
        self._lib.llama_free(self.ctx)

    # -- scheduler ----------------------------------------------------------------

    def _loop(self) -> None:
        running: list[Request] = []
        while True:
            # Block only when idle; otherwise take what has arrived and keep decoding.
            while True:
                try:
                    item = self._inbox.get(block=not running)
                except queue.Empty:
                    break
                if item is None:
                    for r in running:
                        self._finish(r, Done("cancelled"))
                    return
                try:
                    self._admit(item)
                except Exception as exc:  # this request only: the others keep running
                    self._fail([item], exc)
                    continue
                running.append(item)
            running = [r for r in running if not self._ended(r)]
            if running:
                try:
                    self._step(running)
                except Exception as exc:
                    # A dead scheduler would leave every reader waiting forever: fail this step's
                    # requests, forget their sequences' caches, and keep serving.
                    self._fail(running, exc)
                running = [r for r in running if not self._ended(r)]

    def _fail(self, requests: list[Request], exc: Exception) -> None:
        for r in requests:
            if 0 <= r.job.seq < self.n_seq:
                self._lib.llama_memory_seq_rm(self._memory, r.job.seq, -1, -1)
                self.cached[r.job.seq] = []
            self._finish(r, Done("error", error=f"the decode loop failed: {type(exc).__name__}: {exc}"))

    def _admit(self, r: Request) -> None:
        """Reuse the sequence's cached prefix, drop the rest of its cache, make the sampler chain."""
        job, lib = r.job, self._lib
        cached = self.cached[job.seq]
        keep = 0
        if not job.score_prompt:  # scoring needs logits at every prompt position: read them all
            # At least the last prompt token is decoded again: its logits give the first new token.
            limit = min(len(cached), len(job.tokens) - 1)
            while keep < limit and cached[keep] == job.tokens[keep]:
                keep += 1
        lib.llama_memory_seq_rm(self._memory, job.seq, keep, -1)
        self.cached[job.seq] = cached[:keep]
        r.pending, r.pos = list(job.tokens[keep:]), keep
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if job.grammar is not None:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_grammar(self.vocab, job.grammar.encode(), b"root"))
        if job.temperature <= 0.0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        else:
            # Temperature, then nucleus, then one seeded draw: the order OpenAI and transformers use.
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(job.temperature))
            if job.top_p < 1.0:
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(job.top_p, 1))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(job.seed))
        r.sampler = chain

    def _ended(self, r: Request) -> bool:
        if r.sampler is None:
            return True  # finished already
        if r.job.cancel.is_set() or (r.job.also_cancel is not None and r.job.also_cancel.is_set()):
            self._finish(r, Done("cancelled"))
            return True
        return False

    def _finish(self, r: Request, done: Done) -> None:
        if r.sampler is not None:
            self._lib.llama_sampler_free(r.sampler)
            r.sampler = None
        done.prompt_scores = r.prompt_scores
        r.put(done)

    def _step(self, running: list[Request]) -> None:
        """One llama_decode over every running request; then sample the ones whose logits came out."""
        b, lib = self._batch, self._lib
        rows: list[tuple[Request, int]] = []  # (request, batch row whose logits it samples from)
        scored: list[tuple[Request, int, int, int]] = []  # (request, first row, n rows, first target index)
        n = 0

        def add(token: int, r: Request, logits: bool) -> None:
            nonlocal n
            b.token[n], b.pos[n], b.n_seq_id[n], b.logits[n] = token, r.pos, 1, int(logits)
            b.seq_id[n][0] = r.job.seq
            r.pos += 1
            self.cached[r.job.seq].append(token)
            n += 1

        for r in running:
            if not r.pending:
                rows.append((r, n))
                add(r.last, r, True)
        for r in running:
            room = N_BATCH - n
            if not r.pending or room <= 0:
                continue
            scoring = r.prompt_scores is not None
            chunk = r.pending[: min(room, ECHO_CHUNK) if scoring else room]
            del r.pending[: len(chunk)]
            self.prompt_tokens_read += len(chunk)
            first_row, first_index = n, r.pos
            for i, token in enumerate(chunk):
                add(token, r, scoring or (not r.pending and i == len(chunk) - 1))
            if scoring:
                scored.append((r, first_row, len(chunk), first_index))
            if not r.pending:
                rows.append((r, n - 1))
        b.n_tokens = n
        rc = lib.llama_decode(self.ctx, b)
        if rc != 0:
            for r in running:
                lib.llama_memory_seq_rm(self._memory, r.job.seq, -1, -1)
                self.cached[r.job.seq] = []
                self._finish(r, Done("error", error=f"llama_decode failed with status {rc}"))
            return
        for r, first_row, count, first_index in scored:
            # Row i predicts prompt token first_index + i + 1; the last prompt row predicts the first new token.
            targets = r.job.tokens[first_index + 1: first_index + 1 + count]
            if targets:
                logits = self._rows(first_row, len(targets))  # (rows, V)
                r.prompt_scores.add(logits, np.asarray(targets), r.job.logprobs or 0)
        for r, row in rows:
            self._sample(r, row)

    def _rows(self, first: int, count: int) -> np.ndarray:
        """Logits of batch rows first..first+count-1 (each asked for logits), copied: (count, V).
        Row by row, because llama.cpp may reorder a multi-sequence batch internally."""
        get, V = self._lib.llama_get_logits_ith, self.n_vocab
        return np.stack([np.ctypeslib.as_array(get(self.ctx, i), shape=(V,)) for i in range(first, first + count)])

    def _sample(self, r: Request, row: int) -> None:
        job = r.job
        if r.generated >= job.max_tokens:
            self._finish(r, Done("length"))
            return
        token = int(self._lib.llama_sampler_sample(r.sampler, self.ctx, row))
        event = Token(token)
        if job.logprobs is not None:
            # The sampler copies the logits; the row is still the raw distribution.
            scores = Scores()
            scores.add(self._rows(row, 1), np.asarray([token]), job.logprobs)
            event = Token(token, scores.chosen[0], scores.top_ids[0], scores.top_vals[0])
        r.generated += 1
        r.put(event)
        if token in job.stop_ids or self._lib.llama_vocab_is_eog(self.vocab, token):
            self._finish(r, Done("stop"))
        elif r.generated >= job.max_tokens:
            self._finish(r, Done("length"))
        elif r.pos >= self.n_ctx_seq:
            self._finish(r, Done("length"))  # prepare keeps prompt + max_tokens within n_ctx; a guard
        else:
            r.last = token
