"""Passkey retrieval: can the model find a number hidden at any depth of a long context?

A prompt is real filler text (held-out documents) with a needle inserted at a depth fraction
(0 = start, 1 = just before the question), then the question, then the key itself, all exactly
`length` tokens:

    <eos> filler ... The pass key is 48213. Remember it. 48213 is the pass key. ... filler
    What is the pass key? The pass key is 48213

The key counts as retrieved iff the argmax at every key position is the key token, given the prompt
and the key tokens before it (teacher forcing). That is exactly what greedy decoding would emit, and
it needs one forward pass, so it runs identically through PyTorch, onnxruntime and llama.cpp (any
scorer with window_logits, see smoledge.evaluate.perplexity).

    from smoledge.evaluate.passkey import default_lengths, passkey_prompts, run_passkey
    from smoledge.evaluate.perplexity import GGUFScorer
    lengths = default_lengths(trained=2048, max_context=8192)    # YaRN x4: [512, 1024, 2048, 4096, 8192]
    prompts = passkey_prompts(tok, lengths, filler=held_out_texts, trials=3, seed=0)
    grid = run_passkey(GGUFScorer("model-f32.gguf", seq_len=max(lengths)), prompts)
    print(grid.markdown(), grid.falloff(0.5))   # e.g. {'threshold': 0.5, 'longest_ok': 2048, 'first_below': 4096}

Trials of one length share their key and filler (drawn from `seed`, the trial and the length), so
across depths only the needle's position changes.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from smoledge.errors import SmoledgeError

NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = "What is the pass key? The pass key is"
# Filler of the original passkey test (Mohtashami & Jaggi 2023), used only when no real text is given.
FALLBACK_FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
DEFAULT_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
# Sentence ends in Latin and CJK punctuation, followed by whitespace (or not, for CJK).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")


@dataclass(frozen=True)
class PasskeyPrompt:
    ids: list[int]
    """The whole window, exactly `length` tokens: [eos] haystack-with-needle question key."""
    length: int
    depth: float
    """Requested needle depth: 0 = first thing after the prefix, 1 = just before the question."""
    trial: int
    key: str
    key_start: int
    """ids[key_start : key_start + len(key_ids)] are the key's tokens."""
    key_ids: list[int]
    needle_start: int
    needle_end: int
    haystack_start: int
    """Index of the first filler token (after the prefix)."""
    haystack_tokens: int
    """Filler tokens around the needle."""

    @property
    def actual_depth(self) -> float:
        """Where the needle landed, as filler before it / all filler: it goes in at the sentence
        boundary nearest the requested depth."""
        return (self.needle_start - self.haystack_start) / self.haystack_tokens if self.haystack_tokens else 0.0


@dataclass(frozen=True)
class PasskeyTrial:
    length: int
    depth: float
    actual_depth: float
    trial: int
    key: str
    retrieved: bool
    """Every key token was the argmax: greedy decoding would have answered the key."""
    key_tokens_correct: int
    key_tokens: int
    predicted: list[int]
    """Argmax token at each key position."""
    margin: float
    """min over key positions of (key token's logit - best other logit): > 0 iff retrieved; near 0, a tie
    float noise may flip between runtimes."""


@dataclass
class PasskeyCell:
    length: int
    depth: float
    n: int
    retrieved: int
    token_accuracy: float
    """Fraction of key tokens that were the argmax: partial credit, shows decay before retrieval fails."""

    @property
    def accuracy(self) -> float:
        return self.retrieved / self.n if self.n else float("nan")


