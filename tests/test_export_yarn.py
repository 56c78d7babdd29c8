"""YaRN at export: config.json rope_scaling, the GGUF keys llama.cpp reads, and logit parity of llama.cpp
and onnxruntime with PyTorch past the trained context."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from smoledge.config import ConfigError
from smoledge.errors import SmoledgeError
from smoledge.export.config import ExportConfig
from smoledge.export.gguf import model_hparams, write_gguf
from smoledge.export.parity import compare_logits, gguf_logits, load_torch, torch_logits
from smoledge.export.yarn import apply_yarn, beyond_trained_text, trained_context

pytest.importorskip("llama_cpp")

TRAINED = 128
FACTOR = 4.0


def _save_sharp_model(out: Path, tokenizer_dir: Path) -> Path:
    """A random 4-layer SmolLM3 (layer 3 NoPE) trained-context 128, with Q and K scaled up so attention
    is sharp and depends on position: at the default init its logits barely move whatever RoPE does,
    so parity would pass even with YaRN missing."""
    import torch
    from transformers import AutoTokenizer

    from smoledge.model.build import hf_config, init_model
    from smoledge.model.config import ModelConfig

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = ModelConfig(preset="custom", num_layers=4, hidden_size=64, intermediate_size=128, num_heads=4,
                      num_kv_heads=2, max_position_embeddings=TRAINED)
    model = init_model(hf_config(cfg, vocab_size=len(tok)), seed=3)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(8.0)
            layer.self_attn.k_proj.weight.mul_(8.0)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def plain_dir(tmp_path_factory, tiny_tokenizer_dir: Path) -> Path:
    return _save_sharp_model(tmp_path_factory.mktemp("plain"), tiny_tokenizer_dir)


@pytest.fixture(scope="module")
def yarn_dir(tmp_path_factory, plain_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("yarn") / "hf"
    shutil.copytree(plain_dir, out)
    apply_yarn(out, FACTOR)
    return out


@pytest.fixture(scope="module")
def yarn_gguf(tmp_path_factory, yarn_dir: Path) -> Path:
    return write_gguf(yarn_dir, tmp_path_factory.mktemp("gguf") / "model-f32.gguf", "f32")


@pytest.fixture(scope="module")
def long_ids(yarn_dir: Path, prose_texts: list[str]) -> list[int]:
    """Real prose, 4x the trained context."""
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(yarn_dir).encode(" ".join(prose_texts[:200]), add_special_tokens=False)
    assert len(ids) >= TRAINED * FACTOR
    return ids[: int(TRAINED * FACTOR)]


def test_yarn_factor_validated() -> None:
    assert ExportConfig().yarn_factor == 1.0
    assert ExportConfig.from_dict({"yarn_factor": 4}).yarn_factor == 4.0
    for bad in (0.5, 100):
        with pytest.raises(ConfigError, match="export.yarn_factor"):
            ExportConfig.from_dict({"yarn_factor": bad}, prefix="export")


def test_apply_yarn_writes_transformers_rope_scaling(yarn_dir: Path, plain_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoConfig

    cfg = json.loads((yarn_dir / "config.json").read_text())
    assert cfg["rope_scaling"] == {"rope_type": "yarn", "factor": FACTOR, "original_max_position_embeddings": TRAINED}
    assert cfg["max_position_embeddings"] == TRAINED * FACTOR
    assert trained_context(cfg) == (TRAINED, FACTOR)
    assert trained_context(json.loads((plain_dir / "config.json").read_text())) == (TRAINED, 1.0)

    # transformers builds YaRN from it: cos/sin scaled by 0.1 ln(factor) + 1, low frequencies divided.
    model, _ = load_torch(yarn_dir)
    rotary = model.model.rotary_emb
    assert AutoConfig.from_pretrained(yarn_dir).rope_scaling["rope_type"] == "yarn"
    assert rotary.attention_scaling == pytest.approx(0.1 * math.log(FACTOR) + 1)
    plain_inv = load_torch(plain_dir)[0].model.rotary_emb.inv_freq
    ratio = (plain_inv / rotary.inv_freq).numpy()
    assert ratio[0] == pytest.approx(1.0) and ratio[-1] == pytest.approx(FACTOR)

    # 1.0 is off: the file is left byte for byte; a second scaling is refused.
    copy = tmp_path / "plain"
    shutil.copytree(plain_dir, copy)
    before = (copy / "config.json").read_bytes()
    assert apply_yarn(copy, 1.0) is None and (copy / "config.json").read_bytes() == before
    with pytest.raises(SmoledgeError, match="already has rope_scaling"):
        apply_yarn(yarn_dir, 2.0)
    # A model trained shorter than its config's limit: YaRN from the length it really saw.
    assert apply_yarn(copy, 2.0, trained=64)["original_max_position_embeddings"] == 64
    assert json.loads((copy / "config.json").read_text())["max_position_embeddings"] == 128


def test_gguf_carries_llama_cpp_yarn_keys(yarn_gguf: Path) -> None:
    import gguf

    fields = gguf.GGUFReader(yarn_gguf).fields
    value = {k: fields[k].contents() for k in fields}
    assert value["general.architecture"] == "smollm3"
    assert value["smollm3.rope.scaling.type"] == "yarn"
    assert value["smollm3.rope.scaling.factor"] == FACTOR
    assert value["smollm3.rope.scaling.original_context_length"] == TRAINED
    assert value["smollm3.context_length"] == TRAINED * FACTOR
    # transformers' default attention factor is the one llama.cpp computes itself: no override key.
    assert "smollm3.rope.scaling.attn_factor" not in value


def test_gguf_refuses_scaling_llama_cpp_would_compute_differently(plain_dir: Path) -> None:
    base = json.loads((plain_dir / "config.json").read_text())
    yarn = {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": TRAINED}
    for extra, match in (({"rope_type": "linear"}, "plain RoPE or YaRN"), ({"beta_fast": 16.0}, "beta_fast"),
                         ({"truncate": False}, "truncate"), ({"short_factor": [1.0]}, "short_factor"),
                         ({"factor": 0.5}, "must be >= 1")):
        with pytest.raises(SmoledgeError, match=match):
            model_hparams({**base, "rope_scaling": {**yarn, **extra}})
    # Defaults written out explicitly, and a "default" rope_type, are fine.
    assert model_hparams({**base, "rope_scaling": {**yarn, "beta_fast": 32.0, "beta_slow": 1.0}})["yarn"]
    assert model_hparams({**base, "rope_scaling": {"rope_type": "default"}})["yarn"] is None
    # An explicit attention factor is written relative to the one llama.cpp applies.
    hp = model_hparams({**base, "rope_scaling": {**yarn, "attention_factor": 1.0}})
    assert hp["yarn"]["attn_factor"] == pytest.approx(1 / (0.1 * math.log(2.0) + 1))


def test_llama_cpp_yarn_matches_pytorch_past_trained_context(yarn_dir: Path, plain_dir: Path, yarn_gguf: Path,
                                                             long_ids: list[int], tmp_path: Path) -> None:
    ref = torch_logits(yarn_dir, long_ids)  # (512, V)
    got = compare_logits(ref, gguf_logits(yarn_gguf, long_ids))
    assert got["max_abs_diff"] < 1e-4 and got["top1_agreement"] == 1.0
    # Per position too: the stretch past the trained context matches as well as the start.
    beyond = compare_logits(ref[TRAINED:], gguf_logits(yarn_gguf, long_ids)[TRAINED:])
    assert beyond["max_abs_diff"] < 1e-4

    # YaRN changes this model's logits by far more than the tolerance, so the match is not vacuous:
    # neither plain RoPE nor YaRN without its attention factor would pass.
    plain = compare_logits(ref, torch_logits(plain_dir, long_ids))["max_abs_diff"]
    assert plain > 0.05
    plain_gguf = write_gguf(plain_dir, tmp_path / "plain.gguf", "f32")
    assert compare_logits(ref, gguf_logits(plain_gguf, long_ids))["max_abs_diff"] > 0.05
    no_mscale = tmp_path / "no-mscale"
    shutil.copytree(yarn_dir, no_mscale)
    cfg = json.loads((no_mscale / "config.json").read_text())
    cfg["rope_scaling"]["attention_factor"] = 1.0
    (no_mscale / "config.json").write_text(json.dumps(cfg))
    no_mscale_gguf = write_gguf(no_mscale, tmp_path / "no-mscale.gguf", "f32")
    assert compare_logits(ref, gguf_logits(no_mscale_gguf, long_ids))["max_abs_diff"] > 0.05
    # ...and that explicit factor, mapped to rope.scaling.attn_factor, matches its own PyTorch model.
    own = compare_logits(torch_logits(no_mscale, long_ids), gguf_logits(no_mscale_gguf, long_ids))
    assert own["max_abs_diff"] < 1e-4


def test_export_gates_gguf_and_onnx_past_trained_context(yarn_dir: Path, tmp_path: Path) -> None:
    """export_model on a YaRN HF dir: the f32 GGUF and the ONNX model are checked on the parity text
    repeated past the trained context; the ONNX graph (traced by optimum) carries the scaling."""
    from transformers import AutoTokenizer

    from smoledge.export.stage import export_model

    hf = tmp_path / "hf"
    shutil.copytree(yarn_dir, hf)
    cfg = ExportConfig(gguf_types=["f32"], onnx=True, onnx_int8=[], yarn_factor=FACTOR)
    report = export_model(hf, tmp_path, cfg)
    tok = AutoTokenizer.from_pretrained(hf)
    want = len(tok.encode(beyond_trained_text(tok, cfg.parity_text, TRAINED, FACTOR), add_special_tokens=False))
    long_gguf = report["files"]["model-f32.gguf"]["logits_beyond_trained"]
    long_onnx = report["onnx"]["onnx"]["beyond_trained"]
    for stats in (long_gguf, long_onnx):
        assert TRAINED < stats["tokens"] == want <= TRAINED * FACTOR
        assert stats["max_abs_diff"] < cfg.parity_max_abs_logit_diff
    assert json.loads((tmp_path / "parity.json").read_text())["onnx"]["onnx"]["beyond_trained"]["tokens"] == want


def test_plain_export_has_no_long_check(plain_dir: Path, tmp_path: Path) -> None:
    from smoledge.export.stage import export_model

    report = export_model(plain_dir, tmp_path, ExportConfig(gguf_types=["f32"], onnx=False, onnx_int8=[]))
    assert "logits_beyond_trained" not in report["files"]["model-f32.gguf"]
    assert np.isfinite(report["files"]["model-f32.gguf"]["logits"]["max_abs_diff"])
