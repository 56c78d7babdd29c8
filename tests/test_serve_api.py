"""The OpenAI-compatible server, started for real (`smoledge serve` in a subprocess) on a tiny bundle,
called with curl, httpx and the official openai client: completions, chat, streaming, errors, /metrics,
/tokenize + /detokenize, JSON-schema and grammar constrained output, context-window checks."""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import jsonschema
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
    """`smoledge serve` in a subprocess; returns once GET /ready is 200.

    The log goes to a file (`server_log(proc)`), not a pipe: a pipe nobody reads fills up
    with access-log lines and blocks the server."""
    port = free_port()
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "smoledge.cli", "serve", str(bundle), "--port", str(port), "--threads", "1", *args],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
    )
    proc.log = log  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server_log(proc)}")
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"server not ready after 60 s:\n{server_log(proc)}")


def server_log(proc: subprocess.Popen) -> str:
    log = proc.log  # type: ignore[attr-defined]
    log.flush()
    log.seek(0)
    return log.read()


def stop_server(proc: subprocess.Popen) -> str:
    """SIGTERM (a graceful shutdown), SIGKILL after 20 s; returns the server's log."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return server_log(proc)


# One sample line of the Prometheus text format: name{label="value",...} value
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Parse (and check) the Prometheus text exposition format: every sample's family has a TYPE line
    before it, histograms have cumulative buckets ending at +Inf == _count."""
    types: dict[str, str] = {}
    samples = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram"), line
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        name, labels, value = m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, f"{name} has no # TYPE line before it"
        samples.append((name, labels, value))
    for name, kind in types.items():
        if kind != "histogram":
            continue
        series: dict[tuple, list[tuple[float, float]]] = {}
        for n, labels, v in samples:
            if n == f"{name}_bucket":
                key = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
                series.setdefault(key, []).append((float(labels["le"]), v))
        for key, buckets in series.items():
            bounds = [b for b, _ in buckets]
            counts = [c for _, c in buckets]
            assert bounds == sorted(bounds) and bounds[-1] == math.inf, (name, key)
            assert counts == sorted(counts), f"{name}{key}: buckets are not cumulative"
            count = [v for n, labels, v in samples if n == f"{name}_count"
                     and tuple(sorted(labels.items())) == key]
            assert count == [counts[-1]], (name, key)
    return samples


