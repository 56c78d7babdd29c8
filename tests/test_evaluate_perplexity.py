"""Perplexity through PyTorch and llama.cpp: same windows, same numbers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from smoledge.evaluate.perplexity import (
    GGUFScorer,
    Score,
    TorchScorer,
    nll_from_logits,
    score,
    token_byte_lengths,
    windows,
)

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def tok(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def prose_ids(tok, prose_texts: list[str]) -> list[int]:
    text = "\n".join(prose_texts[5::40])
    return tok.encode(text, add_special_tokens=False)[:800]


@pytest.mark.parametrize("n,seq_len", [(2, 8), (8, 8), (9, 8), (100, 8), (1000, 256), (257, 256)])
def test_windows_predict_every_token_once(n: int, seq_len: int) -> None:
    spans = windows(n, seq_len)
    predicted = [i for a, b in spans for i in range(a + 1, b)]
    assert predicted == list(range(1, n))
    assert all(b - a <= seq_len for a, b in spans)


def test_nll_from_logits_matches_torch_cross_entropy() -> None:
    import torch

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 11)).astype(np.float32) * 5
    ids = [3, 1, 4, 1, 5, 9]
    want = torch.nn.functional.cross_entropy(torch.tensor(logits[:-1]), torch.tensor(ids[1:]), reduction="none")
    np.testing.assert_allclose(nll_from_logits(logits, ids), want.numpy(), rtol=1e-5)


def test_score_arithmetic() -> None:
    s = Score(nll=10 * math.log(4), tokens=10, bytes=20)
    assert s.ppl == pytest.approx(4.0)
    assert s.bpb == pytest.approx(10 * 2 / 20)
    assert (s + s).ppl == pytest.approx(4.0) and (s + s).bytes == 40


def test_token_bytes_spell_the_text(tok) -> None:
    table = token_byte_lengths(tok)
    for text in ("Größe: 12½ Straße", "l'été à Paris 🦊", "  spaces\tand\nlines", "日本語"):
        ids = tok.encode(text, add_special_tokens=False)
        assert table[ids].sum() == len(text.encode("utf-8")), text
    assert table[tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])].sum() == 0


def test_hf_and_gguf_f32_perplexity_agree_on_prose(tiny_model_dir: Path, tiny_gguf: Path, tok, prose_ids) -> None:
    table = token_byte_lengths(tok)
    ref = score(TorchScorer(tiny_model_dir), prose_ids, table, seq_len=128)
    got = score(GGUFScorer(tiny_gguf, seq_len=128), prose_ids, table, seq_len=128)
    assert ref.tokens == got.tokens == len(prose_ids) - 1
    assert ref.bytes == got.bytes == len(tok.decode(prose_ids[1:]).encode("utf-8"))
    assert abs(got.ppl / ref.ppl - 1) < 1e-3
    assert abs(got.bpb / ref.bpb - 1) < 1e-3
    # A random model is near-uniform over its 1024 ids: a sanity bound that would catch a
    # scorer that skipped the softmax or misaligned targets.
    assert 300 < ref.ppl < 3000


def test_context_matters(tiny_model_dir: Path, tok, prose_ids) -> None:
    """Shorter windows give the model less context: different (not identical) NLL."""
    table = token_byte_lengths(tok)
    scorer = TorchScorer(tiny_model_dir)
    long, short = score(scorer, prose_ids[:300], table, 256), score(scorer, prose_ids[:300], table, 8)
    assert long.tokens == short.tokens and long.nll != short.nll


def test_q8_0_perplexity_close(tiny_model_dir: Path, tmp_path: Path, tok, prose_ids) -> None:
    from smoledge.export.gguf import write_gguf
    from smoledge.export.parity import probe_gguf

    table = token_byte_lengths(tok)
    q8 = write_gguf(tiny_model_dir, tmp_path / "q8.gguf", "q8_0")
    probe_gguf(q8)  # fail with a reason, not SIGILL, on a llama.cpp build that cannot run Q8_0
    ref = score(TorchScorer(tiny_model_dir), prose_ids[:400], table, 128)
    got = score(GGUFScorer(q8, 128), prose_ids[:400], table, 128)
    assert got.nll != ref.nll and abs(got.ppl / ref.ppl - 1) < 0.02
