"""llama.cpp text generation for the server, one request at a time. Torch-free.

    from smoledge.serve.backend import LlamaBackend, Sampling
    backend = LlamaBackend("model-q8_0.gguf", n_ctx=512, threads=2, chat_template=None)
    job = backend.prepare("The quick brown fox", Sampling(max_tokens=16, temperature=0.0))
    print(backend.complete(job).text)

The generation loop is written out here (over `Llama.generate`) rather than
taken from `Llama.create_completion` so that the stop rules are exact: the
model's end tokens (<|im_end|>, EOS) stop on the token id, user stop strings
stop on the text, and streamed text never shows a partial stop string or a
split UTF-8 character.

Decoding is `LlamaEngine`'s (smoledge/serve/llama_engine.py): one llama.cpp context with
one KV sequence per slot, every running request advanced in the same decode step. This module
turns its tokens into text and OpenAI's shapes.

Log-probabilities (OpenAI's legacy `logprobs` / `echo`, what lm-evaluation-harness
scores multiple-choice tasks with) come without `logits_all=True`. That flag would
make every prompt of every request compute the output layer at every position and
copy it into an (n_ctx, vocab) float array: on SmolLM2-135M's shape (49k vocabulary)
the output layer is about a fifth of the prompt compute, and the array is 100 MB at
n_ctx 512, 400 MB at 2048. Instead a generated token's log-probabilities are read from
the one row of logits the sampler used, and echo + logprobs asks the engine for logits
at every prompt position, a chunk at a time, reduced to log-probabilities on the spot.
Requests without logprobs compute none.

Constrained output (llama.cpp's GBNF grammars): `Sampling.grammar` (GBNF text) or
`Sampling.json_schema` (turned into GBNF by llama-cpp-python's converter) is checked
in `prepare` (a grammar llama.cpp cannot parse is a RequestError, i.e. a 400, before
any slot is taken) and applied by the sampler at every token.

`Job.cancel` (a threading.Event the server sets when the client goes away, the
request times out or the server shuts down) stops the generation at the next token.
"""

from __future__ import annotations

import codecs
import json
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np

from smoledge.errors import SmoledgeError
from smoledge.tokenizer.llama_cpp import llama_detokenize

# Limits on a request's grammar. llama.cpp parses GBNF recursively: ~20k nested parentheses or a chain
# of ~100k rules overflow the thread's stack and kill the process. llama-cpp-python's JSON-schema
# converter writes `maxLength: N` (maxItems, a pattern's {m,n}...) as N nested optional groups, so
# a schema's counts are capped first, then the grammar's size and nesting.
# The Llama object's own context is not decoded in (the engine has one): the smallest that loads.
UNUSED_CTX = 8
MAX_GRAMMAR_BYTES = 64 * 1024
MAX_GRAMMAR_DEPTH = 1000
MAX_SCHEMA_COUNT = 512
_SCHEMA_COUNTS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
_QUANTIFIER = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")


class RequestError(ValueError):
    """A request the model cannot serve as asked (the server answers 400 with this message)."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param
        """The request field at fault, when one is."""


@dataclass
class Sampling:
    max_tokens: int | None = 16
    """Most tokens to generate; None: up to the end of the context window."""
    temperature: float = 1.0
    """0 is greedy decoding."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    stop: list[str] = field(default_factory=list)
    """Text sequences that end the generation (not included in the output)."""
    seed: int | None = None
    """Sampling seed; None: a fresh random seed per request."""
    grammar: str | None = None
    """GBNF grammar (llama.cpp's format, rule `root` first) the output must match; None: free text."""
    json_schema: dict[str, Any] | None = None
    """JSON schema the output must be an instance of (compiled to a GBNF grammar); None: free text."""