def scrape(url: str, headers: dict[str, str] | None = None) -> str:
    r = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    return r.text


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels` (0 if none)."""
    return sum(v for n, ls, v in parse_metrics(text) if n == name and labels.items() <= ls.items())


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


def test_context_overflow_says_the_numbers(server: str) -> None:
    """Text, token-id and chat prompts: the 400 names the prompt length, max_tokens and the window."""
    ids = httpx.post(f"{server}/tokenize", json={"content": PROMPT, "add_special": True}).json()["tokens"]
    n = len(ids)
    r = httpx.post(f"{server}/v1/completions", json={"prompt": PROMPT, "max_tokens": 600})
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith(f"the prompt is {n} tokens and max_tokens is 600: together they "
                                                   "exceed the context window of 512 tokens")
    r = httpx.post(f"{server}/v1/completions", json={"prompt": list(range(3, 503)), "max_tokens": 20})
    assert r.status_code == 400
    assert "the prompt is 500 tokens and max_tokens is 20" in r.json()["error"]["message"]
    # A batch names the prompt at fault.
    r = httpx.post(f"{server}/v1/completions", json={"prompt": [[5, 6], list(range(3, 600))], "max_tokens": 1})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("prompt 1: the prompt is 597 tokens")
    messages = [{"role": "user", "content": "Bonjour"}]
    r = httpx.post(f"{server}/v1/chat/completions", json={"messages": messages, "max_tokens": 509})
    assert r.status_code == 400
    assert re.search(r"the prompt is \d+ tokens and max_tokens is 509: together they exceed the context window "
                     r"of 512 tokens", r.json()["error"]["message"])
    # Chat without max_tokens generates to the end of the window: only a prompt that fills it is refused.
    r = httpx.post(f"{server}/v1/chat/completions",
                   json={"messages": [{"role": "user", "content": " ".join(["renard"] * 600)}]})
    assert r.status_code == 400
    assert re.search(r"the prompt is \d+ tokens: it leaves no room to generate in the context window of 512 tokens",
                     r.json()["error"]["message"])


def test_tokenize_detokenize_round_trip(server: str) -> None:
    text = "Le renard brun saute par-dessus le chien paresseux. Ünïcödé ✓"
    r = httpx.post(f"{server}/tokenize", json={"content": text})
    assert r.status_code == 200
    tokens = r.json()["tokens"]
    assert tokens and all(isinstance(t, int) for t in tokens)
    assert httpx.post(f"{server}/detokenize", json={"tokens": tokens}).json() == {"content": text}
    # Special tokens are parsed in, spelled out again.
    chat = "<|im_start|>user\nHi<|im_end|>"
    special = httpx.post(f"{server}/tokenize", json={"content": chat}).json()["tokens"]
    assert special[0] == 1 and 2 in special  # <|im_start|> = 1, <|im_end|> = 2 (smoledge's BPE)
    assert httpx.post(f"{server}/detokenize", json={"tokens": special}).json()["content"] == chat
    pieces = httpx.post(f"{server}/tokenize", json={"content": "brown fox", "with_pieces": True}).json()["tokens"]
    assert "".join(p["piece"] for p in pieces) == "brown fox" and all(isinstance(p["id"], int) for p in pieces)
    # The token count a completion reports is what /tokenize (with the BOS the prompt gets) says.
    prompt_ids = httpx.post(f"{server}/tokenize", json={"content": PROMPT, "add_special": True}).json()["tokens"]
    usage = httpx.post(f"{server}/v1/completions", json={"prompt": PROMPT, "max_tokens": 1}).json()["usage"]
    assert usage["prompt_tokens"] == len(prompt_ids)
    r = httpx.post(f"{server}/detokenize", json={"tokens": [5, 10**6]})
    assert r.status_code == 400 and "outside this model's vocabulary (0..1023)" in r.json()["error"]["message"]
    assert httpx.post(f"{server}/tokenize", json={"text": "x"}).status_code == 400


SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}, "ok": {"type": "boolean"}, "lang": {"enum": ["en", "fr", "de"]}},
    "required": ["answer", "ok", "lang"],
    "additionalProperties": False,
}


def test_json_schema_output_parses_and_validates(client: openai.OpenAI) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "reply", "schema": SCHEMA, "strict": True}}
    for seed in (1, 2, 3):
        r = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Answer in JSON"}],
                                           max_tokens=120, temperature=1.0, seed=seed, response_format=fmt)
        assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
        jsonschema.validate(json.loads(r.choices[0].message.content), SCHEMA)
    # Streamed, and the json_object type: any JSON object.
    chunks = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=200, temperature=1.0, seed=4,
                                       stream=True, extra_body={"response_format": {"type": "json_object"}})
    chunks = list(chunks)
    text = "".join(c.choices[0].text for c in chunks)
    if chunks[-1].choices[0].finish_reason == "stop":  # a random model may write a long object
        assert isinstance(json.loads(text), dict)
    else:
        assert text.lstrip().startswith("{")


def test_gbnf_grammar_constrains_the_output(client: openai.OpenAI) -> None:
    grammar = 'root ::= ("yes" | "no") " " [0-9] [0-9]?'
    seen = set()
    for seed in range(6):
        r = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=10, temperature=1.0, seed=seed,
                                      extra_body={"grammar": grammar})
        assert re.fullmatch(r"(yes|no) [0-9][0-9]?", r.choices[0].text), r.choices[0].text
        seen.add(r.choices[0].text.split()[0])
    # Free text for comparison: the unconstrained model writes neither word.
    free = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=10, temperature=1.0, seed=0)
    assert not re.fullmatch(r"(yes|no) [0-9][0-9]?", free.choices[0].text)


@pytest.mark.parametrize(
    "body, needle",
    [
        ({"grammar": "root ::= undefined_rule"}, "grammar: llama.cpp cannot use this GBNF grammar"),
        ({"grammar": 'root ::= "unterminated'}, "grammar: llama.cpp cannot use this GBNF grammar"),
        ({"grammar": ""}, "grammar: String should have at least 1 character"),
        ({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "bogus"}}}},
         "response_format: this JSON schema cannot be turned into a grammar"),
        ({"response_format": {"type": "json_schema", "json_schema": {"schema": {"$ref": "https://x.example/s"}}}},
         "response_format: this JSON schema cannot be turned into a grammar"),
        ({"response_format": {"type": "json_schema"}}, "needs json_schema.schema"),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"response_format": {"type": "json_object"}, "grammar": 'root ::= "a"'}, "send one of them"),
        # Grammars that would overflow llama.cpp's recursive parser (and kill the server) are refused first.
        ({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "string",
                                                                                "maxLength": 1000000}}}},
         "schema.maxLength is 1000000; this server turns counts up to 512"),
        ({"response_format": {"type": "json_object", "schema": {"type": "string", "pattern": "^(ab){2,99999}$"}}},
         "schema.pattern repeats {2,99999}"),
        ({"grammar": "root ::= " + '("a" ' * 2000 + ")?" * 2000}, "nests parentheses 2000 deep"),
        ({"grammar": "root ::= r0\n" + "".join(f"r{i} ::= r{i + 1}\n" for i in range(8000)) + 'r8000 ::= "a"'},
         "over this server's limit of 65536"),
    ],
)
def test_bad_schema_or_grammar_is_400(server: str, body: dict, needle: str) -> None:
    for path, base in (("/v1/completions", {"prompt": PROMPT}),
                       ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]})):
        r = httpx.post(f"{server}{path}", json={**base, "max_tokens": 8, **body}, timeout=30)
        assert r.status_code == 400, r.text
        assert needle in r.json()["error"]["message"], r.text


def test_metrics_count_requests_tokens_and_latency(server: str, client: openai.OpenAI) -> None:
    before = scrape(server)
    client.completions.create(model=NAME, prompt=PROMPT, max_tokens=7, temperature=0.0)
    list(client.completions.create(model=NAME, prompt=PROMPT, max_tokens=5, temperature=0.0, stream=True))
    httpx.post(f"{server}/v1/completions", json={"prompt": PROMPT, "temperature": 9})  # a 400
    httpx.get(f"{server}/no/such/route")
    after = scrape(server)

    def delta(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert delta("smoledge_requests_total", route="/v1/completions", status="200") == 2
    assert delta("smoledge_requests_total", route="/v1/completions", status="400") == 1
    assert delta("smoledge_requests_total", route="other", status="404") == 1
    assert delta("smoledge_generated_tokens_total") == 12
    assert delta("smoledge_prompt_tokens_total") > 0
    assert delta("smoledge_request_duration_seconds_count", route="/v1/completions") == 3
    assert delta("smoledge_time_to_first_token_seconds_count") == 2
    assert delta("smoledge_generation_tokens_per_second_count") == 2
    assert metric_value(after, "smoledge_slots") == 1
    assert metric_value(after, "smoledge_slots_busy") == 0 and metric_value(after, "smoledge_queue_depth") == 0
    assert "# TYPE smoledge_request_duration_seconds histogram" in after


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
        ("/v1/completions", {"prompt": "ab\ud800"}, 400, "lone UTF-16 surrogate"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "\udc00"}]}, 400, "lone UTF-16 surrogate"),
        ("/tokenize", {"content": "\ud800"}, 400, "lone UTF-16 surrogate"),
        ("/detokenize", {"tokens": ["a"]}, 400, "tokens.0"),
        ("/v1/nope", {}, 404, "Not Found"),
    ],
)
def test_bad_requests_are_4xx_with_a_message(server: str, path: str, body: dict, status: int, needle: str) -> None:
    # json.dumps escapes to ASCII, so a lone surrogate travels as "\\ud800", as a JSON client may send it.
    r = httpx.post(f"{server}{path}", content=json.dumps(body), headers={"content-type": "application/json"},
                   timeout=30)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]


@pytest.mark.parametrize("path, body, param", [
    ("/v1/completions", {"prompt": PROMPT, "bogus_field": 3}, "bogus_field"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "bogus_field": 3}, "bogus_field"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi", "nmae": "x"}]}, "messages.0.nmae"),
    ("/v1/completions", {"prompt": PROMPT, "response_format": {"type": "json_object", "shema": {}}},
     "response_format.shema"),
    ("/tokenize", {"content": "x", "add_bos": True}, "add_bos"),
])
def test_unknown_fields_are_400_naming_them(server: str, path: str, body: dict, param: str) -> None:
    """As OpenAI answers an argument it does not know: a 400 naming it, never a silent 200."""
    r = httpx.post(f"{server}{path}", json={**body, "max_tokens": 4} if path.startswith("/v1") else body, timeout=30)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["message"].startswith(f"Unrecognized request argument supplied: {param};"), error
    assert (error["param"], error["type"]) == (param, "invalid_request_error")


@pytest.mark.parametrize("body, param, needle", [
    ({"logit_bias": {"5": -100}}, "logit_bias", "logit_bias is not applied by this server"),
    ({"logprobs": True}, "logprobs", "chat completions come without log-probabilities here"),
    ({"repeat_penalty": 0}, "repeat_penalty", "greater than 0"),
    ({"presence_penalty": 3}, "presence_penalty", "less than or equal to 2"),
])
def test_known_fields_this_backend_does_not_apply_are_400(server: str, body: dict, param: str, needle: str) -> None:
    r = httpx.post(f"{server}/v1/chat/completions", timeout=30,
                   json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and needle in r.json()["error"]["message"]


def test_what_the_openai_client_sends_is_taken(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi", "name": "ana"}],
                                       max_tokens=4, temperature=0.0, seed=1, n=1, stop=["\n\n"], user="u-1",
                                       logit_bias={}, top_p=1.0, presence_penalty=0.0, frequency_penalty=0.0)
    assert r.choices[0].message.content is not None
    chunks = list(client.completions.create(model=NAME, prompt=PROMPT, max_tokens=4, temperature=0.0, user="u-1",
                                            stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and 1 <= chunks[-1].usage.completion_tokens <= 4


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


def test_device_picks_the_target(bundle: Path) -> None:
    """--device serves what server.json gives that device; an unknown name is refused before anything loads."""
    from smoledge.serve.server import create_app

    settings = json.loads((bundle / "server.json").read_text())
    (device, entry), = settings["devices"].items()
    state = create_app(ServeConfig(bundle=str(bundle), device=device)).state.smoledge
    assert (state.target.device, state.target.backend, state.target.model_path.name) == \
        (device, entry["backend"], entry["model_file"])
    assert create_app(ServeConfig(bundle=str(bundle))).state.smoledge.target.device is None
    with pytest.raises(SmoledgeError, match=f"device 'nope' is not a target of this bundle.*{device}"):
        create_app(ServeConfig(bundle=str(bundle), device="nope"))


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
