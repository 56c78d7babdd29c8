"""The onnxruntime serving backend: the same answers as PyTorch and llama.cpp on one tiny model, seeded
sampling that reproduces, log-probabilities, stop rules, slots, and no torch on the way."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_serve_api import REPO
from test_serve_torchfree import board_env  # noqa: F401 - fixture

from smoledge.serve.generation import RequestError, Sampling, Token
from smoledge.serve.llama_backend import LlamaBackend
from smoledge.serve.ort_backend import PREFILL_CHUNK, OrtBackend, penalize, sample_token

SPECIAL = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "stop_tokens": ["<|im_end|>"]}
PROMPTS = ["The quick brown fox", "Le renard brun ç'est déjà", "<|im_start|>user\nCiao<|im_end|>\n"]
N_NEW = 40


@pytest.fixture(scope="module")
def sharp_model_dir(tmp_path_factory, tiny_tokenizer_dir: Path) -> Path:
    """The conftest tiny model's shape with its matrices scaled x6: a random model at the usual init
    std has near-uniform logits and greedy decoding repeats one token, which would prove little.
    Scaled, greedy wanders through the vocabulary (split UTF-8 characters included) with clear margins."""
    import torch
    from transformers import AutoTokenizer

    from smoledge.model.build import hf_config, init_model
    from smoledge.model.config import ModelConfig

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    cfg = ModelConfig(preset="custom", num_layers=4, hidden_size=64, intermediate_size=128, num_heads=4,
                      num_kv_heads=2, max_position_embeddings=512)
    model = init_model(hf_config(cfg, vocab_size=len(tok)), seed=0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(6.0)
    out = tmp_path_factory.mktemp("sharp")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def onnx_dir(sharp_model_dir: Path, tmp_path_factory) -> Path:
    from smoledge.export.onnx import export_onnx

    return export_onnx(sharp_model_dir, tmp_path_factory.mktemp("ort") / "onnx")


@pytest.fixture(scope="module")
def template(sharp_model_dir: Path) -> str:
    return (sharp_model_dir / "chat_template.jinja").read_text()


@pytest.fixture(scope="module")
def ort(onnx_dir: Path, template: str):
    backend = OrtBackend(onnx_dir, n_ctx=512, threads=1, chat_template=template, **SPECIAL)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def llama(sharp_model_dir: Path, template: str, tmp_path_factory):
    from smoledge.export.gguf import write_gguf

    gguf = write_gguf(sharp_model_dir, tmp_path_factory.mktemp("gguf") / "model-f32.gguf", "f32")
    backend = LlamaBackend(gguf, n_ctx=512, threads=1, chat_template=template, **SPECIAL)
    yield backend
    backend.close()


def torch_greedy(model_dir: Path, ids: list[int], n: int) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=n, min_new_tokens=n,
                             eos_token_id=None, pad_token_id=0)
    return out[0, len(ids):].tolist()


def expected_text(backend: OrtBackend, ids: list[int]) -> tuple[str, int, str]:
    """(text, tokens, finish_reason) the server must return for a greedy chain from PyTorch: cut at the
    first end token, special tokens not spelled."""
    for i, t in enumerate(ids):
        if t in backend.stop_ids:  # counted: completion_tokens includes the end token (generation.py)
            return _text(backend, ids[:i]), i + 1, "stop"
    return _text(backend, ids), len(ids), "length"


def _text(backend: OrtBackend, ids: list[int]) -> str:
    return b"".join(backend._text_bytes(t) for t in ids).decode("utf-8", errors="replace")


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_equals_pytorch_ort_greedy_and_llama_cpp(ort, llama, onnx_dir: Path, sharp_model_dir: Path,
                                                        prompt: str) -> None:
    from smoledge.export.onnx import load_ort, ort_greedy

    job = ort.prepare(prompt, Sampling(max_tokens=N_NEW, temperature=0.0))
    ref = torch_greedy(sharp_model_dir, job.tokens, N_NEW)
    assert ort_greedy(load_ort(onnx_dir), job.tokens, N_NEW) == ref
    assert len(set(ref)) > 5  # the chain wanders: a real test of every step through the cache
    text, n, finish = expected_text(ort, ref)
    got = ort.complete(job)
    assert (got.text, got.completion_tokens, got.finish_reason) == (text, n, finish)
    assert got.prompt_tokens == len(job.tokens)
    # The same tokens through llama.cpp (f32 GGUF of the same weights) give the same text.
    assert llama.tokenize(prompt) == job.tokens
    assert llama.complete(llama.prepare(prompt, Sampling(max_tokens=N_NEW, temperature=0.0))).text == text


def test_tokenize_render_and_pieces_match_transformers_and_llama(ort, llama, sharp_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sharp_model_dir)
    for text in [*PROMPTS, "  espaces  doubles", "日本語 ünïcödé 🦊"]:
        assert ort.tokenize(text) == tok(text)["input_ids"] == llama.tokenize(text), text
    assert ort.tokenize("") == llama.tokenize("") == [tok.bos_token_id]
    messages = [{"role": "system", "content": "Sois bref."}, {"role": "user", "content": "Bonjour 🦊"},
                {"role": "assistant", "content": "Salut"}, {"role": "user", "content": "Ça va ?"}]
    rendered = ort.render_chat(messages)
    assert rendered == tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == llama.render_chat(messages) and rendered.endswith("<|im_start|>assistant\n")
    for t in range(ort.n_vocab):
        assert ort.piece(t) == llama.piece(t), t


def test_stream_equals_complete_and_never_shows_a_partial_stop(ort) -> None:
    job = ort.prepare(PROMPTS[0], Sampling(max_tokens=N_NEW, temperature=0.0))
    full = ort.complete(job).text
    chunks = list(ort.stream(job))
    assert "".join(c.text for c in chunks) == full and chunks[-1].finish_reason == "length"
    assert all(c.finish_reason is None for c in chunks[:-1]) and len(chunks) > 3
    # A stop string from the middle of the greedy text: the output ends right before it.
    stop = full[10:14]
    cut = full[: full.index(stop)]
    stopped = ort.prepare(PROMPTS[0], Sampling(max_tokens=N_NEW, temperature=0.0, stop=[stop]))
    chunks = list(ort.stream(stopped))
    assert "".join(c.text for c in chunks) == cut and chunks[-1].finish_reason == "stop"
    seen = ""
    for c in chunks:
        seen += c.text
        assert cut.startswith(seen)  # no text past the cut ever reaches the client
    assert ort.complete(stopped).text == cut


def test_stop_tokens_stop_on_their_id(ort, onnx_dir: Path, template: str) -> None:
    """A stop token ends the generation on its id, before its text shows."""
    job = ort.prepare(PROMPTS[0], Sampling(max_tokens=N_NEW, temperature=0.0), logprobs=0)
    full = ort.complete(job)
    pieces, offsets = full.logprobs.tokens, full.logprobs.text_offset  # type: ignore[union-attr]
    k = next(i for i, p in enumerate(pieces) if i >= 3 and "\ufffd" not in p
             and len(ort.tokenizer.encode(p, add_special_tokens=False).ids) == 1)
    first = pieces.index(pieces[k])
    stopper = OrtBackend(onnx_dir, n_ctx=512, threads=1, chat_template=template,
                         **{**SPECIAL, "stop_tokens": ["<|im_end|>", pieces[k]]})
    got = stopper.complete(stopper.prepare(PROMPTS[0], Sampling(max_tokens=N_NEW, temperature=0.0)))
    # The stop token is generated (and counted) but shows no text.
    assert (got.completion_tokens, got.finish_reason) == (first + 1, "stop")
    assert got.text == full.text[: offsets[first] - len(PROMPTS[0])]
    assert {ort.tokenizer.token_to_id("<|endoftext|>"), ort.tokenizer.token_to_id("<|im_end|>")} <= ort.stop_ids


def test_seeded_sampling_reproduces(ort) -> None:
    def sample(seed: int | None, **kw) -> str:
        return ort.complete(ort.prepare("Le", Sampling(max_tokens=30, temperature=1.0, seed=seed, **kw))).text

    assert sample(7) == sample(7) and sample(7, top_p=0.9) == sample(7, top_p=0.9)
    assert len({sample(s) for s in range(4)}) == 4  # different seeds, different completions
    # A seed reproduces streams too (no sampler state is carried between requests).
    job = ort.prepare("Le", Sampling(max_tokens=30, temperature=1.0, seed=11))
    assert "".join(c.text for c in ort.stream(job)) == ort.complete(job).text


def test_sampler_shapes_the_distribution() -> None:
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    rng = np.random.default_rng(0)
    draws = np.bincount([sample_token(logits, 1.0, 1.0, 0, rng) for _ in range(4000)], minlength=4) / 4000
    assert np.allclose(draws, [0.5, 0.3, 0.15, 0.05], atol=0.03)
    # top_k=2 keeps the two most likely, renormalised; top_p=0.75 keeps {0, 1} too (0.5 + 0.3 >= 0.75).
    for kw in ({"top_k": 2, "top_p": 1.0}, {"top_k": 0, "top_p": 0.75}):
        got = np.bincount([sample_token(logits, 1.0, kw["top_p"], kw["top_k"], rng) for _ in range(4000)],
                          minlength=4) / 4000
        assert got[2] == got[3] == 0 and abs(got[0] - 0.625) < 0.03, kw
    assert {sample_token(logits, 1.0, 0.1, 0, rng) for _ in range(50)} == {0}
    assert {sample_token(logits, 1.0, 1.0, 1, rng) for _ in range(50)} == {0}
    # Low temperature sharpens towards the argmax.
    cold = np.bincount([sample_token(logits, 0.1, 1.0, 0, rng) for _ in range(1000)], minlength=4)
    assert cold[0] > 990


def test_echo_logprobs_match_pytorch_and_llama(ort, llama, sharp_model_dir: Path) -> None:
    """Prompt log-probabilities (one PREFILL_CHUNK boundary crossed) equal PyTorch's log-softmax, and the
    whole logprobs object matches llama.cpp's on the same weights."""
    import torch
    from transformers import AutoModelForCausalLM

    prompt = " ".join(["Le renard brun saute par-dessus le chien paresseux."] * 12)
    job = ort.prepare(prompt, Sampling(max_tokens=5, temperature=0.0), echo=True, logprobs=3)
    assert len(job.tokens) > PREFILL_CHUNK + 10
    got = ort.complete(job)
    model = AutoModelForCausalLM.from_pretrained(sharp_model_dir).eval()
    with torch.no_grad():
        logits = model(torch.tensor([job.tokens])).logits[0].double()  # (T, V)
    ref = torch.log_softmax(logits, -1)[torch.arange(len(job.tokens) - 1), torch.tensor(job.tokens[1:])]
    lp = got.logprobs
    assert lp is not None and lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    n = len(job.tokens)
    assert np.allclose(lp.token_logprobs[1:n], ref.numpy(), atol=1e-4)
    assert len(lp.tokens) == n + got.completion_tokens == n + 5
    assert all(len(t) <= 4 for t in lp.top_logprobs[1:])  # 3 alternatives + the token itself
    # Greedy tokens are the most likely: their logprob is the top value.
    for t, v, top in zip(lp.tokens[n:], lp.token_logprobs[n:], lp.top_logprobs[n:]):
        assert v == max(top.values()) and top[t] == v  # type: ignore[union-attr]
    other = llama.complete(llama.prepare(prompt, Sampling(max_tokens=5, temperature=0.0), echo=True, logprobs=3))
    assert got.text == other.text and got.text.startswith(prompt)
    theirs = other.logprobs
    assert theirs is not None and lp.tokens == theirs.tokens and lp.text_offset == theirs.text_offset
    # llama.cpp keeps its KV cache in f16: ~1e-3 apart, where onnxruntime and PyTorch agree to ~1e-6.
    assert np.allclose(lp.token_logprobs[1:], theirs.token_logprobs[1:], atol=5e-3)
    # Scoring only (echo, max_tokens 0) generates nothing and scores the same prompt the same way.
    score = ort.complete(ort.prepare(prompt, Sampling(max_tokens=0), echo=True, logprobs=0))
    assert score.text == prompt and score.completion_tokens == 0
    assert score.logprobs.token_logprobs == lp.token_logprobs[:n]  # type: ignore[union-attr]


