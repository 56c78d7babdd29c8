"""Every architecture smoledge exports, held three ways: to PyTorch (logits, greedy decoding, tokens,
through llama.cpp and through ONNX), to planted mistakes the gates must catch, and to llama.cpp's own
converter of the same version (same tensors, same architecture keys), so an upgrade that renames or
re-derives anything fails here. Plus the refusals: what llama.cpp would compute differently.

One tiny random model per architecture (hidden 64, 4 heads / 2 KV heads), with smoledge's 1024-token
byte-level BPE tokenizer. Weights are drawn wider than HF's 0.02 (0.1; 1-D norms and biases get
noise too, so a lost bias or a wrong norm offset shows) so logits are not a sea of ties. Gemma 3 draws
0.05: llama.cpp's CPU GELU goes through an fp16 table, which alone moves its logits by ~3.5e-4 per
unit of logit range (test_gemma3_gap_is_llama_cpp_fp16_gelu pins that down).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import gguf
import numpy as np
import pytest

from smoledge.errors import SmoledgeError
from smoledge.export import architectures as A
from smoledge.export.gguf import write_gguf
from smoledge.export.onnx import check_onnx, export_onnx
from smoledge.export.parity import (check_greedy, check_parity, check_tokenization, compare_logits,
                                    torch_logits)

TEXT = "The quick brown fox jumps over the lazy dog, then runs back across the field to the old farm."
PROMPT = "The quick brown"
LIMIT = 1e-3
ARCHS = ("llama", "smollm3", "qwen2", "qwen3", "gemma3", "phi3")


def _configs(vocab: int) -> dict[str, tuple[Callable[..., Any], dict[str, Any], float]]:
    """name -> (transformers config class, its arguments, weight std)."""
    from transformers import (Gemma3TextConfig, LlamaConfig, Phi3Config, Qwen2Config, Qwen3Config,
                              SmolLM3Config)

    common = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, pad_token_id=0)
    return {
        # Llama 3.2's RoPE (llama3 scaling, theta 5e5), untied head; original context 64 so most
        # frequencies are rescaled.
        "llama": (LlamaConfig, {**common, "head_dim": 16, "tie_word_embeddings": False, "rope_theta": 500000.0,
                                "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 64}},
                  0.1),
        "smollm3": (SmolLM3Config, {**common, "num_hidden_layers": 4}, 0.1),  # layer 3 is NoPE
        "qwen2": (Qwen2Config, {**common, "tie_word_embeddings": True}, 0.1),  # q/k/v biases, as Qwen2.5
        # Q wider than hidden (4 x 32 = 128), as Qwen3 models are.
        "qwen3": (Qwen3Config, {**common, "head_dim": 32, "tie_word_embeddings": True}, 0.1),
        # Layers 0, 1 sliding (window 4), layer 2 global with linear RoPE scaling (as Gemma 3 4B+);
        # query_pre_attn_scalar stays transformers' 256, not head_dim.
        "gemma3": (Gemma3TextConfig, {**common, "num_hidden_layers": 3, "head_dim": 16, "sliding_window": 4,
                                      "sliding_window_pattern": 3, "final_logit_softcapping": 30.0,
                                      "rope_scaling": {"rope_type": "linear", "factor": 8.0}}, 0.05),
        # Fused qkv/gate_up, half the head rotated; GQA (Phi-3-mini is MHA; fewer KV heads makes the
        # fused split uneven).
        "phi3": (Phi3Config, {**common, "partial_rotary_factor": 0.5, "original_max_position_embeddings": 512,
                              "tie_word_embeddings": False}, 0.1),
    }


def save_model(out: Path, tokenizer_dir: Path, name: str, **overrides: Any) -> Path:
    """The tiny `name` model (overrides go into its config), every parameter random, saved with the tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config_class, kwargs, std = _configs(len(tok))[name]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config_class(**{**kwargs, **overrides}, initializer_range=std))
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:  # norms (1 or Gemma's 0) and biases (0) as HF initialises them
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


