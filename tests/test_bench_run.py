"""`smoledge bench` on the tiny GGUF and on a bundle: real llama.cpp timings, JSON out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_package_stage import make_bundle

from smoledge.bench.run import BenchConfig, run
from smoledge.config import ConfigError
from smoledge.errors import SmoledgeError


def test_bench_gguf(tiny_gguf: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    r = run(BenchConfig(target=str(tiny_gguf), device="x86_64-avx2-laptop", repeats=2, out=str(out), n_gen=64))
    assert json.loads(out.read_text()) == json.loads(json.dumps(r))
    assert r["threads"] == 2 and r["repeats"] == 2 and r["device"]["name"] == "x86_64-avx2-laptop"
    assert r["n_params"] > 0 and r["model_bytes"] > 0
    for key, n in (("pp", 128), ("tg", 64)):
        assert r[key]["n_tokens"] == n and len(r[key]["runs"]) == 2
        assert all(x > 0 for x in r[key]["runs"])
        assert min(r[key]["runs"]) <= r[key]["tokens_per_s"] <= max(r[key]["runs"])
    assert len(r["load_s"]["runs"]) == 2 and r["load_s"]["median"] > 0
    table = capsys.readouterr().out
    assert "| test |" in table and "| pp128 |" in table and "| tg64 |" in table


def test_bench_bundle_uses_its_recorded_profile(tmp_path: Path, tiny_model_dir: Path, tiny_gguf: Path,
                                                monkeypatch) -> None:
    import smoledge.bench.config as bench_config

    bundle = make_bundle(tmp_path, tiny_model_dir, tiny_gguf)
    # A board has no devices/ folder: the profile comes from the bundle's manifest.
    monkeypatch.setattr(bench_config, "devices_dir", lambda: tmp_path / "no-devices")
    r = run(BenchConfig(target=str(bundle), device="x86_64-avx2-laptop", repeats=1, n_prompt=32, n_gen=16))
    assert r["model"] == "tinybundle q8_0" and r["threads"] == 2 and r["tg"]["tokens_per_s"] > 0
    with pytest.raises(ConfigError, match="device profile 'rpi-9' not found"):
        run(BenchConfig(target=str(bundle), device="rpi-9", repeats=1))


def test_bench_refuses_bad_targets(tmp_path: Path, tiny_model_dir: Path, tiny_gguf: Path) -> None:
    with pytest.raises(SmoledgeError, match="does not exist"):
        run(BenchConfig(target=str(tmp_path / "nope.gguf")))
    bundle = make_bundle(tmp_path, tiny_model_dir, tiny_gguf)
    (bundle / "model-q8_0.gguf").write_bytes(b"GGUF garbage")
    with pytest.raises(SmoledgeError, match="model-q8_0.gguf"):
        run(BenchConfig(target=str(bundle), repeats=1))
    with pytest.raises(ConfigError, match="repeats"):
        BenchConfig(target="x.gguf", repeats=0)
