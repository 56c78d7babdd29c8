"""smoledge's GGUF writer: what it writes (read back with gguf's own reader) and what it refuses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest
from safetensors.numpy import load_file

from smoledge.errors import SmoledgeError
from smoledge.export.architectures import permute_qk
from smoledge.export.gguf import write_gguf


def save_model(out: Path, tokenizer_dir: Path, seed: int = 0, **shape) -> Path:
    """A random-init SmolLM3 of the given shape, saved with the tokenizer at tokenizer_dir."""
    from transformers import AutoTokenizer

    from smoledge.model.build import hf_config, init_model
    from smoledge.model.config import ModelConfig

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    dims = dict(num_layers=3, hidden_size=64, intermediate_size=128, num_heads=4, num_kv_heads=2,
                max_position_embeddings=512)
    tie = shape.pop("tie_word_embeddings", True)
    dims.update(shape)
    config = hf_config(ModelConfig(preset="custom", **dims), vocab_size=len(tok))
    config.tie_word_embeddings = tie
    init_model(config, seed=seed).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


def test_f32_roundtrip_keys_tokenizer_and_tensors(tiny_model_dir: Path, tiny_gguf: Path) -> None:
    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    tok_json = json.loads((tiny_model_dir / "tokenizer.json").read_text())
    r = gguf.GGUFReader(tiny_gguf)

    assert field(r, "general.architecture") == "smollm3"  # layer 3 is NoPE
    a = "smollm3"
    assert field(r, f"{a}.block_count") == 4
    assert field(r, f"{a}.embedding_length") == 64
    assert field(r, f"{a}.feed_forward_length") == 128
    assert field(r, f"{a}.attention.head_count") == 4
    assert field(r, f"{a}.attention.head_count_kv") == 2
    assert field(r, f"{a}.context_length") == 512
    assert field(r, f"{a}.rope.dimension_count") == 16
    assert field(r, f"{a}.rope.freq_base") == pytest.approx(cfg["rope_theta"])
    assert field(r, f"{a}.attention.layer_norm_rms_epsilon") == pytest.approx(cfg["rms_norm_eps"])
    assert field(r, f"{a}.vocab_size") == cfg["vocab_size"]
    assert field(r, "general.file_type") == gguf.LlamaFileType.ALL_F32

    # Tokenizer: every id's string, specials as CONTROL, the merges in order.
    assert field(r, "tokenizer.ggml.model") == "gpt2"
    assert field(r, "tokenizer.ggml.pre") == "gpt-2"
    tokens = field(r, "tokenizer.ggml.tokens")
    vocab = tok_json["model"]["vocab"]
    assert len(tokens) == cfg["vocab_size"] and all(tokens[i] == t for t, i in vocab.items())
    types = field(r, "tokenizer.ggml.token_type")
    special_ids = {t["id"] for t in tok_json["added_tokens"] if t["special"]}
    assert special_ids == {0, 1, 2}
    assert all(types[i] == gguf.TokenType.CONTROL for i in special_ids)
    assert all(types[i] == gguf.TokenType.NORMAL for i in range(3, len(types)))
    assert field(r, "tokenizer.ggml.merges") == [" ".join(m) for m in tok_json["model"]["merges"]]
    assert field(r, "tokenizer.ggml.bos_token_id") == 0
    assert field(r, "tokenizer.ggml.eos_token_id") == 0
    assert field(r, "tokenizer.ggml.padding_token_id") == 0
    assert field(r, "tokenizer.ggml.eot_token_id") == 2
    assert field(r, "tokenizer.ggml.add_bos_token") is False
    assert "<|im_start|>" in field(r, "tokenizer.chat_template")

    # Tensors: llama.cpp names, no `output` (tied), GGUF dims reversed from numpy's.
    t = {x.name: x for x in r.tensors}
    expected = {"token_embd.weight", "output_norm.weight"} | {
        f"blk.{i}.{n}.weight" for i in range(4)
        for n in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")
    }
    assert set(t) == expected
    assert all(x.tensor_type == gguf.GGMLQuantizationType.F32 for x in t.values())
    assert list(t["token_embd.weight"].shape) == [64, cfg["vocab_size"]]
    assert list(t["blk.0.attn_k.weight"].shape) == [64, 32]
    assert list(t["blk.0.ffn_down.weight"].shape) == [128, 64]

    hf = load_file(tiny_model_dir / "model.safetensors")
    np.testing.assert_array_equal(t["token_embd.weight"].data, hf["model.embed_tokens.weight"])
    np.testing.assert_array_equal(t["blk.2.attn_v.weight"].data, hf["model.layers.2.self_attn.v_proj.weight"])
    # Q/K rows are in llama.cpp's interleaved RoPE order, the rest of the model is untouched.
    q = hf["model.layers.1.self_attn.q_proj.weight"]
    np.testing.assert_array_equal(t["blk.1.attn_q.weight"].data, permute_qk(q, 4))
    assert not np.array_equal(permute_qk(q, 4), q)
    np.testing.assert_array_equal(t["blk.1.attn_k.weight"].data, permute_qk(hf["model.layers.1.self_attn.k_proj.weight"], 2))


def test_permute_pairs_halves_of_each_head() -> None:
    # One head of dim 4 with rows [x0, x1, y0, y1] becomes [x0, y0, x1, y1].
    w = np.arange(8, dtype=np.float32).reshape(4, 2)
    np.testing.assert_array_equal(permute_qk(w, 1), w[[0, 2, 1, 3]])
    w2 = np.arange(16, dtype=np.float32).reshape(8, 2)
    np.testing.assert_array_equal(permute_qk(w2, 2), w2[[0, 2, 1, 3, 4, 6, 5, 7]])


def test_f16_and_q8_0_types(tiny_model_dir: Path, tmp_path: Path) -> None:
    for dtype, matrix, ftype in (("f16", gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
                                 ("q8_0", gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0)):
        notes: list[str] = []
        r = gguf.GGUFReader(write_gguf(tiny_model_dir, tmp_path / f"m-{dtype}.gguf", dtype, notes))
        assert field(r, "general.file_type") == ftype
        assert notes == []
        for x in r.tensors:
            want = gguf.GGMLQuantizationType.F32 if len(x.shape) == 1 else matrix
            assert x.tensor_type == want, x.name
    assert (tmp_path / "m-q8_0.gguf").stat().st_size < (tmp_path / "m-f16.gguf").stat().st_size
    assert not list(tmp_path.glob(".*.tmp")), "temp files left behind"


def test_q4_0_keeps_the_output_projection_at_8_bits(tiny_model_dir: Path, tiny_tokenizer_dir: Path,
                                                     tmp_path: Path) -> None:
    """As llama.cpp's quantizer does: in a Q4_0 file the output projection (the tied embedding, or
    output.weight when untied) is Q8_0 and says so in the notes; every other matrix is Q4_0."""
    untied = save_model(tmp_path / "untied", tiny_tokenizer_dir, num_layers=2, tie_word_embeddings=False)
    for model, head in ((tiny_model_dir, "token_embd.weight"), (untied, "output.weight")):
        notes: list[str] = []
        r = gguf.GGUFReader(write_gguf(model, tmp_path / f"{head}.gguf", "q4_0", notes))
        types = {x.name: x.tensor_type for x in r.tensors if len(x.shape) == 2}
        assert types.pop(head) == gguf.GGMLQuantizationType.Q8_0
        assert set(types.values()) == {gguf.GGMLQuantizationType.Q4_0}
        assert notes == [f"{head}: the output projection, kept Q8_0 as llama.cpp keeps it in Q4_0 files"]


def test_q8_0_keeps_unquantizable_rows_in_f16(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    # hidden 48: matrices reading the residual have rows of 48, not a multiple of 32.
    model = save_model(tmp_path / "m48", tiny_tokenizer_dir, num_layers=2, hidden_size=48,
                       intermediate_size=64, num_heads=4, num_kv_heads=2)
    notes: list[str] = []
    r = gguf.GGUFReader(write_gguf(model, tmp_path / "m48.gguf", "q8_0", notes))
    t = {x.name: x.tensor_type for x in r.tensors}
    assert t["blk.0.ffn_down.weight"] == gguf.GGMLQuantizationType.Q8_0  # rows of 64
    assert t["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.F16
    assert any("blk.0.attn_q.weight" in n and "F16" in n for n in notes)

    model = save_model(tmp_path / "m48b", tiny_tokenizer_dir, num_layers=2, hidden_size=48,
                       intermediate_size=80, num_heads=4, num_kv_heads=2)
    with pytest.raises(SmoledgeError, match="no weight matrix has rows divisible by 32"):
        write_gguf(model, tmp_path / "m48b.gguf", "q8_0")
    assert not (tmp_path / "m48b.gguf").exists()


def test_all_rope_layers_export_as_llama(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    model = save_model(tmp_path / "m3", tiny_tokenizer_dir, num_layers=3)
    assert all(json.loads((model / "config.json").read_text())["no_rope_layers"])
    r = gguf.GGUFReader(write_gguf(model, tmp_path / "m3.gguf", "f32"))
    assert field(r, "general.architecture") == "llama"
    assert field(r, "llama.block_count") == 3


def test_untied_embeddings_write_output(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    model = save_model(tmp_path / "untied", tiny_tokenizer_dir, num_layers=2, tie_word_embeddings=False)
    r = gguf.GGUFReader(write_gguf(model, tmp_path / "untied.gguf", "f32"))
    t = {x.name: x for x in r.tensors}
    hf = load_file(model / "model.safetensors")
    np.testing.assert_array_equal(t["output.weight"].data, hf["lm_head.weight"])


def test_nope_interval_other_than_4_is_refused(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    model = save_model(tmp_path / "nope2", tiny_tokenizer_dir, num_layers=4, no_rope_interval=2)
    with pytest.raises(SmoledgeError, match=r"NoPE layers \[1, 3\].*every 4th layer: \[3\].*no_rope_interval: 4"):
        write_gguf(model, tmp_path / "nope2.gguf", "f32")
    assert not (tmp_path / "nope2.gguf").exists()


@pytest.mark.parametrize("pre_tokenizer", [
    {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
    {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": r"\p{L}+|\s+"}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
])
def test_unmapped_pre_tokenizer_is_refused(tiny_model_dir: Path, tmp_path: Path, pre_tokenizer) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    tok = json.loads((model / "tokenizer.json").read_text())
    tok["pre_tokenizer"] = pre_tokenizer
    (model / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(SmoledgeError, match="no llama.cpp pre-tokenizer reproduces this tokenizer"):
        write_gguf(model, tmp_path / "m.gguf", "f32")
    assert not (tmp_path / "m.gguf").exists()


def test_gpt2_split_sequence_is_accepted(tiny_model_dir: Path, tmp_path: Path) -> None:
    from smoledge.tokenizer.llama_cpp import GPT2_SPLIT_REGEX

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    tok = json.loads((model / "tokenizer.json").read_text())
    tok["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": GPT2_SPLIT_REGEX}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    (model / "tokenizer.json").write_text(json.dumps(tok))
    assert write_gguf(model, tmp_path / "m.gguf", "f32").exists()


def test_unknown_type_and_missing_weights_are_clear(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SmoledgeError, match="choose one of f32, f16, bf16, q8_0, q4_0 .or the K-quants"):
        write_gguf(tiny_model_dir, tmp_path / "m.gguf", "q4_k")
    with pytest.raises(SmoledgeError, match="is a K-quant, made by llama.cpp's quantizer"):
        write_gguf(tiny_model_dir, tmp_path / "m.gguf", "q4_k_m")
    model = tmp_path / "noweights"
    shutil.copytree(tiny_model_dir, model, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(SmoledgeError, match="no \\*.safetensors weights"):
        write_gguf(model, tmp_path / "m.gguf", "f32")


@pytest.mark.parametrize("missing", ["tokenizer.json", "config.json"])
def test_a_missing_file_names_the_fix_and_keeps_what_was_exported(tiny_model_dir: Path, tmp_path: Path,
                                                                   missing: str) -> None:
    from smoledge.io import sha256_file

    good = write_gguf(tiny_model_dir, tmp_path / "model-f32.gguf", "f32")
    before = sha256_file(good)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken, ignore=shutil.ignore_patterns(missing))
    with pytest.raises(SmoledgeError, match=rf"{missing} is missing; a model directory holds config.json, its "
                                            r"weights and its tokenizer \(.*save_pretrained"):
        write_gguf(broken, good, "f32")
    assert sha256_file(good) == before  # the earlier file at the same path is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "model-f32.gguf"]  # no temp file left
