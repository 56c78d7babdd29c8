"""What every serving backend speaks: requests, sampling settings, text chunks, completions. Torch-free.

    from smoledge.serve.generation import Sampling, StopText
    sampling = Sampling(max_tokens=16, temperature=0.0, stop=["\\n\\n"])
    out = StopText(sampling.stop)
    finish, text = out.push(b" fox", generated=1, max_tokens=16)   # (None, " fox"): send it now

The server talks to a `Backend` (llama.cpp's in llama_backend.py, onnxruntime's in ort_backend.py)
and never to a runtime: these types are the contract between the two. They sit in a module of their
own, with no runtime import, so that the llama.cpp engine (llama_engine.py), both backends and the
HTTP layer can all import them without importing each other.

Stop rules, the same on every backend: the model's end-of-turn tokens stop on the token id (the
backend knows them), user stop strings stop on the text (`StopText`), and a stream never shows a
partial stop string or half a UTF-8 character.

Token counts: `completion_tokens` counts every token the model sampled, the end-of-turn token that
stopped it included, as llama.cpp's llama-server counts them; a model that ends its turn at once has
generated one token. The end token's text is not part of the answer (and has no logprobs entry).
"""

from __future__ import annotations

import codecs
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

import numpy as np

# Most recent tokens (the prompt's included) the repetition penalties look at: llama-server's
# default `repeat_last_n`, so that a request gives the same text on smoledge and on llama-server.
PENALTY_LAST_N = 64


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
    top_k: int = 0
    """Keep only the k most likely tokens before drawing; 0: all of them."""
    min_p: float = 0.0
    """Drop tokens less likely than min_p times the most likely one; 0: none dropped."""
    repeat_penalty: float = 1.0
    """llama.cpp's: a token among the last PENALTY_LAST_N has its logit divided by this (multiplied when
    negative); 1: off."""
    presence_penalty: float = 0.0
    """OpenAI's: subtracted from the logit of every token among the last PENALTY_LAST_N; 0: off."""
    frequency_penalty: float = 0.0
    """OpenAI's: subtracted from a token's logit once per time it occurs among the last PENALTY_LAST_N."""
    cache_prompt: bool = True
    """Read only the part of the prompt a slot's KV cache does not hold (llama-server's field). False: read
    it all, so a greedy completion does not depend on what the slot ran before (kernels round differently
    for a prompt read whole than for a cached prefix plus the rest). A backend without reuse reads it all."""


# Sampling fields that change the output only when set away from their default, and that a backend
# applies only if it names them in `Backend.sampling_options`.
OPTIONAL_SAMPLING = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0, "presence_penalty": 0.0,
                     "frequency_penalty": 0.0}


def options_used(sampling: Sampling) -> list[str]:
    """The optional sampling fields this request sets, in OPTIONAL_SAMPLING's order."""
    return [name for name, off in OPTIONAL_SAMPLING.items() if getattr(sampling, name) != off]


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

    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()


@dataclass
class Chunk:
    text: str
    """New text since the previous chunk."""
    finish_reason: str | None = None
    """Set on the last chunk only: "stop" (end token or stop string), "length" (max_tokens), or
    "cancelled" (Job.cancel was set; the server does not pass this one on to the client)."""
    completion_tokens: int = 0
    """Tokens generated so far (the module docstring says which count)."""


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


@dataclass
class PromptScores:
    """Log-probabilities of prompt tokens 1.. (token 0 has nothing before it): each one's own, and its
    most likely alternatives (ids and values, best first)."""

    chosen: list[float] = field(default_factory=list)
    top_ids: list[np.ndarray] = field(default_factory=list)
    top_vals: list[np.ndarray] = field(default_factory=list)


class Sampled(Protocol):
    """One sampled token as a backend's decoder (llama_engine, ort_decoder) hands it over."""

    id: int
    logprob: float | None
    """Natural-log probability under the raw logits; None when the job asked for no logprobs."""
    top_ids: np.ndarray | None
    top_vals: np.ndarray | None


@dataclass
class Token:
    id: int
    logprob: float | None = None
    top_ids: np.ndarray | None = None
    top_vals: np.ndarray | None = None


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
    supports_grammar: bool
    """Sampling.grammar / .json_schema are enforced (the server refuses them on a backend without this)."""
    sampling_options: frozenset[str]
    """The OPTIONAL_SAMPLING fields this backend applies (prepare refuses a request setting another one)."""

    def tokenize(self, text: str, add_special: bool = True) -> list[int]: ...
    def detokenize(self, tokens: list[int]) -> str: ...
    def render_chat(self, messages: list[dict[str, Any]]) -> str: ...
    def piece(self, token: int) -> str: ...
    def prepare(self, prompt: str | list[int], sampling: Sampling, echo: bool = False,
                logprobs: int | None = None) -> Job: ...
    def stream(self, job: Job) -> Iterator[Chunk]: ...
    def complete(self, job: Job) -> Completion: ...
    def close(self) -> None: ...
