"""ONNX Runtime text generation for the server, behind the same interface as `LlamaBackend`. Torch-free.

    from smoledge.serve.backend import Sampling
    from smoledge.serve.ort_backend import OrtBackend
    backend = OrtBackend("bundle/onnx-int8-avx2", n_ctx=512, threads=2, chat_template=None,
                         tokenizer_dir="bundle/tokenizer")
    job = backend.prepare("The quick brown fox", Sampling(max_tokens=16, temperature=0.0))
    print(backend.complete(job).text)

The model is smoledge's ONNX export (a decoder with its KV cache, run by `OrtDecoder`); the
tokenizer is the bundle's tokenizer.json read by the `tokenizers` library; the chat template is
rendered by `ChatTemplate`. None of them needs torch or transformers.

The rules match `LlamaBackend` so that the server cannot tell the two apart:
  - a text prompt is tokenized as HF tokenizes it with special tokens (the BOS the tokenizer's
    post-processor adds, which is also what the GGUF's add_bos key says), special tokens in the
    text parsed;
  - end tokens (EOS, <|im_end|>) stop on the token id, stop strings on the text, and a stream never
    shows a partial stop string or half a UTF-8 character;
  - temperature 0 is argmax; otherwise temperature, then top-k, then top-p (nucleus), then one
    draw from a numpy PCG64 generator seeded with the request's seed, so a seed reproduces a
    sampled completion exactly;
  - log-probabilities are natural-log softmax of the raw logits. They cost nothing extra here:
    the graph returns logits at every prompt position anyway, so echo + logprobs scores the prompt
    in the same pass that fills the KV cache.

The prompt goes through the graph PREFILL_CHUNK positions per call (the cache carries the earlier
ones), which bounds the (chunk, vocab) logits array onnxruntime hands back.

Constrained output (GBNF grammars, JSON schemas) is llama.cpp's: `supports_grammar` is False and
`prepare` refuses such a request. `Job.cancel` (set by the server when the client goes away, the request
times out or the server shuts down) stops the prefill between chunks and the generation between tokens.

Concurrency: `slots` sequences at once. Every slot has its own KV cache but they share one
InferenceSession (weights once in memory; onnxruntime's `run` is thread-safe), and a request waits
for a free slot. A slot's cache is dropped when its request ends, so idle slots hold no memory.
The server's SlotPool takes one backend object per slot: give it this one `slots` times.
"""

from __future__ import annotations

import codecs
import contextlib
import copy
import json
import queue
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from smoledge.errors import SmoledgeError
from smoledge.serve.backend import (
    Chunk,
    Completion,
    Job,
    LogProbs,
    RequestError,
    Sampling,
    StopText,
    checked_token_ids,
    generation_budget,
    log_softmax,
    logprob_completion,
    text_completion,
    top_alternatives,
)
from smoledge.serve.chat_template import ChatTemplate, ChatTemplateError
from smoledge.serve.ort_decoder import OrtDecoder

# Prompt positions per onnxruntime call: the graph returns logits for every position it is fed, so this
# bounds that array at PREFILL_CHUNK x vocab floats (12.6 MB at a 49k vocabulary), as ECHO_CHUNK does
# for llama.cpp (llama_engine.py).
PREFILL_CHUNK = 64


def _gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2's reversible byte -> printable character map, inverted: how byte-level BPE spells bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(printable), 0
    byte_values = list(printable)
    for b in range(256):
        if b not in printable:
            byte_values.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(byte_values, chars)}


def token_bytes(tokenizer_json: dict[str, Any], n_vocab: int) -> tuple[list[bytes], list[bytes]]:
    """Per token id: (its bytes in generated text, its bytes spelled out as a piece).

    Generated text leaves special tokens out (llama.cpp's detokenize without `special`); a piece
    spells them. Byte-level tokens map back to raw bytes, so a character split across tokens is
    reassembled exactly by an incremental UTF-8 decoder. Ids past the tokenizer (a padded
    embedding) spell nothing."""
    decoder = (tokenizer_json.get("decoder") or {}).get("type")
    if decoder != "ByteLevel":
        raise SmoledgeError(f"the bundle's tokenizer.json has a {decoder!r} decoder; the onnxruntime backend reads "
                            "byte-level BPE tokenizers (as the GGUF export does). Re-export with such a tokenizer")
    to_byte = _gpt2_byte_decoder()
    text: list[bytes] = [b""] * n_vocab
    for token, i in tokenizer_json["model"]["vocab"].items():
        if i < n_vocab:
            text[i] = bytes(to_byte[c] for c in token) if all(c in to_byte for c in token) else token.encode()
    piece = list(text)
    for added in tokenizer_json.get("added_tokens", []):
        i = int(added["id"])
        if i < n_vocab:
            piece[i] = added["content"].encode("utf-8")
            text[i] = b"" if added.get("special") else piece[i]
    return text, piece


