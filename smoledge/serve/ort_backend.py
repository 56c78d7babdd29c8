"""ONNX Runtime text generation for the server, behind the same interface as `LlamaBackend`. Torch-free.

    from smoledge.serve.generation import Sampling
    from smoledge.serve.ort_backend import OrtBackend
    backend = OrtBackend("bundle/onnx-int8-avx2", n_ctx=512, threads=2, chat_template=None,
                         tokenizer_dir="bundle/tokenizer")
    job = backend.prepare("The quick brown fox", Sampling(max_tokens=16, temperature=0.0))
    print(backend.complete(job).text)

The model is smoledge's (or optimum's) ONNX export: a decoder with its KV cache, run by `OrtDecoder`;
the tokenizer is tokenizer.json read by the `tokenizers` library; the chat template is rendered by
`ChatTemplate`. None of them needs torch or transformers.

Prompts, stop rules, token counts and log-probabilities are text_backend.py's, shared with the
llama.cpp backend so that the server cannot tell the two apart. What is this runtime's own:
  - a text prompt is tokenized as HF tokenizes it with special tokens (the BOS the tokenizer's
    post-processor adds, which is also what the GGUF's add_bos key says), special tokens parsed;
  - the end-of-turn tokens are the tokenizer's EOS, the bundle's stop tokens and every
    eos_token_id the export's generation_config.json and config.json list;
  - sampling in numpy: llama.cpp's repetition penalties over the last PENALTY_LAST_N tokens, then
    argmax at temperature 0; otherwise temperature, top-k, top-p (nucleus), min-p, then one draw from
    a numpy PCG64 generator seeded with the request's seed, so a seed reproduces a completion exactly;
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

import collections
import contextlib
import copy
import json
import queue
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from smoledge.errors import SmoledgeError
from smoledge.serve.chat_template import ChatTemplate
from smoledge.serve.generation import (
    OPTIONAL_SAMPLING,
    PENALTY_LAST_N,
    Job,
    PromptScores,
    RequestError,
    Sampled,
    Sampling,
    Token,
    log_softmax,
    top_alternatives,
)
from smoledge.serve.hf_meta import end_ids
from smoledge.serve.ort_decoder import OrtDecoder
from smoledge.serve.text_backend import TextBackend

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


def penalize(logits: np.ndarray, recent: Iterable[int], s: Sampling) -> np.ndarray:
    """(V,) logits with llama.cpp's repetition penalties for the tokens in `recent` (llama-server's
    penalties sampler, the same arithmetic): a repeated token's logit is divided by repeat_penalty
    (multiplied when negative), then lowered by presence_penalty once and frequency_penalty per occurrence."""
    if s.repeat_penalty == 1.0 and s.presence_penalty == 0.0 and s.frequency_penalty == 0.0:
        return logits
    ids, counts = np.unique(np.fromiter(recent, dtype=np.int64), return_counts=True)  # (U,), (U,)
    if not len(ids):
        return logits
    out = logits.astype(np.float32, copy=True)  # (V,)
    x = out[ids]  # (U,)
    x = np.where(x <= 0, x * s.repeat_penalty, x / s.repeat_penalty)
    # float32 and llama.cpp's grouping, so both backends round alike: logit -= count * freq + present.
    out[ids] = x - (counts.astype(np.float32) * np.float32(s.frequency_penalty) + np.float32(s.presence_penalty))
    return out


def sample_token(logits: np.ndarray, temperature: float, top_p: float, top_k: int,
                 rng: np.random.Generator, min_p: float = 0.0) -> int:
    """One token from (V,) logits: argmax at temperature 0, else temperature -> top-k -> top-p -> min-p
    -> one draw (transformers' order of its logits warpers)."""
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
    if min_p > 0.0:
        keep = p >= min_p * p.max()
        ids, p = ids[keep], p[keep]
        p /= p.sum()
    # Inverse-CDF draw: one uniform number per token, so a seed fixes the whole completion.
    at = int(np.searchsorted(np.cumsum(p), rng.random() * p.sum(), side="right"))
    return int(ids[min(at, len(ids) - 1)])


class OrtBackend(TextBackend):
    sampling_options = frozenset(OPTIONAL_SAMPLING)

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
        self._text_table, self._piece_table = token_bytes(tok_json, self.n_vocab)
        self.bos_id = self.tokenizer.token_to_id(bos_token) if bos_token else None
        # A stop token must be one vocabulary entry, else it is not a token of this model.
        self.stop_ids = {i for i in end_ids(Path(model_dir)) if 0 <= i < self.n_vocab}
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

    # -- the runtime's side of TextBackend ------------------------------------------------

    def _encode(self, text: str, add_special: bool) -> list[int]:
        # add_special: the BOS the tokenizer's post-processor adds (none when it adds none).
        return self.tokenizer.encode(text, add_special_tokens=add_special).ids

    def _text_bytes(self, token: int) -> bytes:
        return self._text_table[token]

    def _piece_bytes(self, token: int) -> bytes:
        return self._piece_table[token]

    def _join(self, tokens: list[int]) -> str:
        return b"".join(self._piece_table[t] for t in tokens).decode("utf-8", errors="replace")

    def _constraint(self, sampling: Sampling) -> str | None:
        if sampling.grammar is not None or sampling.json_schema is not None:
            name = "grammar" if sampling.grammar is not None else "response_format"
            raise RequestError(f"{name}: constrained output needs the llama.cpp backend; this server runs an "
                               "ONNX model (serve a GGUF, or a bundle device whose backend is llama.cpp)", name)
        return None

    @contextlib.contextmanager
    def _run(self, job: Job, scores: PromptScores | None) -> Iterator[Iterator[Sampled]]:
        """A free decoder for one request; its cache is dropped when the request ends (or is cancelled)."""
        dec = self._slots.get()
        try:
            yield self._tokens(dec, job, scores)
        finally:
            dec.reset()
            self._slots.put(dec)

    # -- the model ------------------------------------------------------------

    def _prefill(self, dec: OrtDecoder, job: Job, scores: PromptScores | None) -> np.ndarray | None:
        """Run the prompt through the graph; (V,) logits for the first new token, None when the job was
        cancelled part way. With `scores`, append every prompt token's log-probability given the tokens before it."""
        tokens, k = job.tokens, job.logprobs or 0
        dec.reset()
        logits = np.zeros((1, self.n_vocab), dtype=np.float32)
        for start in range(0, len(tokens), PREFILL_CHUNK):
            if job.cancelled():
                return None
            logits = dec.eval(tokens[start:start + PREFILL_CHUNK])  # (chunk, V)
            # Row i predicts token start+i+1; the last prompt row predicts the first generated token.
            rows = min(len(logits), len(tokens) - 1 - start)
            if scores is None or rows <= 0:
                continue
            logp = log_softmax(logits[:rows])  # (rows, V)
            targets = np.asarray(tokens[start + 1:start + 1 + rows])  # (rows,)
            top_ids, top_vals = top_alternatives(logp, k)  # (rows, k)
            scores.chosen += [float(x) for x in logp[np.arange(rows), targets]]
            scores.top_ids += list(top_ids)
            scores.top_vals += list(top_vals)
        return logits[-1]

    def _tokens(self, dec: OrtDecoder, job: Job, scores: PromptScores | None) -> Iterator[Sampled]:
        """The prompt, then one sampled token per call until the consumer stops asking."""
        logits = self._prefill(dec, job, scores)
        if logits is None or job.max_tokens == 0:
            return
        s = job.sampling
        rng = np.random.default_rng(s.seed % (1 << 32) if s.seed is not None else None)
        recent = collections.deque(job.tokens[-PENALTY_LAST_N:], maxlen=PENALTY_LAST_N)
        while True:
            token = sample_token(penalize(logits, recent, s), s.temperature, s.top_p, s.top_k, rng, s.min_p)
            if job.logprobs is None:
                yield Token(token)
            else:
                # The raw distribution, as llama.cpp reports it: penalties and sampling settings left out.
                logp = log_softmax(logits[None, :])  # (1, V)
                ids, vals = top_alternatives(logp, job.logprobs)  # (1, k)
                yield Token(token, float(logp[0, token]), ids[0], vals[0])
            recent.append(token)
            logits = dec.step(token)  # (V,)

    def close(self) -> None:
        """Drop the sessions and caches (onnxruntime frees them with the last reference)."""
        while not self._slots.empty():
            self._slots.get_nowait()
