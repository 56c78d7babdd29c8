"""lm-evaluation-harness against the served endpoint: /v1/completions echo + logprobs, token-id and batched
prompts, checked against llama-cpp-python run directly on the bundle's GGUF, then the real `lm_eval run
--model local-completions` on a local multiple-choice task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
# The served tiny bundle, shared with the API tests (module-scoped: one server per test module).
from test_serve_api import REPO, bundle, server  # noqa: F401

from smoledge.errors import SmoledgeError
from smoledge.evaluate.harness import check_items, lm_eval_command, main, write_task
from smoledge.serve.bundle import load_bundle

PROMPT = "The quick brown fox"
N_CTX = 512

# A local multiple-choice task (smoledge.evaluate.tasks' "generic" rows), several languages.
ITEMS = [
    {"context": "The capital of France is", "choices": ["Paris", "Berlin", "Madrid"], "gold": 0},
    {"context": "Water freezes at zero degrees", "choices": ["Celsius", "Kelvin"], "gold": 0},
    {"context": "La capitale de l'Italie est", "choices": ["Rome", "Lisbonne", "Vienne", "Oslo"], "gold": 0},
    {"context": "Der Hund bellt, die Katze", "choices": ["miaut", "bellt", "singt"], "gold": 0},
    {"context": "Un, dos, tres,", "choices": ["cuatro", "diez"], "gold": 0},
    {"context": "Monday, Tuesday,", "choices": ["Wednesday", "Friday", "Sunday"], "gold": 0},
]


@pytest.fixture(scope="module")
def reference(bundle: Path):
    """llama-cpp-python's own logits_all path on the same GGUF, settings as the server's (F16 KV cache):
    log p(ids[i] | ids[:i]) for i >= 1."""
    from llama_cpp import Llama

    from smoledge.serve.generation import log_softmax

    llm = Llama(model_path=str(load_bundle(bundle).model_path), n_ctx=N_CTX, n_threads=1, logits_all=True,
                verbose=False)

    def logprobs(ids: list[int]) -> np.ndarray:
        llm.reset()
        llm.eval(ids)
        logp = log_softmax(np.asarray(llm.scores[: len(ids)]))  # (T, V)
        return logp[np.arange(len(ids) - 1), ids[1:]]  # (T-1,)

    yield logprobs
    llm.close()


@pytest.fixture(scope="module")
def hf_tokenizer(bundle: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(bundle / "tokenizer")


def post(server: str, **body) -> dict:
    r = httpx.post(f"{server}/v1/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_echo_logprobs_shape(server: str) -> None:
    r = post(server, prompt=PROMPT, echo=True, logprobs=3, max_tokens=4, temperature=0.0)
    (choice,) = r["choices"]
    lp = choice["logprobs"]
    n = r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"]
    assert set(lp) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"}
    assert all(len(v) == n for v in lp.values()) and r["usage"]["completion_tokens"] == 4
    assert choice["text"].startswith(PROMPT) and choice["finish_reason"] == "length"
    # Nothing precedes the first prompt token: null, as OpenAI returns it.
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    for tok, val, top in zip(lp["tokens"][1:], lp["token_logprobs"][1:], lp["top_logprobs"][1:]):
        assert val < 0 and top[tok] == val
        # The 3 most likely tokens plus the token itself, best first.
        assert 3 <= len(top) <= 4 and max(top.values()) >= val
    assert lp["text_offset"] == sorted(lp["text_offset"]) and lp["text_offset"][0] == 0
    # Greedy decoding: each generated token is the most likely one.
    for val, top in zip(lp["token_logprobs"][-4:], lp["top_logprobs"][-4:]):
        assert val == max(top.values())
    # The generated text starts where the prompt ends.
    assert lp["text_offset"][r["usage"]["prompt_tokens"]] == len(PROMPT)
    # Without echo: the generated tokens only, offsets still counted after the prompt (as OpenAI does);
    # the same greedy tokens and values as above.
    gen = post(server, prompt=PROMPT, logprobs=3, max_tokens=4, temperature=0.0)["choices"][0]
    assert gen["text"] == choice["text"][len(PROMPT):]
    assert gen["logprobs"]["token_logprobs"] == pytest.approx(lp["token_logprobs"][-4:], abs=1e-4)
    assert gen["logprobs"]["text_offset"] == lp["text_offset"][-4:]
    # Echo alone: the prompt comes back, nothing generated with max_tokens 0, no logprobs object.
    only = post(server, prompt=PROMPT, echo=True, max_tokens=0)
    assert only["choices"][0]["text"] == PROMPT and only["choices"][0]["logprobs"] is None
    assert only["usage"]["completion_tokens"] == 0


def test_echo_logprobs_match_llama_cpp(server: str, reference, hf_tokenizer) -> None:
    ids = hf_tokenizer(PROMPT + " jumps over the lazy dog", add_special_tokens=False).input_ids
    r = post(server, prompt=[ids], echo=True, logprobs=1, max_tokens=0)
    (choice,) = r["choices"]
    # Token ids are scored as sent (no BOS added); max_tokens 0 scores without generating.
    assert r["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 0, "total_tokens": len(ids)}
    assert choice["text"] == hf_tokenizer.decode(ids)
    got = np.array(choice["logprobs"]["token_logprobs"][1:], dtype=np.float64)
    np.testing.assert_allclose(got, reference(ids), atol=1e-3)
    # More than ECHO_CHUNK (64) positions: the prompt is scored across several decodes.
    long_ids = (ids * 20)[:300]
    long = post(server, prompt=long_ids, echo=True, logprobs=0, max_tokens=0)["choices"][0]["logprobs"]
    np.testing.assert_allclose(np.array(long["token_logprobs"][1:]), reference(long_ids), atol=1e-3)
    assert all(len(top) == 1 for top in long["top_logprobs"][1:])  # logprobs 0: the token alone


def test_generated_logprob_equals_scored_logprob(server: str) -> None:
    """What lm-eval sends (echo, logprobs 1, max_tokens 1): the generated token's log-probability,
    read from the sampler's logits, equals the prompt-scoring path's for the same token."""
    gen = post(server, prompt=PROMPT, echo=True, logprobs=1, max_tokens=1, temperature=0, seed=1234)
    lp = gen["choices"][0]["logprobs"]
    scored = post(server, prompt=gen["choices"][0]["text"], echo=True, logprobs=1, max_tokens=0)
    slp = scored["choices"][0]["logprobs"]
    assert slp["tokens"] == lp["tokens"]
    assert slp["token_logprobs"][-1] == pytest.approx(lp["token_logprobs"][-1], abs=1e-4)


def test_echo_leaves_generation_unchanged(server: str, hf_tokenizer) -> None:
    """Echo scoring hands its KV cache to the generation: greedy text is the same with and without it."""
    plain = post(server, prompt=PROMPT, max_tokens=12, temperature=0)["choices"][0]["text"]
    echoed = post(server, prompt=PROMPT, max_tokens=12, temperature=0, echo=True, logprobs=2)["choices"][0]
    assert echoed["text"] == PROMPT + plain
    post(server, prompt="Un tout autre début", echo=True, logprobs=1, max_tokens=0)
    assert post(server, prompt=PROMPT, max_tokens=12, temperature=0)["choices"][0]["text"] == plain
    # Token ids generate too (lm-eval's generate_until sends them), and a batch answers in order.
    ids = hf_tokenizer(PROMPT, add_special_tokens=False).input_ids
    other = hf_tokenizer("Bonjour", add_special_tokens=False).input_ids
    batch = post(server, prompt=[ids, other, ids], max_tokens=12, temperature=0, stop=["zzz"])
    assert [c["index"] for c in batch["choices"]] == [0, 1, 2]
    assert batch["choices"][0]["text"] == batch["choices"][2]["text"]
    single = post(server, prompt=other, max_tokens=12, temperature=0)
    assert batch["choices"][1]["text"] == single["choices"][0]["text"]
    assert batch["usage"]["prompt_tokens"] == 2 * len(ids) + len(other)
    texts = post(server, prompt=[PROMPT, "Bonjour"], max_tokens=3, echo=True)["choices"]
    assert texts[0]["text"].startswith(PROMPT) and texts[1]["text"].startswith("Bonjour")
    assert texts[0]["logprobs"] is None


@pytest.mark.parametrize(
    "body, field, needle",
    [
        ({"prompt": PROMPT, "logprobs": 1, "stream": True}, "logprobs", "non-streamed responses only"),
        ({"prompt": PROMPT, "echo": True, "stream": True}, "echo", "non-streamed responses only"),
        ({"prompt": ["a", "b"], "stream": True}, "prompt", "streamed request takes one prompt"),
        ({"prompt": PROMPT, "suffix": "x"}, "suffix", "suffix is not supported"),
        ({"prompt": PROMPT, "logprobs": 21}, "logprobs", "less than or equal to 20"),
        ({"prompt": PROMPT, "max_tokens": 0}, "max_tokens", "max_tokens is 0"),
        ({"prompt": [5, 10**6]}, "prompt", "token id 1000000 is outside"),
        ({"prompt": [[1, 2], []]}, "prompt", "prompt 1: the prompt is an empty list"),
        ({"prompt": []}, "prompt", "list of prompts is empty"),
        ({"prompt": ["a"] * 65}, "prompt", "at most 64 prompts"),
        ({"prompt": [1] * 600, "echo": True, "max_tokens": 0}, None, "context window of 512"),
    ],
)
def test_unsupported_is_400_naming_the_field(server: str, body: dict, field: str | None, needle: str) -> None:
    r = httpx.post(f"{server}/v1/completions", json=body, timeout=30)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert needle in err["message"] and err["param"] == field


def test_task_files(tmp_path: Path, bundle: Path, capsys) -> None:
    data = tmp_path / "items.jsonl"
    data.write_text("\n".join(json.dumps(x) for x in ITEMS) + "\n")
    assert check_items(data) == len(ITEMS)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"context": "x", "choices": ["a", "b"], "gold": 2}) + "\n")
    with pytest.raises(SmoledgeError, match=r"bad.jsonl:1: gold answer 2 is out of range"):
        write_task(tmp_path / "tasks", "t", bad)
    with pytest.raises(SmoledgeError, match="task name"):
        write_task(tmp_path / "tasks", "a b", data)
    cmd = lm_eval_command("http://h:1/", bundle / "tokenizer", ["t"], 256, include_path=tmp_path, limit=3)
    assert cmd[:4] == ["lm_eval", "run", "--model", "local-completions"]
    assert "base_url=http://h:1/v1/completions" in cmd[5] and "max_length=256" in cmd[5]
    assert main(["--bundle", str(bundle), "--data", str(data), "--task-dir", str(tmp_path / "t"),
                 "--name", "mc"]) == 0
    printed = capsys.readouterr().out
    assert "--tasks mc" in printed and f"max_length={N_CTX}" in printed and (tmp_path / "t" / "mc.yaml").is_file()


@pytest.mark.slow
def test_lm_eval_local_completions(server: str, bundle: Path, tmp_path: Path, reference, hf_tokenizer) -> None:
    """The real harness, its CLI in a subprocess, on local tasks (multiple choice and generation): every doc
    run, numbers out, one choice's log-likelihood equal to llama-cpp-python's on the same GGUF, and the
    generations equal to the server's greedy text."""
    data = tmp_path / "items.jsonl"
    data.write_text("\n".join(json.dumps(x) for x in ITEMS) + "\n")
    write_task(tmp_path / "tasks", "smoledge_local_mc", data)
    write_task(tmp_path / "tasks", "smoledge_local_gen", data, generate=True, max_gen_toks=8)
    out_dir = tmp_path / "out"
    cmd = lm_eval_command(server, bundle / "tokenizer", ["smoledge_local_mc", "smoledge_local_gen"], N_CTX,
                          include_path=tmp_path / "tasks", output=out_dir, log_samples=True, batch_size=2,
                          lm_eval=str(Path(sys.executable).with_name("lm_eval")))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_DATASETS_CACHE": str(tmp_path / "hf_datasets")}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    (results_file,) = out_dir.rglob("results_*.json")
    results = json.loads(results_file.read_text())
    metrics = results["results"]["smoledge_local_mc"]
    assert results["n-samples"]["smoledge_local_mc"] == {"original": len(ITEMS), "effective": len(ITEMS)}
    for m in ("acc,none", "acc_norm,none"):
        assert 0.0 <= metrics[m] <= 1.0 and np.isfinite(metrics[m.replace(",", "_stderr,")])
    (samples_file,) = out_dir.rglob("samples_smoledge_local_mc_*.jsonl")
    samples = sorted((json.loads(line) for line in samples_file.read_text().splitlines()), key=lambda s: s["doc_id"])
    assert [s["doc_id"] for s in samples] == list(range(len(ITEMS)))
    assert all(len(s["resps"]) == len(ITEMS[s["doc_id"]]["choices"]) for s in samples)

    # Cross-check one choice: lm-eval's log-likelihood (via the server) against llama.cpp directly.
    doc, choice = 2, 1
    ctx, cont = ITEMS[doc]["context"], " " + ITEMS[doc]["choices"][choice]
    whole = hf_tokenizer(ctx + cont, add_special_tokens=False).input_ids
    n_ctx_tokens = len(hf_tokenizer(ctx, add_special_tokens=False).input_ids)
    expected = float(reference(whole)[n_ctx_tokens - 1:].sum())
    (ll, _greedy), = samples[doc]["resps"][choice]
    assert float(ll) == pytest.approx(expected, abs=1e-3)

    # Generation: token-id prompts, stop ["\\n", EOS], greedy; the same request made directly agrees.
    assert results["n-samples"]["smoledge_local_gen"]["effective"] == len(ITEMS)
    assert 0.0 <= results["results"]["smoledge_local_gen"]["exact_match,none"] <= 1.0
    (gen_file,) = out_dir.rglob("samples_smoledge_local_gen_*.jsonl")
    gens = {s["doc_id"]: s["resps"][0][0] for s in map(json.loads, gen_file.read_text().splitlines())}
    assert sorted(gens) == list(range(len(ITEMS)))
    ids = hf_tokenizer(ITEMS[0]["context"], add_special_tokens=False).input_ids
    direct = post(server, prompt=[ids], max_tokens=8, temperature=0, stop=["\n", hf_tokenizer.eos_token])
    assert gens[0] == direct["choices"][0]["text"]
    print(f"lm-eval acc={metrics['acc,none']:.3f} acc_norm={metrics['acc_norm,none']:.3f}; "
          f"doc {doc} choice {choice}: server {float(ll):.5f} vs llama.cpp {expected:.5f}; "
          f"generation 0: {gens[0]!r}")
