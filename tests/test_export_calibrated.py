"""Quantization that learns from the curated training split: calibration windows, llama.cpp's
importance matrix and static (QDQ) int8 ONNX, each on a real tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from smoledge.errors import SmoledgeError
from smoledge.export.config import ExportConfig

pytest.importorskip("llama_cpp")

LANGS = ("en", "fr", "de")


def write_train_shard(shards: Path, model_dir: Path, shared_data: Path) -> None:
    """A training split of real Wikipedia sentences in three languages, five sentences a document."""
    from transformers import AutoTokenizer

    from smoledge.tokenizer.shards import write_split

    tok = AutoTokenizer.from_pretrained(model_dir)
    docs = []
    for lang in LANGS:
        lines = (shared_data / "prose" / f"leipzig-wikipedia.{lang}.txt").read_text(encoding="utf-8").splitlines()
        for i in range(0, 200, 5):
            text = " ".join(lines[i:i + 5])
            docs.append((tok.encode(text, add_special_tokens=False) + [tok.eos_token_id], lang, "wikipedia"))
    write_split(shards, "train", docs, len(tok))


def test_calibration_windows_take_turns_between_languages(tmp_path: Path, tiny_model_dir: Path,
                                                          shared_data: Path) -> None:
    from smoledge.tokenizer.shards import Shard
    from smoledge.export.calibration import calibration_windows

    write_train_shard(tmp_path, tiny_model_dir, shared_data)
    shard = Shard.open(tmp_path, "train")
    windows = calibration_windows(shard, 6, 32)
    assert [len(w) for w in windows] == [32] * 6
    # Window k comes from the k-th language (mod 3), starting at that language's first document.
    langs = sorted(np.unique(shard.lang).tolist())
    assert sorted(shard.languages[i] for i in langs) == sorted(LANGS)
    for k, window in enumerate(windows[:3]):
        first_doc = int(np.flatnonzero(shard.lang == langs[k])[0])
        assert window[:8] == shard.doc(first_doc)[:8].tolist()
    assert calibration_windows(shard, 6, 32) == windows  # deterministic
    with pytest.raises(SmoledgeError, match="no run of 100000 tokens"):
        calibration_windows(shard, 2, 100_000)


def test_imatrix_is_each_linear_inputs_energy(tiny_model_dir: Path, tmp_path: Path) -> None:
    """blk.0.attn_q's importance is the squared input of layer 0's q_proj (the normed embeddings) summed
    over tokens; ffn_down's spans the MLP width; and the GGUF file round-trips."""
    import torch

    from smoledge.export.imatrix import collect_imatrix, read_imatrix_gguf, write_imatrix_gguf
    from smoledge.export.parity import load_torch

    model, _ = load_torch(tiny_model_dir)
    windows = [[5, 9, 13, 40, 41, 2, 7, 100], [3, 3, 3, 77, 12]]
    imatrix = collect_imatrix(model, windows)
    assert len(imatrix) == 7 * model.config.num_hidden_layers  # q k v o gate up down per layer
    layer = model.model.layers[0]
    expect_q = 0
    with torch.no_grad():
        for w in windows:
            x = layer.input_layernorm(model.model.embed_tokens(torch.tensor([w])))[0]  # (T, C)
            expect_q = expect_q + (x * x).sum(0)
    sum_q, count_q = imatrix["blk.0.attn_q.weight"]
    assert count_q == sum(len(w) for w in windows)
    np.testing.assert_allclose(sum_q, expect_q.double().numpy(), rtol=1e-5)
    assert imatrix["blk.0.attn_k.weight"][0].tolist() == sum_q.tolist()  # q, k, v read the same input
    assert imatrix["blk.0.ffn_down.weight"][0].shape == (model.config.intermediate_size,)

    path = write_imatrix_gguf(imatrix, tmp_path / "imatrix.gguf", "test", chunk_size=8)
    back = read_imatrix_gguf(path)
    assert set(back) == set(imatrix)
    for name, (s, c) in imatrix.items():
        np.testing.assert_allclose(back[name][0], s, rtol=1e-6)
        assert back[name][1] == c


def test_the_imatrix_reaches_llama_cpps_quantizer(tmp_path: Path, kquant_model_dir: Path) -> None:
    """The same f16 file quantized with and without an importance matrix gives different bytes (llama.cpp
    searched other scales), and both files load and score in llama.cpp."""
    from smoledge.export.gguf import write_gguf
    from smoledge.export.imatrix import collect_imatrix
    from smoledge.export.kquant import quantize_gguf
    from smoledge.export.parity import check_parity, load_torch

    model, _ = load_torch(kquant_model_dir)
    f16 = write_gguf(kquant_model_dir, tmp_path / "model-f16.gguf", "f16")
    plain = quantize_gguf(f16, tmp_path / "plain.gguf", "q4_k_m")
    imatrix = collect_imatrix(model, [list(range(3, 60)), list(range(100, 160))])
    weighted = quantize_gguf(f16, tmp_path / "weighted.gguf", "q4_k_m", imatrix=imatrix)
    assert plain.read_bytes() != weighted.read_bytes()
    for path in (plain, weighted):
        report = check_parity(kquant_model_dir, path, "The quick brown fox. Le renard brun.", None, model=model)
        assert report["top1_agreement"] >= 0.6, report


