"""The server's guards, for real (`smoledge serve` in a subprocess on the tiny bundle): loopback bind by
default, API keys (constant-time compare), body-size limit, CORS only when configured, no pickle anywhere."""

from __future__ import annotations

import hmac
import json
import os
import re
import subprocess
from pathlib import Path

import httpx
import openai
import psutil
import pytest
from test_package_stage import NAME, make_bundle
from test_serve_api import PROMPT, REPO, start_server, stop_server

from smoledge.config import ConfigError
from smoledge.serve.config import ServeConfig
from smoledge.serve.security import APIKeyMiddleware, keys_from_env

FLAG_KEY = "flag-key-0123456789abcdef"
ENV_KEYS = ("env-key-aaaaaaaaaaaaaaaa", "env-key-bbbbbbbbbbbbbbbb")
ORIGIN = "http://localhost:3000"
LIMIT = 4096


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_model_dir: Path, tiny_gguf: Path) -> Path:
    return make_bundle(tmp_path_factory.mktemp("security"), tiny_model_dir, tiny_gguf)


@pytest.fixture(scope="module")
def guarded(bundle: Path):
    """Keys from the flag and from SMOLEDGE_API_KEYS, one CORS origin, a 4 KiB body limit."""
    env = {**os.environ, "SMOLEDGE_API_KEYS": ",".join(ENV_KEYS)}
    proc, url = start_server(bundle, env, "--api-key", FLAG_KEY, "--cors-origin", ORIGIN,
                             "--max-body-bytes", str(LIMIT))
    yield url
    log = stop_server(proc)
    assert "Traceback" not in log, log
    assert FLAG_KEY not in log and ENV_KEYS[0] not in log  # keys never reach the log


