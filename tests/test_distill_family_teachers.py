"""Teachers of other families: a Qwen2.5-shaped teacher with Qwen2's real tokenizer (byte-level BPE, NFC,
the `qwen2` splitter) and a Llama-2/TinyLlama-shaped one with Llama 2's real SentencePiece tokenizer,
each distilling a student through build/smollm3-135m-distill.yaml (sizes cut, as
tests/test_distill_real_teacher.py cuts them). The teachers are tiny and random (no real Qwen or Llama
weights fit here); their tokenizers are the families' own, rebuilt from llama.cpp's vocab files.

The student must export with the teacher's tokenizer in the GGUF (model, pre-tokenizer, EOS) and its
evaluate stage must score it (bits per byte need each token's bytes, SentencePiece pieces included).
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import pytest
from standin import local_hub_dataset
from test_distill_real_teacher import LEAN
from test_export_architectures import save_model
from test_realscale_standin import DOCS_PER_LANGUAGE, SUBSET_LANG, _docs, _sentences, standin_recipe

from smoledge.config import apply_override
from smoledge.pypi_assets import llama_cpp_source
from smoledge.recipe import Recipe
from smoledge.runs import build
from smoledge.tokenizer.from_gguf import tokenizer_from_gguf

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp")

# (teacher architecture, llama.cpp vocab file of its family, GGUF tokenizer model/pre the student must carry)
FAMILIES = {"qwen2": ("qwen2", ("gpt2", "qwen2")), "llama": ("llama-spm", ("llama", "default"))}
SMALL_STUDENT = ["student.hidden_size=64", "student.intermediate_size=128", "student.num_layers=2",
                 "evaluate.max_tokens_per_language=256"]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def built(request, tmp_path_factory, shared_data: Path) -> tuple[str, Path, Path]:
    arch = request.param
    vocab_file, _ = FAMILIES[arch]
    root = tmp_path_factory.mktemp(f"teacher-{arch}")
    tokenizer_from_gguf(llama_cpp_source() / "models" / f"ggml-vocab-{vocab_file}.gguf").save_pretrained(root / "tok")
    teacher = save_model(root / f"{arch}-teacher", root / "tok", arch)
    sentences = _sentences(shared_data)
    docs = {lang: _docs(sentences[lang], n) for lang, n in DOCS_PER_LANGUAGE.items()}
    standin = {"teacher": teacher}
    for dataset in sorted({d for d, _ in SUBSET_LANG}):
        subsets = {s: docs[lang] for (d, s), lang in SUBSET_LANG.items() if d == dataset}
        standin[dataset] = local_hub_dataset(root / "hub" / dataset.split("/")[1], subsets)
    raw = standin_recipe(standin).to_dict()
    for assignment in [*LEAN, *SMALL_STUDENT]:
        apply_override(raw, assignment)
    recipe = Recipe.from_dict(raw)
    outcomes = build(recipe, runs_root=root / "runs", out=lambda s: None)
    assert {o.name: o.status for o in outcomes}["package"] == "ran"
    return arch, teacher, root / "runs" / recipe.name


def test_the_student_carries_the_teachers_tokenizer_and_is_scored(built) -> None:
    from transformers import AutoTokenizer

    arch, teacher, run = built
    tok = AutoTokenizer.from_pretrained(teacher)
    student = json.loads((run / "distill" / "model" / "config.json").read_text())
    assert student["eos_token_id"] == tok.eos_token_id and student["vocab_size"] >= len(tok)
    r = gguf.GGUFReader(run / "export" / "model-f32.gguf")
    kind = (r.fields["tokenizer.ggml.model"].contents(), r.fields["tokenizer.ggml.pre"].contents())
    assert kind == FAMILIES[arch][1]
    assert r.fields["tokenizer.ggml.eos_token_id"].contents() == tok.eos_token_id
    parity = json.loads((run / "export" / "parity.json").read_text())
    assert parity["tokenization"]["identical"] and parity["files"]["model-f32.gguf"]["greedy"]["identical"]
    ppl = json.loads((run / "evaluate" / "report.json").read_text())["perplexity"]
    assert set(ppl["hf"]) == {"de", "en", "es", "fr", "it", "pt"}
    for lang, s in ppl["hf"].items():
        assert s["bpb"] > 0 and s["ppl"] == pytest.approx(ppl["model-f32.gguf"][lang]["ppl"], rel=1e-3)