def test_requests_that_do_not_fit_are_refused(ort) -> None:
    with pytest.raises(RequestError, match="together they exceed the context window of 512 tokens"):
        ort.prepare("x " * 600, Sampling(max_tokens=4))
    with pytest.raises(RequestError, match="together they exceed"):
        ort.prepare([5] * 500, Sampling(max_tokens=13))
    with pytest.raises(RequestError, match=r"prompt token id 99999 is outside this model's vocabulary \(0\.\.1023\)"):
        ort.prepare([1, 99999], Sampling())
    with pytest.raises(RequestError, match="max_tokens is 0"):
        ort.prepare("hi", Sampling(max_tokens=0))
    # A token-id prompt is used as given (no BOS added) and fills the window exactly.
    job = ort.prepare([5] * 500, Sampling(max_tokens=None, temperature=0.0))
    assert job.tokens == [5] * 500 and job.max_tokens == 12
    assert ort.complete(job).completion_tokens <= 12


def test_detokenize_cancel_and_grammar(ort, llama) -> None:
    text = "Le renard 🦊 <|im_end|>"
    ids = ort.tokenize(text, add_special=False)
    assert ids == llama.tokenize(text, add_special=False) and ort.detokenize(ids) == text == llama.detokenize(ids)
    with pytest.raises(RequestError, match=r"token id 5000 is outside this model's vocabulary"):
        ort.detokenize([1, 5000])
    # Cancelled before it starts: nothing generated; cancelled after the first chunk: it stops there.
    job = ort.prepare(PROMPTS[0], Sampling(max_tokens=N_NEW, temperature=0.0))
    job.cancel = threading.Event()
    job.cancel.set()
    assert [(c.text, c.finish_reason) for c in ort.stream(job)] == [("", "cancelled")]
    assert ort.complete(job).finish_reason == "cancelled"
    job.cancel = threading.Event()
    stream = ort.stream(job)
    first = next(stream)
    job.cancel.set()
    rest = list(stream)
    assert rest[-1].finish_reason == "cancelled" and rest[-1].completion_tokens <= first.completion_tokens + 1
    assert not ort.supports_grammar
    constrained = (({"grammar": 'root ::= "a"'}, "grammar"), ({"json_schema": {"type": "object"}}, "response_format"))
    for kw, field in constrained:
        with pytest.raises(RequestError, match="constrained output needs the llama.cpp backend") as e:
            ort.prepare("hi", Sampling(**kw))
        assert e.value.param == field


