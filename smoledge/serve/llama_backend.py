"""llama.cpp text generation for the server. Torch-free.

    from smoledge.serve.generation import Sampling
    from smoledge.serve.llama_backend import LlamaBackend
    backend = LlamaBackend("model-q8_0.gguf", n_ctx=512, threads=2, chat_template=None)
    job = backend.prepare("The quick brown fox", Sampling(max_tokens=16, temperature=0.0))
    print(backend.complete(job).text)

Decoding is `LlamaEngine`'s (llama_engine.py): one llama.cpp context with one KV sequence per slot,
every running request advanced in the same decode step. This module gives the engine its requests
(on the free sequence that caches the longest prefix of the prompt) and hands the tokens it samples
to the shared text side (text_backend.py: stop rules, token counts, OpenAI's shapes), so that the
stop rules are exact: llama.cpp's end-of-generation tokens (EOS, EOT, EOM, <|im_end|>: whatever
`llama_vocab_is_eog` says) stop on the token id, user stop strings on the text.

The Llama object is the model, its vocabulary and tokenizer; its own context is not decoded in (the
engine has one), so it gets the smallest that loads.

Log-probabilities (OpenAI's legacy `logprobs` / `echo`, what lm-evaluation-harness scores
multiple-choice tasks with) come without `logits_all=True`. That flag would make every prompt of every
request compute the output layer at every position and copy it into an (n_ctx, vocab) float array: on
SmolLM2-135M's shape (49k vocabulary) the output layer is about a fifth of the prompt compute, and the
array is 100 MB at n_ctx 512, 400 MB at 2048. Instead a generated token's log-probabilities are read
from the one row of logits the sampler used, and echo + logprobs asks the engine for logits at every
prompt position, a chunk at a time, reduced to log-probabilities on the spot. Requests without
logprobs compute none.

Sampling: the engine's sampler chain applies every field the ONNX backend does, in its order and with
its arithmetic (repetition penalties over the last PENALTY_LAST_N tokens, then temperature, top-k,
top-p, min-p and a seeded draw), plus a grammar.

Prefix reuse: a request reads only what its sequence's KV cache does not already hold, as llama-server's
`cache_prompt` does. llama.cpp's kernels round differently for different batch shapes (a prompt read whole,
or its cached prefix plus the rest), so a greedy completion can end on the other side of a near-tie
after a reuse; a request that needs the cold text exactly sends `"cache_prompt": false`.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from smoledge.errors import SmoledgeError
from smoledge.serve.chat_template import ChatTemplate
from smoledge.serve.generation import OPTIONAL_SAMPLING, Job, PromptScores, Sampled, Sampling
from smoledge.serve.grammar import compile_grammar
from smoledge.serve.llama_engine import Done, EngineJob, LlamaEngine, Request
from smoledge.serve.text_backend import TextBackend
from smoledge.tokenizer.llama_cpp import llama_detokenize

# The Llama object's own context is not decoded in (the engine has one): the smallest that loads.
UNUSED_CTX = 8


class LlamaBackend(TextBackend):
    supports_grammar = True
    sampling_options = frozenset(OPTIONAL_SAMPLING)

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

        self._lib = llama_cpp
        try:
            self.llm = llama_cpp.Llama(model_path=str(model_path), n_ctx=UNUSED_CTX, n_batch=UNUSED_CTX,
                                       n_threads=threads, n_threads_batch=threads, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise SmoledgeError(
                f"llama.cpp could not load {model_path} ({exc}); check that the file is a GGUF this "
                f"llama-cpp-python ({llama_cpp.__version__}) supports, or re-run `smoledge export`"
            ) from None
        self.n_ctx = n_ctx
        self.threads = threads
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.n_vocab = self.llm.n_vocab()
        bos = self.llm.token_bos()
        self.bos_id = bos if bos >= 0 else None
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
        self.chat = ChatTemplate(chat_template, bos_token=bos_token, eos_token=eos_token) if chat_template else None
        # Sequences no request holds; the SlotPool never runs more than `slots` requests here.
        self._free = list(range(slots))
        self._free_lock = threading.Lock()

    # -- the runtime's side of TextBackend ------------------------------------------------

    def _encode(self, text: str, add_special: bool) -> list[int]:
        # add_bos=True adds BOS only where the GGUF's tokenizer.ggml.add_bos_token says so.
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=True)

    def _text_bytes(self, token: int) -> bytes:
        return llama_detokenize(self.llm, [token])

    def _piece_bytes(self, token: int) -> bytes:
        return llama_detokenize(self.llm, [token], special=True)

    def _join(self, tokens: list[int]) -> str:
        return llama_detokenize(self.llm, tokens, special=True, whole_text=True).decode("utf-8", errors="replace")

    def _constraint(self, sampling: Sampling) -> str | None:
        return compile_grammar(self._lib, self.vocab, sampling)

    def _ends_turn(self, token: int) -> bool:
        return token in self.stop_ids or self._lib.llama_vocab_is_eog(self.vocab, token)

    @contextmanager
    def _run(self, job: Job, scores: PromptScores | None) -> Iterator[Iterator[Sampled]]:
        """Submit `job` to the engine on a free sequence (the one caching the longest prefix of its
        prompt); on the way out, stop it if still running and wait for the engine to let go of it."""
        with self._free_lock:
            # Ties go to the lowest sequence: running sequences that follow each other decode in one
            # llama.cpp micro-batch (see LlamaEngine._step), scattered ones in several.
            seq = min(self._free, key=lambda q: (-_common_prefix(self.engine.cached[q], job.tokens), q))
            self._free.remove(seq)
        s = job.sampling
        request = self.engine.submit(EngineJob(
            seq=seq, tokens=job.tokens, max_tokens=job.max_tokens, temperature=s.temperature, top_p=s.top_p,
            seed=s.seed % (1 << 32) if s.seed is not None else self._lib.LLAMA_DEFAULT_SEED,
            top_k=s.top_k, min_p=s.min_p, repeat_penalty=s.repeat_penalty, presence_penalty=s.presence_penalty,
            frequency_penalty=s.frequency_penalty, cache_prompt=s.cache_prompt,
            grammar=job.grammar, logprobs=job.logprobs, score_prompt=scores is not None,
            stop_ids=frozenset(self.stop_ids), also_cancel=job.cancel))
        try:
            yield _tokens(request)
        finally:
            request.stop()
            with self._free_lock:
                self._free.append(seq)
        done = request.done.prompt_scores if request.done is not None else None
        if scores is not None and done is not None:
            scores.chosen += done.chosen
            scores.top_ids += done.top_ids
            scores.top_vals += done.top_vals

    def close(self) -> None:
        self.engine.close()
        self.llm.close()


def _tokens(request: Request) -> Iterator[Sampled]:
    """The engine's sampled tokens, up to its Done (a decode error raises)."""
    for event in request.events():
        if isinstance(event, Done):
            if event.reason == "error":
                raise RuntimeError(event.error)
            return
        yield event


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