@dataclass
class PasskeyGrid:
    trials: list[PasskeyTrial] = field(default_factory=list)

    @property
    def lengths(self) -> list[int]:
        return sorted({t.length for t in self.trials})

    @property
    def depths(self) -> list[float]:
        return sorted({t.depth for t in self.trials})

    def cells(self) -> list[PasskeyCell]:
        """One cell per (length, depth): its trials' retrieval count and key-token accuracy."""
        out = []
        for length in self.lengths:
            for depth in self.depths:
                ts = [t for t in self.trials if t.length == length and t.depth == depth]
                if ts:
                    tok_acc = sum(t.key_tokens_correct for t in ts) / sum(t.key_tokens for t in ts)
                    out.append(PasskeyCell(length, depth, len(ts), sum(t.retrieved for t in ts), tok_acc))
        return out

    def accuracy_by_length(self) -> dict[int, float]:
        """Retrieval accuracy per context length, over every depth and trial."""
        return {length: float(np.mean([t.retrieved for t in self.trials if t.length == length]))
                for length in self.lengths}

    def falloff(self, threshold: float = 0.5) -> dict[str, Any]:
        """Where retrieval falls off: `first_below`, the shortest length whose mean accuracy is under
        `threshold`, and `longest_ok`, the longest length before it (every shorter length is at or above
        the threshold too). Either is None when no such length was measured."""
        by_length = self.accuracy_by_length()
        first_below = next((n for n, acc in by_length.items() if acc < threshold), None)
        ok = [n for n in by_length if first_below is None or n < first_below]
        return {"threshold": threshold, "longest_ok": max(ok) if ok else None, "first_below": first_below}

    def to_dict(self, threshold: float = 0.5) -> dict[str, Any]:
        """JSON-ready: lengths, depths, accuracy per cell (keyed cell_key(length, depth)) and per length
        (keyed str(length)), each cell's counts, the falloff at `threshold` and every trial."""
        cells = self.cells()
        return {
            "lengths": self.lengths,
            "depths": self.depths,
            "accuracy": {cell_key(c.length, c.depth): c.accuracy for c in cells},
            "by_length": {str(n): a for n, a in self.accuracy_by_length().items()},
            "cells": [{**asdict(c), "accuracy": c.accuracy} for c in cells],
            "falloff": self.falloff(threshold),
            "trials": [asdict(t) for t in self.trials],
        }

    def markdown(self) -> str:
        """Retrieved/trials per cell: a row per context length, a column per depth."""
        depths = self.depths
        cells = {(c.length, c.depth): c for c in self.cells()}
        lines = ["| context | " + " | ".join(f"depth {d:g}" for d in depths) + " | mean |",
                 "|---:|" + "---:|" * (len(depths) + 1)]
        for length, acc in self.accuracy_by_length().items():
            row = [f"{cells[length, d].retrieved}/{cells[length, d].n}" if (length, d) in cells else "" for d in depths]
            lines.append(f"| {length} | " + " | ".join(row) + f" | {acc:.2f} |")
        return "\n".join(lines) + "\n"


def cell_key(length: int, depth: float) -> str:
    """A grid cell's key in to_dict()["accuracy"] (JSON keys are strings): "2048@0.5"."""
    return f"{length}@{depth:g}"


class PasskeyBuilder:
    """Makes passkey prompts of exact token lengths from one tokenizer and one body of filler text.

    The filler is split into sentences and each is tokenized once (with its leading space, so the
    pieces concatenate as the joined text would tokenize); haystacks are runs of those sentences."""

    def __init__(self, tokenizer: Any, filler: Sequence[str] | None = None, max_tokens: int | None = None):
        """`max_tokens`: stop tokenizing filler once this many tokens are pooled (a big held-out set
        need not be tokenized whole); haystacks cycle through the pool."""
        self.tokenizer = tokenizer
        sentences = split_sentences(filler or [])
        if not sentences:
            sentences = split_sentences([FALLBACK_FILLER])
        self.sentences: list[list[int]] = []
        pooled = 0
        for i in range(0, len(sentences), 64):
            batch = tokenizer([" " + s for s in sentences[i:i + 64]], add_special_tokens=False)["input_ids"]
            self.sentences += [ids for ids in batch if ids]
            pooled += sum(len(ids) for ids in batch)
            if max_tokens is not None and pooled >= max_tokens:
                break
        eos = tokenizer.eos_token_id
        # Shards end every document with EOS, so this is how the model saw a document begin.
        self.prefix: list[int] = [eos] if eos is not None else []
        self.question = self._encode(" " + QUESTION)

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def overhead(self, key: str) -> int:
        """Tokens a prompt with this key needs besides filler."""
        return (len(self.prefix) + len(self._encode(" " + NEEDLE.format(key=key))) + len(self.question)
                + len(self._encode(" " + key)))

    def prompt(self, length: int, depth: float, key: str, offset: int = 0, trial: int = 0) -> PasskeyPrompt:
        """A prompt of exactly `length` tokens, filler starting at sentence `offset`, needle at `depth`."""
        if not 0.0 <= depth <= 1.0:
            raise SmoledgeError(f"passkey depth {depth} is outside [0, 1] (0 = start, 1 = end of the context)")
        needle = self._encode(" " + NEEDLE.format(key=key))
        key_ids = self._encode(" " + key)
        budget = length - self.overhead(key)
        if budget < 0:
            raise SmoledgeError(f"context length {length} is shorter than the passkey prompt without filler "
                                f"({self.overhead(key)} tokens); use lengths of at least {self.overhead(key) + 16}")

        # Whole sentences until the budget is covered, then the first one is cut from its front: the
        # haystack opens mid-sentence, like a crop of a document, and every other sentence is whole.
        hay: list[int] = []
        bounds = [0]  # sentence boundaries in `hay`: where the needle may go
        i = offset
        while len(hay) < budget:
            hay.extend(self.sentences[i % len(self.sentences)])
            bounds.append(len(hay))
            i += 1
        excess = len(hay) - budget
        hay = hay[excess:]
        bounds = sorted({max(0, b - excess) for b in bounds})
        at = min(bounds, key=lambda b: (abs(b - depth * budget), b))

        ids = self.prefix + hay[:at] + needle + hay[at:] + self.question + key_ids  # (length,)
        needle_start = len(self.prefix) + at
        assert len(ids) == length, (len(ids), length)
        return PasskeyPrompt(ids=ids, length=length, depth=depth, trial=trial, key=key,
                             key_start=length - len(key_ids), key_ids=key_ids, needle_start=needle_start,
                             needle_end=needle_start + len(needle), haystack_start=len(self.prefix),
                             haystack_tokens=budget)