def test_two_slots_serve_two_requests_at_once(onnx_dir: Path, ort) -> None:
    """Two slots share one session, each with its own cache: interleaved requests give what they give alone."""
    both = OrtBackend(onnx_dir, n_ctx=512, threads=1, slots=2, **SPECIAL)
    alone = {p: ort.complete(ort.prepare(p, Sampling(max_tokens=N_NEW, temperature=0.0))).text for p in PROMPTS[:2]}
    results: dict[str, str] = {}
    started = threading.Barrier(2, timeout=30)

    def run(prompt: str) -> None:
        stream = both.stream(both.prepare(prompt, Sampling(max_tokens=N_NEW, temperature=0.0)))
        first = next(stream)  # both requests hold a slot before either finishes
        started.wait()
        results[prompt] = first.text + "".join(c.text for c in stream)

    threads = [threading.Thread(target=run, args=(p,)) for p in PROMPTS[:2]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == alone
    # A stream closed early (a client that went away) hands its slot back.
    for _ in range(3):
        s = both.stream(both.prepare(PROMPTS[0], Sampling(max_tokens=N_NEW, temperature=0.0)))
        next(s)
        s.close()
    assert both._slots.qsize() == 2
    both.close()


def test_no_chat_template_and_bad_n_ctx(onnx_dir: Path) -> None:
    from smoledge.errors import SmoledgeError

    plain = OrtBackend(onnx_dir, n_ctx=64, threads=1)
    with pytest.raises(RequestError, match="no chat template"):
        plain.render_chat([{"role": "user", "content": "hi"}])
    with pytest.raises(SmoledgeError, match=r"n_ctx 1024 exceeds the model's trained context of 512 tokens"):
        OrtBackend(onnx_dir, n_ctx=1024, threads=1)


BOARD_SCRIPT = """
import json, sys
from smoledge.serve.generation import Sampling
from smoledge.serve.ort_backend import OrtBackend
b = OrtBackend(sys.argv[1], n_ctx=512, threads=1, chat_template=sys.argv[2], bos_token="<|endoftext|>",
               eos_token="<|endoftext|>", stop_tokens=["<|im_end|>"])
chat = b.render_chat([{"role": "user", "content": "Ciao"}])
out = b.complete(b.prepare(chat, Sampling(max_tokens=20, temperature=0.0)))
seeded = b.complete(b.prepare("Le", Sampling(max_tokens=20, temperature=1.0, seed=3)))
print(json.dumps({"greedy": out.text, "seeded": seeded.text, "mods": sorted(sys.modules)}))
"""


def test_ort_backend_runs_without_torch(board_env, ort, onnx_dir: Path, template: str) -> None:  # noqa: F811
    """On a board with onnxruntime, tokenizers and jinja2 but no torch/transformers/optimum/onnx, the
    backend loads and answers exactly as it does here."""
    env, log = board_env
    out = subprocess.run([sys.executable, "-c", BOARD_SCRIPT, str(onnx_dir), template], cwd=REPO,
                         env={**env, "SMOLEDGE_BOARD_HAS": "onnxruntime"}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    chat = ort.render_chat([{"role": "user", "content": "Ciao"}])
    assert got["greedy"] == ort.complete(ort.prepare(chat, Sampling(max_tokens=20, temperature=0.0))).text
    assert got["seeded"] == ort.complete(ort.prepare("Le", Sampling(max_tokens=20, temperature=1.0, seed=3))).text
    assert not {"torch", "transformers", "optimum", "onnx", "llama_cpp"} & set(got["mods"])
    assert log.read_text().splitlines() == ["installed"]  # the hook ran and nothing tried a blocked import
    log.unlink()


def test_repetition_penalties_follow_llama_cpp_arithmetic() -> None:
    logits = np.array([2.0, -1.0, 0.5, 3.0], dtype=np.float32)
    recent = [0, 1, 0]
    s = Sampling(repeat_penalty=2.0, presence_penalty=0.5, frequency_penalty=0.25)
    # Token 0 (twice, positive): 2/2 - 2*0.25 - 0.5; token 1 (once, negative): -1*2 - 0.25 - 0.5; others untouched.
    assert penalize(logits, recent, s).tolist() == [0.0, -2.75, 0.5, 3.0]
    assert penalize(logits, recent, Sampling()) is logits
    # min_p keeps the tokens at least min_p times as likely as the best: here only token 0.
    rng = np.random.default_rng(0)
    probs = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    assert {sample_token(probs, 1.0, 1.0, 0, rng, min_p=0.7) for _ in range(50)} == {0}
    assert {sample_token(probs, 1.0, 1.0, 0, rng, min_p=0.2) for _ in range(200)} == {0, 1, 2}


@pytest.mark.parametrize("which", ["ort", "llama"])
def test_repeat_penalty_changes_greedy_output_and_cuts_repeats(request, which: str) -> None:
    base = request.getfixturevalue(which)

    def greedy(**kw) -> tuple[str, list[str]]:
        done = base.complete(base.prepare(PROMPTS[0], Sampling(max_tokens=N_NEW, temperature=0.0, **kw), logprobs=0))
        return done.text, done.logprobs.tokens  # type: ignore[union-attr]

    plain, plain_tokens = greedy()
    penalized, penalized_tokens = greedy(repeat_penalty=1.8, frequency_penalty=0.5)
    assert penalized != plain
    repeats = [len(t) - len(set(t)) for t in (plain_tokens, penalized_tokens)]
    assert repeats[1] < repeats[0], repeats
    assert greedy(repeat_penalty=1.8, frequency_penalty=0.5)[0] == penalized  # still deterministic
    assert greedy(presence_penalty=2.0)[0] != plain


@pytest.mark.parametrize("prompt", PROMPTS)
def test_llama_cpp_penalizes_with_the_onnx_backends_arithmetic(llama, sharp_model_dir: Path, prompt: str) -> None:
    """llama.cpp's penalties sampler, fed the prompt's last tokens, picks what PyTorch's logits give under
    the ONNX backend's penalize(), token for token up to a near-tie (runtimes round differently, and a
    tiny random model has many ties)."""
    import torch
    from transformers import AutoModelForCausalLM

    from smoledge.serve.generation import PENALTY_LAST_N
    from smoledge.serve.llama_engine import EngineJob

    s = Sampling(repeat_penalty=1.3, presence_penalty=0.4, frequency_penalty=0.2)
    tokens = llama.tokenize(prompt)
    model = AutoModelForCausalLM.from_pretrained(sharp_model_dir).eval()
    ref, margins = [], []
    with torch.no_grad():
        for _ in range(N_NEW):
            logits = model(torch.tensor([tokens + ref])).logits[0, -1].numpy()  # (V,)
            x = penalize(logits, (tokens + ref)[-PENALTY_LAST_N:], s)
            top2 = np.sort(x)[-2:]
            ref.append(int(np.argmax(x)))
            margins.append(float(top2[1] - top2[0]))
    job = EngineJob(seq=0, tokens=tokens, max_tokens=N_NEW, cache_prompt=False, repeat_penalty=s.repeat_penalty,
                    presence_penalty=s.presence_penalty, frequency_penalty=s.frequency_penalty)
    got = [e.id for e in llama.engine.submit(job).events() if isinstance(e, Token)]
    same = next((i for i, (a, b) in enumerate(zip(got, ref)) if a != b), min(len(got), len(ref)))
    assert same == len(ref) or (same < len(got) and margins[same] < 1e-3), (same, margins[same], got, ref)
    assert ref[:same] == got[:same] and same >= 4
    assert ref != torch_greedy(sharp_model_dir, tokens, N_NEW)  # the penalties changed the text


@pytest.mark.parametrize("which", ["ort", "llama"])
def test_top_k_and_min_p_narrow_the_draw(request, which: str) -> None:
    """At temperature 1, top_k=1 and min_p=1 leave only the most likely token: the greedy text, whatever the
    seed; without them the seeded draws wander off it."""
    base = request.getfixturevalue(which)

    def text(**kw) -> str:
        return base.complete(base.prepare(PROMPTS[0], Sampling(max_tokens=N_NEW, **kw))).text

    greedy = text(temperature=0.0)
    for seed in (1, 2, 3):
        assert text(temperature=1.0, top_k=1, seed=seed) == greedy
        assert text(temperature=1.0, min_p=1.0, seed=seed) == greedy
    assert any(text(temperature=1.5, seed=seed) != greedy for seed in (1, 2, 3))


def test_a_request_may_read_its_whole_prompt_instead_of_a_cached_prefix(llama) -> None:
    """cache_prompt false reads every prompt token again (the cold text exactly); the default reuses the
    prefix the sequence holds and reads only the last token."""
    job = llama.prepare(PROMPTS[1], Sampling(max_tokens=4, temperature=0.0, cache_prompt=False))
    cold = llama.complete(job).text
    read = llama.engine.prompt_tokens_read
    assert llama.complete(llama.prepare(PROMPTS[1], Sampling(max_tokens=4, temperature=0.0))).text
    assert llama.engine.prompt_tokens_read - read == 1
    read = llama.engine.prompt_tokens_read
    again = llama.complete(llama.prepare(PROMPTS[1], Sampling(max_tokens=4, temperature=0.0, cache_prompt=False)))
    assert llama.engine.prompt_tokens_read - read == len(job.tokens) and again.text == cold


@pytest.mark.parametrize("which", ["ort", "llama"])
def test_a_generation_that_ends_at_once_counts_the_end_token(request, onnx_dir: Path, template: str,
                                                             which: str) -> None:
    """The first greedy token made a stop token: nothing to show, one token generated (llama-server's count)."""
    base = request.getfixturevalue(which)
    job = base.prepare(PROMPTS[0], Sampling(max_tokens=N_NEW, temperature=0.0), logprobs=0)
    first = base.complete(job).logprobs.tokens[0]  # type: ignore[union-attr]
    stops = {**SPECIAL, "stop_tokens": ["<|im_end|>", first]}
    if which == "ort":
        backend = OrtBackend(onnx_dir, n_ctx=512, threads=1, chat_template=template, **stops)
    else:
        backend = LlamaBackend(base.llm.model_path, n_ctx=512, threads=1, chat_template=template, **stops)
    try:
        job = backend.prepare(PROMPTS[0], Sampling(max_tokens=N_NEW, temperature=0.0))
        done = backend.complete(job)
        assert (done.text, done.finish_reason, done.completion_tokens) == ("", "stop", 1)
        assert [(c.text, c.finish_reason, c.completion_tokens) for c in backend.stream(job)] == [("", "stop", 1)]
    finally:
        backend.close()


def test_an_onnx_export_directory_is_served(onnx_dir: Path) -> None:
    import openai
    from fastapi.testclient import TestClient

    from smoledge.serve.config import ServeConfig
    from smoledge.serve.server import create_app
    from smoledge.serve.targets import resolve

    served = resolve(onnx_dir)
    assert (served.kind, served.target.backend, served.settings.model_id) == ("onnx", "onnxruntime", onnx_dir.name)
    assert served.settings.chat_template and served.settings.n_ctx_train == 512
    app = create_app(ServeConfig(target=str(onnx_dir), threads=1))
    with TestClient(app) as http:
        while http.get("/ready").status_code != 200:
            assert app.state.smoledge.error is None, app.state.smoledge.error
            time.sleep(0.05)
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=http, max_retries=0)
        assert [m.id for m in client.models.list().data] == [onnx_dir.name]
        chat = client.chat.completions.create(model=onnx_dir.name, messages=[{"role": "user", "content": "Ciao"}],
                                              max_tokens=8, temperature=0, extra_body={"repeat_penalty": 1.3})
        assert chat.choices[0].finish_reason in ("stop", "length") and chat.usage.completion_tokens >= 1
        r = http.post("/v1/completions", json={"prompt": "x", "max_tokens": 4, "grammar": 'root ::= "a"'})
        assert r.status_code == 400 and r.json()["error"]["param"] == "grammar"


def test_an_hf_export_with_only_onnx_is_served_through_it(tmp_path: Path, sharp_model_dir: Path,
                                                          onnx_dir: Path) -> None:
    from test_serve_targets import hf_copy

    from smoledge.serve.targets import resolve

    hf = hf_copy(sharp_model_dir, tmp_path / "export" / "hf")
    (tmp_path / "export" / "onnx").symlink_to(onnx_dir)
    served = resolve(hf)
    assert (served.kind, served.target.backend, served.target.model_path) == ("hf", "onnxruntime",
                                                                              tmp_path / "export" / "onnx")
    assert served.tokenizer_dir == tmp_path / "export" / "onnx" and served.note.endswith("../onnx")


def test_bos_only_where_the_tokenizer_adds_it_and_never_twice(ort, llama, onnx_dir: Path, tmp_path: Path) -> None:
    """This tokenizer adds no BOS: neither backend adds one. Given a post-processor that adds it, the text gets
    one BOS, and a prompt that already starts with it (a template writing {{ bos_token }}) keeps one."""
    bos = SPECIAL["bos_token"]
    for backend in (ort, llama):
        assert backend.tokenize("Ciao")[0] != backend.bos_id
    tok = json.loads((onnx_dir / "tokenizer.json").read_text())
    text = [{"Sequence": {"id": "A", "type_id": 0}}]
    tok["post_processor"] = {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, *text],
                             "pair": [*text, {"Sequence": {"id": "B", "type_id": 1}}],
                             "special_tokens": {bos: {"id": bos, "ids": [ort.bos_id], "tokens": [bos]}}}
    (tmp_path / "tokenizer.json").write_text(json.dumps(tok))
    adds = OrtBackend(onnx_dir, n_ctx=64, threads=1, tokenizer_dir=tmp_path, **SPECIAL)
    plain = adds.tokenize("Ciao")
    assert plain == [adds.bos_id, *ort.tokenize("Ciao")]
    assert adds.tokenize(bos + "Ciao") == plain and adds.prepare(bos + "Ciao", Sampling(max_tokens=1)).tokens == plain
    adds.close()


def test_every_end_id_generation_config_lists_stops(tmp_path: Path, onnx_dir: Path) -> None:
    """An instruct model ends its turn on every id of generation_config.json's eos_token_id list (Llama 3's way)."""
    copy = tmp_path / "onnx"
    copy.mkdir()
    for p in onnx_dir.iterdir():
        (copy / p.name).symlink_to(p)
    gen = json.loads((onnx_dir / "generation_config.json").read_text())
    (copy / "generation_config.json").unlink()
    (copy / "generation_config.json").write_text(json.dumps({**gen, "eos_token_id": [gen["eos_token_id"], 77]}))
    backend = OrtBackend(copy, n_ctx=64, threads=1)
    assert {gen["eos_token_id"], 77} <= backend.stop_ids
    backend.close()
