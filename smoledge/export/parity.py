"""Check a GGUF against the PyTorch model it came from: tokens, logits, greedy text.

A GGUF that loads is not a GGUF that computes the same function; these checks
are the export stage's gate.

    from smoledge.export.parity import check_parity, check_tokenization, check_greedy
    check_tokenization("runs/q/export/hf", "runs/q/export/model-f32.gguf")
    check_parity("runs/q/export/hf", "runs/q/export/model-f32.gguf", "Le renard brun.", 1e-3)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from smoledge.errors import SmoledgeError
from smoledge.io import read_json
from smoledge.tokenizer.gguf_fields import gguf_tokenizer_kind
from smoledge.tokenizer.gguf_vocab import hf_tokenizer, normalizes_nfc, special_tokens
from smoledge.tokenizer.llama_cpp import MODEL_FILES_MISSING, PROBE_TEXTS, first_difference

# Weights per compute thread. A tiny model split over cores spends more time syncing
# threads than computing (20-200x slower measured on a busy 2-core box), so threads
# grow with model size.
BYTES_PER_THREAD = 16 << 20


def threads_for(weight_bytes: int) -> int:
    """Compute threads worth using for a model of this many weight bytes."""
    return max(1, min(os.cpu_count() or 1, weight_bytes // BYTES_PER_THREAD))


@contextlib.contextmanager
def torch_threads(model) -> Iterator[None]:
    """Run PyTorch with threads_for(model size), restoring the process setting after."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads_for(sum(p.numel() * p.element_size() for p in model.parameters())))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def load_torch(hf_dir: str | Path):
    """The HF model in float32, eval mode, plus its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    model.eval()
    return model, AutoTokenizer.from_pretrained(hf_dir)


def load_llama(gguf_path: str | Path, n_ctx: int, n_threads: int | None = None, vocab_only: bool = False):
    """A llama.cpp model that keeps the logits of every position (logits_all).

    The KV cache is F32: llama.cpp's default F16 cache rounds K and V, which on a
    trained model alone moves logits by ~1e-3 and would hide or fake a mapping error."""
    from llama_cpp import GGML_TYPE_F32, Llama

    n_threads = n_threads or threads_for(Path(gguf_path).stat().st_size)

    return Llama(model_path=str(gguf_path), n_ctx=n_ctx, n_batch=min(n_ctx, 512), n_threads=n_threads,
                 n_threads_batch=n_threads, logits_all=True, vocab_only=vocab_only, verbose=False, seed=0,
                 type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32)


# Runs in a child process: a llama.cpp build using instructions this CPU lacks dies with
# SIGILL, which would otherwise take the whole build (or test session) down unexplained.
_PROBE = """
import sys
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=64, n_batch=64, n_threads=1, verbose=False)
llm.eval([i % llm.n_vocab() for i in range(48)])
"""


def probe_gguf(gguf_path: str | Path, timeout_s: float = 300) -> None:
    """Load `gguf_path` and run 48 tokens through llama.cpp in a child process; raise if it fails."""
    name = Path(gguf_path).name
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE, str(gguf_path)], capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise SmoledgeError(f"llama.cpp took over {timeout_s:.0f}s to run 48 tokens of {name}; "
                            "the machine is overloaded or the file is broken") from None
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        hint = (" The installed llama-cpp-python was compiled for CPU instructions this machine lacks "
                "(a -march=native build, e.g. AMX); reinstall it portable: CMAKE_ARGS='-DGGML_NATIVE=OFF' "
                "pip install --no-cache-dir --force-reinstall --no-deps llama-cpp-python==0.3.36"
                if sig == "SIGILL" else "")
        raise SmoledgeError(f"llama.cpp crashed ({sig}) running {name}.{hint}")
    if proc.returncode != 0:
        raise SmoledgeError(f"llama.cpp could not run {name}: {proc.stderr.strip()[-500:]}")


def torch_logits(hf_dir: str | Path, ids: Sequence[int], model=None) -> np.ndarray:
    """(T, V) float32 logits of PyTorch for `ids` (no BOS added)."""
    import torch

    model = model if model is not None else load_torch(hf_dir)[0]
    with torch.no_grad(), torch_threads(model):
        out = model(torch.tensor([list(ids)], dtype=torch.long)).logits  # (1, T, V)
    return out[0].float().numpy()


def gguf_logits(gguf_path: str | Path, ids: Sequence[int], n_threads: int | None = None, llm=None) -> np.ndarray:
    """(T, V) float32 logits of llama.cpp for `ids`, evaluated as one sequence from position 0."""
    llm = llm if llm is not None else load_llama(gguf_path, n_ctx=_ctx_for(len(ids)), n_threads=n_threads)
    llm.reset()
    llm.eval(list(ids))
    return np.array(llm.scores[: len(ids)], dtype=np.float32)  # (T, V)


def check_tokenization(hf_dir: str | Path, gguf_path: str | Path, texts: Sequence[str] = PROBE_TEXTS) -> dict[str, Any]:
    """HF and llama.cpp must give identical ids (specials parsed) and decode back to the same bytes."""
    tok_json = read_json(Path(hf_dir) / "tokenizer.json", MODEL_FILES_MISSING)
    llm = load_llama(gguf_path, n_ctx=64, vocab_only=True)
    problem = first_difference(tok_json, llm, texts, normalizes_nfc(tok_json), special_tokens(tok_json))
    if problem:
        raise SmoledgeError(f"GGUF tokenizer disagrees with HF {problem}; the exported vocab/merges/pre-tokenizer "
                            "do not match the HF tokenizer")
    tk = hf_tokenizer(tok_json)
    return {"texts": len(texts), "tokens": sum(len(tk.encode(t, add_special_tokens=False).ids) for t in texts),
            "identical": True, **gguf_tokenizer_kind(gguf_path)}


def compare_logits(ref: np.ndarray, got: np.ndarray) -> dict[str, Any]:
    """Max/mean absolute difference and top-1 agreement of two (T, V) logit arrays."""
    if ref.shape != got.shape:
        raise SmoledgeError(f"logit shapes differ: PyTorch {ref.shape} vs GGUF {got.shape}; vocab sizes disagree")
    diff = np.abs(ref.astype(np.float64) - got.astype(np.float64))  # (T, V)
    return {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "top1_agreement": float((ref.argmax(-1) == got.argmax(-1)).mean()),
        "logit_scale": float(np.abs(ref).max()),
        "tokens": int(ref.shape[0]),
    }


def check_parity(hf_dir: str | Path, gguf_path: str | Path, text: str, max_abs_diff: float | None,
                 n_threads: int | None = None, model=None) -> dict[str, Any]:
    """Logits of `text` through PyTorch vs the GGUF. With a limit, raise when it is exceeded."""
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(hf_dir).encode(text, add_special_tokens=False)
    if len(ids) < 2:
        raise SmoledgeError(f"parity text {text!r} is {len(ids)} token(s); use a sentence or more")
    stats = compare_logits(torch_logits(hf_dir, ids, model=model), gguf_logits(gguf_path, ids, n_threads))
    stats["limit"] = max_abs_diff
    if max_abs_diff is not None and stats["max_abs_diff"] > max_abs_diff:
        raise SmoledgeError(
            f"{Path(gguf_path).name}: max |logit diff| vs PyTorch is {stats['max_abs_diff']:.3g} over "
            f"{len(ids)} tokens, above the limit {max_abs_diff:g} (export.parity_max_abs_logit_diff); "
            "the GGUF does not compute the same model. Check the export mapping before raising the limit"
        )
    return stats


def check_greedy(hf_dir: str | Path, gguf_path: str | Path, prompt: str, new_tokens: int, tie_tol: float,
                 n_threads: int | None = None, model=None) -> dict[str, Any]:
    """Greedy-decode `new_tokens` with both runtimes and compare the continuations.

    Exact agreement passes. A divergence passes only where PyTorch's two candidate tokens
    were within `tie_tol` of each other (an argmax tie float noise may flip): that is
    reported, anything else raises.
    """
    model, tok = (model, None) if model is not None else load_torch(hf_dir)
    if tok is None:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(hf_dir)
    prompt_ids = tok.encode(prompt, add_special_tokens=False)
    n = len(prompt_ids) + new_tokens

    # Plain argmax loops on both sides: generate()'s EOS/min-length processors would
    # bend PyTorch's choices in ways llama.cpp's raw logits do not.
    ref: list[int] = []
    steps: list[np.ndarray] = []
    for _ in range(new_tokens):
        logits = torch_logits(hf_dir, prompt_ids + ref, model=model)[-1]  # (V,)
        steps.append(logits)
        ref.append(int(np.argmax(logits)))

    llm = load_llama(gguf_path, n_ctx=_ctx_for(n), n_threads=n_threads)
    llm.reset()
    llm.eval(prompt_ids)
    got: list[int] = []
    for _ in range(new_tokens):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        got.append(nxt)
        llm.eval([nxt])

    result: dict[str, Any] = {"prompt_tokens": len(prompt_ids), "new_tokens": new_tokens,
                              "identical": ref == got, "matching_prefix": new_tokens}
    if ref == got:
        return result
    k = next(i for i, (a, b) in enumerate(zip(ref, got)) if a != b)
    step = steps[k]  # PyTorch's logits at the diverging step, given the shared prefix
    gap = float(step[ref[k]] - step[got[k]])
    result.update(matching_prefix=k, divergence_gap=gap)
    if gap > tie_tol:
        raise SmoledgeError(
            f"{Path(gguf_path).name}: greedy generation diverges from PyTorch at new token {k} "
            f"(PyTorch {ref[k]} {tok.convert_ids_to_tokens(ref[k])!r} vs llama.cpp {got[k]} "
            f"{tok.convert_ids_to_tokens(got[k])!r}, PyTorch prefers its token by {gap:.3g} > {tie_tol:g}); "
            "the GGUF does not decode like the model"
        )
    return result


def _ctx_for(n_tokens: int) -> int:
    """llama.cpp context size for a sequence: at least n_tokens, a multiple of 32."""
    return max(64, -(-n_tokens // 32) * 32)
