"""The server under load, for real (`smoledge serve` in a subprocess): parallel slots, the bounded
queue's fast 429, a client disconnect freeing its slot, the request timeout, the graceful shutdown.

These need generations that last: the model is 768 wide (MLP 3072, ~35M parameters, q8_0), a few
hundred tokens per second on one core, so 480 tokens take seconds rather than the tiny model's 0.1 s.
Every wait is bounded (`wait_for`), and all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

import httpx
import openai
import pytest
from test_package_stage import NAME, make_bundle
from test_serve_api import PROMPT, metric_value, scrape, server_log, start_server, stop_server

from smoledge.io import atomic_write_json, sha256_file

# A ~35M-parameter model is built for this module (~10 s) and every test waits on real generations.
pytestmark = pytest.mark.slow

LONG = 480  # max_tokens of a generation that must still be running when the test acts (prompt ~5 + 480 < 512)
# A random model samples its end token early and often; under this grammar it cannot end before 2000 letters
# (more than LONG tokens), so a long generation really runs to max_tokens.
ENDLESS = "root ::= [a-z ]{2000}"


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def slow_bundle(tmp_path_factory, tiny_tokenizer_dir: Path, tiny_model_dir: Path, tiny_gguf: Path) -> Path:
    """The tiny bundle with its GGUF swapped for a wider model's (same tokenizer), manifest updated."""
    from conftest import _save_random_model

    from smoledge.export.gguf import write_gguf

    bundle = make_bundle(tmp_path_factory.mktemp("slow"), tiny_model_dir, tiny_gguf)
    hf = _save_random_model(tmp_path_factory, tiny_tokenizer_dir, hidden_size=768, intermediate_size=3072)
    gguf = bundle / "model-q8_0.gguf"
    write_gguf(hf, gguf, "q8_0")
    shutil.rmtree(hf)  # 140 MB of safetensors, no longer needed
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][gguf.name] = {"sha256": sha256_file(gguf), "bytes": gguf.stat().st_size}
    atomic_write_json(bundle / "manifest.json", manifest)
    return bundle


@pytest.fixture(scope="module")
def two_slots(slow_bundle: Path):
    """2 slots (1 thread each), 1 request may queue."""
    proc, url = start_server(slow_bundle, None, "--threads", "2", "--slots", "2", "--queue", "1")
    yield url
    log = stop_server(proc)
    assert "Traceback" not in log, log


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)


def _busy(url: str) -> float:
    return metric_value(scrape(url), "smoledge_slots_busy")


def test_two_slots_generate_at_the_same_time(two_slots: str) -> None:
    client = _client(two_slots)

    def timed_stream(seed: int) -> tuple[float, float, int]:
        stamps, text = [], ""
        for chunk in client.completions.create(model=NAME, prompt=PROMPT, max_tokens=160, temperature=1.0,
                                               seed=seed, stream=True, extra_body={"grammar": ENDLESS}):
            stamps.append(time.monotonic())
            text += chunk.choices[0].text
        return stamps[0], stamps[-1], len(stamps)

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(timed_stream, [1, 2])
    assert a[2] >= 160 and b[2] >= 160, (a, b)  # long enough streams to tell overlap from a queue
    # Each stream's first token came before the other's last: both generated at once. With one slot the
    # second would start only after the first ended (b[0] > a[1]).
    assert a[0] < b[1] and b[0] < a[1], (a, b)
    assert metric_value(scrape(two_slots), "smoledge_slots") == 2