@dataclass
class Job:
    """A validated request: prompt tokens that fit the context with room for max_tokens."""

    tokens: list[int]
    sampling: Sampling
    max_tokens: int
    """0 only with echo: score the prompt, generate nothing."""
    prompt_text: str = ""
    """The prompt as text (a token-id prompt: its tokens decoded), returned first when echo is set."""
    added_bos: bool = False
    """tokens[0] is a BOS the server added to a text prompt (it spells no text of the prompt)."""
    echo: bool = False
    """Return the prompt before the completion (and, with logprobs, the prompt tokens' log-probabilities)."""
    logprobs: int | None = None
    """Return each token's log-probability and this many most likely alternatives; None: none."""
    grammar: str | None = None
    """The GBNF grammar the sampler enforces (from Sampling.grammar or .json_schema), checked by prepare."""
    cancel: threading.Event | None = None
    """Set by the server (client gone, timeout, shutdown): the generation stops at the next token."""


@dataclass
class Chunk:
    text: str
    """New text since the previous chunk."""
    finish_reason: str | None = None
    """Set on the last chunk only: "stop" (end token or stop string), "length" (max_tokens), or
    "cancelled" (Job.cancel was set; the server does not pass this one on to the client)."""
    completion_tokens: int = 0
    """Tokens generated so far."""


@dataclass
class LogProbs:
    """OpenAI's legacy completions `logprobs` object: one entry per returned token."""

    tokens: list[str] = field(default_factory=list)
    """Each token's text (decoded alone; a token holding part of a UTF-8 character shows U+FFFD)."""
    token_logprobs: list[float | None] = field(default_factory=list)
    """log p(token | tokens before it), natural log; None for the first prompt token (nothing precedes it)."""
    top_logprobs: list[dict[str, float] | None] = field(default_factory=list)
    """The `logprobs` most likely tokens at that position, plus the token itself; None where token_logprobs is."""
    text_offset: list[int] = field(default_factory=list)
    """Character offset in the returned text where the token's text starts."""

    def extend(self, other: "LogProbs") -> None:
        self.tokens += other.tokens
        self.token_logprobs += other.token_logprobs
        self.top_logprobs += other.top_logprobs
        self.text_offset += other.text_offset

    def to_dict(self) -> dict[str, list[Any]]:
        return {"tokens": self.tokens, "token_logprobs": self.token_logprobs,
                "top_logprobs": self.top_logprobs, "text_offset": self.text_offset}


@dataclass
class Completion:
    text: str
    """The generated text; with echo, the prompt text first."""
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    logprobs: LogProbs | None = None
    """Set when the job asked for logprobs: the prompt tokens (with echo), then the generated ones."""


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """(N, V) float32 logits -> (N, V) float64 natural-log probabilities."""
    x = logits.astype(np.float64)  # (N, V)
    m = x.max(axis=1, keepdims=True)  # (N, 1)
    return x - (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))  # (N, V)


def top_alternatives(logp: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, V) log-probabilities -> the k most likely ids per row and their log-probabilities, best first."""
    if k == 0:
        return np.zeros((len(logp), 0), dtype=np.int64), np.zeros((len(logp), 0))
    ids = np.argpartition(-logp, k - 1, axis=1)[:, :k]  # (N, k) unordered
    vals = np.take_along_axis(logp, ids, axis=1)  # (N, k)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(vals, order, axis=1)


def utf8(text: str, what: str, param: str | None = None) -> bytes:
    """`text` as UTF-8; a RequestError if it cannot be (JSON may carry a lone UTF-16 surrogate, "\\ud800")."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RequestError(f"{what} holds {text[exc.start]!r} at character {exc.start}, a lone UTF-16 surrogate, "
                           "which is not text; send valid Unicode", param) from None


