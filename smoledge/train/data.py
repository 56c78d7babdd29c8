"""Packed training batches from token shards, with documents kept apart.

    from smoledge.train.data import PackedSampler, validation_batches, mixture_weights
    shard = Shard.open("runs/quickstart/tokenizer/shards", "train")
    sampler = PackedSampler(shard, batch_size=8, seq_len=256, seed=1234,
                            weights=mixture_weights(shard, recipe.data))
    batch = sampler.batch(k)   # a pure function of (seed, k): resuming at step k needs only k

Packing: documents (each ends with EOS) are laid end to end and cut into rows of
T+1 tokens; inputs are row[:-1], labels row[1:]. transformers 4.57 infers
document boundaries from restarting position_ids only when no cache object is
passed (use_cache=False) and no mask is given, so instead of relying on that,
every batch carries an explicit 4-D additive mask (B, 1, T, T): causal and
block-diagonal per document, 0 where attention is allowed and finfo.min elsewhere.
Labels: a document's last token still learns to predict its EOS, but the label
at the EOS (the next document's first token) cannot be predicted from this
document, so it is -100. The same holds wherever a row fragment ends.

Sampling: each draw picks a document with probability proportional to
(its length) x (source weight) x (language weight) x (its own weight in the shard
index: FineWeb2 rehydration when curate.rehydrate is on, else 1.0), so the weights
rescale each (source, language)'s natural token share. Documents longer than a row are
cropped to a random row-sized window, so long documents do not flood a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from smoledge.tokenizer.shards import Shard
from smoledge.errors import SmoledgeError

if TYPE_CHECKING:
    from smoledge.data.config import DataConfig

IGNORE_INDEX = -100
# Keeps the batch RNG stream apart from other users of the same seed (init, split hashing).
_STREAM = 0x5EED_BA7C


@dataclass
class Batch:
    input_ids: torch.Tensor       # (B, T) int64
    labels: torch.Tensor          # (B, T) int64, IGNORE_INDEX where nothing is predictable
    position_ids: torch.Tensor    # (B, T) int64, restart at 0 at each document start
    attention_mask: torch.Tensor  # (B, 1, T, T) float32, 0 allowed / finfo.min blocked
    teacher_ids: torch.Tensor | None = None   # (B, T, k) int64, the teacher's top-k token ids (cached distillation)
    teacher_logp: torch.Tensor | None = None  # (B, T, k) float32, their log-probabilities at the cache temperature

    @property
    def num_targets(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids, "position_ids": self.position_ids,
                "attention_mask": self.attention_mask}

    def teacher_inputs(self) -> dict[str, torch.Tensor]:
        """The cached teacher targets, when this batch carries them."""
        if self.teacher_ids is None:
            return {}
        return {"teacher_ids": self.teacher_ids, "teacher_logp": self.teacher_logp}

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every per-row tensor of the batch (what a data-parallel rank slices)."""
        return {"labels": self.labels, **self.model_inputs(), **self.teacher_inputs()}


class BatchSource(Protocol):
    """What the training loop draws from: batch k, a pure function of k (so resuming needs only k)."""

    def batch(self, k: int) -> Batch: ...


def pack(pieces: list[np.ndarray], batch_size: int, seq_len: int) -> Batch:
    """Lay `pieces` (token arrays, each its own document) end to end into a (B, T) batch.

    The pieces must hold at least B * (T + 1) tokens; the surplus is dropped."""
    need = batch_size * (seq_len + 1)
    tokens = np.concatenate(pieces).astype(np.int64)
    seg = np.repeat(np.arange(len(pieces)), [len(p) for p in pieces])
    if tokens.size < need:
        raise ValueError(f"pack needs {need} tokens, got {tokens.size}")
    rows = tokens[:need].reshape(batch_size, seq_len + 1)  # (B, T+1)
    seg = seg[:need].reshape(batch_size, seq_len + 1)      # (B, T+1)
    inputs, targets = rows[:, :-1], rows[:, 1:].copy()      # (B, T) each
    seg_in = seg[:, :-1]                                    # (B, T)
    # A target from another document than its input token cannot be predicted.
    targets[seg[:, 1:] != seg_in] = IGNORE_INDEX
    # Positions restart at each document start (and at each row start).
    idx = np.broadcast_to(np.arange(seq_len), (batch_size, seq_len))
    starts = np.ones((batch_size, seq_len), dtype=bool)
    starts[:, 1:] = seg_in[:, 1:] != seg_in[:, :-1]
    last_start = np.maximum.accumulate(np.where(starts, idx, 0), axis=1)
    positions = idx - last_start                            # (B, T)
    seg_t = torch.from_numpy(np.ascontiguousarray(seg_in))
    same_doc = seg_t[:, :, None] == seg_t[:, None, :]      # (B, T, T)
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
    allowed = (same_doc & causal)[:, None]                  # (B, 1, T, T)
    mask = torch.zeros(allowed.shape, dtype=torch.float32)
    mask.masked_fill_(~allowed, torch.finfo(torch.float32).min)
    return Batch(
        input_ids=torch.from_numpy(np.ascontiguousarray(inputs)),
        labels=torch.from_numpy(targets),
        position_ids=torch.from_numpy(np.ascontiguousarray(positions)),
        attention_mask=mask,
    )