def test_queue_overflow_is_a_fast_429_with_retry_after(two_slots: str) -> None:
    body = {"model": NAME, "prompt": PROMPT, "max_tokens": LONG, "temperature": 1.0, "seed": 5, "stream": True,
            "grammar": ENDLESS}
    queued: dict[str, httpx.Response] = {}
    with ExitStack() as streams:
        lines = []  # kept: dropping a line iterator closes its connection (a disconnect)
        for _ in range(2):  # both slots busy: each stream has sent its first event
            r = streams.enter_context(httpx.stream("POST", f"{two_slots}/v1/completions", json=body, timeout=60))
            assert r.status_code == 200
            lines.append(r.iter_lines())
            assert next(lines[-1]).startswith("data: ")
        waiter = threading.Thread(target=lambda: queued.update(r=httpx.post(
            f"{two_slots}/v1/completions", json={"prompt": PROMPT, "max_tokens": 4}, timeout=60)))
        waiter.start()
        wait_for(lambda: metric_value(scrape(two_slots), "smoledge_queue_depth") == 1, "the third request to queue")
        start = time.monotonic()
        r = httpx.post(f"{two_slots}/v1/completions", json={"prompt": PROMPT, "max_tokens": 4}, timeout=60)
        elapsed = time.monotonic() - start
        assert r.status_code == 429, r.text
        assert elapsed < 1.0, elapsed  # turned away at once, not after waiting for a slot
        assert int(r.headers["Retry-After"]) >= 1
        assert "--queue 1" in r.json()["error"]["message"]
        with pytest.raises(openai.RateLimitError):
            _client(two_slots).completions.create(model=NAME, prompt=PROMPT, max_tokens=4)
    # The streams are closed: their slots free up and the queued request runs.
    waiter.join(timeout=30)
    assert queued["r"].status_code == 200, queued["r"].text
    text = scrape(two_slots)
    assert metric_value(text, "smoledge_requests_rejected_total", reason="queue_full") >= 2
    assert metric_value(text, "smoledge_requests_total", route="/v1/completions", status="429") >= 2


def _generated(url: str) -> float:
    return metric_value(scrape(url), "smoledge_generated_tokens_total")


def test_disconnect_cancels_a_stream(two_slots: str) -> None:
    wait_for(lambda: _busy(two_slots) == 0, "idle slots")
    before, cancelled = _generated(two_slots), metric_value(scrape(two_slots), "smoledge_generations_cancelled_total",
                                                            reason="disconnect")
    stream = _client(two_slots).completions.create(model=NAME, prompt=PROMPT, max_tokens=LONG, temperature=1.0,
                                                   seed=9, stream=True, extra_body={"grammar": ENDLESS})
    for _, _chunk in zip(range(3), stream):
        pass
    stream.close()  # the client goes away after 3 chunks
    wait_for(lambda: _busy(two_slots) == 0, "the slot to free up", timeout=5)
    text = scrape(two_slots)
    generated = metric_value(text, "smoledge_generated_tokens_total") - before
    # Stopped well before max_tokens: the slot did not keep generating for nobody.
    assert 3 <= generated < LONG, generated
    assert metric_value(text, "smoledge_generations_cancelled_total", reason="disconnect") == cancelled + 1


def test_disconnect_cancels_a_non_streamed_request(two_slots: str) -> None:
    wait_for(lambda: _busy(two_slots) == 0, "idle slots")
    before = _generated(two_slots)
    closed = metric_value(scrape(two_slots), "smoledge_requests_total", route="/v1/completions", status="499")
    with pytest.raises(httpx.ReadTimeout):  # httpx closes the connection when it gives up
        httpx.post(f"{two_slots}/v1/completions", timeout=0.4,
                   json={"prompt": PROMPT, "max_tokens": LONG, "temperature": 1.0, "seed": 11, "grammar": ENDLESS})
    wait_for(lambda: _busy(two_slots) == 0, "the slot to free up", timeout=5)
    text = scrape(two_slots)
    assert 0 < metric_value(text, "smoledge_generated_tokens_total") - before < LONG
    assert metric_value(text, "smoledge_requests_total", route="/v1/completions", status="499") == closed + 1


def test_request_timeout_stops_the_generation(slow_bundle: Path) -> None:
    proc, url = start_server(slow_bundle, None, "--request-timeout", "0.3")
    try:
        start = time.monotonic()
        r = httpx.post(f"{url}/v1/completions", timeout=60,
                       json={"prompt": PROMPT, "max_tokens": LONG, "temperature": 1.0, "seed": 3, "grammar": ENDLESS})
        elapsed = time.monotonic() - start
        assert r.status_code == 504, r.text
        message = r.json()["error"]["message"]
        assert "timeout of 0.3 s" in message and "--request-timeout" in message
        assert elapsed < 3.0, elapsed
        # Streamed: the status is already 200, so the error comes in-band and the openai client raises it.
        with pytest.raises(openai.APIError, match="timeout of 0.3 s"):
            for _ in _client(url).completions.create(model=NAME, prompt=PROMPT, max_tokens=LONG, temperature=1.0,
                                                     seed=4, stream=True, extra_body={"grammar": ENDLESS}):
                pass
        wait_for(lambda: _busy(url) == 0, "the slot to free up", timeout=5)
        text = scrape(url)
        assert metric_value(text, "smoledge_generations_cancelled_total", reason="timeout") == 2
        assert metric_value(text, "smoledge_generated_tokens_total") < 2 * LONG
    finally:
        stop_server(proc)


