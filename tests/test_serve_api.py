"""The OpenAI-compatible server, started for real (`smoledge serve` in a subprocess) on a tiny bundle,
called with curl, httpx and the official openai client."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from test_package_stage import NAME, make_bundle

from smoledge.errors import SmoledgeError
from smoledge.serve.config import ServeConfig

REPO = Path(__file__).resolve().parents[1]
PROMPT = "The quick brown fox"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bundle: Path, env: dict[str, str] | None = None, *args: str) -> tuple[subprocess.Popen, str]:
    """`smoledge serve` in a subprocess; returns once GET /ready is 200."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "smoledge.cli", "serve", str(bundle), "--port", str(port), "--threads", "1", *args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            log = proc.stdout.read()  # type: ignore[union-attr]
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log}")
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server not ready after 60 s:\n{proc.stdout.read()}")  # type: ignore[union-attr]


def stop_server(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_model_dir: Path, tiny_gguf: Path) -> Path:
    return make_bundle(tmp_path_factory.mktemp("serve"), tiny_model_dir, tiny_gguf)


@pytest.fixture(scope="module")
def server(bundle: Path):
    proc, url = start_server(bundle)
    yield url
    log = stop_server(proc)
    assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=60)


def test_health_ready_models(server: str) -> None:
    assert httpx.get(f"{server}/health").json() == {"status": "ok"}
    assert httpx.get(f"{server}/ready").json() == {"status": "ready", "model": NAME}
    models = httpx.get(f"{server}/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == [NAME]


def test_completion_with_curl(server: str) -> None:
    body = json.dumps({"model": NAME, "prompt": PROMPT, "max_tokens": 12, "temperature": 1.0, "seed": 1})
    out = subprocess.run(
        ["curl", "-sS", "--fail-with-body", f"{server}/v1/completions", "-H", "content-type: application/json",
         "-d", body], capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    r = json.loads(out.stdout)
    assert r["object"] == "text_completion" and r["model"] == NAME and r["id"].startswith("cmpl-")
    (choice,) = r["choices"]
    assert choice["text"] and choice["finish_reason"] in ("stop", "length")
    assert r["usage"]["prompt_tokens"] > 0 and 0 < r["usage"]["completion_tokens"] <= 12
    assert r["usage"]["total_tokens"] == r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"]


def test_openai_completions(client: openai.OpenAI) -> None:
    r = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=10, temperature=0.0)
    assert r.choices[0].text and r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 10
    # Greedy decoding is deterministic; a seed makes sampling deterministic too.
    assert client.completions.create(model=NAME, prompt=PROMPT, max_tokens=10, temperature=0.0).choices[0].text \
        == r.choices[0].text
    a, b = (client.completions.create(model=NAME, prompt=PROMPT, max_tokens=10, seed=7).choices[0].text
            for _ in range(2))
    assert a == b


def test_stop_sequence_cuts_the_text(client: openai.OpenAI) -> None:
    full = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=24, temperature=0.0).choices[0].text
    assert len(full) >= 6, full
    stop = full[3:5]
    r = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=24, temperature=0.0, stop=[stop])
    assert r.choices[0].text == full[: full.index(stop)]
    assert r.choices[0].finish_reason == "stop"


def test_openai_chat(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=NAME, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Bonjour !"}],
        max_tokens=16, temperature=0.7, seed=3,
    )
    assert r.object == "chat.completion" and r.model == NAME
    msg = r.choices[0].message
    assert msg.role == "assistant" and msg.content and r.choices[0].finish_reason in ("stop", "length")
    # The ChatML template was applied: the prompt holds 2 messages + the assistant header.
    assert r.usage.prompt_tokens > 10


