"""Schemathesis fuzzes every operation of the server's own OpenAPI schema (/openapi.json) against a real
`smoledge serve` on a tiny bundle, with an API key: whatever it sends, the answer is never a 5xx, its
status code, content type, headers and body are the ones the schema documents, and a request that
breaks the schema is refused.

The CLI equivalent (any bundle):
    smoledge serve BUNDLE --port 8000 --slots 2 --api-key KEY &
    schemathesis run http://127.0.0.1:8000/openapi.json -H "Authorization: Bearer KEY" \
        --checks all --exclude-checks positive_data_acceptance --max-examples 100 --seed 1
positive_data_acceptance is left out: a request can fit the schema and still be one the model cannot
serve (a prompt plus max_tokens past the context window, a token id past the vocabulary, a grammar
llama.cpp rejects), and those get a documented 400.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")  # the dev extra; pyproject.toml pins it

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402  (schemathesis brings hypothesis)
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from test_package_stage import make_bundle  # noqa: E402
from test_serve_api import start_server, stop_server  # noqa: E402

KEY = "fuzz-test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_EXAMPLES = 25  # per operation: ~9 operations, under a minute on 2 busy cores
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory, tiny_model_dir: Path, tiny_gguf: Path):
    bundle = make_bundle(tmp_path_factory.mktemp("fuzz"), tiny_model_dir, tiny_gguf)
    # Two slots and a short queue: fuzzed requests also run through the slot pool as real traffic does.
    proc, url = start_server(bundle, None, "--slots", "2", "--queue", "4", "--api-key", KEY)
    yield url
    log = stop_server(proc)
    # A handler that crashed but was turned into a 4xx would still leave its traceback here.
    assert "Traceback" not in log, log


@pytest.mark.slow
def test_no_input_makes_a_server_error(fuzz_server: str) -> None:
    # Schemathesis's pytest plugin (from_fixture) fails to collect under pytest 9, so each operation's
    # case strategy (valid and schema-violating inputs both) runs under hypothesis's @given here.
    api = schemathesis.openapi.from_url(f"{fuzz_server}/openapi.json", headers=AUTH)
    failures: dict[str, str] = {}
    seen: Counter[tuple[str, int]] = Counter()  # (operation, status): proof the fuzz reached both paths
    operations = [result.ok() for result in api.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /v1/completions", "POST /v1/chat/completions"}
    for op in operations:
        cases = st.one_of(op.as_strategy(GenerationMode.POSITIVE), op.as_strategy(GenerationMode.NEGATIVE))

        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=cases)
        def fuzz(case) -> None:
            response = case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=60)
            seen[op.label, response.status_code] += 1

        try:
            fuzz()
        except Exception as exc:  # one operation's failure must not hide the others'
            failures[op.label] = f"{type(exc).__name__}: {exc}"
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
    for label in ("POST /v1/completions", "POST /v1/chat/completions"):
        statuses = {status for (op, status) in seen if op == label}
        assert 200 in statuses and statuses & {400, 422}, (label, sorted(seen.items()))
