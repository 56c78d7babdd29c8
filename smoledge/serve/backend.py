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
"""

from __future__ import annotations

import codecs
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from smoledge.errors import SmoledgeError


class RequestError(ValueError):
    """A request the model cannot serve as asked (the server answers 400 with this message)."""


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


@dataclass
class Job:
    """A validated request: prompt tokens that fit the context with room for max_tokens."""

    tokens: list[int]
    sampling: Sampling
    max_tokens: int


@dataclass
class Chunk:
    text: str
    """New text since the previous chunk."""
    finish_reason: str | None = None
    """Set on the last chunk only: "stop" (end token or stop string) or "length" (max_tokens)."""
    completion_tokens: int = 0
    """Tokens generated so far."""


@dataclass
class Completion:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def _held_back(text: str, stops: list[str]) -> int:
    """Length of the longest tail of `text` that could still grow into a stop string."""
    hold = 0
    for s in stops:
        for i in range(min(len(s) - 1, len(text)), hold, -1):
            if text.endswith(s[:i]):
                hold = i
                break
    return hold


class LlamaBackend:
    def __init__(
        self,
        model_path: str | Path,
        n_ctx: int,
        threads: int,
        chat_template: str | None = None,
        bos_token: str = "",
        eos_token: str = "",
        stop_tokens: list[str] | None = None,
    ):
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._llama_cpp = llama_cpp
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(model_path),
                n_ctx=n_ctx,
                n_batch=min(512, n_ctx),
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
        # llama.cpp's context holds one sequence's KV cache: one generation at a time.
        self._lock = threading.Lock()

    # -- prompts --------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Prompt tokens: BOS as the model's GGUF asks, special tokens (<|im_start|>) parsed."""
        tokens = self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
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

    def prepare(self, prompt: str, sampling: Sampling) -> Job:
        """Tokenize and check that prompt + max_tokens fit the context window.

        Runs outside the lock: tokenizing only reads the vocabulary, so a bad
        request is answered at once even while another one is generating."""
        tokens = self.tokenize(prompt)
        room = self.n_ctx - len(tokens)
        max_tokens = sampling.max_tokens if sampling.max_tokens is not None else room
        if room <= 0 or max_tokens > room:
            raise RequestError(
                f"the prompt is {len(tokens)} tokens and max_tokens is {max_tokens}: together they exceed "
                f"the context window of {self.n_ctx} tokens; shorten the prompt or lower max_tokens"
            )
        return Job(tokens=tokens, sampling=sampling, max_tokens=max_tokens)

    # -- generation -----------------------------------------------------------

    def stream(self, job: Job) -> Iterator[Chunk]:
        """Yield text pieces as they are decoded; the last chunk carries finish_reason."""
        s = job.sampling
        with self._lock:
            seed = s.seed % (1 << 32) if s.seed is not None else self._llama_cpp.LLAMA_DEFAULT_SEED
            self.llm.set_seed(seed)
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            stops = [x for x in s.stop if x]
            longest_stop = max((len(x) for x in stops), default=0)
            text, sent, n, finish = "", 0, 0, "length"
            # top_k=0, min_p=0, typical_p=1: only temperature and top_p shape
            # the distribution, as in the OpenAI API.
            tokens = self.llm.generate(
                job.tokens, temp=s.temperature, top_p=s.top_p, top_k=0, min_p=0.0, typical_p=1.0,
                repeat_penalty=1.0,
            )
            try:
                for token in tokens:
                    if token in self.stop_ids or self._llama_cpp.llama_vocab_is_eog(self.vocab, token):
                        finish = "stop"
                        break
                    n += 1
                    text += decoder.decode(self.llm.detokenize([token]))
                    # A new stop string can only end in the newly decoded tail.
                    start = max(0, sent - longest_stop)
                    hits = [i for i in (text.find(x, start) for x in stops) if i >= 0]
                    if hits:
                        text = text[: min(hits)]
                        finish = "stop"
                        break
                    if n >= job.max_tokens:
                        text += decoder.decode(b"", final=True)
                        break
                    ready = len(text) - _held_back(text, stops)
                    if ready > sent:
                        yield Chunk(text[sent:ready], None, n)
                        sent = ready
            finally:
                tokens.close()
            yield Chunk(text[sent:], finish, n)

    def complete(self, job: Job) -> Completion:
        pieces, last = [], Chunk("")
        for last in self.stream(job):
            pieces.append(last.text)
        return Completion("".join(pieces), last.finish_reason or "length", len(job.tokens), last.completion_tokens)

    def close(self) -> None:
        self.llm.close()
