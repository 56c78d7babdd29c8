"""The whole chain on a tiny recipe: data to a served bundle, then the incremental rules.

This is the test suite's version of `make quickstart`: the same stages and
code paths, with shapes and step counts cut so it runs in about a minute.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from test_serve_api import start_server, stop_server

from smoledge.recipe import Recipe
from smoledge.runs import STAGES, build
from smoledge.layout import RECORD

pytestmark = pytest.mark.slow

TINY = {
    "name": "tiny-e2e",
    "data": {"sources": [{"name": "sample", "kind": "sample", "sample_docs": 360}]},
    "tokenizer": {"vocab_size": 1024},
    "teacher": {"preset": "custom", "num_layers": 4, "hidden_size": 64, "intermediate_size": 128,
                "num_heads": 4, "num_kv_heads": 2, "max_position_embeddings": 512},
    "student": {"preset": "tiny", "max_position_embeddings": 512},
    "pretrain": {"max_steps": 24, "batch_size": 4, "seq_len": 128, "warmup_steps": 4,
                 "checkpoint_every": 8, "eval_every": 12, "eval_batches": 2},
    "distill": {"max_steps": 24, "batch_size": 4, "seq_len": 128, "warmup_steps": 4,
                "checkpoint_every": 8, "eval_every": 12, "eval_batches": 2},
    "export": {"gguf_types": ["f32", "q8_0"], "onnx_int8": ["avx2"], "onnx_int8_static": ["avx2"],
               "calibration_windows": 8, "calibration_seq_len": 128},
    "evaluate": {"seq_len": 128, "max_tokens_per_language": 512},
    "package": {"gguf_type": "q8_0"},
}


def _recipe(**changes) -> Recipe:
    data = json.loads(json.dumps(TINY))
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        data[section][key] = value
    return Recipe.from_dict(data)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    outcomes = build(_recipe(), runs_root=root, out=lambda s: None)
    assert [o.status for o in outcomes] == ["ran"] * len(STAGES)
    return root


def test_every_stage_recorded_with_checksums(built: Path) -> None:
    run_dir = built / "tiny-e2e"
    for s in STAGES:
        record = json.loads((run_dir / s.dir / RECORD).read_text())
        assert record["stage"] == s.name
        assert record["outputs"], f"{s.name} recorded no outputs"
        for rel, meta in record["outputs"].items():
            assert (run_dir / s.dir / rel).stat().st_size == meta["bytes"]
        assert record["versions"]["smoledge"]
    bundle = run_dir / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert any(name.endswith(".gguf") for name in manifest["files"])


def test_every_artifact_loads_in_the_runtime_users_run(built: Path) -> None:
    """Each export artifact loads, and greedily continues the same prompt, in the library a user would
    reach for: transformers for hf/, optimum's ORTModelForCausalLM for every ONNX directory (the file
    it names in smoledge_onnx.json), llama_cpp.Llama for every GGUF. fp32 ONNX and f32 GGUF continue
    exactly as PyTorch does; every artifact's held-out perplexity is in the evaluate report."""
    import llama_cpp
    from optimum.onnxruntime import ORTModelForCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    export = built / "tiny-e2e" / "export"
    tok = AutoTokenizer.from_pretrained(export / "hf")
    prompt = tok("The weather in Paris", return_tensors="pt")
    greedy = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=0)
    ref = AutoModelForCausalLM.from_pretrained(export / "hf").generate(**prompt, **greedy)[0].tolist()
    onnx_dirs = sorted(d for d in export.glob("onnx*") if d.is_dir())
    assert [d.name for d in onnx_dirs] == ["onnx", "onnx-int8-avx2", "onnx-int8-static-avx2"]
    for d in onnx_dirs:
        meta = json.loads((d / "smoledge_onnx.json").read_text())
        got = ORTModelForCausalLM.from_pretrained(d, file_name=meta["graph"]).generate(**prompt, **greedy)[0].tolist()
        assert len(got) == len(ref), d.name
        if d.name == "onnx":
            assert got == ref
    ggufs = sorted(export.glob("model-*.gguf"))
    assert [p.name for p in ggufs] == ["model-f32.gguf", "model-q8_0.gguf"]
    for path in ggufs:
        llm = llama_cpp.Llama(str(path), n_ctx=128, n_threads=1, verbose=False)
        ids = prompt["input_ids"][0].tolist()
        out = [next(llm.generate(ids, temp=0.0, top_k=1, reset=True))]
        assert 0 <= out[0] < len(tok), path.name
        if path.name == "model-f32.gguf":
            assert out[0] == ref[len(ids)]
        del llm
    report = json.loads((built / "tiny-e2e" / "evaluate" / "report.json").read_text())
    assert set(report["perplexity"]) == {"hf", *(p.name for p in ggufs), *(d.name for d in onnx_dirs)}


def test_second_build_skips_everything_quickly(built: Path) -> None:
    t0 = time.time()
    outcomes = build(_recipe(), runs_root=built, out=lambda s: None)
    assert [o.status for o in outcomes] == ["skipped"] * len(STAGES)
    assert time.time() - t0 < 30


def test_downstream_change_keeps_upstream(built: Path) -> None:
    outcomes = build(_recipe(package__port=8123), runs_root=built, out=lambda s: None)
    ran = [o.name for o in outcomes if o.status == "ran"]
    assert ran == ["package"]


def test_serve_bundle_answers_completions(built: Path) -> None:
    proc, url = start_server(built / "tiny-e2e" / "bundle")
    try:
        resp = httpx.post(f"{url}/v1/completions",
                          json={"prompt": "The weather", "max_tokens": 8, "temperature": 0}, timeout=60)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["object"] == "text_completion"
        assert body["choices"][0]["text"]
        assert body["usage"]["completion_tokens"] > 0
    finally:
        assert "Traceback" not in stop_server(proc)
