"""The torch-free ONNX decoder (smoledge.serve.ort_decoder) against optimum and PyTorch, and `smoledge bench`
on ONNX artifacts: an ONNX directory, and an export directory for an onnxruntime device."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_bench_run import check_stat, write_profile

from smoledge.bench.measure import hf_n_params
from smoledge.bench.run import BenchConfig, fitting, markdown, resolve, run
from smoledge.bench.select import ONNXRUNTIME, kv_cache_bytes, onnx_files
from smoledge.errors import SmoledgeError
from smoledge.serve.ort_decoder import OrtDecoder

TOL = 1e-4


@pytest.fixture(scope="module")
def sharp_model_dir(tmp_path_factory, tiny_model_dir: Path) -> Path:
    """The tiny model with its matrices redrawn at std 2/sqrt(fan_in): at the usual 0.02 init every logit is
    nearly equal and greedy decoding repeats one token, which would make a greedy comparison say little."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 2.0 / p.shape[1] ** 0.5, generator=gen)
    out = tmp_path_factory.mktemp("sharp")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, sharp_model_dir: Path) -> Path:
    """runs/<name>/export as the export stage lays it out: hf/, a q8_0 GGUF, fp32 ONNX and dynamic int8 for avx2."""
    from smoledge.export.gguf import write_gguf
    from smoledge.export.onnx import export_onnx, quantize_onnx

    export = tmp_path_factory.mktemp("run") / "export"
    shutil.copytree(sharp_model_dir, export / "hf")
    write_gguf(export / "hf", export / "model-q8_0.gguf", "q8_0")
    export_onnx(export / "hf", export / "onnx")
    quantize_onnx(export / "onnx", export / "onnx-int8-avx2", "avx2")
    return export