class Zoo:
    """The tiny models and their f32 GGUFs, each built once per module."""

    def __init__(self, root: Path, tokenizer_dir: Path) -> None:
        self.root, self.tokenizer_dir = root, tokenizer_dir
        self.dirs: dict[str, Path] = {}
        self.ggufs: dict[str, Path] = {}

    def dir(self, name: str, **overrides: Any) -> Path:
        key = name + "".join(f"-{k}" for k in sorted(overrides))
        if key not in self.dirs:
            # The directory name carries the architecture: phi3-... is a name llama.cpp reacts to.
            self.dirs[key] = save_model(self.root / key, self.tokenizer_dir, name, **overrides)
        return self.dirs[key]

    def gguf(self, name: str) -> Path:
        if name not in self.ggufs:
            self.ggufs[name] = write_gguf(self.dir(name), self.root / f"{name}-f32.gguf", "f32")
        return self.ggufs[name]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, tiny_tokenizer_dir: Path) -> Zoo:
    return Zoo(tmp_path_factory.mktemp("arch"), tiny_tokenizer_dir)


def field(reader: gguf.GGUFReader, key: str) -> Any:
    return reader.fields[key].contents()


# ---------------------------------------------------------------- parity with PyTorch


@pytest.mark.parametrize("name", ARCHS)
def test_gguf_matches_pytorch(zoo: Zoo, name: str, record_property) -> None:
    model, out = zoo.dir(name), zoo.gguf(name)
    assert field(gguf.GGUFReader(out), "general.architecture") == name
    tokens = check_tokenization(model, out)
    stats = check_parity(model, out, TEXT, LIMIT)
    greedy = check_greedy(model, out, PROMPT, 16, tie_tol=2e-3)
    # Not near-uniform: the top logit stands out, so the greedy check decides something.
    assert stats["logit_scale"] > 1.0 and stats["top1_agreement"] == 1.0
    record_property("max_abs_logit_diff", stats["max_abs_diff"])
    record_property("greedy_identical", greedy["identical"])
    record_property("tokens_identical", tokens["identical"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ARCHS)
def test_onnx_matches_pytorch(zoo: Zoo, name: str, tmp_path: Path, record_property) -> None:
    out = export_onnx(zoo.dir(name), tmp_path / "onnx")
    stats = check_onnx(zoo.dir(name), out, TEXT, LIMIT, greedy_tokens=8)
    assert stats["greedy_identical"]
    record_property("onnx_max_abs_logit_diff", stats["max_abs_diff"])


@pytest.mark.parametrize("name, kind, scaling", [
    ("qwen2", "yarn", {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}),
    ("qwen3", "yarn", {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}),
])
def test_rope_scaling_matches_pytorch(zoo: Zoo, tmp_path: Path, name: str, kind: str, scaling: dict) -> None:
    scaled = zoo.dir(name, rope_scaling=scaling)
    out = write_gguf(scaled, tmp_path / "scaled.gguf", "f32")
    assert field(gguf.GGUFReader(out), f"{name}.rope.scaling.type") == kind
    check_parity(scaled, out, TEXT, LIMIT)
    # The scaling moves the logits far more than the limit, so the match is not vacuous.
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(scaled).encode(TEXT, add_special_tokens=False)
    assert compare_logits(torch_logits(zoo.dir(name), ids), torch_logits(scaled, ids))["max_abs_diff"] > 10 * LIMIT


@pytest.mark.parametrize("overrides", [
    {"attention_bias": True, "mlp_bias": True},  # llama's graph loads all seven biases; Q/K's are permuted too
    {"head_dim": 32},  # Q wider than hidden, carried by attention.key_length
], ids=["biases", "wide-heads"])
def test_llama_variants_match_pytorch(zoo: Zoo, tmp_path: Path, overrides: dict) -> None:
    model = zoo.dir("llama", **overrides)
    check_parity(model, write_gguf(model, tmp_path / "m.gguf", "f32"), TEXT, LIMIT)


def test_smollm3_without_nope_layers_runs_llama3_rope_as_llama(zoo: Zoo, tmp_path: Path) -> None:
    """A student pruned from a Llama 3 teacher: a SmolLM3 with no NoPE layers and Llama 3's RoPE scaling is
    written as llama.cpp's llama graph, whose rope_freqs tensor carries the factors (left out, parity fails)."""
    llama = json.loads((zoo.dir("llama") / "config.json").read_text())
    model = zoo.dir("smollm3", no_rope_layers=[1, 1, 1, 1], rope_theta=llama["rope_theta"],
                    rope_scaling=llama["rope_scaling"])
    out = write_gguf(model, tmp_path / "m.gguf", "f32")
    reader = gguf.GGUFReader(out)
    assert field(reader, "general.architecture") == "llama"
    assert "rope_freqs.weight" in {t.name for t in reader.tensors}
    check_parity(model, out, TEXT, LIMIT)
    bad = write_gguf(model, tmp_path / "bad.gguf", "f32", _mistakes={"rope_freqs"})
    with pytest.raises(SmoledgeError, match=r"max \|logit diff\| vs PyTorch is .* above the limit"):
        check_parity(model, bad, TEXT, LIMIT)


def test_gemma3_gap_is_llama_cpp_fp16_gelu(zoo: Zoo, tmp_path: Path) -> None:
    """With the MLP's output zeroed, everything else Gemma 3 maps -- (1 + w) norms, query scale folded
    into q_norm, sliding-window pattern and local RoPE base, linear scaling, embedding scale, final
    soft-cap -- matches PyTorch to float precision; the rest of the gemma3 gap is ggml's GELU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(zoo.dir("gemma3"), dtype=torch.float32)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.down_proj.weight.zero_()
    hf = tmp_path / "gemma3-no-mlp"
    model.save_pretrained(hf)
    AutoTokenizer.from_pretrained(zoo.dir("gemma3")).save_pretrained(hf)
    assert check_parity(hf, write_gguf(hf, tmp_path / "m.gguf", "f32"), TEXT, 1e-5)["max_abs_diff"] < 1e-5


# ---------------------------------------------------------------- planted mistakes


@pytest.mark.parametrize("name, mistake", [
    ("llama", "rope_order"), ("llama", "rope_freqs"), ("smollm3", "rope_order"),
    ("qwen2", "drop_qkv_bias"), ("qwen2", "rope_order"), ("qwen3", "rope_order"),
    ("gemma3", "norm_shift"), ("gemma3", "swa_pattern"), ("gemma3", "rope_order"), ("phi3", "rope_order"),
])
def test_planted_mistake_fails_parity(zoo: Zoo, tmp_path: Path, name: str, mistake: str) -> None:
    bad = write_gguf(zoo.dir(name), tmp_path / "bad.gguf", "f32", _mistakes={mistake})
    with pytest.raises(SmoledgeError, match=r"max \|logit diff\| vs PyTorch is .* above the limit"):
        check_parity(zoo.dir(name), bad, TEXT, LIMIT)


# ---------------------------------------------------------------- refusals


def _edited(src: Path, dst: Path, edit: dict[str, Any]) -> Path:
    """A copy of `src` whose config.json has `edit` applied (None deletes a key)."""
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    for key, value in edit.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize("name, edit, match", [
    # unknown model types
    ("llama", {"model_type": "gpt2"}, r"model_type 'gpt2'.*not exportable; smoledge exports llama, smollm3, qwen2"),
    ("gemma3", {"model_type": "gemma3"}, r"Gemma3ForCausalLM, model_type gemma3_text"),
    # rope_scaling llama.cpp does not reproduce
    ("qwen2", {"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}},
     r"no dynamic NTK scaling.*Remove rope_scaling"),
    ("phi3", {"rope_scaling": {"type": "longrope", "short_factor": [1.0] * 4, "long_factor": [2.0] * 4},
              "original_max_position_embeddings": 128}, r"'longrope'.*from the context size it is started with"),
    ("smollm3", {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 64}},
     r"only llama.cpp's llama graph loads the rope_freqs"),
    # configs transformers and llama.cpp would compute differently
    ("qwen2", {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 0, "layer_types": None},
     r"layers \[0, 1\].*8-token sliding window.*use_sliding_window: false"),
    ("phi3", {"sliding_window": 64}, r"phi3 graph disables sliding-window.*max_position_embeddings <= 64"),
    ("qwen3", {"attention_bias": True}, r"attention_bias=true.*no blk.N.attn_output.bias.*attention_bias: false"),
    ("gemma3", {"attn_logit_softcapping": 50.0}, r"no attention soft-cap.*attn_logit_softcapping: null"),
    ("gemma3", {"hidden_activation": "gelu"}, r"hidden_activation 'gelu'.*gelu_pytorch_tanh"),
    ("qwen2", {"head_dim": 32}, r"head_dim 32 x 4 heads != hidden_size 64.*sizes Q by hidden_size"),
    ("smollm3", {"no_rope_layers": [1, 0, 1, 1]}, r"NoPE layers \[1\].*no_rope_interval: 4"),
])
def test_refusals_name_the_fix_and_write_nothing(zoo: Zoo, tmp_path: Path, name: str, edit: dict, match: str) -> None:
    model = _edited(zoo.dir(name), tmp_path / name, edit)
    out = tmp_path / "out" / "m.gguf"
    out.parent.mkdir()
    with pytest.raises(SmoledgeError, match=match):
        write_gguf(model, out, "f32")
    assert list(out.parent.iterdir()) == []


def test_tables_match_the_pinned_gguf_package() -> None:
    """Every tensor the table says a graph loads is one gguf lists for that architecture, and every
    spec is written as a graph the table describes."""
    for graph in A.GRAPHS.values():
        kinds = {kind for kind, _ in graph.required | graph.optional}
        assert kinds <= set(gguf.MODEL_TENSORS[graph.arch]), (graph.name, kinds - set(gguf.MODEL_TENSORS[graph.arch]))
    for spec in A.ARCHITECTURES.values():
        assert spec.graph in A.GRAPHS
        for flag, slots in spec.bias_flags.items():
            assert {kind for kind, _ in slots} <= set(gguf.MODEL_TENSORS[spec.graph]), flag


# ---------------------------------------------------------------- llama.cpp's converter as oracle

# Runs llama.cpp's converter classes (conversion/, vendored gguf-py first on the path) on each
# (model dir, out file) pair. Only set_vocab is skipped: the converter identifies a BPE tokenizer by a
# hash of its tokens, which smoledge's trained tokenizer cannot match; vocabularies are not compared.
ORACLE = """
import sys
from pathlib import Path
src = Path(sys.argv[1])
sys.path[:0] = [str(src), str(src / "gguf-py")]
import gguf, torch
from conversion import ModelBase, ModelType, get_model_architecture, get_model_class
for model_dir, out in zip(sys.argv[2::2], sys.argv[3::2]):
    hparams = ModelBase.load_hparams(Path(model_dir), False)
    cls = get_model_class(get_model_architecture(hparams, ModelType.TEXT), mmproj=False)
    oracle = type("NoVocab" + cls.__name__, (cls,), {"model_arch": cls.model_arch, "set_vocab": lambda self: None})
    with torch.inference_mode():
        oracle(Path(model_dir), gguf.LlamaFileType.ALL_F32, Path(out)).write()
"""

# Keys smoledge writes where the converter leaves llama.cpp its default; each must equal that default
# (or, for the sliding-window pattern, be the model's own, which llama.cpp's default would not be).
SMOLEDGE_ONLY = ("attention.key_length", "attention.value_length", "rope.dimension_count", "vocab_size",
                 "attention.sliding_window_pattern")
# Keys the converter writes that llama.cpp ignores for these models.
CONVERTER_ONLY = {
    # read only by YaRN / LongRoPE, which smoledge does not export for phi3
    "phi3": {"rope.scaling.original_context_length",
             # the phi3 loader turns sliding windows off whatever the value (0 here)
             "attention.sliding_window"},
}


def _arch_keys(r: gguf.GGUFReader, arch: str) -> dict[str, Any]:
    return {k[len(arch) + 1:]: f.contents() for k, f in r.fields.items() if k.startswith(arch + ".")}


@pytest.mark.slow
def test_llama_cpp_converter_agrees(zoo: Zoo, tmp_path: Path) -> None:
    from smoledge.pypi_assets import llama_cpp_source

    try:
        src = llama_cpp_source()
    except SmoledgeError as exc:
        pytest.skip(f"llama.cpp's converter is not available here: {exc}")
    pairs = [(zoo.dir(name), tmp_path / f"{name}-converter.gguf") for name in ARCHS]
    proc = subprocess.run([sys.executable, "-c", ORACLE, str(src), *(str(p) for pair in pairs for p in pair)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]

    for name, (model, theirs_path) in zip(ARCHS, pairs):
        ours, theirs = gguf.GGUFReader(zoo.gguf(name)), gguf.GGUFReader(theirs_path)
        arch = field(ours, "general.architecture")
        assert field(theirs, "general.architecture") == arch, name
        cfg = json.loads((model / "config.json").read_text())

        ko, kt = _arch_keys(ours, arch), _arch_keys(theirs, arch)
        for key in set(ko) & set(kt):
            same = ko[key] == kt[key] or (not isinstance(ko[key], str) and np.allclose(ko[key], kt[key], rtol=1e-6))
            assert same, (name, key, ko[key], kt[key])
        assert set(kt) - set(ko) <= CONVERTER_ONLY.get(name, set()), (name, set(kt) - set(ko))
        heads = cfg["num_attention_heads"]
        defaults = {"attention.key_length": cfg["hidden_size"] // heads,
                    "attention.value_length": cfg["hidden_size"] // heads,
                    "rope.dimension_count": ko["attention.key_length"],
                    "vocab_size": len(field(ours, "tokenizer.ggml.tokens")),
                    "attention.sliding_window_pattern": [t == "sliding_attention"
                                                         for t in cfg.get("layer_types", [])]}
        for key in set(ko) - set(kt):
            assert key in SMOLEDGE_ONLY and ko[key] == defaults[key], (name, key, ko[key])

        to, tt = {t.name: t for t in ours.tensors}, {t.name: t for t in theirs.tensors}
        assert set(to) == set(tt), (name, set(to) ^ set(tt))
        for tname, t in to.items():
            assert list(t.shape) == list(tt[tname].shape) and t.tensor_type == tt[tname].tensor_type, (name, tname)
            want = np.asarray(tt[tname].data)
            if name == "gemma3" and tname.endswith("attn_q_norm.weight"):
                # The converter leaves Gemma's query scale to llama.cpp's 1/sqrt(head_dim); transformers
                # scales by query_pre_attn_scalar**-0.5 (256 here), which smoledge folds into q_norm.
                want = want * math.sqrt(cfg["head_dim"] / cfg.get("query_pre_attn_scalar", 256))
            if tname == "rope_freqs.weight":  # the same formula, in float32 there and float64 here
                np.testing.assert_allclose(t.data, want, rtol=1e-6, err_msg=name)
            else:
                np.testing.assert_array_equal(t.data, want, err_msg=f"{name} {tname}")
