"""The batched llama.cpp engine: requests decoded together give what each gives alone, sequences stay
isolated, a cached prefix is reused, and cancelling one request leaves the others running."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_cpp")

from smoledge.serve.generation import Sampling  # noqa: E402
from smoledge.serve.llama_backend import LlamaBackend  # noqa: E402
from smoledge.serve.generation import Token  # noqa: E402
from smoledge.serve.llama_engine import FLASH_ATTN_ENV, N_BATCH, Done, EngineJob, LlamaEngine  # noqa: E402

PROMPTS = ["The quick brown fox", "Le renard brun saute", "Der schnelle braune Fuchs springt über", "Once"]


@pytest.fixture(scope="module")
def backend(tiny_gguf: Path):
    b = LlamaBackend(tiny_gguf, n_ctx=1024, threads=1, slots=4)  # 1: a busy CI box stalls 2
    yield b
    b.close()


def run_together(backend: LlamaBackend, jobs: list) -> list:
    """Complete every job at once from its own thread (as the server's slots do)."""
    out: list = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def go(i: int) -> None:
        barrier.wait()
        out[i] = backend.complete(jobs[i])

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_batched_requests_equal_each_request_alone(backend: LlamaBackend, temperature: float) -> None:
    def jobs() -> list:
        return [backend.prepare(p, Sampling(max_tokens=24, temperature=temperature, seed=7 + i), logprobs=1)
                for i, p in enumerate(PROMPTS)]

    alone = [backend.complete(j) for j in jobs()]
    together = run_together(backend, jobs())
    for a, b in zip(alone, together):
        assert b.text == a.text and b.completion_tokens == a.completion_tokens == 24
        np.testing.assert_allclose(b.logprobs.token_logprobs, a.logprobs.token_logprobs, atol=1e-4)
    assert len({a.text for a in alone}) == len(PROMPTS)  # distinct outputs: a mix-up would show


def test_a_cached_prefix_is_reused_and_changes_nothing(backend: LlamaBackend) -> None:
    engine = backend.engine
    prompt = "Once upon a time, in a small village by the sea, there lived an old fisherman"
    first = backend.complete(backend.prepare(prompt, Sampling(max_tokens=8, temperature=0.0)))
    job = backend.prepare(prompt + " and his", Sampling(max_tokens=8, temperature=0.0))
    read_before = engine.prompt_tokens_read
    again = backend.complete(job)
    read = engine.prompt_tokens_read - read_before
    # Only what follows the cached prefix was read: the extension (plus the last cached token).
    assert read < len(job.tokens) // 2, (read, len(job.tokens))
    cold = LlamaBackend(backend.llm.model_path, n_ctx=1024, threads=1, slots=1)
    try:
        assert cold.complete(cold.prepare(prompt + " and his", Sampling(max_tokens=8, temperature=0.0))).text == again.text
    finally:
        cold.close()
    assert first.text  # the first request generated something


def test_cancelling_one_request_leaves_the_others_running(backend: LlamaBackend) -> None:
    jobs = [backend.prepare(p, Sampling(max_tokens=200, temperature=0.0)) for p in PROMPTS[:3]]
    jobs[1].cancel = threading.Event()
    jobs[1].cancel.set()
    out = run_together(backend, jobs)
    assert out[1].finish_reason == "cancelled" and out[1].completion_tokens == 0
    assert [out[0].completion_tokens, out[2].completion_tokens] == [200, 200]
    assert sorted(backend._free) == [0, 1, 2, 3]  # every sequence handed back


def test_a_prompt_longer_than_one_batch_is_read_in_chunks_beside_running_requests(backend: LlamaBackend) -> None:
    long_prompt = backend.tokenize(" ".join(PROMPTS * 200))[: N_BATCH + 200]  # token ids, sent as they are
    long_job = backend.prepare(long_prompt, Sampling(max_tokens=4, temperature=0.0))
    short = backend.prepare(PROMPTS[0], Sampling(max_tokens=40, temperature=0.0))
    read_before = backend.engine.prompt_tokens_read
    together = run_together(backend, [long_job, short])
    assert backend.engine.prompt_tokens_read - read_before >= len(long_prompt)  # read, not found cached
    alone = backend.complete(backend.prepare(long_prompt, Sampling(max_tokens=4, temperature=0.0)))
    assert together[0].text == alone.text and together[1].completion_tokens == 40


def test_a_lone_prompt_longer_than_one_batch_decodes_steps_without_logits(backend: LlamaBackend) -> None:
    # Nothing else running: the first step reads N_BATCH prompt tokens and asks for no logits at all.
    tokens = backend.tokenize(" ".join(PROMPTS[::-1] * 200))[: N_BATCH + 100]
    events = list(backend.engine.submit(EngineJob(seq=1, tokens=tokens, max_tokens=3)).events())
    assert [type(e) for e in events] == [Token] * 3 + [Done] and events[-1].reason == "length"


def test_engine_events_end_with_one_done(backend: LlamaBackend) -> None:
    engine = backend.engine
    tokens = backend.tokenize(PROMPTS[0])
    request = engine.submit(EngineJob(seq=0, tokens=tokens, max_tokens=5))
    events = list(request.events())
    assert [type(e) for e in events] == [Token] * 5 + [Done] and events[-1].reason == "length"
    request.stop()  # already done: returns at once


def test_a_request_that_breaks_the_scheduler_fails_alone_and_the_engine_keeps_serving(backend: LlamaBackend) -> None:
    engine = backend.engine
    broken = engine.submit(EngineJob(seq=engine.n_seq, tokens=backend.tokenize(PROMPTS[0]), max_tokens=5))
    (done,) = list(broken.events())
    assert done.reason == "error" and "IndexError" in done.error
    again = engine.submit(EngineJob(seq=0, tokens=backend.tokenize(PROMPTS[0]), max_tokens=3))
    assert [type(e) for e in again.events()] == [Token] * 3 + [Done]


def _greedy_ids(engine: LlamaEngine, seq: int, tokens: list[int], n: int) -> list[int]:
    return [e.id for e in engine.submit(EngineJob(seq=seq, tokens=tokens, max_tokens=n)).events()
            if isinstance(e, Token)]


@pytest.mark.slow
def test_greedy_equals_llama_cpp_python_on_the_real_model_alone_and_batched(smollm2_gguf: Path) -> None:
    """The engine's batch arrays, its one logits view and its argmax decode exactly what llama-cpp-python's
    own loop decodes on SmolLM2-135M-Instruct, with the other requests in the batch or without them."""
    import llama_cpp

    llm = llama_cpp.Llama(str(smollm2_gguf), n_ctx=512, n_threads=2, n_threads_batch=2, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    questions = ["What is the capital of France?", "Name three colours of the rainbow.",
                 "Write a short poem about the sea.", "Explain why the sky is blue to a child."]
    prompts = [llm.tokenize(f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n".encode(), add_bos=False,
                            special=True) for q in questions]
    n = 32
    direct = []
    for tokens in prompts:
        ids: list[int] = []
        for token in llm.generate(tokens, temp=0.0, reset=True):
            ids.append(token)
            if len(ids) == n or llama_cpp.llama_vocab_is_eog(vocab, token):
                break
        direct.append(ids)
    engine = LlamaEngine(llm, n_seq=len(prompts), n_ctx_seq=256, threads=2)
    try:
        alone = [_greedy_ids(engine, i, t, n) for i, t in enumerate(prompts)]
        together: list = [None] * len(prompts)

        def go(i: int) -> None:
            together[i] = _greedy_ids(engine, i, prompts[i], n)

        threads = [threading.Thread(target=go, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        answer = llm.detokenize(direct[0]).decode()
    finally:
        engine.close()
        llm.close()
    assert alone == direct and together == direct
    assert "Paris" in answer


def test_flash_attention_is_off_unless_asked_and_a_bad_setting_is_named(backend: LlamaBackend, monkeypatch) -> None:
    tokens = backend.tokenize(PROMPTS[0])
    reference = _greedy_ids(backend.engine, 0, tokens, 8)
    monkeypatch.setenv(FLASH_ATTN_ENV, "sideways")
    with pytest.raises(ValueError, match="sideways.*on, off or auto"):
        LlamaEngine(backend.llm, n_seq=1, n_ctx_seq=64, threads=1)
    monkeypatch.delenv(FLASH_ATTN_ENV)
    for setting in ("on", None):
        engine = LlamaEngine(backend.llm, n_seq=1, n_ctx_seq=128, threads=1, flash_attn=setting)
        try:
            ids = _greedy_ids(engine, 0, tokens, 8)
        finally:
            engine.close()
        assert len(ids) == 8
        if setting is None:  # off by default: exactly what the backend's engine (also off) decodes
            assert ids == reference
