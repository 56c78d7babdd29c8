"""Tokens to OpenAI's text, once for every backend: prompts, stop rules, log-probabilities. Torch-free.

    class MyBackend(TextBackend):                       # a runtime that samples tokens
        def _encode(self, text, add_special): ...       # its tokenizer
        def _run(self, job, scores): ...                # its decoder: a context yielding sampled tokens
        ...                                             # and the other abstract methods
    backend.complete(backend.prepare("The quick brown fox", Sampling(max_tokens=16)))

llama.cpp (llama_backend.py) and onnxruntime (ort_backend.py) differ in how they tokenize and how
they get the next token; everything after that is the same and lives here, so that the two cannot
drift apart and the server cannot tell them apart:
  - a text prompt gets BOS only when the tokenizer adds it (llama.cpp: the GGUF's add_bos_token; HF:
    the tokenizer's post-processor), and a chat template that writes BOS itself does not get a second;
  - prompt + max_tokens must fit the context window, checked before any slot is taken;
  - the generation loop (`_decode`): end-of-turn tokens stop on their id, stop strings on the text,
    the token count follows generation.py's rule;
  - log-probabilities: OpenAI's legacy object, with each token's text offset as the loop decoded it.
"""

from __future__ import annotations

import codecs
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Any, Callable, Iterator

import numpy as np

from smoledge.serve.chat_template import ChatTemplate, ChatTemplateError
from smoledge.serve.generation import (
    Chunk,
    Completion,
    Job,
    LogProbs,
    PromptScores,
    RequestError,
    Sampled,
    Sampling,
    StopText,
    checked_token_ids,
    generation_budget,
    logprob_completion,
    options_used,
    text_completion,
    utf8,
)


