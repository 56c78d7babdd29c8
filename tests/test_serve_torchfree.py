"""`smoledge serve` and `smoledge bench` run where only the `serve` extra is installed.

A `sitecustomize` hook makes every build-only library (torch, transformers,
tokenizers, gguf...) fail to import, as on a board, then the real CLI serves
a bundle and benchmarks it in subprocesses.
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
BUILD_ONLY = ("torch", "transformers", "tokenizers", "safetensors", "gguf", "datasketch", "py3langid",
              "pyarrow", "onnx", "onnxruntime", "optimum", "sentencepiece", "accelerate")

SITECUSTOMIZE = f'''
import importlib.abc, os, sys

BLOCKED = {set(BUILD_ONLY)!r}
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
    assert "| pp128 |" in bench.stdout and json.loads(out_json.read_text())["tg"]["tokens_per_s"] > 0

    # Two processes started with the hook in place, and neither tried a build-only import.
    assert log.read_text().splitlines() == ["installed", "installed"]
