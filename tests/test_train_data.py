"""Packed batches: documents never see each other, labels, positions, deterministic mixture sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from smoledge.data.config import DataConfig, SourceConfig
from smoledge.tokenizer.shards import Shard, write_split
from smoledge.model.build import hf_config, init_model
from smoledge.model.config import ModelConfig
from smoledge.train.data import IGNORE_INDEX, PackedSampler, mixture_weights, pack, validation_batches

EOS = 0


def _model(vocab: int = 512):
    # 4 layers: layer 3 is NoPE, so both attention flavours are exercised.
    cfg = ModelConfig(preset="custom", num_layers=4, hidden_size=64, intermediate_size=128,
                      num_heads=4, num_kv_heads=2, max_position_embeddings=256)
    return init_model(hf_config(cfg, vocab_size=vocab), seed=0).eval()


def test_packed_documents_match_running_them_alone() -> None:
    model = _model()
    rng = np.random.default_rng(0)
    docs = [np.append(rng.integers(3, 512, n), EOS) for n in (11, 17, 30)]
    T = sum(len(d) for d in docs) - 1
    batch = pack(docs, batch_size=1, seq_len=T)
    with torch.no_grad():
        packed = model(**batch.model_inputs(), use_cache=False).logits[0]  # (T, V)
        start = 0
        for d in docs:
            ids = torch.from_numpy(d.astype(np.int64))[None]
            alone = model(input_ids=ids, use_cache=False).logits[0]           # (len, V)
            n = min(len(d), T - start)
            diff = (packed[start:start + n] - alone[:n]).abs().max().item()
            assert diff < 1e-4, f"document at {start} differs by {diff}"
            start += len(d)
        # Sensitivity check: with a plain causal mask the second document does see the first.
        plain = model(input_ids=batch.input_ids, use_cache=False).logits[0]
        second = torch.from_numpy(docs[1].astype(np.int64))[None]
        leak = (plain[len(docs[0]):len(docs[0]) + len(docs[1])] - model(input_ids=second).logits[0]).abs().max()
        assert leak > 1e-3


def test_labels_positions_and_mask_at_document_boundaries() -> None:
    a = np.array([5, 6, 7, EOS])
    b = np.array([8, 9, EOS])
    batch = pack([a, b, np.array([10, 11, 12])], batch_size=1, seq_len=8)
    assert batch.input_ids[0].tolist() == [5, 6, 7, EOS, 8, 9, EOS, 10]
    # The EOS is predicted; what follows an EOS (another document) is not.
    assert batch.labels[0].tolist() == [6, 7, EOS, IGNORE_INDEX, 9, EOS, IGNORE_INDEX, 11]
    assert batch.position_ids[0].tolist() == [0, 1, 2, 3, 0, 1, 2, 0]
    allowed = batch.attention_mask[0, 0] == 0                                # (T, T)
    assert allowed[5].tolist() == [False] * 4 + [True, True] + [False] * 2  # doc b, causal
    assert not allowed.triu(1).any()
    assert batch.attention_mask.shape == (1, 1, 8, 8)
    assert batch.attention_mask.dtype == torch.float32
    assert batch.num_targets == 6


def test_rows_are_cut_from_one_stream() -> None:
    doc = np.append(np.arange(3, 20), EOS)  # 18 tokens: 3..19, EOS
    batch = pack([doc, doc], batch_size=3, seq_len=9)
    # Row 1 is stream[10:20]: it starts mid-document, so its positions restart there.
    assert batch.input_ids[1].tolist() == [13, 14, 15, 16, 17, 18, 19, EOS, 3]
    assert batch.labels[1].tolist() == [14, 15, 16, 17, 18, 19, EOS, IGNORE_INDEX, 4]
    assert batch.position_ids[1].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0]
    with pytest.raises(ValueError):
        pack([doc], batch_size=3, seq_len=9)


def _lang_shard(tmp_path: Path) -> Shard:
    """Documents whose token ids reveal their language: en in [10, 100), fr in [100, 200)."""
    rng = np.random.default_rng(1)
    docs = []
    for i in range(400):
        lang, lo = ("en", 10) if i % 2 else ("fr", 100)
        ids = rng.integers(lo, lo + 90, int(rng.integers(5, 60))).tolist() + [EOS]
        docs.append((ids, lang, "web" if i % 4 < 2 else "books"))
    write_split(tmp_path, "train", docs, vocab_size=256)
    write_split(tmp_path, "valid", docs[:50], vocab_size=256)
    return Shard.open(tmp_path, "train")


def test_sampler_is_a_pure_function_of_seed_and_step(tmp_path: Path) -> None:
    shard = _lang_shard(tmp_path)
    a = PackedSampler(shard, 4, 32, seed=7)
    b = PackedSampler(shard, 4, 32, seed=7)
    assert torch.equal(a.batch(5).input_ids, b.batch(5).input_ids)
    assert torch.equal(a.batch(5).attention_mask, b.batch(5).attention_mask)
    assert not torch.equal(a.batch(5).input_ids, a.batch(6).input_ids)
    assert not torch.equal(a.batch(5).input_ids, PackedSampler(shard, 4, 32, seed=8).batch(5).input_ids)


def test_mixture_weights_scale_token_shares(tmp_path: Path) -> None:
    shard = _lang_shard(tmp_path)

    def fr_share(data: DataConfig) -> float:
        s = PackedSampler(shard, 8, 64, seed=0, weights=mixture_weights(shard, data))
        ids = torch.cat([s.batch(k).input_ids.flatten() for k in range(20)])
        content = ids[ids != EOS]
        return float(((content >= 100) & (content < 200)).float().mean())

    even = fr_share(DataConfig(languages=["en", "fr"]))
    assert 0.4 < even < 0.6
    heavy = fr_share(DataConfig(languages=["en", "fr"], language_weights={"fr": 3.0}))
    assert 0.68 < heavy < 0.82  # 3:1 -> 0.75
    assert fr_share(DataConfig(languages=["en", "fr"], language_weights={"fr": 0.0})) == 0.0
    # Source weights multiply in (a source weight must be > 0, so 'books' gets a tiny one).
    w = mixture_weights(shard, DataConfig(sources=[SourceConfig(name="books", weight=1e-9),
                                                   SourceConfig(name="web", weight=1.0)]))
    web = np.array([shard.sources[i] == "web" for i in shard.source])
    assert np.all(w[web] == 1.0) and np.all(w[~web] < 1e-8)


def test_validation_batches_are_fixed(tmp_path: Path) -> None:
    _lang_shard(tmp_path)
    valid = Shard.open(tmp_path, "valid")
    first = validation_batches(valid, 2, 32, num_batches=3)
    again = validation_batches(valid, 2, 32, num_batches=3)
    assert len(first) == 3
    assert all(torch.equal(x.input_ids, y.input_ids) for x, y in zip(first, again))
    # Documents in shard order: the first row opens with the first document.
    assert first[0].input_ids[0, :5].tolist() == valid.doc(0)[:5].tolist()
    # A shard smaller than the request gives what it has (at least one batch).
    assert len(validation_batches(valid, 8, 128, num_batches=50)) >= 1
