"""`smoledge serve` and `smoledge bench` run where only the `serve` extra is installed.

A `sitecustomize` hook makes every build-only library (torch, transformers,
gguf, onnx...) fail to import, as on a board, then the real CLI serves
a bundle and benchmarks it in subprocesses. An onnxruntime board (onnxruntime
installed, the rest of the build chain not) benches an ONNX export the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from test_package_stage import make_bundle
from test_serve_api import REPO, start_server, stop_server

# Everything in the `build` extra of pyproject.toml that `serve` does not need.
# `tokenizers` is in `serve` (the onnxruntime backend reads tokenizer.json with it).
BUILD_ONLY = ("torch", "transformers", "safetensors", "gguf", "datasketch", "py3langid",
              "pyarrow", "onnx", "onnxruntime", "optimum", "sentencepiece", "accelerate")

SITECUSTOMIZE = f'''
import importlib.abc, os, sys

# SMOLEDGE_BOARD_HAS names build-only libraries this board does have (e.g. onnxruntime).
BLOCKED = {set(BUILD_ONLY)!r} - set(os.environ.get("SMOLEDGE_BOARD_HAS", "").split(","))
LOG = os.environ["SMOLEDGE_BLOCK_LOG"]


class BoardFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            with open(LOG, "a") as f:
                f.write(f"blocked {{name}}\\n")
            raise ModuleNotFoundError(f"No module named {{name!r}} (not installed on a board)", name=name)
        return None


sys.meta_path.insert(0, BoardFinder())
with open(LOG, "a") as f:
    f.write("installed\\n")
'''


@pytest.fixture(scope="module")
def board_env(tmp_path_factory) -> tuple[dict[str, str], Path]:
    hook = tmp_path_factory.mktemp("board")
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = hook / "imports.log"
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "SMOLEDGE_BLOCK_LOG": str(log)}
    return env, log


def test_the_hook_blocks_torch(board_env) -> None:
    env, log = board_env
    out = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "not installed on a board" in out.stderr
    assert "blocked torch" in log.read_text()
    log.unlink()


def test_serve_and_bench_without_torch(board_env, tmp_path: Path, tiny_model_dir: Path, tiny_gguf: Path) -> None:
    env, log = board_env
    bundle = make_bundle(tmp_path, tiny_model_dir, tiny_gguf)

    proc, url = start_server(bundle, env)
    try:
        r = httpx.post(f"{url}/v1/chat/completions", timeout=60,
                       json={"messages": [{"role": "user", "content": "Ciao"}], "max_tokens": 8, "seed": 0})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
        with httpx.stream("POST", f"{url}/v1/completions", timeout=60,
                          # Seeded: unseeded sampling from a random model draws a stop token first now and then.
                          json={"prompt": "Le renard", "max_tokens": 8, "stream": True, "seed": 0}) as s:
            lines = [line for line in s.iter_lines() if line]
        assert lines[-1] == "data: [DONE]" and len(lines) > 2
    finally:
        server_log = stop_server(proc)
    assert "Traceback" not in server_log, server_log

    out_json = tmp_path / "bench.json"
    bench = subprocess.run(
        [sys.executable, "-m", "smoledge.cli", "bench", str(bundle), "--repeats", "1", "--out", str(out_json)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert bench.returncode == 0, bench.stderr
    assert "| pp128 |" in bench.stdout
    assert json.loads(out_json.read_text())["results"][0]["tests"]["tg128"]["tokens_per_s"]["median"] > 0

    # Three processes started with the hook in place (server, bench, its measuring worker),
    # and none tried a build-only import.
    assert log.read_text().splitlines() == ["installed"] * 3
    log.unlink()


def test_serve_a_bare_gguf_without_torch_or_gguf_py(board_env, tiny_gguf: Path) -> None:
    """A bare GGUF's template, end tokens and context come from llama.cpp itself: gguf-py (build-only) is not needed."""
    env, log = board_env
    proc, url = start_server(tiny_gguf, env)
    try:
        assert [m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]] == [tiny_gguf.stem]
        r = httpx.post(f"{url}/v1/chat/completions", timeout=60,
                       json={"messages": [{"role": "user", "content": "Ciao"}], "max_tokens": 4, "seed": 0})
        assert r.status_code == 200 and r.json()["usage"]["prompt_tokens"] > 5
    finally:
        server_log = stop_server(proc)
    assert "Traceback" not in server_log, server_log
    assert log.read_text().splitlines() == ["installed"]
    log.unlink()


def test_bench_onnx_without_torch(board_env, tmp_path: Path, tiny_model_dir: Path) -> None:
    from smoledge.export.onnx import export_onnx, quantize_onnx

    env, log = board_env
    onnx_dir = quantize_onnx(export_onnx(tiny_model_dir, tmp_path / "onnx"), tmp_path / "onnx-int8-avx2", "avx2")
    out_json = tmp_path / "bench.json"
    bench = subprocess.run(
        [sys.executable, "-m", "smoledge.cli", "bench", str(onnx_dir), "--repeats", "1", "--pp", "64", "--tg", "16",
         "--ttft-prompt", "32", "--out", str(out_json)],
        cwd=REPO, env={**env, "SMOLEDGE_BOARD_HAS": "onnxruntime"}, capture_output=True, text=True, timeout=300,
    )
    assert bench.returncode == 0, bench.stderr
    assert "| onnx-int8-avx2 |" in bench.stdout and "| onnxruntime CPU | 2 | tg16 |" in bench.stdout
    assert json.loads(out_json.read_text())["results"][0]["tests"]["tg16"]["tokens_per_s"]["median"] > 0
    # The CLI and its worker, neither importing torch, transformers, onnx or optimum.
    assert log.read_text().splitlines() == ["installed"] * 2
    log.unlink()