def sample_token(logits: np.ndarray, temperature: float, top_p: float, top_k: int,
                 rng: np.random.Generator) -> int:
    """One token from (V,) logits: argmax at temperature 0, else temperature -> top-k -> top-p -> one draw."""
    if temperature <= 0.0:
        return int(np.argmax(logits))
    x = logits.astype(np.float64) / temperature  # (V,)
    ids = np.arange(len(x))
    if 0 < top_k < len(x):
        ids = np.argpartition(-x, top_k - 1)[:top_k]  # (k,) unordered
        x = x[ids]
    p = np.exp(x - x.max())
    p /= p.sum()
    if top_p < 1.0:
        order = np.argsort(-p, kind="stable")  # most likely first
        cum = np.cumsum(p[order])
        # The smallest set of most likely tokens whose mass reaches top_p (at least one token).
        keep = order[: int(np.searchsorted(cum, top_p)) + 1]
        ids, p = ids[keep], p[keep]
        p /= p.sum()
    # Inverse-CDF draw: one uniform number per token, so a seed fixes the whole completion.
    at = int(np.searchsorted(np.cumsum(p), rng.random() * p.sum(), side="right"))
    return int(ids[min(at, len(ids) - 1)])


def _cancelled(job: Job) -> bool:
    return job.cancel is not None and job.cancel.is_set()