def test_streaming_matches_non_streaming(client: openai.OpenAI) -> None:
    ref = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=16, temperature=0.0)
    chunks = list(client.completions.create(model=NAME, prompt=PROMPT, max_tokens=16, temperature=0.0, stream=True))
    assert len(chunks) > 1
    assert "".join(c.choices[0].text for c in chunks) == ref.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks][-1] == ref.choices[0].finish_reason
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])

    messages = [{"role": "user", "content": "Hallo"}]
    ref_chat = client.chat.completions.create(model=NAME, messages=messages, max_tokens=16, temperature=0.0)
    stream = client.chat.completions.create(model=NAME, messages=messages, max_tokens=16, temperature=0.0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and text == ref_chat.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == ref_chat.usage.completion_tokens


def test_sse_wire_format(server: str) -> None:
    with httpx.stream("POST", f"{server}/v1/chat/completions", timeout=60,
                      json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert {e["object"] for e in events} == {"chat.completion.chunk"}
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_oversize_prompt_is_400(server: str, client: openai.OpenAI) -> None:
    long_prompt = " ".join(["renard"] * 600)  # > 512 tokens of context
    r = httpx.post(f"{server}/v1/completions", json={"prompt": long_prompt, "max_tokens": 8}, timeout=60)
    assert r.status_code == 400
    assert "exceed the context window of 512 tokens" in r.json()["error"]["message"]
    # Fits alone, but not with max_tokens on top.
    r = httpx.post(f"{server}/v1/completions", json={"prompt": PROMPT, "max_tokens": 600}, timeout=60)
    assert r.status_code == 400 and "lower max_tokens" in r.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError, match="context window"):
        client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": long_prompt}])


@pytest.mark.parametrize(
    "path, body, status, needle",
    [
        ("/v1/completions", {"prompt": PROMPT, "temperature": 5}, 400, "temperature"),
        ("/v1/completions", {"prompt": PROMPT, "max_tokens": 0}, 400, "max_tokens"),
        ("/v1/completions", {"max_tokens": 4}, 400, "prompt: Field required"),
        ("/v1/completions", {"prompt": ["a", "b"], "stream": True}, 400, "streamed request takes one prompt"),
        ("/v1/completions", {"prompt": PROMPT, "n": 3}, 400, "only n=1"),
        ("/v1/completions", {"prompt": PROMPT, "stop": ["a", "b", "c", "d", "e"]}, 400, "at most 4 stop"),
        ("/v1/completions", {"prompt": PROMPT, "model": "gpt-4"}, 404, "'gpt-4' is not served here"),
        ("/v1/chat/completions", {"messages": []}, 400, "messages"),
        ("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}, 400, "role"),
    ],
)
def test_bad_requests_are_4xx_with_a_message(server: str, path: str, body: dict, status: int, needle: str) -> None:
    r = httpx.post(f"{server}{path}", json=body, timeout=30)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]


def test_invalid_json_is_400(server: str) -> None:
    r = httpx.post(f"{server}/v1/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]


def test_tampered_bundle_refuses_to_start(bundle: Path, tmp_path: Path) -> None:
    import shutil

    from smoledge.serve.server import create_app

    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    gguf = copy / "model-q8_0.gguf"
    data = bytearray(gguf.read_bytes())
    data[-1] ^= 0xFF
    gguf.write_bytes(bytes(data))
    with pytest.raises(SmoledgeError, match="model-q8_0.gguf' fails its sha256 check"):
        create_app(ServeConfig(bundle=str(copy)))
    out = subprocess.run([sys.executable, "-m", "smoledge.cli", "serve", str(copy), "--port", str(free_port())],
                         cwd=REPO, capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert out.returncode != 0 and "fails its sha256 check" in out.stderr


def test_n_ctx_beyond_training_is_refused(bundle: Path) -> None:
    from smoledge.config import ConfigError
    from smoledge.serve.server import create_app

    with pytest.raises(ConfigError, match="exceeds the model's trained context of 512"):
        create_app(ServeConfig(bundle=str(bundle), n_ctx=4096))
    with pytest.raises(ConfigError, match="--port"):
        ServeConfig(bundle=str(bundle), port=70000)


def test_unloadable_model_stops_the_server(bundle: Path, tmp_path: Path) -> None:
    """Checksums match (the file was packaged broken): /ready never turns 200 and the process exits."""
    import shutil

    from smoledge.io import atomic_write_json, sha256_file

    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    gguf = copy / "model-q8_0.gguf"
    gguf.write_bytes(b"GGUF" + bytes(256))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["model-q8_0.gguf"] = {"sha256": sha256_file(gguf), "bytes": gguf.stat().st_size}
    atomic_write_json(copy / "manifest.json", manifest)
    out = subprocess.run([sys.executable, "-m", "smoledge.cli", "serve", str(copy), "--port", str(free_port())],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "could not load the model" in out.stderr and "model-q8_0.gguf" in out.stderr
