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
chunks of prompts still to be read, decodes, and samples every request whose logits came out.
Generation tokens go first so that a long prompt arriving slows the running requests by one
chunk per step instead of stalling them for the whole prompt.

A step costs Python almost nothing next to the decode, which is what lets this engine sit in the
server's process instead of behind llama.cpp's own C++ server (issue 19 weighed both). The batch is
numpy arrays that llama.cpp reads in place, filled with a few slice assignments; the logits of the
step are one view of llama.cpp's output buffer; greedy requests without a grammar or penalties are
one argmax over it for all of them (first of equal maxima, as llama.cpp's greedy sampler), the others
use their own llama.cpp sampler chain (penalties, grammar, temperature, top-k, top-p, min-p, a seeded
draw); end-of-generation ids are a set made once. A step makes no call into llama.cpp per token: each
ctypes call hands the GIL to the server's threads and waits to get it back. Measured on
SmolLM2-135M-Instruct Q4_1, 2 threads, 220-token prompts, 64 tokens each: the scheduler thread's CPU
outside llama_decode is 0.44-0.59 ms per step with 16 requests and 0.30 ms with 4 (1.5-1.8 and 0.84 ms
with per-token calls for the batch fields, the sampler and llama_vocab_is_eog), against llama_decode
floors of 8 ms (1 request), 23-29 ms (4) and 72-78 ms (16) per generation step: under 1% either way.

What costs is the order of the batch. With a KV stream per sequence, llama.cpp puts into one
micro-batch only tokens whose sequences follow each other (s, s+1, ...) in batch order; requests
in arrival order, on sequences handed out as they came free, split a step into up to one
micro-batch per request, and 16 generation tokens decoded 2x slower shuffled than in sequence
order. The step sorts them, and the backend gives a new request the lowest free sequence among
equal cached prefixes, so running sequences stay contiguous.

What remains between smoledge and llama-server end to end is outside the engine: prompt reading
(~3 ms a token on this CPU whatever the batch size, two thirds of the time with 220-token prompts)
and the HTTP side, ~0.2 ms of event-loop Python per streamed token (uvicorn's h11, the middleware
stack, asyncio queues) plus the slot threads, run on the cores the decode needs; a descheduled
decode thread stalls its peer at llama.cpp's spinning barriers, so that small CPU costs the decode
more than its own share. A proxy to llama-server would keep that event loop (SSE in and out) and
lose token-level control (stop ids, logprobs, prefix reuse per sequence) for a C++ binary built
per platform; the measured ratios (benchmarks/serve_vs_llama_server.py, BENCHMARKS.md) did not
call for it.

Flash attention is off unless asked for (flash_attn="on"/"auto", $SMOLEDGE_FLASH_ATTN), as in
llama-cpp-python, though llama-server's default `-fa auto` turns it on. On this CPU it read a
220-token prompt 7% faster but made generation steps 3-10% slower (1, 4 and 16 sequences), and it
changes the output: llama-cpp-python itself gave different greedy text with it on for 4 of 6 chat
prompts, and with it on the text depends on what else is in the batch. Off, a request decodes exactly what
llama-cpp-python's own loop decodes, alone or batched (tests/test_serve_engine.py).

A sequence keeps its tokens in the KV cache after its request ends; the next request on that
sequence reuses the longest common prefix (a chat's history, a fixed system prompt) and reads
only the rest, unless the request says cache_prompt=False. Echo with logprobs reads the whole prompt with logits at every position,
ECHO_CHUNK positions per step, so llama.cpp's output buffer stays ECHO_CHUNK x vocab.

The engine knows tokens, not text: stop strings, UTF-8 and OpenAI's shapes are the backend's
(smoledge/serve/llama_backend.py). It stops a request on an end-of-generation token, at max_tokens,
when `cancel` is set (client gone, timeout, shutdown, or the backend saw a stop string), and on
a decode error, which fails only the requests of that step. It does not batch across models, swap
a sequence's KV cache out to make room, or speculate.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from smoledge.serve.generation import PENALTY_LAST_N, Token, log_softmax, top_alternatives

# Prompt positions read per step when every position's logits are wanted (echo + logprobs).
ECHO_CHUNK = 64
# Tokens per llama_decode: generation tokens plus prompt chunks.
N_BATCH = 512
# Flash attention: on, off or auto when LlamaEngine is not told (off by default: see the docstring).
FLASH_ATTN_ENV = "SMOLEDGE_FLASH_ATTN"


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
    top_k: int = 0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    """The penalties look at the last PENALTY_LAST_N tokens, prompt included (generation.Sampling)."""
    cache_prompt: bool = True
    """Reuse the longest prefix of `tokens` the sequence's KV cache holds; False: read the whole prompt."""
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
        self.greedy = False
        """Sampled by argmax over the logits (temperature 0, no grammar)."""
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

    def __init__(self, llm: Any, n_seq: int, n_ctx_seq: int, threads: int, flash_attn: str | None = None):
        """flash_attn: "on", "off" or "auto" (llama.cpp decides, as llama-server's `-fa auto`: on for
        every CPU build); None takes $SMOLEDGE_FLASH_ATTN, "off" when unset (see the module docstring)."""
        import llama_cpp

        flash_attn = flash_attn or os.environ.get(FLASH_ATTN_ENV, "off").strip().lower()
        fa_types = {"on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED, "off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED,
                    "auto": llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO}
        if flash_attn not in fa_types:
            raise ValueError(f"flash attention {flash_attn!r} (${FLASH_ATTN_ENV}): use on, off or auto")
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
        params.flash_attn_type = fa_types[flash_attn]
        self.ctx = llama_cpp.llama_init_from_model(llm.model, params)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp could not make a context of {n_seq} x {n_ctx_seq} positions")
        self._memory = llama_cpp.llama_get_memory(self.ctx)
        self._batch = _Batch(llama_cpp, N_BATCH)
        # Asked once here, so a step makes no call into llama.cpp per token (each ctypes call hands the
        # GIL to the server's threads and waits to get it back).
        self._eog = frozenset(t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self.vocab, t))
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
        # Scoring needs logits at every prompt position: read them all.
        if job.cache_prompt and not job.score_prompt:
            # At least the last prompt token is decoded again: its logits give the first new token.
            limit = min(len(cached), len(job.tokens) - 1)
            while keep < limit and cached[keep] == job.tokens[keep]:
                keep += 1
        lib.llama_memory_seq_rm(self._memory, job.seq, keep, -1)
        self.cached[job.seq] = cached[:keep]
        r.pending, r.pos = list(job.tokens[keep:]), keep
        penalized = (job.repeat_penalty, job.presence_penalty, job.frequency_penalty) != (1.0, 0.0, 0.0)
        # Greedy without a grammar or penalties is an argmax, taken for all such requests at once in
        # _step; the others sample with their own llama.cpp chain.
        r.greedy = job.temperature <= 0.0 and job.grammar is None and not penalized
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if penalized:
            # The arithmetic of the ONNX backend's penalize(); seeded with the prompt's last tokens
            # (the grammar must not see them, so this sampler takes them before joining the chain).
            pen = lib.llama_sampler_init_penalties(self.n_vocab, PENALTY_LAST_N, job.repeat_penalty,
                                                   job.frequency_penalty, job.presence_penalty)
            for token in job.tokens[-PENALTY_LAST_N:]:
                lib.llama_sampler_accept(pen, token)
            lib.llama_sampler_chain_add(chain, pen)
        if job.grammar is not None:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_grammar(self.vocab, job.grammar.encode(), b"root"))
        if job.temperature <= 0.0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        else:
            # Temperature, top-k, top-p, min-p, then one seeded draw: the ONNX backend's order (transformers').
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(job.temperature))
            if job.top_k > 0:
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(job.top_k))
            if job.top_p < 1.0:
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(job.top_p, 1))
            if job.min_p > 0.0:
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_min_p(job.min_p, 1))
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
        # Generation tokens first, one per request, each with logits (outputs 0..n-1, in batch order),
        # in sequence order: with a KV stream per sequence, llama.cpp puts into one micro-batch only
        # tokens whose sequences follow each other in the batch (seq s, then s+1, ...), so requests in
        # arrival order split a step into up to one micro-batch per request (16 generation tokens in
        # shuffled order decoded 2x slower than in order).
        gen = sorted((r for r in running if not r.pending), key=lambda r: r.job.seq)
        n = len(gen)
        tokens = [r.last for r in gen]
        b.token[:n] = tokens
        b.pos[:n] = [r.pos for r in gen]
        b.seq[:n] = [r.job.seq for r in gen]
        b.logits[:n] = 1
        for r, token in zip(gen, tokens):
            r.pos += 1
            self.cached[r.job.seq].append(token)
        sampled: list[tuple[Request, int, int]] = [(r, i, i) for i, r in enumerate(gen)]  # (request, batch row, output)
        scored: list[tuple[Request, int, int, int]] = []  # (request, first output, n outputs, first target index)
        n_out = n
        for r in running:
            room = N_BATCH - n
            if not r.pending or room <= 0:
                continue
            scoring = r.prompt_scores is not None
            chunk = r.pending[: min(room, ECHO_CHUNK) if scoring else room]
            del r.pending[: len(chunk)]
            k = len(chunk)
            self.prompt_tokens_read += k
            b.token[n:n + k] = chunk
            b.pos[n:n + k] = np.arange(r.pos, r.pos + k)
            b.seq[n:n + k] = r.job.seq
            b.logits[n:n + k] = scoring
            if scoring:
                scored.append((r, n_out, k, r.pos))
                n_out += k
            elif not r.pending:
                b.logits[n + k - 1] = 1
                n_out += 1
            if not r.pending:
                sampled.append((r, n + k - 1, n_out - 1))
            r.pos += k
            self.cached[r.job.seq].extend(chunk)
            n += k
        b.struct.n_tokens = n
        rc = lib.llama_decode(self.ctx, b.struct)
        if rc != 0:
            for r in running:
                lib.llama_memory_seq_rm(self._memory, r.job.seq, -1, -1)
                self.cached[r.job.seq] = []
                self._finish(r, Done("error", error=f"llama_decode failed with status {rc}"))
            return
        if n_out == 0:
            return  # only the middle of prompts was read: nothing to sample yet
        # One view of every output row, in batch order (llama.cpp undoes its own reordering first);
        # valid until the next decode, so everything below reads it now.
        logits = np.ctypeslib.as_array(lib.llama_get_logits(self.ctx), shape=(n_out, self.n_vocab))  # (n_out, V)
        for r, first, count, first_index in scored:
            # Output i predicts prompt token first_index + i + 1; the last prompt row predicts the first new token.
            targets = r.job.tokens[first_index + 1: first_index + 1 + count]
            if targets:
                r.prompt_scores.add(logits[first: first + len(targets)], np.asarray(targets), r.job.logprobs or 0)
        greedy = [(r, out) for r, _, out in sampled if r.greedy]
        if greedy:
            outs = [out for _, out in greedy]
            rows = logits[: len(outs)] if outs == list(range(len(outs))) else logits[outs]  # (G, V)
            # np.argmax takes the first of equal maxima, as llama.cpp's greedy sampler does.
            for (r, out), token in zip(greedy, rows.argmax(axis=1).tolist()):
                self._emit(r, token, logits, out)
        for r, row, out in sampled:
            if not r.greedy and r.sampler is not None:
                self._emit(r, int(lib.llama_sampler_sample(r.sampler, self.ctx, row)), logits, out)

    def _emit(self, r: Request, token: int, logits: np.ndarray, out: int) -> None:
        """Hand `token` (sampled from output row `out`) to the request, or end it."""
        job = r.job
        if r.generated >= job.max_tokens:
            self._finish(r, Done("length"))  # max_tokens 0: the prompt only
            return
        if job.logprobs is None:
            event = Token(token)
        else:
            # The raw distribution: the sampler chain worked on its own copy of the row.
            scores = Scores()
            scores.add(logits[out: out + 1], np.asarray([token]), job.logprobs)
            event = Token(token, scores.chosen[0], scores.top_ids[0], scores.top_vals[0])
        r.generated += 1
        r.put(event)
        if token in job.stop_ids or token in self._eog:
            self._finish(r, Done("stop"))
        elif r.generated >= job.max_tokens:
            self._finish(r, Done("length"))
        elif r.pos >= self.n_ctx_seq:
            self._finish(r, Done("length"))  # prepare keeps prompt + max_tokens within n_ctx; a guard
        else:
            r.last = token


class _Batch:
    """A llama_batch over numpy arrays, so a step fills it with a few slice assignments instead of
    several ctypes field writes per token. One sequence id per token: seq_id[i] points at seq[i]."""

    def __init__(self, lib: Any, size: int):
        import ctypes

        self.token = np.zeros(size, dtype=np.int32)  # (size,)
        self.pos = np.zeros(size, dtype=np.int32)  # (size,)
        self.n_seq_id = np.ones(size, dtype=np.int32)  # (size,)
        self.seq = np.zeros(size, dtype=np.int32)  # (size,)
        self.logits = np.zeros(size, dtype=np.int8)  # (size,)
        i32 = ctypes.POINTER(ctypes.c_int32)
        self._seq_ptrs = (i32 * size)(*(ctypes.cast(self.seq.ctypes.data + 4 * i, i32) for i in range(size)))
        self.struct = lib.llama_batch()
        self.struct.token = self.token.ctypes.data_as(i32)
        self.struct.pos = self.pos.ctypes.data_as(i32)
        self.struct.n_seq_id = self.n_seq_id.ctypes.data_as(i32)
        self.struct.seq_id = ctypes.cast(self._seq_ptrs, ctypes.POINTER(i32))
        self.struct.logits = self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