def test_sigterm_drains_the_request_in_flight(slow_bundle: Path) -> None:
    proc, url = start_server(slow_bundle)
    body = {"prompt": PROMPT, "max_tokens": 300, "temperature": 1.0, "seed": 6, "stream": True,
            "grammar": ENDLESS, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        first = next(lines)
        proc.send_signal(signal.SIGTERM)
        # The listening socket closes at once: new clients are refused while the stream goes on.
        wait_for(lambda: _refused(url), "the listening socket to close", timeout=5)
        rest = [line for line in lines if line]
    # uvicorn re-raises the SIGTERM it handled once it is done: the process ends "killed by SIGTERM" as a
    # service manager expects, after the drain.
    assert proc.wait(timeout=30) == -signal.SIGTERM, server_log(proc)
    events = [json.loads(line[6:]) for line in [first, *rest[:-1]]]
    assert rest[-1] == "data: [DONE]"
    assert events[-1]["usage"]["completion_tokens"] == 300  # it finished: drained, not cut
    log = server_log(proc)
    assert "Waiting for connections to close" in log and "Traceback" not in log, log


def test_shutdown_timeout_bounds_the_drain(slow_bundle: Path) -> None:
    proc, url = start_server(slow_bundle, None, "--shutdown-timeout", "0.5")
    body = {"prompt": PROMPT, "max_tokens": LONG, "temperature": 1.0, "seed": 2, "stream": True, "grammar": ENDLESS}
    rest: list[str] = []
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        next(lines)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            rest.extend(lines)
        except httpx.HTTPError:
            pass  # the connection was dropped mid-stream
        rc = proc.wait(timeout=30)
        took = time.monotonic() - start
    assert rc == -signal.SIGTERM, server_log(proc)
    # 0.5 s of grace, then the generation was cancelled: the stream never reached its end.
    assert "data: [DONE]" not in rest
    assert took < 5.0, took
    assert "timeout graceful shutdown exceeded" in server_log(proc)


def test_not_ready_is_503_with_retry_after(slow_bundle: Path) -> None:
    """While the model loads, generation routes answer 503 + Retry-After and /health stays 200. In process, with
    a backend factory that waits for a signal before making the (real) llama.cpp backends."""
    import uvicorn
    from test_serve_api import free_port

    from smoledge.serve.config import ServeConfig
    from smoledge.serve.server import create_app
    from smoledge.serve.state import llama_backends
    from smoledge.serve.targets import resolve

    gate = threading.Event()
    make = llama_backends(resolve(slow_bundle), n_ctx=512, threads=1)

    def factory(slots: int) -> list:
        assert gate.wait(30)
        return make(slots)

    app = create_app(ServeConfig(bundle=str(slow_bundle)), backend_factory=factory)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, "uvicorn to start")
        url = f"http://127.0.0.1:{server.config.port}"
        assert httpx.get(f"{url}/health").status_code == 200
        r = httpx.get(f"{url}/ready")
        assert r.status_code == 503 and r.json() == {"status": "loading"}
        r = httpx.post(f"{url}/v1/completions", json={"prompt": PROMPT, "max_tokens": 2})
        assert r.status_code == 503 and r.headers["Retry-After"] == "2"
        assert "still loading" in r.json()["error"]["message"]
        gate.set()
        wait_for(lambda: httpx.get(f"{url}/ready").status_code == 200, "the model to load")
        r = httpx.post(f"{url}/v1/completions", json={"prompt": PROMPT, "max_tokens": 2})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2
        assert metric_value(scrape(url), "smoledge_requests_rejected_total", reason="not_ready") == 1
    finally:
        gate.set()
        server.should_exit = True
        thread.join(timeout=30)
    assert not thread.is_alive()


def _refused(url: str) -> bool:
    """Whether new clients go unserved: refused, or (racing the listener's close) accepted by the kernel's
    backlog and then closed without an answer."""
    try:
        httpx.get(f"{url}/health", timeout=1)
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
        return True
    return False