def schema_problem(schema: Any, where: str = "schema") -> str | None:
    """Why a JSON schema would make too big a grammar (a count over MAX_SCHEMA_COUNT), or None."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key in _SCHEMA_COUNTS and isinstance(value, int) and value > MAX_SCHEMA_COUNT:
                return f"{where}.{key} is {value}"
            if key == "pattern" and isinstance(value, str):
                for m in _QUANTIFIER.finditer(value):
                    if max(int(x) for x in m.groups() if x) > MAX_SCHEMA_COUNT:
                        return f"{where}.pattern repeats {m.group(0)}"
            problem = schema_problem(value, f"{where}.{key}")
            if problem:
                return problem
    elif isinstance(schema, list):
        for i, item in enumerate(schema):
            problem = schema_problem(item, f"{where}[{i}]")
            if problem:
                return problem
    return None


def grammar_depth(text: str) -> int:
    """Deepest nesting of parentheses in GBNF text (string literals, character classes and comments skipped)."""
    depth = deepest = i = 0
    while i < len(text):
        c = text[i]
        if c in '"[':
            close = '"' if c == '"' else "]"
            i += 1
            while i < len(text) and text[i] != close:
                i += 2 if text[i] == "\\" else 1
        elif c == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
        elif c == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif c == ")":
            depth -= 1
        i += 1
    return deepest


def _held_back(text: str, stops: list[str]) -> int:
    """Length of the longest tail of `text` that could still grow into a stop string."""
    hold = 0
    for s in stops:
        for i in range(min(len(s) - 1, len(text)), hold, -1):
            if text.endswith(s[:i]):
                hold = i
                break
    return hold


class StopText:
    """The text of a generation as its tokens' bytes arrive: cut at the first stop string, and sent
    only where it is final (no split UTF-8 character, no tail that could still become a stop string)."""

    def __init__(self, stops: list[str]):
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stops = [x for x in stops if x]
        self.longest = max((len(x) for x in self.stops), default=0)
        self.text, self.sent = "", 0

    def add(self, data: bytes) -> bool:
        """Append one token's bytes; True when a stop string appeared (the text is cut before it)."""
        self.text += self.decoder.decode(data)
        # A new stop string can only end in the newly decoded tail.
        start = max(0, self.sent - self.longest)
        hits = [i for i in (self.text.find(x, start) for x in self.stops) if i >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            return True
        return False

    def flush(self) -> None:
        """The generation ended without a stop: an unfinished UTF-8 character becomes U+FFFD."""
        self.text += self.decoder.decode(b"", final=True)

    def ready(self) -> str:
        """Text that can be sent now, marked as sent."""
        end = len(self.text) - _held_back(self.text, self.stops)
        if end <= self.sent:
            return ""
        out, self.sent = self.text[self.sent:end], end
        return out

    def push(self, data: bytes, generated: int, max_tokens: int) -> tuple[str | None, str]:
        """One generated token's bytes, the count so far included: (finish reason or None, text to
        send now). "stop": a stop string appeared; "length": max_tokens reached."""
        if self.add(data):
            return "stop", ""
        if generated >= max_tokens:
            self.flush()
            return "length", ""
        return None, self.ready()

    def rest(self) -> str:
        """Everything not sent yet (the generation is over)."""
        out, self.sent = self.text[self.sent:], len(self.text)
        return out


def text_completion(job: Job, chunks: list[Chunk]) -> Completion:
    """A job's generated chunks as a Completion without log-probabilities (echo: the prompt first)."""
    text, last = "".join(c.text for c in chunks), chunks[-1]
    return Completion(job.prompt_text + text if job.echo else text, last.finish_reason or "length",
                      len(job.tokens), last.completion_tokens)


def logprob_completion(job: Job, chunks: list[Chunk], trace: list[tuple[int, float, dict[str, float]]],
                       prompt: LogProbs | None, piece: Callable[[int], str],
                       offsets: Callable[[list[int], int], list[int]]) -> Completion:
    """A Completion with the prompt's (echo) and the generated tokens' log-probabilities.

    `trace`: (token, logprob, alternatives) per generated token; `offsets(ids, start)`: where each
    generated token's text starts, as the backend's generation loop decodes it."""
    text, last = "".join(c.text for c in chunks), chunks[-1]
    head = job.prompt_text if job.echo else ""
    # OpenAI counts completion offsets after the prompt even without echo.
    start = len(job.prompt_text)
    ids = [t for t, _, _ in trace]
    at = offsets(ids, start)
    # A stop string cuts the text: keep the tokens whose text starts before the cut.
    keep = sum(1 for o in at if o < start + len(text))
    generated = LogProbs(tokens=[piece(t) for t in ids[:keep]], token_logprobs=[lp for _, lp, _ in trace[:keep]],
                         top_logprobs=[top for _, _, top in trace[:keep]], text_offset=at[:keep])
    logprobs = prompt or LogProbs()
    logprobs.extend(generated)
    return Completion(head + text, last.finish_reason or "length", len(job.tokens), last.completion_tokens,
                      logprobs)


def checked_token_ids(prompt: list[int], n_vocab: int) -> list[int]:
    """A prompt sent as token ids, used as sent once every id is in the vocabulary."""
    if not prompt:
        raise RequestError("the prompt is an empty list of token ids; send at least one token", "prompt")
    bad = [t for t in prompt if not 0 <= t < n_vocab]
    if bad:
        raise RequestError(f"prompt token id {bad[0]} is outside this model's vocabulary "
                           f"(0..{n_vocab - 1}); tokenize with the bundle's tokenizer/", "prompt")
    return list(prompt)


def generation_budget(n_prompt: int, max_tokens: int | None, n_ctx: int) -> int:
    """Tokens a request may generate: max_tokens, or the rest of the context when it is None; a clear
    RequestError when the prompt and max_tokens do not fit the context window together."""
    room = n_ctx - n_prompt
    if max_tokens is None and room <= 0:
        raise RequestError(
            f"the prompt is {n_prompt} tokens: it leaves no room to generate in the context window of "
            f"{n_ctx} tokens; shorten the prompt"
        )
    budget = max_tokens if max_tokens is not None else room
    if budget > room:
        raise RequestError(
            f"the prompt is {n_prompt} tokens and max_tokens is {budget}: together they exceed "
            f"the context window of {n_ctx} tokens; shorten the prompt or lower max_tokens"
        )
    return budget


class Backend(Protocol):
    """What the server calls on a backend (LlamaBackend, OrtBackend). The server runs at most one
    job at a time per backend object it was given for a slot; it may also call tokenize, detokenize,
    piece, render_chat and prepare on the first one from other threads at any time."""

    n_ctx: int

    def tokenize(self, text: str, add_special: bool = True) -> list[int]: ...
    def detokenize(self, tokens: list[int]) -> str: ...
    def render_chat(self, messages: list[dict[str, Any]]) -> str: ...
    def piece(self, token: int) -> str: ...
    def prepare(self, prompt: str | list[int], sampling: Sampling, echo: bool = False,
                logprobs: int | None = None) -> Job: ...
    def stream(self, job: Job) -> Iterator[Chunk]: ...
    def complete(self, job: Job) -> Completion: ...
    def close(self) -> None: ...


class LlamaBackend:
    supports_grammar = True
    """Sampling.grammar / .json_schema are enforced (the server refuses them on a backend without this)."""

    def __init__(
        self,
        model_path: str | Path,
        n_ctx: int,
        threads: int,
        chat_template: str | None = None,
        bos_token: str = "",
        eos_token: str = "",
        stop_tokens: list[str] | None = None,
        slots: int = 1,
    ):
        """`slots` requests run at once, each on its own KV sequence of n_ctx positions, all on
        `threads` threads. Give the server's SlotPool this one object `slots` times."""
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from smoledge.serve.llama_engine import LlamaEngine

        self._llama_cpp = llama_cpp
        try:
            # The Llama object is the model, its vocabulary and tokenizer; decoding runs in the
            # engine's own context, so this one's is kept minimal.
            self.llm = llama_cpp.Llama(
                model_path=str(model_path),
                n_ctx=UNUSED_CTX,
                n_batch=UNUSED_CTX,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise SmoledgeError(
                f"llama.cpp could not load {model_path} ({exc}); check that the file is a GGUF this "
                f"llama-cpp-python ({llama_cpp.__version__}) supports, or re-run `smoledge export`"
            ) from None
        self.n_ctx = n_ctx
        self.threads = threads
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.n_vocab = self.llm.n_vocab()
        try:
            self.engine = LlamaEngine(self.llm, n_seq=slots, n_ctx_seq=n_ctx, threads=threads)
        except RuntimeError as exc:
            self.llm.close()
            raise SmoledgeError(f"{exc} for {model_path}; lower --slots or the context (n_ctx), "
                                "or free memory") from None
        # A stop token must be one vocabulary entry, else it is not a token of this model.
        self.stop_ids = {self.llm.token_eos()} - {-1}
        for text in stop_tokens or []:
            ids = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
            if len(ids) == 1:
                self.stop_ids.add(ids[0])
        self.chat_formatter = (
            Jinja2ChatFormatter(template=chat_template, eos_token=eos_token, bos_token=bos_token)
            if chat_template
            else None
        )
        # Sequences no request holds; the SlotPool never runs more than `slots` requests here.
        self._free = list(range(slots))
        self._free_lock = threading.Lock()

    # -- prompts --------------------------------------------------------------

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        """Prompt tokens: BOS as the model's GGUF asks (add_special=False: none, the text's tokens only),
        special tokens (<|im_start|>) parsed."""
        tokens = self.llm.tokenize(utf8(text, "the text"), add_bos=add_special, special=True)
        if not add_special:
            return tokens
        bos = self.llm.token_bos()
        if len(tokens) >= 2 and tokens[0] == tokens[1] == bos:
            tokens = tokens[1:]  # a chat template that writes BOS itself
        if not tokens:
            if bos == -1:
                raise RequestError("the prompt is empty; send at least one character")
            tokens = [bos]
        return tokens

    def render_chat(self, messages: list[dict[str, Any]]) -> str:
        """Apply the bundle's chat template (add_generation_prompt=True)."""
        if self.chat_formatter is None:
            raise RequestError("this model has no chat template; use /v1/completions with a plain prompt")
        import jinja2

        try:
            return self.chat_formatter(messages=messages).prompt
        except (ValueError, TypeError, jinja2.TemplateError) as exc:
            raise RequestError(f"the chat template rejected these messages: {exc}") from None

    def piece(self, token: int) -> str:
        """One token's text on its own (special tokens spelled out)."""
        return llama_detokenize(self.llm, [token], special=True).decode("utf-8", errors="replace")

    def detokenize(self, tokens: list[int]) -> str:
        """Token ids -> text, special tokens spelled out (a character split across tokens is joined)."""
        bad = [t for t in tokens if not 0 <= t < self.n_vocab]
        if bad:
            raise RequestError(f"token id {bad[0]} is outside this model's vocabulary (0..{self.n_vocab - 1})",
                               "tokens")
        return llama_detokenize(self.llm, tokens, special=True, whole_text=True).decode("utf-8", errors="replace")

    def _compile_grammar(self, sampling: Sampling) -> str | None:
        """The GBNF text for the request's constraint, checked by llama.cpp's own parser; None: none."""
        if sampling.json_schema is not None:
            from llama_cpp.llama_grammar import json_schema_to_gbnf

            problem = schema_problem(sampling.json_schema)
            if problem:
                raise RequestError(f"response_format: {problem}; this server turns counts up to {MAX_SCHEMA_COUNT} "
                                   "into a grammar (larger ones make a grammar too deep for llama.cpp); lower it "
                                   "or leave it out", "response_format")
            try:
                text = json_schema_to_gbnf(json.dumps(sampling.json_schema))
            # The converter signals a schema it cannot express with assorted exceptions (AssertionError,
            # ValueError, KeyError, RecursionError...); all of them mean "this schema", never the server.
            except Exception as exc:
                raise RequestError(f"response_format: this JSON schema cannot be turned into a grammar "
                                   f"({type(exc).__name__}: {exc}); simplify it (no remote $ref, patterns "
                                   "anchored with ^...$)", "response_format") from None
            where = "response_format"
        elif sampling.grammar is not None:
            text, where = sampling.grammar, "grammar"
        else:
            return None
        data = utf8(text, where, where)
        if len(data) > MAX_GRAMMAR_BYTES:
            raise RequestError(f"{where}: the grammar is {len(data)} bytes, over this server's limit of "
                               f"{MAX_GRAMMAR_BYTES}; simplify it", where)
        depth = grammar_depth(text)
        if depth > MAX_GRAMMAR_DEPTH:
            raise RequestError(f"{where}: the grammar nests parentheses {depth} deep, over this server's limit of "
                               f"{MAX_GRAMMAR_DEPTH} (llama.cpp parses them recursively); flatten it into rules", where)
        # llama.cpp parses the grammar when the sampler is made: a NULL sampler is a grammar it rejects
        # (syntax, undefined rule, no `root`, left recursion, repetitions past its limits).
        sampler = self._llama_cpp.llama_sampler_init_grammar(self.vocab, data, b"root")
        if not sampler:
            raise RequestError(f"{where}: llama.cpp cannot use this GBNF grammar (undefined rule, no `root` rule, "
                               "left recursion, a syntax error or too many repetitions); see "
                               "https://github.com/ggml-org/llama.cpp/blob/master/grammars/README.md", where)
        self._llama_cpp.llama_sampler_free(sampler)
        return text

    def prepare(self, prompt: str | list[int], sampling: Sampling, echo: bool = False,
                logprobs: int | None = None) -> Job:
        """Tokenize and check that prompt + max_tokens fit the context window.

        `prompt` is text, or token ids used exactly as given (no BOS added: a
        client that tokenizes, like lm-evaluation-harness, decides the tokens).
        Runs outside the lock: tokenizing only reads the vocabulary, so a bad
        request is answered at once even while another one is generating."""
        if isinstance(prompt, str):
            tokens, text = self.tokenize(prompt), prompt
            added_bos = tokens[0] == self.llm.token_bos() and not prompt.startswith(self.piece(tokens[0]))
        else:
            tokens, added_bos = checked_token_ids(prompt, self.n_vocab), False
            text = llama_detokenize(self.llm, tokens, special=True, whole_text=True).decode("utf-8", errors="replace")
        if sampling.max_tokens == 0 and not echo:
            raise RequestError("max_tokens is 0: nothing to generate; send max_tokens >= 1, or echo=true "
                               "to score the prompt only", "max_tokens")
        max_tokens = generation_budget(len(tokens), sampling.max_tokens, self.n_ctx)
        grammar = self._compile_grammar(sampling)
        return Job(tokens=tokens, sampling=sampling, max_tokens=max_tokens, prompt_text=text,
                   added_bos=added_bos, echo=echo, logprobs=logprobs, grammar=grammar)

    # -- log-probabilities ------------------------------------------------------

    def _top_dict(self, token: int, logprob: float, ids: np.ndarray, vals: np.ndarray) -> dict[str, float]:
        """{text: logprob} for the top alternatives and the token itself (OpenAI: up to logprobs+1 entries).

        The token goes in first, so that if another token spells the same text, the more
        likely alternative's value wins the key (is-greedy checks compare against the max)."""
        top = {self.piece(token): logprob}
        top.update({self.piece(int(i)): float(v) for i, v in zip(ids, vals)})
        return top

    def _offsets(self, tokens: list[int], skip_first: bool, special: bool, start: int = 0) -> list[int]:
        """Where each token's text starts in the text they decode to, as the prompt (special=True)
        or the generation loop (special=False) decodes it; a UTF-8 character split across tokens
        counts for the token that completes it."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        offsets, at = [], start
        for i, t in enumerate(tokens):
            offsets.append(at)
            if not (i == 0 and skip_first):
                at += len(decoder.decode(llama_detokenize(self.llm, [t], special=special)))
        return offsets

    def _prompt_logprobs(self, job: Job, scores: Any) -> LogProbs:
        """OpenAI's echo logprobs from the engine's prompt Scores (tokens 1..; token 0 has no context)."""
        top = [self._top_dict(int(t), lp, ids, vals)
               for t, lp, ids, vals in zip(job.tokens[1:], scores.chosen, scores.top_ids, scores.top_vals)]
        n = 1 + len(scores.chosen)  # fewer than the prompt when the request was cancelled while reading it
        return LogProbs(tokens=[self.piece(t) for t in job.tokens[:n]], token_logprobs=[None, *scores.chosen],
                        top_logprobs=[None, *top],
                        text_offset=self._offsets(job.tokens[:n], skip_first=job.added_bos, special=True))

    # -- generation -----------------------------------------------------------

    @contextmanager
    def _request(self, job: Job, score_prompt: bool) -> Iterator[Any]:
        """Submit `job` to the engine on a free sequence (the one caching the longest prefix of its
        prompt); on the way out, stop it if still running and wait for the engine to let go of it."""
        from smoledge.serve.llama_engine import EngineJob

        with self._free_lock:
            seq = max(self._free, key=lambda q: _common_prefix(self.engine.cached[q], job.tokens))
            self._free.remove(seq)
        s = job.sampling
        request = self.engine.submit(EngineJob(
            seq=seq, tokens=job.tokens, max_tokens=job.max_tokens, temperature=s.temperature, top_p=s.top_p,
            seed=s.seed % (1 << 32) if s.seed is not None else self._llama_cpp.LLAMA_DEFAULT_SEED,
            grammar=job.grammar, logprobs=job.logprobs, score_prompt=score_prompt,
            stop_ids=frozenset(self.stop_ids), also_cancel=job.cancel))
        try:
            yield request
        finally:
            request.stop()
            with self._free_lock:
                self._free.append(seq)

    def stream(self, job: Job) -> Iterator[Chunk]:
        """Yield text pieces as they are decoded; the last chunk carries finish_reason.

        Streams carry no log-probabilities and no echo (the server refuses those with stream)."""
        with self._request(job, score_prompt=False) as request:
            yield from self._run(job, request, None)

    def _run(self, job: Job, request: Any, trace: list[tuple[int, float, dict[str, float]]] | None) -> Iterator[Chunk]:
        """Text from the engine's tokens; appends (token, logprob, alternatives) per generated token to `trace`."""
        from smoledge.serve.llama_engine import Done

        out = StopText(job.sampling.stop)
        n, finish = 0, "length"
        for event in request.events():
            if isinstance(event, Done):
                if event.reason == "error":
                    raise RuntimeError(event.error)
                finish = event.reason
                break
            if job.cancel is not None and job.cancel.is_set():
                finish = "cancelled"
                break
            token = event.id
            if token in self.stop_ids or self._llama_cpp.llama_vocab_is_eog(self.vocab, token):
                finish = "stop"
                break
            if trace is not None:
                trace.append((token, event.logprob,
                              self._top_dict(token, event.logprob, event.top_ids, event.top_vals)))
            n += 1
            ended, piece = out.push(llama_detokenize(self.llm, [token]), n, job.max_tokens)
            if ended:
                finish = ended
                break
            if piece:
                yield Chunk(piece, None, n)
        yield Chunk(out.rest(), finish, n)

    def complete(self, job: Job) -> Completion:
        """Run a job to the end; with echo the text starts with the prompt, with logprobs they come along."""
        if job.logprobs is None:
            return text_completion(job, list(self.stream(job)))
        trace: list[tuple[int, float, dict[str, float]]] = []
        with self._request(job, score_prompt=job.echo) as request:
            chunks = list(self._run(job, request, trace))
        scores = request.done.prompt_scores
        prompt = self._prompt_logprobs(job, scores) if scores is not None else None
        if job.cancel is not None and job.cancel.is_set():
            return Completion("", "cancelled", len(job.tokens), 0, prompt)
        return logprob_completion(job, chunks, trace, prompt, self.piece,
                                  lambda ids, start: self._offsets(ids, skip_first=False, special=False, start=start))

    def close(self) -> None:
        self.engine.close()
        self.llm.close()


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