class OrtBackend:
    supports_grammar = False
    """Grammar- and JSON-schema-constrained sampling is llama.cpp's; prepare refuses it here."""

    def __init__(
        self,
        model_dir: str | Path,
        n_ctx: int,
        threads: int,
        chat_template: str | None = None,
        bos_token: str = "",
        eos_token: str = "",
        stop_tokens: list[str] | None = None,
        tokenizer_dir: str | Path | None = None,
        slots: int = 1,
    ):
        """`model_dir`: an ONNX export directory; `tokenizer_dir`: where tokenizer.json is (default: model_dir)."""
        from tokenizers import Tokenizer

        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        tok_path = Path(tokenizer_dir or model_dir) / "tokenizer.json"
        if not tok_path.is_file():
            raise SmoledgeError(f"{tok_path} is missing: the onnxruntime backend needs the tokenizer; "
                                "re-run `smoledge package`")
        tok_text = tok_path.read_text(encoding="utf-8")
        tok_json = json.loads(tok_text)
        self.tokenizer = Tokenizer.from_str(tok_text)
        first = OrtDecoder(model_dir, n_threads=threads)
        if first.n_ctx_train and n_ctx > first.n_ctx_train:
            raise SmoledgeError(f"n_ctx {n_ctx} exceeds the model's trained context of {first.n_ctx_train} tokens "
                                f"({model_dir}/config.json); use {first.n_ctx_train} or less")
        self.n_ctx = n_ctx
        self.threads = threads
        self.n_vocab = first.n_vocab
        self._text_bytes, self._piece_bytes = token_bytes(tok_json, self.n_vocab)
        self.bos_id = self.tokenizer.token_to_id(bos_token) if bos_token else None
        # A stop token must be one vocabulary entry, else it is not a token of this model.
        self.stop_ids = set()
        for text in [eos_token, *(stop_tokens or [])]:
            ids = self.tokenizer.encode(text, add_special_tokens=False).ids if text else []
            if len(ids) == 1:
                self.stop_ids.add(ids[0])
        self.chat = ChatTemplate(chat_template, bos_token=bos_token, eos_token=eos_token) if chat_template else None
        # The other slots share the first one's InferenceSession and get their own (empty) cache.
        self._slots: queue.SimpleQueue[OrtDecoder] = queue.SimpleQueue()
        self._slots.put(first)
        for _ in range(slots - 1):
            twin = copy.copy(first)
            twin.reset()
            self._slots.put(twin)

    # -- prompts --------------------------------------------------------------

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        """Prompt tokens: BOS as the tokenizer's post-processor adds it (add_special=False: none, the text's
        tokens only), special tokens (<|im_start|>) parsed."""
        tokens = self.tokenizer.encode(text, add_special_tokens=add_special).ids
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
        """Apply the bundle's chat template (add_generation_prompt=True)."""
        if self.chat is None:
            raise RequestError("this model has no chat template; use /v1/completions with a plain prompt")
        try:
            return self.chat.render(messages)
        except ChatTemplateError as exc:
            raise RequestError(f"the chat template rejected these messages: {exc}") from None

    def piece(self, token: int) -> str:
        """One token's text on its own (special tokens spelled out)."""
        return self._piece_bytes[token].decode("utf-8", errors="replace")

    def detokenize(self, tokens: list[int]) -> str:
        """Token ids -> text, special tokens spelled out (a character split across tokens is joined)."""
        bad = [t for t in tokens if not 0 <= t < self.n_vocab]
        if bad:
            raise RequestError(f"token id {bad[0]} is outside this model's vocabulary (0..{self.n_vocab - 1})",
                               "tokens")
        return self._decode(tokens, self._piece_bytes)

    def _decode(self, tokens: list[int], table: list[bytes]) -> str:
        return b"".join(table[t] for t in tokens).decode("utf-8", errors="replace")

    def prepare(self, prompt: str | list[int], sampling: Sampling, echo: bool = False,
                logprobs: int | None = None) -> Job:
        """Tokenize and check that prompt + max_tokens fit the context window (as LlamaBackend.prepare)."""
        if isinstance(prompt, str):
            tokens, text = self.tokenize(prompt), prompt
            added_bos = tokens[0] == self.bos_id and not prompt.startswith(self.piece(tokens[0]))
        else:
            tokens, added_bos = checked_token_ids(prompt, self.n_vocab), False
            text = self._decode(tokens, self._piece_bytes)
        if sampling.grammar is not None or sampling.json_schema is not None:
            field = "grammar" if sampling.grammar is not None else "response_format"
            raise RequestError(f"{field}: constrained output needs the llama.cpp backend; this bundle serves "
                               "an ONNX model (serve a device whose backend is llama.cpp)", field)
        if sampling.max_tokens == 0 and not echo:
            raise RequestError("max_tokens is 0: nothing to generate; send max_tokens >= 1, or echo=true "
                               "to score the prompt only", "max_tokens")
        max_tokens = generation_budget(len(tokens), sampling.max_tokens, self.n_ctx)
        return Job(tokens=tokens, sampling=sampling, max_tokens=max_tokens, prompt_text=text,
                   added_bos=added_bos, echo=echo, logprobs=logprobs)

    # -- the model ------------------------------------------------------------

    @contextlib.contextmanager
    def _slot(self) -> Iterator[OrtDecoder]:
        """A free decoder for one request; its cache is dropped when the request ends (or is cancelled)."""
        dec = self._slots.get()
        try:
            yield dec
        finally:
            dec.reset()
            self._slots.put(dec)

    def _prefill(self, dec: OrtDecoder, job: Job, scores: LogProbs | None) -> np.ndarray | None:
        """Run the prompt through the graph; (V,) logits for the first new token, None when the job was
        cancelled part way. With `scores`, append every prompt token's log-probability given the tokens before it."""
        tokens, k = job.tokens, job.logprobs or 0
        dec.reset()
        logits = np.zeros((1, self.n_vocab), dtype=np.float32)
        for start in range(0, len(tokens), PREFILL_CHUNK):
            if _cancelled(job):
                return None
            logits = dec.eval(tokens[start:start + PREFILL_CHUNK])  # (chunk, V)
            # Row i predicts token start+i+1; the last prompt row predicts the first generated token.
            rows = min(len(logits), len(tokens) - 1 - start)
            if scores is None or rows <= 0:
                continue
            logp = log_softmax(logits[:rows])  # (rows, V)
            targets = np.asarray(tokens[start + 1:start + 1 + rows])  # (rows,)
            chosen = logp[np.arange(rows), targets]  # (rows,)
            top_ids, top_vals = top_alternatives(logp, k)  # (rows, k)
            for j in range(rows):
                scores.token_logprobs.append(float(chosen[j]))
                scores.top_logprobs.append(self._top_dict(int(targets[j]), float(chosen[j]), top_ids[j], top_vals[j]))
        return logits[-1]

    def _top_dict(self, token: int, logprob: float, ids: np.ndarray, vals: np.ndarray) -> dict[str, float]:
        """{text: logprob} for the top alternatives and the token itself (the token first: a more
        likely alternative spelling the same text wins the key, as in LlamaBackend)."""
        top = {self.piece(token): logprob}
        top.update({self.piece(int(i)): float(v) for i, v in zip(ids, vals)})
        return top

    def _offsets(self, tokens: list[int], skip_first: bool, table: list[bytes], start: int = 0) -> list[int]:
        """Where each token's text starts in the text they decode to; a UTF-8 character split across
        tokens counts for the token that completes it."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        offsets, at = [], start
        for i, t in enumerate(tokens):
            offsets.append(at)
            if not (i == 0 and skip_first):
                at += len(decoder.decode(table[t]))
        return offsets

    def _generate(self, dec: OrtDecoder, job: Job, logits: np.ndarray,
                  trace: list[tuple[int, float, dict[str, float]]] | None) -> Iterator[Chunk]:
        """The generation loop from the prompt's last logits; appends (token, logprob, alternatives)
        per generated token to `trace`."""
        s = job.sampling
        rng = np.random.default_rng(s.seed % (1 << 32) if s.seed is not None else None)
        top_k = getattr(s, "top_k", 0) or 0  # Sampling.top_k comes with the server's sampling options
        out = StopText(s.stop)
        n, finish = 0, "length"
        while True:
            if _cancelled(job):
                finish = "cancelled"
                break
            token = sample_token(logits, s.temperature, s.top_p, top_k, rng)
            if token in self.stop_ids:
                finish = "stop"
                break
            if trace is not None:
                logp = log_softmax(logits[None, :])  # (1, V)
                ids, vals = top_alternatives(logp, job.logprobs or 0)
                chosen = float(logp[0, token])
                trace.append((token, chosen, self._top_dict(token, chosen, ids[0], vals[0])))
            n += 1
            ended, piece = out.push(self._text_bytes[token], n, job.max_tokens)
            if ended:
                finish = ended
                break
            if piece:
                yield Chunk(piece, None, n)
            logits = dec.step(token)  # (V,)
        yield Chunk(out.rest(), finish, n)

    # -- generation -----------------------------------------------------------

    def stream(self, job: Job) -> Iterator[Chunk]:
        """Yield text pieces as they are decoded; the last chunk carries finish_reason.
        Closing the generator early (a client that went away) frees the slot."""
        with self._slot() as dec:
            if job.max_tokens == 0:
                yield Chunk("", "length", 0)
                return
            logits = self._prefill(dec, job, None)
            if logits is None:
                yield Chunk("", "cancelled", 0)
                return
            yield from self._generate(dec, job, logits, None)

    def complete(self, job: Job) -> Completion:
        """Run a job to the end; with echo the text starts with the prompt, with logprobs they come along."""
        if job.logprobs is None:
            return text_completion(job, list(self.stream(job)))
        trace: list[tuple[int, float, dict[str, float]]] = []
        prompt = None
        if job.echo:
            prompt = LogProbs(tokens=[self.piece(t) for t in job.tokens], token_logprobs=[None], top_logprobs=[None])
        with self._slot() as dec:
            logits = self._prefill(dec, job, prompt)
            if logits is None:
                return Completion("", "cancelled", len(job.tokens), 0, prompt)
            chunks = list(self._generate(dec, job, logits, trace)) if job.max_tokens else [Chunk("", "length", 0)]
        if prompt is not None:
            prompt.text_offset = self._offsets(job.tokens, job.added_bos, self._piece_bytes)
        return logprob_completion(job, chunks, trace, prompt, self.piece,
                                  lambda ids, start: self._offsets(ids, False, self._text_bytes, start=start))

    def close(self) -> None:
        """Drop the sessions and caches (onnxruntime frees them with the last reference)."""
        while not self._slots.empty():
            self._slots.get_nowait()