def test_static_int8_onnx_and_imatrix_in_the_export_stage(tmp_path: Path, kquant_model_dir: Path,
                                                          shared_data: Path) -> None:
    """export.onnx_int8_static and export.imatrix: calibration comes from the run's training shard, the
    QDQ model loads in ORTModelForCausalLM and records how it was made, imatrix.gguf is written."""
    import onnx

    from smoledge.export import stage
    from smoledge.export.onnx import load_ort
    from tests.test_export_stage import fake_distill, make_ctx, recipe

    run_dir = tmp_path / "t"
    fake_distill(run_dir, kquant_model_dir)
    write_train_shard(run_dir / "tokenizer" / "shards", kquant_model_dir, shared_data)
    ctx = make_ctx(run_dir, recipe(gguf_types=["q8_0", "q4_k_m"], onnx_int8=[], onnx_int8_static=["avx2"], imatrix=True,
                                   calibration_windows=6, calibration_seq_len=48), "export")
    result = stage.run(ctx)

    static = ctx.dir / "onnx-int8-static-avx2"
    assert type(load_ort(static)).__name__ == "ORTModelForCausalLM"
    report = result.metrics["onnx"]["onnx-int8-static-avx2"]
    assert report["top1_agreement"] >= 0.6, report
    quant = report["meta"]["quantization"]
    assert quant["mode"] == "static" and quant["format"] == "QDQ" and quant["calibration_tokens"] == 6 * 48
    # Every linear layer (7 per layer), the folded tied lm_head and the embedding are quantized;
    # attention's products are not.
    assert quant["quantized_nodes"] == 7 * 4 + 1 + 1
    props = {p.key: p.value for p in onnx.load(str(static / "model_quantized.onnx")).metadata_props}
    assert props["smoledge.graph_optimization_level"] == "basic"
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(static / "model_quantized.onnx")).graph.node)
    assert result.metrics["calibration"] == {"source": "curated training split", "windows": 6, "tokens": 6 * 48}
    assert (ctx.dir / "imatrix.gguf") in result.outputs
    files = result.metrics["files"]
    assert files["model-q4_k_m.gguf"]["top1_agreement"] >= 0.6


def test_calibrated_options_are_validated(tmp_path: Path) -> None:
    from smoledge.config import ConfigError
    from smoledge.export.stage import calibration

    with pytest.raises(ConfigError, match="imatrix: only steers llama.cpp's K-quants"):
        ExportConfig(gguf_types=["f32", "q8_0"], imatrix=True)
    with pytest.raises(ConfigError, match="onnx_int8_static: quantizes the ONNX export"):
        ExportConfig(onnx=False, onnx_int8=[], onnx_int8_static=["arm64"])
    with pytest.raises(SmoledgeError, match="exceeds the model's context"):
        calibration(tmp_path, ExportConfig(onnx_int8_static=["avx2"], calibration_seq_len=4096), 2048)
    with pytest.raises(SmoledgeError, match="run the train-tokenizer stage first"):
        calibration(tmp_path, ExportConfig(onnx_int8_static=["avx2"]), 2048)
    assert calibration(tmp_path, ExportConfig(), 2048) is None  # nothing asks for calibration


def test_onnx_optimisation_level_is_checked_and_recorded(tmp_path: Path, tiny_model_dir: Path) -> None:
    """'disabled' leaves optimum's graph as exported and says so in the file's metadata; the int8
    quantizers still find every linear layer and the embedding; levels that would break int8 or tie the
    file to this CPU are refused before anything is written."""
    import onnx

    from smoledge.export.onnx import export_onnx, read_meta, weight_nodes

    out = export_onnx(tiny_model_dir, tmp_path / "onnx", optimization="disabled")
    model = onnx.load(str(out / "model.onnx"))
    assert {p.key: p.value for p in model.metadata_props}["smoledge.graph_optimization_level"] == "disabled"
    assert read_meta(out)["graph_optimization_level"] == "disabled"
    nodes = weight_nodes(model)  # the tied lm_head joins them once it reads a stored weight (after folding)
    assert sum(n.endswith("_proj/MatMul") for n in nodes) == 7 * 4 and "/model/embed_tokens/Gather" in nodes
    for level in ("extended", "all"):
        with pytest.raises(SmoledgeError, match=f"level '{level}' is unknown; choose one of disabled, basic"):
            export_onnx(tiny_model_dir, tmp_path / level, optimization=level)
        assert not (tmp_path / level).exists()