def split_sentences(texts: Sequence[str]) -> list[str]:
    """Sentences of `texts`, whitespace collapsed, in order."""
    out = []
    for text in texts:
        for s in _SENTENCE_END.split(" ".join(text.split())):
            s = s.strip()
            if s:
                out.append(s)
    return out


def passkey_prompts(tokenizer: Any, lengths: Sequence[int], depths: Sequence[float] = DEFAULT_DEPTHS,
                    trials: int = 3, seed: int = 0, filler: Sequence[str] | None = None,
                    key_digits: int = 5) -> list[PasskeyPrompt]:
    """Prompts for every (length, depth, trial): keys of `key_digits` random digits, deterministic in `seed`.
    `filler`: real text (e.g. held-out documents); without it a repeated neutral sentence is used."""
    if trials < 1:
        raise SmoledgeError(f"passkey trials must be >= 1, got {trials}")
    if not 1 <= key_digits <= 18:
        raise SmoledgeError(f"passkey key_digits must be between 1 and 18, got {key_digits}")
    # Enough filler that trials of the longest prompt start at different places in it.
    builder = PasskeyBuilder(tokenizer, filler, max_tokens=4 * max(lengths, default=0))
    prompts = []
    for length in lengths:
        for trial in range(trials):
            rng = np.random.default_rng([seed, trial, length])
            key = str(int(rng.integers(10 ** (key_digits - 1), 10 ** key_digits)))
            offset = int(rng.integers(len(builder.sentences)))
            prompts += [builder.prompt(length, float(d), key, offset, trial) for d in depths]
    return prompts


def judge(logits: np.ndarray, prompt: PasskeyPrompt) -> PasskeyTrial:
    """Teacher-forced greedy judgement of one prompt from its (length, V) logits."""
    k = len(prompt.key_ids)
    rows = logits[prompt.key_start - 1: prompt.key_start - 1 + k].astype(np.float64)  # (k, V): row j predicts key j
    key = np.asarray(prompt.key_ids)  # (k,)
    predicted = rows.argmax(-1)  # (k,)
    key_logit = rows[np.arange(k), key]  # (k,)
    others = rows.copy()
    others[np.arange(k), key] = -np.inf
    margin = float((key_logit - others.max(-1)).min())
    correct = int((predicted == key).sum())
    return PasskeyTrial(length=prompt.length, depth=prompt.depth, actual_depth=prompt.actual_depth,
                        trial=prompt.trial, key=prompt.key, retrieved=correct == k, key_tokens_correct=correct,
                        key_tokens=k, predicted=predicted.tolist(), margin=margin)


def run_passkey(scorer: Any, prompts: Sequence[PasskeyPrompt],
                on_prompt: Callable[[int, int], None] | None = None) -> PasskeyGrid:
    """Judge every prompt with `scorer` (TorchScorer, ORTScorer or GGUFScorer; a GGUFScorer's seq_len must
    cover the longest prompt). `on_prompt(done, total)` reports progress."""
    grid = PasskeyGrid()
    for i, prompt in enumerate(prompts):
        grid.trials.append(judge(scorer.window_logits(prompt.ids), prompt))
        if on_prompt is not None:
            on_prompt(i + 1, len(prompts))
    return grid


def passkey_grid(scorer: Any, tokenizer: Any, filler: Sequence[str] | None, lengths: Sequence[int],
                 depths: Sequence[float] = DEFAULT_DEPTHS, trials: int = 3, seed: int = 0,
                 on_prompt: Callable[[int, int], None] | None = None) -> PasskeyGrid:
    """passkey_prompts then run_passkey: the whole grid through one scorer. To run several runtimes on
    identical prompts, build them once with passkey_prompts and give each scorer to run_passkey."""
    return run_passkey(scorer, passkey_prompts(tokenizer, lengths, depths, trials, seed, filler), on_prompt)


def falloff(grid: PasskeyGrid, threshold: float = 0.5) -> dict[str, Any]:
    """grid.falloff(threshold): the longest context retrieved at >= threshold, and the first one below."""
    return grid.falloff(threshold)


def default_lengths(trained: int, max_context: int | None = None, min_length: int = 64) -> list[int]:
    """Grid lengths: a quarter, half and all of the trained context, then beyond it: doublings up to
    `max_context` (the exported context: trained x factor under YaRN), ending on it; without a longer
    max_context, one doubling, to show where plain RoPE stops. Lengths under `min_length` (too short
    for a haystack) are dropped."""
    lengths = [trained // 4, trained // 2, trained]
    if max_context is not None and max_context > trained:
        step = trained * 2
        while step < max_context:
            lengths.append(step)
            step *= 2
        lengths.append(max_context)
    else:
        lengths.append(trained * 2)
    return sorted({n for n in lengths if n >= min_length})