class TextBackend(ABC):
    """The shared half of a backend; a subclass sets the attributes below and the runtime hooks."""

    n_ctx: int
    n_vocab: int
    bos_id: int | None
    """The BOS token, None when the model has none."""
    stop_ids: set[int]
    """Tokens that end the model's turn (EOS, EOT, <|im_end|>...): the generation stops on them."""
    chat: ChatTemplate | None
    supports_grammar: bool = False
    sampling_options: frozenset[str] = frozenset()

    # -- what a runtime provides ----------------------------------------------------

    @abstractmethod
    def _encode(self, text: str, add_special: bool) -> list[int]:
        """The tokenizer: special tokens in the text parsed; add_special adds what the tokenizer adds (BOS)."""

    @abstractmethod
    def _text_bytes(self, token: int) -> bytes:
        """A token's bytes in generated text (special tokens spell nothing there)."""

    @abstractmethod
    def _piece_bytes(self, token: int) -> bytes:
        """A token's bytes spelled out, special tokens included."""

    @abstractmethod
    def _join(self, tokens: list[int]) -> str:
        """Token ids as text, special tokens spelled out (a character split across tokens is joined)."""

    @abstractmethod
    def _constraint(self, sampling: Sampling) -> str | None:
        """The GBNF grammar to enforce for `sampling`, checked; None: free text. RequestError if it cannot be."""

    @abstractmethod
    def _run(self, job: Job, scores: PromptScores | None) -> AbstractContextManager[Iterator[Sampled]]:
        """A context holding a decoder for `job`: it yields the sampled tokens, one at a time, until the
        consumer stops asking, max_tokens is reached or job.cancel is set. With `scores`, fill it with the
        prompt's log-probabilities (by the time the tokens run out). Leaving the context frees the decoder."""

    def _ends_turn(self, token: int) -> bool:
        return token in self.stop_ids

    # -- prompts --------------------------------------------------------------------

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        """Prompt tokens: BOS as the tokenizer adds it (add_special=False: none, the text's tokens only),
        special tokens (<|im_start|>) parsed."""
        utf8(text, "the text")
        tokens = self._encode(text, add_special)
        if not add_special:
            return tokens
        if len(tokens) >= 2 and tokens[0] == tokens[1] == self.bos_id:
            tokens = tokens[1:]  # a chat template that writes BOS itself
        if not tokens:
            if self.bos_id is None:
                raise RequestError("the prompt is empty; send at least one character")
            tokens = [self.bos_id]
        return tokens

    def render_chat(self, messages: list[dict[str, Any]]) -> str:
        """Apply the model's chat template (add_generation_prompt=True)."""
        if self.chat is None:
            raise RequestError("this model has no chat template; use /v1/completions with a plain prompt")
        try:
            return self.chat.render(messages)
        except ChatTemplateError as exc:
            raise RequestError(f"the chat template rejected these messages: {exc}") from None

    def piece(self, token: int) -> str:
        """One token's text on its own (special tokens spelled out)."""
        return self._piece_bytes(token).decode("utf-8", errors="replace")

    def detokenize(self, tokens: list[int]) -> str:
        """Token ids -> text, special tokens spelled out (a character split across tokens is joined)."""
        bad = [t for t in tokens if not 0 <= t < self.n_vocab]
        if bad:
            raise RequestError(f"token id {bad[0]} is outside this model's vocabulary (0..{self.n_vocab - 1})",
                               "tokens")
        return self._join(tokens)

    def prepare(self, prompt: str | list[int], sampling: Sampling, echo: bool = False,
                logprobs: int | None = None) -> Job:
        """Tokenize and check that prompt + max_tokens fit the context window.

        `prompt` is text, or token ids used exactly as given (no BOS added: a client that tokenizes,
        like lm-evaluation-harness, decides the tokens). Thread-safe and outside any slot: a bad
        request is answered at once even while others generate."""
        if isinstance(prompt, str):
            tokens, text = self.tokenize(prompt), prompt
            added_bos = tokens[0] == self.bos_id and not prompt.startswith(self.piece(tokens[0]))
        else:
            tokens, added_bos = checked_token_ids(prompt, self.n_vocab), False
            text = self._join(tokens)
        unsupported = [name for name in options_used(sampling) if name not in self.sampling_options]
        if unsupported:
            raise RequestError(f"{unsupported[0]} is not applied by this server's {type(self).__name__}; "
                               "leave it out", unsupported[0])
        if sampling.max_tokens == 0 and not echo:
            raise RequestError("max_tokens is 0: nothing to generate; send max_tokens >= 1, or echo=true "
                               "to score the prompt only", "max_tokens")
        max_tokens = generation_budget(len(tokens), sampling.max_tokens, self.n_ctx)
        grammar = self._constraint(sampling)
        return Job(tokens=tokens, sampling=sampling, max_tokens=max_tokens, prompt_text=text,
                   added_bos=added_bos, echo=echo, logprobs=logprobs, grammar=grammar)

    # -- log-probabilities ------------------------------------------------------------

    def _top_dict(self, token: int, logprob: float, ids: np.ndarray, vals: np.ndarray) -> dict[str, float]:
        """{text: logprob} for the top alternatives and the token itself (OpenAI: up to logprobs+1 entries).

        The token goes in first, so that if another token spells the same text, the more
        likely alternative's value wins the key (is-greedy checks compare against the max)."""
        top = {self.piece(token): logprob}
        top.update({self.piece(int(i)): float(v) for i, v in zip(ids, vals)})
        return top

    @staticmethod
    def _offsets(tokens: list[int], skip_first: bool, spell: Callable[[int], bytes], start: int = 0) -> list[int]:
        """Where each token's text starts in the text they decode to, each spelled by `spell`; a UTF-8
        character split across tokens counts for the token that completes it."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        offsets, at = [], start
        for i, t in enumerate(tokens):
            offsets.append(at)
            if not (i == 0 and skip_first):
                at += len(decoder.decode(spell(t)))
        return offsets

    def _prompt_logprobs(self, job: Job, scores: PromptScores) -> LogProbs:
        """OpenAI's echo logprobs from the prompt's scores (tokens 1..; token 0 has no context)."""
        top = [self._top_dict(int(t), lp, ids, vals)
               for t, lp, ids, vals in zip(job.tokens[1:], scores.chosen, scores.top_ids, scores.top_vals)]
        n = 1 + len(scores.chosen)  # fewer than the prompt when the request was cancelled while reading it
        return LogProbs(tokens=[self.piece(t) for t in job.tokens[:n]], token_logprobs=[None, *scores.chosen],
                        top_logprobs=[None, *top],
                        text_offset=self._offsets(job.tokens[:n], job.added_bos, self._piece_bytes))

    # -- generation ---------------------------------------------------------------------

    def _decode(self, job: Job, tokens: Iterator[Sampled],
                trace: list[tuple[int, float, dict[str, float]]] | None) -> Iterator[Chunk]:
        """Text chunks from sampled tokens; the last chunk carries finish_reason. Appends (token, logprob,
        alternatives) per generated token to `trace` (the end-of-turn token has no text and no entry)."""
        out = StopText(job.sampling.stop)
        n, finish = 0, None
        for sampled in tokens:
            if job.cancelled():
                finish = "cancelled"
                break
            n += 1  # generation.py's rule: the end-of-turn token counts
            token = sampled.id
            if self._ends_turn(token):
                finish = "stop"
                break
            if trace is not None:
                logprob = float(sampled.logprob)  # type: ignore[arg-type]  # set: the job asked for logprobs
                trace.append((token, logprob, self._top_dict(token, logprob, sampled.top_ids, sampled.top_vals)))
            finish, text = out.push(self._text_bytes(token), n, job.max_tokens)
            if finish:
                break
            if text:
                yield Chunk(text, None, n)
        if finish is None:  # the decoder ran out: cancelled, or the context window is full
            finish = "cancelled" if job.cancelled() else "length"
            out.flush()
        yield Chunk(out.rest(), finish, n)

    def stream(self, job: Job) -> Iterator[Chunk]:
        """Yield text pieces as they are decoded; the last chunk carries finish_reason. Closing the
        generator early (a client that went away) frees the decoder.

        Streams carry no log-probabilities and no echo (the server refuses those with stream)."""
        with self._run(job, None) as tokens:
            yield from self._decode(job, tokens, None)

    def complete(self, job: Job) -> Completion:
        """Run a job to the end; with echo the text starts with the prompt, with logprobs they come along."""
        if job.logprobs is None:
            return text_completion(job, list(self.stream(job)))
        trace: list[tuple[int, float, dict[str, float]]] = []
        scores = PromptScores() if job.echo else None
        with self._run(job, scores) as tokens:
            chunks = list(self._decode(job, tokens, trace))
        prompt = self._prompt_logprobs(job, scores) if scores is not None else None
        if job.cancelled():
            return Completion("", "cancelled", len(job.tokens), 0, prompt)
        return logprob_completion(job, chunks, trace, prompt, self.piece,
                                  lambda ids, start: self._offsets(ids, False, self._text_bytes, start))