def mixture_weights(shard: Shard, data: "DataConfig") -> np.ndarray:
    """Per-document weight: data.sources[name].weight x data.language_weights.get(lang, 1.0) x the
    document's own weight in the shard (curate's rehydration weight; 1.0 in shards without one).

    Sources in the shard that the recipe does not name weigh 1.0."""
    by_source = {s.name: s.weight for s in data.sources}
    src_w = np.array([by_source.get(name, 1.0) for name in shard.sources] or [1.0], dtype=np.float64)
    lang_w = np.array([data.language_weights.get(lang, 1.0) for lang in shard.languages] or [1.0],
                      dtype=np.float64)
    doc_w = 1.0 if shard.weight is None else shard.weight.astype(np.float64)
    return src_w[shard.source] * lang_w[shard.lang] * doc_w


class PackedSampler:
    """Batch k is a pure function of (seed, k): the data position to checkpoint is just k."""

    def __init__(self, shard: Shard, batch_size: int, seq_len: int, seed: int,
                 weights: np.ndarray | None = None):
        self.shard = shard
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.seed = seed
        lengths = np.diff(shard.offsets).astype(np.float64)
        w = lengths if weights is None else lengths * np.asarray(weights, dtype=np.float64)
        total = w.sum()
        if shard.num_docs == 0 or total <= 0:
            raise SmoledgeError(
                "the training shard has no documents with a positive mixture weight; check "
                "data.language_weights / data.sources[].weight and the curate output"
            )
        # A cumulative table turns each draw into a binary search instead of an O(n_docs) pass.
        self._cdf = np.cumsum(w) / total
        self._mean_piece = float(np.minimum(lengths, seq_len + 1).mean())

    def batch(self, k: int) -> Batch:
        rng = np.random.default_rng([_STREAM, self.seed, k])
        row = self.seq_len + 1
        need = self.batch_size * row
        pieces: list[np.ndarray] = []
        have = 0
        while have < need:
            n = max(8, int(1.25 * (need - have) / self._mean_piece) + 1)
            docs = np.searchsorted(self._cdf, rng.random(n), side="right")
            docs = np.minimum(docs, self.shard.num_docs - 1)  # guards the float edge u == cdf[-1]
            for d in docs:
                toks = self.shard.doc(int(d))
                if len(toks) > row:
                    start = int(rng.integers(0, len(toks) - row + 1))
                    toks = toks[start:start + row]
                pieces.append(toks)
                have += len(toks)
                if have >= need:
                    break
        return pack(pieces, self.batch_size, self.seq_len)


def validation_batches(shard: Shard, batch_size: int, seq_len: int, num_batches: int) -> list[Batch]:
    """A fixed set: the valid shard's documents in order, packed, up to `num_batches` batches.

    A small shard gives fewer batches (at least one; it wraps around if it is shorter than one)."""
    n_tokens = int(shard.offsets[-1])
    if shard.num_docs == 0 or n_tokens == 0:
        raise SmoledgeError("the validation shard is empty; raise data.valid_fraction or add documents")
    need = batch_size * (seq_len + 1)
    count = max(1, min(num_batches, n_tokens // need))
    batches = []
    doc = 0
    for _ in range(count):
        pieces, have = [], 0
        while have < need:
            # A document may span rows; each row fragment is then its own context
            # (positions restart at the row start, the mask never looks back).
            toks = shard.doc(doc % shard.num_docs)
            pieces.append(toks)
            have += len(toks)
            doc += 1
        batches.append(pack(pieces, batch_size, seq_len))
    return batches

