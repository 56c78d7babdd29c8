"""`smoledge bench` over llama.cpp: a GGUF, a bundle, an export/run directory (what fits the device), the JSON
and markdown it writes, the roofline arithmetic, RAPL reading, and clear errors for bad targets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from test_package_stage import make_bundle

from smoledge.bench import measure as measure_mod
from smoledge.bench.config import load_profile
from smoledge.bench.measure import MeasureSpec, measure
from smoledge.bench.rapl import Rapl
from smoledge.bench.roofline import decode_roofline, mean_context
from smoledge.bench.run import BenchConfig, markdown, run
from smoledge.bench.select import LLAMA_CPP, kv_cache_bytes
from smoledge.cli import main
from smoledge.config import ConfigError
from smoledge.errors import SmoledgeError

SMALL = {"repeats": 2, "pp": [32, 64], "tg": 16, "ttft_prompt": 48}


def check_stat(s: dict, n_runs: int) -> None:
    assert len(s["runs"]) == n_runs and all(x > 0 for x in s["runs"])
    assert s["min"] <= s["median"] <= s["max"] and s["sd"] >= 0


def write_profile(path: Path, **fields) -> Path:
    base = load_profile("x86_64-avx2-laptop").to_dict()
    keep = ("name", "description", "arch", "isa", "cores", "ram_gb", "memory_bandwidth_gbs", "accelerators",
            "backend", "threads", "max_context", "model_ram_budget_gb")
    path.write_text(yaml.safe_dump({**{k: base[k] for k in keep}, **fields}))
    return path


def test_bench_gguf(tiny_gguf: Path, tmp_path: Path) -> None:
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    r = run(BenchConfig(target=str(tiny_gguf), out=str(out), markdown=str(md), **SMALL))
    assert json.loads(out.read_text()) == json.loads(json.dumps(r))
    assert r["format"] == 2 and r["kind"] == "gguf" and r["threads"] == 2 and r["device"]["name"] == "x86_64-avx2-laptop"
    assert r["settings"]["pp"] == [32, 64] and r["skipped"] == {} and r["machine"]["cpu_count"] >= 1
    [a] = r["results"]
    assert a["artifact"] == a["model"] == "model-f32.gguf" and a["backend"] == LLAMA_CPP and a["threads"] == 2
    assert a["model_bytes"] > 0 and a["n_params"] > 0 and a["n_ctx"] == 64 and a["n_ctx_train"] == 512
    assert list(a["tests"]) == ["pp32", "pp64", "tg16"]
    for key, n in (("pp32", 32), ("pp64", 64), ("tg16", 16)):
        t = a["tests"][key]
        assert t["n_tokens"] == n
        check_stat(t["tokens_per_s"], 2)
        check_stat(t["seconds"], 2)
        assert t["tokens_per_s"]["runs"] == pytest.approx([n / s for s in t["seconds"]["runs"]])
    check_stat(a["load_s"], 2)
    check_stat(a["ttft_ms"], 2)
    assert a["ttft_ms"]["prompt_tokens"] == 48
    # Its own worker process: the baseline (interpreter + llama_cpp) is well under the peak with a model loaded.
    assert 0 < a["rss"]["baseline_bytes"] < a["rss"]["peak_bytes"]
    assert a["rss"]["model_bytes"] == a["rss"]["peak_bytes"] - a["rss"]["baseline_bytes"]
    # 4 layers, 2 KV heads of 16, K and V, f16.
    assert a["kv_bytes_per_position"] == 2 * 4 * 2 * 16 * 2
    roof = a["roofline"]
    bytes_per_token = a["model_bytes"] + a["kv_bytes_per_position"] * mean_context(1, 16)
    assert roof["bytes_per_token"] == pytest.approx(bytes_per_token)
    assert roof["bound_tokens_per_s"] == pytest.approx(25.6e9 / bytes_per_token)
    assert roof["fraction"] == pytest.approx(a["tests"]["tg16"]["tokens_per_s"]["median"] / (25.6e9 / bytes_per_token))
    # No RAPL here (or not readable): said so, no joules invented; with RAPL, joules for every timed run.
    readable = Rapl.open()[0] is not None
    assert a["energy"]["readable"] == readable and (a["energy"]["reason"] == "") == readable
    assert (a["tests"]["tg16"]["j_per_token"] is None) != readable
    # What the file says it is: smoledge writes a SmolLM3 as llama.cpp's smollm3, general.file_type ALL_F32.
    assert a["architecture"] == "smollm3" and a["family"].startswith("smollm3 · ") and a["quantization"] == "F32"
    assert a["tensor_types"] == {"F32": a["model_bytes"]}
    assert a["weight_bytes_per_token"] == roof["weight_bytes"] == a["model_bytes"]  # tied: the output reads it all
    table = md.read_text()
    assert table.startswith("| model | family | quant | size | params | backend | threads | test | t/s | roofline |")
    for test in ("pp32", "pp64"):
        assert f"| llama.cpp CPU | 2 | {test} | " in table and f"| {test} | " in table
    assert f"| model-f32.gguf | {a['family']} | F32 | " in table
    [tg_row] = [line for line in table.splitlines() if "| tg16 |" in line]
    assert tg_row.endswith(f"| {100 * roof['fraction']:.1f}% |")
    assert "roofline" in table and f"{100 * roof['fraction']:.1f}% of the bound" in table
    assert table == markdown(r) + "\n"


def test_measure_reads_energy_where_rapl_is_readable(tiny_gguf: Path, tmp_path: Path, monkeypatch) -> None:
    # A powercap tree with one package zone, as Linux lays it out; this process is the worker here.
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text("5000000\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    real_open = Rapl.open
    monkeypatch.setattr(measure_mod.Rapl, "open", staticmethod(lambda: real_open(tmp_path)))
    r = measure(MeasureSpec(name="f32", backend=LLAMA_CPP, path=str(tiny_gguf), threads=1, pp=[16], tg=8,
                            ttft_prompt=0, repeats=2))
    assert r["energy"] == {"readable": True, "reason": "", "zones": ["package-0"]}
    for key, n in (("pp16", 16), ("tg8", 8)):
        t = r["tests"][key]
        assert t["energy_j"]["runs"] == [0.0, 0.0]  # the counter did not move: zero joules, not missing ones
        assert t["j_per_token"]["median"] == 0.0
    assert r["ttft_ms"] is None and list(r["tests"]) == ["pp16", "tg8"]


def test_rapl_packages_and_wraparound(tmp_path: Path) -> None:
    assert Rapl.open(tmp_path / "none")[0] is None
    rapl, why = Rapl.open(tmp_path)
    assert rapl is None and why.startswith("not readable: no RAPL package zones")
    for name, energy in (("intel-rapl:0", 1_000), ("intel-rapl:1", 900_000), ("intel-rapl:0:0", 7)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "energy_uj").write_text(f"{energy}\n")
        (tmp_path / name / "max_energy_range_uj").write_text("1000000\n")
    rapl, why = Rapl.open(tmp_path)
    assert rapl is not None and why == ""
    assert [z.name for z in rapl.zones] == ["intel-rapl:0", "intel-rapl:1"]  # sub-zones are parts of a package
    start = rapl.read()
    assert start == [1_000, 900_000]
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("501000\n")  # +0.5 J
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("100000\n")  # wrapped: +0.1 J to the top, +0.1 J after
    assert rapl.joules(start, rapl.read()) == pytest.approx(0.5 + 0.2)
    (tmp_path / "intel-rapl:1" / "energy_uj").write_text("garbage\n")
    assert Rapl.open(tmp_path)[0] is None and "intel-rapl:1" in Rapl.open(tmp_path)[1]


def test_roofline_math() -> None:
    # Step j of a tg run from 1 cached token attends to 1 + j positions (the cache and itself).
    assert mean_context(1, 128) == sum(1 + j for j in range(1, 129)) / 128 == 65.5
    r = decode_roofline(weight_bytes=100_000_000, kv_bytes_per_position=40_000, n_start=1, n_gen=128,
                        bandwidth_gbs=25.6, achieved_tokens_per_s=120.0)
    assert r["kv_bytes_read"] == 40_000 * 65.5 and r["bytes_per_token"] == 100_000_000 + 40_000 * 65.5
    assert r["bound_tokens_per_s"] == pytest.approx(25.6e9 / 102_620_000)
    assert r["fraction"] == pytest.approx(120.0 / (25.6e9 / 102_620_000))
    unknown = decode_roofline(100, 1, 1, 8, bandwidth_gbs=0.0, achieved_tokens_per_s=5.0)
    assert unknown["bound_tokens_per_s"] is None and unknown["fraction"] is None and "bandwidth" in unknown["note"]
    # The KV term is select.py's cache size for one position.
    cfg = {"num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "hidden_size": 576}
    assert kv_cache_bytes(cfg, 1, LLAMA_CPP) * 100 == kv_cache_bytes(cfg, 100, LLAMA_CPP) == 2 * 30 * 3 * 64 * 100 * 2


def test_bench_bundle_uses_its_recorded_profile(tmp_path: Path, tiny_model_dir: Path, tiny_gguf: Path,
                                                monkeypatch) -> None:
    import smoledge.bench.config as bench_config

    bundle = make_bundle(tmp_path, tiny_model_dir, tiny_gguf)
    # A board has no devices/ folder: the profile comes from the bundle's manifest.
    monkeypatch.setattr(bench_config, "devices_dir", lambda: tmp_path / "no-devices")
    r = run(BenchConfig(target=str(bundle), repeats=1, pp=[32], tg=16, ttft_prompt=0))
    assert r["kind"] == "bundle" and r["threads"] == 2
    [a] = r["results"]
    assert a["model"] == "tinybundle q8_0" and a["artifact"] == "model-q8_0.gguf" and a["ttft_ms"] is None
    assert a["tests"]["tg16"]["tokens_per_s"]["median"] > 0
    with pytest.raises(ConfigError, match="device profile 'rpi-9' not found"):
        run(BenchConfig(target=str(bundle), device="rpi-9", repeats=1))


def test_bench_run_dir_benches_what_fits(tmp_path: Path, tiny_model_dir: Path, tiny_gguf: Path) -> None:
    from smoledge.export.gguf import write_gguf

    export = tmp_path / "runs" / "tiny" / "export"
    shutil.copytree(tiny_model_dir, export / "hf")
    shutil.copyfile(tiny_gguf, export / "model-f32.gguf")
    write_gguf(export / "hf", export / "model-q8_0.gguf", "q8_0")
    cfg = json.loads((export / "hf" / "config.json").read_text())
    n_ctx = min(1024, cfg["max_position_embeddings"])
    ram = {n: (export / n).stat().st_size + kv_cache_bytes(cfg, n_ctx, LLAMA_CPP)
           for n in ("model-f32.gguf", "model-q8_0.gguf")}
    budget_gb = (ram["model-q8_0.gguf"] + ram["model-f32.gguf"]) / 2 / 1e9  # q8_0 fits, f32 does not
    profile = write_profile(tmp_path / "small.yaml", name="small", max_context=1024, model_ram_budget_gb=budget_gb,
                            threads=1)
    small = {"repeats": 1, "pp": [16], "tg": 8, "ttft_prompt": 0}
    r = run(BenchConfig(target=str(export.parent), device=str(profile), **small))  # the run directory
    assert r["kind"] == "export" and [a["artifact"] for a in r["results"]] == ["model-q8_0.gguf"]
    assert r["results"][0]["threads"] == 1
    assert list(r["skipped"]) == ["model-f32.gguf"] and "the budget is" in r["skipped"]["model-f32.gguf"]
    assert "not benched: model-f32.gguf: needs" in markdown(r)
    tight = write_profile(tmp_path / "tight.yaml", name="tight", model_ram_budget_gb=1e-5)
    with pytest.raises(SmoledgeError, match="no artifact in the export suits device 'tight'.*model-q8_0.gguf: needs"):
        run(BenchConfig(target=str(export), device=str(tight), **small))


def test_bench_refuses_bad_targets(tmp_path: Path, tiny_model_dir: Path, tiny_gguf: Path) -> None:
    with pytest.raises(SmoledgeError, match="nope.gguf does not exist; pass a bundle"):
        run(BenchConfig(target=str(tmp_path / "nope.gguf")))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("hello")
    with pytest.raises(SmoledgeError, match="is not something bench can run; pass a bundle"):
        run(BenchConfig(target=str(tmp_path / "notes")))
    with pytest.raises(SmoledgeError, match="is not something bench can run"):
        run(BenchConfig(target=str(tmp_path / "notes" / "a.txt")))
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF garbage")
    with pytest.raises(SmoledgeError, match="llama.cpp could not load .*garbage.gguf"):
        run(BenchConfig(target=str(garbage), repeats=1, pp=[8], tg=0, ttft_prompt=0))
    bundle = make_bundle(tmp_path, tiny_model_dir, tiny_gguf)
    (bundle / "model-q8_0.gguf").write_bytes(b"GGUF garbage")
    with pytest.raises(SmoledgeError, match="model-q8_0.gguf"):
        run(BenchConfig(target=str(bundle), repeats=1))
    # The tiny model was built for 512 tokens: the worker refuses, the error crosses the process boundary.
    with pytest.raises(ConfigError, match="need 1024 tokens of context, the model was built for 512"):
        run(BenchConfig(target=str(tiny_gguf), repeats=1, pp=[1024], tg=0, ttft_prompt=0))
    with pytest.raises(ConfigError, match="the tests need 100000 tokens of context; device 'x86_64-avx2-laptop' allows"):
        run(BenchConfig(target=str(tiny_gguf), pp=[100000]))
    for bad, match in (({"repeats": 0}, "repeats"), ({"pp": [0]}, "pp"), ({"tg": -1}, "tg"),
                       ({"pp": [], "tg": 0, "ttft_prompt": 0}, "nothing to measure")):
        with pytest.raises(ConfigError, match=match):
            BenchConfig(target="x.gguf", **bad)


def test_cli_bench(tiny_gguf: Path, tmp_path: Path, capsys) -> None:
    md = tmp_path / "b.md"
    rc = main(["bench", str(tiny_gguf), "--repeats", "1", "--warmup", "0", "--pp", "16,32", "--tg", "8",
               "--ttft-prompt", "0", "--markdown", str(md)])
    out = capsys.readouterr()
    assert rc == 0 and "| pp16 |" in out.out and "| pp32 |" in out.out and "| tg8 |" in out.out
    assert f"wrote {md}" in out.err and md.read_text().strip() == out.out.strip()
    assert main(["bench", str(tmp_path / "missing.gguf")]) == 1
    assert "does not exist" in capsys.readouterr().err