@pytest.fixture(scope="module")
def default_server(bundle: Path):
    proc, url = start_server(bundle)
    yield proc, url
    stop_server(proc)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_default_bind_is_loopback_only(default_server) -> None:
    proc, url = default_server
    listening = [c.laddr for c in psutil.Process(proc.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening and {a.ip for a in listening} == {"127.0.0.1"}, listening
    assert httpx.get(f"{url}/v1/models").status_code == 200  # no key configured: open


def test_no_cors_unless_configured(default_server) -> None:
    _, url = default_server
    r = httpx.get(f"{url}/v1/models", headers={"Origin": ORIGIN})
    assert r.status_code == 200 and not any(h.startswith("access-control-") for h in r.headers)
    pre = httpx.options(f"{url}/v1/completions", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 405 and not any(h.startswith("access-control-") for h in pre.headers)


def test_cors_allows_only_the_configured_origin(guarded: str) -> None:
    pre = httpx.options(f"{guarded}/v1/chat/completions", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert pre.status_code == 200  # a preflight carries no key: answered before the key check
    assert pre.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in pre.headers["access-control-allow-headers"].lower()
    r = httpx.get(f"{guarded}/v1/models", headers={"Origin": ORIGIN, **_auth(FLAG_KEY)})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
    other = "https://evil.example"
    r = httpx.get(f"{guarded}/v1/models", headers={"Origin": other, **_auth(FLAG_KEY)})
    assert "access-control-allow-origin" not in r.headers
    pre = httpx.options(f"{guarded}/v1/models", headers={"Origin": other, "Access-Control-Request-Method": "GET"})
    assert pre.status_code == 400 and "access-control-allow-origin" not in pre.headers


def test_probes_stay_open_without_a_key(guarded: str) -> None:
    assert httpx.get(f"{guarded}/health").json() == {"status": "ok"}
    assert httpx.get(f"{guarded}/ready").status_code == 200


@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/models"), ("GET", "/metrics"), ("POST", "/v1/completions"), ("POST", "/v1/chat/completions"),
    ("POST", "/tokenize"), ("POST", "/detokenize"), ("GET", "/openapi.json"), ("GET", "/docs"),
    ("GET", "/no/such/route"),
])
def test_everything_else_needs_a_key(guarded: str, method: str, path: str) -> None:
    for headers, needle in (({}, "missing API key"), (_auth("wrong-key"), "invalid API key"),
                            ({"Authorization": f"Basic {FLAG_KEY}"}, "invalid API key"),
                            (_auth(FLAG_KEY + "x"), "invalid API key"), (_auth(FLAG_KEY[:-1]), "invalid API key")):
        r = httpx.request(method, f"{guarded}{path}", headers=headers, json={"prompt": PROMPT})
        assert r.status_code == 401, (path, headers, r.text)
        assert r.headers["www-authenticate"].startswith('Bearer realm="smoledge"')
        assert needle in r.json()["error"]["message"]


def test_every_key_is_accepted(guarded: str) -> None:
    for key in (FLAG_KEY, *ENV_KEYS):
        assert httpx.get(f"{guarded}/v1/models", headers=_auth(key)).status_code == 200
        assert httpx.get(f"{guarded}/metrics", headers=_auth(key)).status_code == 200
    # The scheme is case-insensitive (RFC 7235).
    assert httpx.get(f"{guarded}/v1/models", headers={"Authorization": f"bearer {FLAG_KEY}"}).status_code == 200


def test_openai_client_with_and_without_the_key(guarded: str) -> None:
    bad = openai.OpenAI(base_url=f"{guarded}/v1", api_key="not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="invalid API key"):
        bad.completions.create(model=NAME, prompt=PROMPT, max_tokens=4)
    client = openai.OpenAI(base_url=f"{guarded}/v1", api_key=ENV_KEYS[1], max_retries=0, timeout=60)
    r = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=6,
                                       temperature=0.0)
    assert r.choices[0].message.content is not None and r.usage.completion_tokens > 0
    chunks = list(client.completions.create(model=NAME, prompt=PROMPT, max_tokens=6, temperature=0.0, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == \
        client.completions.create(model=NAME, prompt=PROMPT, max_tokens=6, temperature=0.0).choices[0].text


def test_curl_with_the_key(guarded: str) -> None:
    body = json.dumps({"prompt": PROMPT, "max_tokens": 5})
    base = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", f"{guarded}/v1/completions",
            "-H", "content-type: application/json", "-d", body]
    out = subprocess.run([*base, "-H", f"Authorization: Bearer {FLAG_KEY}"], capture_output=True, text=True,
                         timeout=60)
    text, code = out.stdout.rsplit("\n", 1)
    assert code == "200" and json.loads(text)["usage"]["completion_tokens"] > 0, out
    out = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert out.stdout.rsplit("\n", 1)[1] == "401", out


def test_key_check_compares_every_key_in_constant_time(monkeypatch) -> None:
    """hmac.compare_digest, on equal-length sha256 digests, against every key whichever matches."""
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    keys = ["k" * 40, "short-key-1234", "x" * 64]
    mw = APIKeyMiddleware(app=None, keys=keys)  # type: ignore[arg-type]
    for header, ok in ((b"Bearer " + keys[0].encode(), True), (b"Bearer " + keys[2].encode(), True),
                       (b"Bearer nope", False), (None, False), (b"Bearer " + b"k" * 39, False)):
        calls.clear()
        assert mw.authorized(header) is ok
        assert calls == [(32, 32)] * len(keys), calls  # no early exit, lengths never differ


def test_keys_from_env() -> None:
    assert keys_from_env({"SMOLEDGE_API_KEYS": " a1, b2\nc3 ,"}) == ["a1", "b2", "c3"]
    assert keys_from_env({}) == []


def test_body_over_the_limit_is_413(guarded: str) -> None:
    big = json.dumps({"prompt": "a" * (LIMIT + 100), "max_tokens": 1}).encode()
    r = httpx.post(f"{guarded}/v1/completions", content=big,
                   headers={"content-type": "application/json", **_auth(FLAG_KEY)})
    assert r.status_code == 413, r.text
    assert f"limit of {LIMIT} bytes" in r.json()["error"]["message"]

    def chunked():  # no Content-Length: counted as it arrives
        for i in range(0, len(big), 1000):
            yield big[i:i + 1000]

    r = httpx.post(f"{guarded}/v1/completions", content=chunked(),
                   headers={"content-type": "application/json", **_auth(FLAG_KEY)})
    assert r.status_code == 413 and "--max-body-bytes" in r.json()["error"]["message"], r.text
    # Just under the limit is served.
    ok = json.dumps({"prompt": "a " * 100, "max_tokens": 1}).encode()
    assert httpx.post(f"{guarded}/v1/completions", content=ok,
                      headers={"content-type": "application/json", **_auth(FLAG_KEY)}).status_code == 200


def test_default_body_limit(default_server) -> None:
    _, url = default_server
    big = b'{"prompt": "' + b"a" * (3 * 1024 * 1024) + b'"}'
    r = httpx.post(f"{url}/v1/completions", content=big, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 413 and "limit of 2097152 bytes" in r.json()["error"]["message"]


@pytest.mark.parametrize("kwargs, needle", [
    ({"api_keys": ["has space"]}, "--api-key"),
    ({"api_keys": [""]}, "--api-key"),
    ({"cors_origins": ["localhost:3000"]}, "--cors-origin"),
    ({"cors_origins": ["https://app.example.com/path"]}, "--cors-origin"),
    ({"slots": 0}, "--slots"),
    ({"queue": -1}, "--queue"),
    ({"request_timeout": 0}, "--request-timeout"),
    ({"max_body_bytes": 10}, "--max-body-bytes"),
])
def test_bad_serve_settings_are_refused(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        ServeConfig(bundle="b", **kwargs)


# Ways to run code out of data: unpickling and its relatives.
_PICKLE = re.compile(r"^\s*(import|from)\s+(pickle|cPickle|_pickle|dill|joblib|shelve|marshal|cloudpickle)\b|"
                     r"\bpickle\.loads?\(|allow_pickle\s*=\s*True|weights_only\s*=\s*False", re.M)


def test_no_pickle_anywhere() -> None:
    sources = [p for d in ("smoledge", "benchmarks") for p in (REPO / d).rglob("*.py")]
    assert len(sources) > 20
    offenders = [f"{p.relative_to(REPO)}: {m.group(0).strip()}" for p in sources
                 for m in _PICKLE.finditer(p.read_text(encoding="utf-8"))]
    assert not offenders, offenders
    # Every torch.load states weights_only=True, every np.load allow_pickle=False.
    for p in sources:
        text = p.read_text(encoding="utf-8")
        for call in re.finditer(r"\b(torch\.load|np\.load|numpy\.load)\(", text):
            args = _call_args(text, call.end())
            wanted = "weights_only=True" if call.group(1) == "torch.load" else "allow_pickle=False"
            assert wanted in args, f"{p.relative_to(REPO)}: {call.group(1)}({args})"


def _call_args(text: str, start: int) -> str:
    """The text between a call's "(" (just before `start`) and its matching ")"."""
    depth = 1
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    return text[start:]
