"""GGUF vs PyTorch through real llama.cpp: tokens, logits, greedy decoding, and planted faults."""

from __future__ import annotations

from pathlib import Path

import pytest

from smoledge.errors import SmoledgeError
from smoledge.export.gguf import write_gguf
from smoledge.export.parity import (
    check_greedy,
    check_parity,
    check_tokenization,
    gguf_logits,
    probe_gguf,
    torch_logits,
)

pytest.importorskip("llama_cpp")

TEXT = "The quick brown fox. Le renard brun. El zorro marrón. Der braune Fuchs. Il volpe. A raposa."


@pytest.fixture(scope="module")
def llama_model_dir(tmp_path_factory, tiny_tokenizer_dir: Path) -> Path:
    """3 layers, no NoPE layer: exported with the `llama` architecture."""
    from test_export_gguf import save_model

    return save_model(tmp_path_factory.mktemp("llama3"), tiny_tokenizer_dir, num_layers=3, seed=1)


def test_tokenization_parity_multilingual(tiny_model_dir: Path, tiny_gguf: Path, prose_texts: list[str]) -> None:
    stats = check_tokenization(tiny_model_dir, tiny_gguf)
    assert stats["identical"] and stats["texts"] >= 10
    # Real prose in six languages, every 20th line.
    prose = prose_texts[::20]
    assert len(prose) > 50
    assert check_tokenization(tiny_model_dir, tiny_gguf, prose)["texts"] == len(prose)


def test_tokenization_mismatch_is_caught(tiny_model_dir: Path, tmp_path: Path, prose_texts: list[str]) -> None:
    """A GGUF carrying a differently trained tokenizer must fail the check."""
    from smoledge.tokenizer.bpe import train_bpe
    from test_export_gguf import save_model

    other_tok = tmp_path / "tok"
    train_bpe(prose_texts[1::3], vocab_size=1024).save_pretrained(other_tok)
    other = save_model(tmp_path / "other", other_tok, num_layers=2)
    gguf_path = write_gguf(other, tmp_path / "other.gguf", "f32")
    with pytest.raises(SmoledgeError, match="GGUF tokenizer disagrees with HF"):
        check_tokenization(tiny_model_dir, gguf_path)


def test_f32_logit_parity_smollm3(tiny_model_dir: Path, tiny_gguf: Path) -> None:
    stats = check_parity(tiny_model_dir, tiny_gguf, TEXT, max_abs_diff=1e-3)
    assert stats["max_abs_diff"] <= 1e-3
    assert stats["top1_agreement"] == 1.0
    assert stats["tokens"] > 20


def test_f32_logit_parity_llama(llama_model_dir: Path, tmp_path: Path) -> None:
    path = write_gguf(llama_model_dir, tmp_path / "llama-f32.gguf", "f32")
    assert check_parity(llama_model_dir, path, TEXT, max_abs_diff=1e-3)["max_abs_diff"] <= 1e-3
    assert check_greedy(llama_model_dir, path, TEXT, 16, tie_tol=2e-3)["matching_prefix"] >= 1


def test_untied_model_parity(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    from test_export_gguf import save_model

    model = save_model(tmp_path / "untied", tiny_tokenizer_dir, num_layers=4, tie_word_embeddings=False)
    path = write_gguf(model, tmp_path / "untied.gguf", "f32")
    assert check_parity(model, path, TEXT, max_abs_diff=1e-3)["max_abs_diff"] <= 1e-3


def test_greedy_parity(tiny_model_dir: Path, tiny_gguf: Path) -> None:
    result = check_greedy(tiny_model_dir, tiny_gguf, TEXT, 24, tie_tol=2e-3)
    assert result["new_tokens"] == 24
    # Random weights give near-ties; anything short of identical must be a reported tie.
    assert result["identical"] or abs(result["divergence_gap"]) <= 2e-3


def test_logits_shapes(tiny_model_dir: Path, tiny_gguf: Path) -> None:
    ids = [5, 17, 300, 2, 41]
    ref, got = torch_logits(tiny_model_dir, ids), gguf_logits(tiny_gguf, ids)
    assert ref.shape == got.shape == (5, 1024)


def test_q8_0_loads_with_small_diff(tiny_model_dir: Path, tmp_path: Path) -> None:
    path = write_gguf(tiny_model_dir, tmp_path / "q8.gguf", "q8_0")
    probe_gguf(path)  # a llama.cpp build that cannot run Q8_0 here fails with a reason, not SIGILL
    stats = check_parity(tiny_model_dir, path, TEXT, max_abs_diff=None)
    # Quantized: not bit-exact, but close relative to the logits' scale.
    assert 0 < stats["max_abs_diff"] < 0.05 * stats["logit_scale"]
    assert stats["top1_agreement"] >= 0.9


def test_planted_qk_permutation_bug_fails_parity(tiny_model_dir: Path, tmp_path: Path) -> None:
    bad = write_gguf(tiny_model_dir, tmp_path / "bad.gguf", "f32", _permute_qk=False)
    with pytest.raises(SmoledgeError, match=r"max \|logit diff\| vs PyTorch is .* above the limit 0.001"):
        check_parity(tiny_model_dir, bad, TEXT, max_abs_diff=1e-3)


def test_probe_reports_a_broken_file(tiny_gguf: Path, tmp_path: Path) -> None:
    probe_gguf(tiny_gguf)
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size // 2])
    with pytest.raises(SmoledgeError, match="llama.cpp could not run broken.gguf"):
        probe_gguf(broken)