def ids(n: int, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(0, 1024, size=n).tolist()


def test_decoder_logits_match_optimum_and_pytorch(export_dir: Path) -> None:
    from smoledge.export.onnx import load_ort, ort_logits
    from smoledge.export.parity import torch_logits

    prompt = ids(40)
    dec = OrtDecoder(export_dir / "onnx", n_threads=2)
    full = dec.prefill(prompt)  # (T, V)
    assert full.shape == (40, dec.n_vocab) and full.dtype == np.float32 and dec.n_past == 40
    ref = torch_logits(export_dir / "hf", prompt)
    assert np.abs(full - ref).max() < TOL
    assert np.abs(full - ort_logits(load_ort(export_dir / "onnx", 2), prompt)).max() < TOL
    # Token by token through the cache: each step's logits are the one-pass logits at that position.
    dec.reset()
    assert dec.n_past == 0
    rows = [dec.eval(prompt[:1])[-1]] + [dec.step(t) for t in prompt[1:]]
    assert np.abs(np.stack(rows) - ref).max() < TOL and dec.n_past == 40
    # Chunks append to the sequence; prefill starts a new one.
    dec.prefill(prompt[:10])
    assert np.abs(dec.eval(prompt[10:]) - ref[10:]).max() < TOL
    assert np.abs(dec.prefill(prompt[:5]) - ref[:5]).max() < TOL and dec.n_past == 5


def test_decoder_int8_prefill_matches_optimum(export_dir: Path) -> None:
    from smoledge.export.onnx import load_ort, ort_logits

    prompt = ids(32, seed=1)
    got = OrtDecoder(export_dir / "onnx-int8-avx2", n_threads=2).prefill(prompt)
    assert np.abs(got - ort_logits(load_ort(export_dir / "onnx-int8-avx2", 2), prompt)).max() < TOL


@pytest.mark.parametrize("name", ["onnx", "onnx-int8-avx2"])
def test_decoder_greedy_matches_ort_greedy(export_dir: Path, name: str) -> None:
    from smoledge.export.onnx import load_ort, ort_greedy

    prompt = ids(6, seed=2)
    dec = OrtDecoder(export_dir / name, n_threads=2)
    token, got = int(dec.prefill(prompt)[-1].argmax()), []
    for _ in range(24):
        got.append(token)
        token = int(dec.step(token).argmax())
    assert got == ort_greedy(load_ort(export_dir / name, 2), prompt, 24)
    assert len(set(got)) > 5  # a varied continuation, so the comparison means something


def test_decoder_facts_and_errors(export_dir: Path, tmp_path: Path) -> None:
    cfg = json.loads((export_dir / "hf" / "config.json").read_text())
    dec = OrtDecoder(export_dir / "onnx-int8-avx2")
    assert (dec.n_layers, dec.n_kv_heads, dec.head_dim) == (4, 2, 16)
    assert dec.n_vocab == cfg["vocab_size"] and dec.n_ctx_train == 512 and dec.path.name == "model_quantized.onnx"
    assert dec.kv_cache_bytes_per_position == kv_cache_bytes(cfg, 1, ONNXRUNTIME) == 2 * 4 * 2 * 16 * 4
    with pytest.raises(ValueError, match="at least one token"):
        dec.eval([])
    with pytest.raises(SmoledgeError, match="holds no model.onnx or model_quantized.onnx"):
        OrtDecoder(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(SmoledgeError, match="onnxruntime could not load .*model.onnx"):
        OrtDecoder(tmp_path)


def test_param_count_from_config(export_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(export_dir / "hf")
    cfg = json.loads((export_dir / "hf" / "config.json").read_text())
    assert hf_n_params(cfg) == sum(p.numel() for p in model.parameters())  # tied lm_head counted once
    assert hf_n_params({}) is None


def test_bench_onnx_dir(export_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    r = run(BenchConfig(target=str(export_dir / "onnx-int8-avx2"), repeats=2, pp=[32], tg=16, ttft_prompt=24,
                        out=str(out)))
    assert json.loads(out.read_text()) == json.loads(json.dumps(r)) and r["kind"] == "onnx"
    [a] = r["results"]
    assert a["backend"] == ONNXRUNTIME and a["artifact"] == "onnx-int8-avx2" and a["threads"] == 2
    assert a["model_bytes"] == sum(p.stat().st_size for p in onnx_files(export_dir / "onnx-int8-avx2"))
    assert a["n_params"] == hf_n_params(json.loads((export_dir / "hf" / "config.json").read_text()))
    assert a["kv_bytes_per_position"] == 2 * 4 * 2 * 16 * 4 and "onnxruntime" in a["versions"]
    for key in ("pp32", "tg16"):
        check_stat(a["tests"][key]["tokens_per_s"], 2)
    check_stat(a["ttft_ms"], 2)
    assert 0 < a["rss"]["baseline_bytes"] < a["rss"]["peak_bytes"]
    roof = a["roofline"]
    assert roof["fraction"] == pytest.approx(a["tests"]["tg16"]["tokens_per_s"]["median"] / roof["bound_tokens_per_s"])
    # Family from config.json's model_type, quantization from the export's record.
    model_type = json.loads((export_dir / "hf" / "config.json").read_text())["model_type"]
    assert a["architecture"] == a["family"] == model_type and a["quantization"] == "int8-dynamic"
    assert a["weight_bytes_per_token"] == roof["weight_bytes"] == a["model_bytes"]
    table = markdown(r)
    assert f"| onnx-int8-avx2 | {model_type} | int8-dynamic | " in table
    assert f"| onnxruntime CPU | 2 | tg16 | " in table and f"| {100 * roof['fraction']:.1f}% |" in table


def test_onnx_quantization_label(export_dir: Path, tmp_path: Path) -> None:
    from smoledge.bench.measure import onnx_quantization
    from smoledge.export.onnx import META_FILE

    assert onnx_quantization(OrtDecoder(export_dir / "onnx")) == "fp32"
    assert onnx_quantization(OrtDecoder(export_dir / "onnx-int8-avx2")) == "int8-dynamic"
    # Copied without smoledge_onnx.json: the graph's own metadata still says how it was quantized.
    bare = tmp_path / "int8"
    shutil.copytree(export_dir / "onnx-int8-avx2", bare)
    (bare / META_FILE).unlink()
    assert onnx_quantization(OrtDecoder(bare)) == "int8-dynamic"


def test_bench_export_dir_for_an_onnxruntime_device(export_dir: Path, tmp_path: Path) -> None:
    cfg = json.loads((export_dir / "hf" / "config.json").read_text())
    n_ctx = 256
    target = resolve(str(export_dir))
    ram = {c.name: c.bytes + kv_cache_bytes(cfg, n_ctx, c.backend) for c in target.artifacts}
    assert sorted(ram) == ["model-q8_0.gguf", "onnx", "onnx-int8-avx2"]
    budget = (ram["onnx-int8-avx2"] + ram["onnx"]) / 2  # int8 fits, fp32 does not
    profile = write_profile(tmp_path / "ort.yaml", name="ort-box", backend="onnxruntime", max_context=n_ctx,
                            model_ram_budget_gb=budget / 1e9)
    r = run(BenchConfig(target=str(export_dir), device=str(profile), repeats=1, pp=[16], tg=8, ttft_prompt=0))
    assert [a["artifact"] for a in r["results"]] == ["onnx-int8-avx2"]
    assert "the budget is" in r["skipped"]["onnx"] and "--all-backends" in r["skipped"]["model-q8_0.gguf"]
    both = run(BenchConfig(target=str(export_dir), device=str(profile), repeats=1, pp=[16], tg=8, ttft_prompt=0,
                           all_backends=True))
    expected = sorted(n for n, b in ram.items() if b <= budget)
    assert sorted(a["artifact"] for a in both["results"]) == expected and "model-q8_0.gguf" in expected
    assert {a["backend"] for a in both["results"]} == {"llama.cpp", "onnxruntime"}
    # An ARM board cannot use an int8 graph quantized for AVX2; its fp32 graph it can.
    arm = write_profile(tmp_path / "arm.yaml", name="arm-box", arch="aarch64", isa=["neon", "dotprod"],
                        backend="onnxruntime", model_ram_budget_gb=1.0)
    from smoledge.bench.config import load_profile

    kept, skipped = fitting(load_profile(str(arm)), target, all_backends=False)
    assert [c.name for c in kept] == ["onnx"] and skipped["onnx-int8-avx2"] == "quantized for avx2, the device is aarch64"
