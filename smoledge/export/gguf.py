"""Write an HF model directory as a GGUF file: SmolLM3, Llama (SmolLM/SmolLM2, Llama 3.x, TinyLlama),
Qwen2/Qwen2.5, Qwen3, Gemma 3 (text) and the Phi-3 architecture (smoledge.export.architectures has the
table; the released Phi-3/3.5-mini configs are refused there, since llama.cpp runs the 4k model's
sliding window and the 128k/3.5 models' LongRoPE differently from transformers).

Why smoledge keeps its own writer over the `gguf` package instead of running llama.cpp's
convert_hf_to_gguf.py: it must refuse, with the reason and the fix, anything llama.cpp would run
differently from PyTorch (the converter writes such files and warns, or not); it pads vocabularies
and writes the tokenizers smoledge trains, which the converter cannot identify (it recognises a
BPE tokenizer by a hash of one sample's tokens); and it applies smoledge's rule for the output
head of Q4_0 files. The converter of the exact llama.cpp version smoledge runs is used instead as
an oracle in tests/test_export_architectures.py: same tensor names, shapes and data, same
architecture keys, so a llama.cpp upgrade that renames or re-derives anything fails a test.

This module is the generic writer; what differs per architecture (tensor mapping, transforms,
keys, refusals) lives in smoledge.export.architectures, and the tokenizer keys come from
smoledge.tokenizer.llama_cpp, which proves its pre-tokenizer in llama.cpp. It does not make
K-quants (smoledge.export.kquant) nor check parity (smoledge.export.parity).

    from smoledge.export.gguf import write_gguf
    write_gguf("runs/quickstart/export/hf", "model-q8_0.gguf", "q8_0")
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from smoledge.errors import SmoledgeError
from smoledge.export import architectures as A
from smoledge.export import gguf_constants as C
from smoledge.io import atomic_path, read_json
from smoledge.tokenizer.gguf_vocab import add_vocab
from smoledge.tokenizer.llama_cpp import MODEL_FILES_MISSING, gguf_vocab_for_dir


def write_gguf(hf_dir: str | Path, out_path: str | Path, dtype: str, notes: list[str] | None = None,
               *, _permute_qk: bool = True, _mistakes: Collection[str] = ()) -> Path:
    """Write `hf_dir` as a GGUF of `dtype` (f32 | f16 | bf16 | q8_0 | q4_0) at `out_path`, atomically.

    `notes` (if given) receives one line per tensor kept wider than asked (rows not a
    multiple of the quantization block). `_permute_qk=False` writes Q/K rows in the other
    RoPE layout than llama.cpp's graph runs (HF order for llama/smollm3), and `_mistakes`
    plants others (architectures.MISTAKES): deliberately wrong files the parity tests use
    to prove the gate catches them.
    """
    import gguf

    hf_dir, out_path = Path(hf_dir), Path(out_path)
    if dtype in C.LLAMA_CPP_QUANTS:
        raise SmoledgeError(f"GGUF type '{dtype}' is a K-quant, made by llama.cpp's quantizer from the f16 file "
                            f"(smoledge.export.kquant.quantize_gguf), not by this writer")
    if dtype not in C.GGUF_DTYPES:
        raise SmoledgeError(f"GGUF type '{dtype}' is not supported; choose one of {', '.join(C.GGUF_DTYPES)} "
                            f"(or the K-quants {', '.join(C.LLAMA_CPP_QUANTS)} through the export stage)")
    matrix_type, file_type = C.GGUF_DTYPES[dtype]
    notes = notes if notes is not None else []
    mistakes = set(_mistakes) | ({"rope_order"} if not _permute_qk else set())
    if mistakes - set(A.MISTAKES):
        raise ValueError(f"unknown planted mistakes {sorted(mistakes - set(A.MISTAKES))}; see architectures.MISTAKES")

    cfg = read_json(hf_dir / "config.json", MODEL_FILES_MISSING)
    hp = model_hparams(cfg, hf_dir)
    vocab = gguf_vocab_for_dir(hf_dir, hp["vocab_size"])
    weights = _load_weights(hf_dir)

    tensors = list(_gguf_tensors(weights, hp, mistakes))
    # The output projection (the embedding itself when tied) is the tensor 4-bit rounding hurts most.
    head = C.GLOBAL_TENSORS["model.embed_tokens.weight" if hp["tied"] else "lm_head.weight"]
    planned = [(name, arr, _tensor_type(name, arr, matrix_type, notes, head)) for name, arr in tensors]
    if matrix_type not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16) and not any(
        t == matrix_type for _, _, t in planned
    ):
        raise SmoledgeError(
            f"cannot write a {dtype} GGUF from {hf_dir}: no weight matrix has rows divisible by "
            f"{gguf.GGML_QUANT_SIZES[matrix_type][0]}; use f16 or f32, or widen the model"
        )

    with atomic_path(out_path) as tmp:
        w = gguf.GGUFWriter(tmp, hp["arch"])
        w.add_name(display_name(hf_dir))
        w.add_context_length(hp["context_length"])
        w.add_embedding_length(hp["hidden_size"])
        w.add_block_count(hp["num_layers"])
        w.add_feed_forward_length(hp["intermediate_size"])
        w.add_head_count(hp["num_heads"])
        w.add_head_count_kv(hp["num_kv_heads"])
        # Explicit even where llama.cpp's default (hidden / heads) agrees: Qwen3 and Gemma 3 differ.
        w.add_key_length(hp["head_dim"])
        w.add_value_length(hp["head_dim"])
        w.add_rope_dimension_count(hp["rope_dim"])
        w.add_rope_freq_base(hp["rope_theta"])
        if hp["yarn"]:
            w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
            w.add_rope_scaling_factor(hp["yarn"]["factor"])
            w.add_rope_scaling_orig_ctx_len(hp["yarn"]["original_context_length"])
            if hp["yarn"]["attn_factor"] != 1.0:
                w.add_rope_scaling_attn_factors(hp["yarn"]["attn_factor"])
        if hp["linear"]:
            w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            w.add_rope_scaling_factor(hp["linear"])
        w.add_layer_norm_rms_eps(hp["rms_norm_eps"])
        w.add_vocab_size(hp["vocab_size"])
        for method, value in hp["keys"]:
            if not ("swa_pattern" in mistakes and method == "add_sliding_window_pattern"):
                getattr(w, method)(value)
        w.add_file_type(int(file_type))
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)

        add_vocab(w, vocab)

        for name, arr, qtype in planned:
            data = gguf.quants.quantize(arr, qtype)
            w.add_tensor(name, data, raw_dtype=qtype)

        w.write_header_to_file(path=tmp)
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return out_path


def display_name(hf_dir: Path) -> str:
    """general.name: the directory's name, with any part llama.cpp keys tokenizer behaviour on broken
    by a space (C.LLAMA_CPP_NAME_TRIGGERS: phi3 -> phi 3), so the model tokenizes as its tokenizer says."""
    import re

    def defuse(m: re.Match[str]) -> str:
        text = m.group(0)
        return text.replace("-", " ") if "-" in text else text[:-1] + " " + text[-1]

    pattern = "|".join(re.escape(t) for t in C.LLAMA_CPP_NAME_TRIGGERS)
    return re.sub(pattern, defuse, hf_dir.resolve().name, flags=re.IGNORECASE)


# ---------------------------------------------------------------- model config


def model_hparams(cfg: dict[str, Any], where: Path | str = "") -> dict[str, Any]:
    """Check a config.json is exportable (architectures.ARCHITECTURES) and return what the GGUF needs."""
    where = f" in {where}" if where else ""
    spec = A.arch_spec(cfg.get("model_type"), where)
    conf = A.hf_config(cfg, where)
    extra = spec.extra(conf, where)
    graph = A.GRAPHS[extra.arch or spec.graph]
    act = getattr(conf, spec.act_attr, None)
    if act not in spec.activations:
        raise SmoledgeError(f"{spec.act_attr} '{act}'{where}: llama.cpp's {graph.name} graph computes "
                            f"{' / '.join(spec.activations)} only; train with {spec.activations[0]}")
    A.check_biases(spec, graph, conf, where)

    layers = int(conf.num_hidden_layers)
    hidden = int(conf.hidden_size)
    heads = int(conf.num_attention_heads)
    kv = int(getattr(conf, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(conf, "head_dim", None) or hidden // heads)
    if not spec.q_width_free and head_dim * heads != hidden:
        raise SmoledgeError(f"head_dim {head_dim} x {heads} heads != hidden_size {hidden}{where}; llama.cpp's "
                            f"{graph.name} graph sizes Q by hidden_size, so head_dim must be hidden_size / heads")
    rope_dim = extra.rope_dim or head_dim
    return {
        "arch": graph.name,
        "graph": graph,
        "spec": spec,
        "num_layers": layers,
        "hidden_size": hidden,
        "intermediate_size": int(conf.intermediate_size),
        "num_heads": heads,
        "num_kv_heads": kv,
        "head_dim": head_dim,
        "rope_dim": rope_dim,
        "context_length": int(conf.max_position_embeddings),
        "rope_theta": float(conf.rope_theta),
        "rms_norm_eps": float(conf.rms_norm_eps),
        "vocab_size": int(conf.vocab_size),
        "tied": bool(conf.tie_word_embeddings),
        **A.rope_scaling(spec, graph, conf, where, rope_dim),
        "keys": extra.keys,
        "q_norm_scale": extra.q_norm_scale,
    }


# ---------------------------------------------------------------- weights


def _load_weights(hf_dir: Path) -> dict[str, np.ndarray]:
    """All model tensors as float32 numpy (bf16/f16 checkpoints are upcast exactly)."""
    import torch
    from safetensors.torch import load_file

    files = sorted(hf_dir.glob("*.safetensors"))
    if not files:
        found = ", ".join(p.name for p in hf_dir.iterdir()) or "nothing"
        raise SmoledgeError(f"no *.safetensors weights in {hf_dir} (found {found}); save the model with "
                            "save_pretrained(..., safe_serialization=True)")
    out: dict[str, np.ndarray] = {}
    for f in files:
        for name, t in load_file(f).items():
            out[name] = t.to(torch.float32).numpy()
    return out


def _gguf_tensors(weights: dict[str, np.ndarray], hp: dict[str, Any],
                  mistakes: Collection[str] = ()) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (llama.cpp name, float32 array): token_embd, the blocks in order, then the head.

    Names come from gguf's TensorNameMap for the graph; a weight the graph's loader does not create
    is refused (llama.cpp would ignore it and compute a different model), as is a required one missing.
    """
    from gguf import MODEL_TENSOR as T
    from gguf import get_tensor_name_map

    graph: A.Graph = hp["graph"]
    spec: A.ArchSpec = hp["spec"]
    names = get_tensor_name_map(graph.arch, hp["num_layers"])
    loads = graph.required | graph.optional
    reorder = graph.rope_norm != ("rope_order" in mistakes)
    out: dict[str, np.ndarray] = {}
    unplaced: list[str] = []
    for hf_name, arr in weights.items():
        if hf_name.endswith("rotary_emb.inv_freq"):  # rotary caches some checkpoints carry; llama.cpp recomputes
            continue
        if hp["tied"] and hf_name == "lm_head.weight":  # saved copies of a tied head are the embedding
            continue
        mapped = names.get_type_and_name(hf_name, try_suffixes=(".weight", ".bias"))
        suffix = hf_name.rsplit(".", 1)[-1]
        if mapped is None or (mapped[0], suffix) not in loads:
            unplaced.append(hf_name)
            continue
        kind, name = mapped
        if ("drop_qkv_bias" in mistakes and suffix == "bias"
                and kind in (T.ATTN_Q, T.ATTN_K, T.ATTN_V, T.ATTN_QKV)):
            continue
        if spec.norm_shift and hf_name.endswith("norm.weight") and "norm_shift" not in mistakes:
            arr = arr + np.float32(spec.norm_shift)
        if kind == T.ATTN_Q_NORM and hp["q_norm_scale"] != 1.0:
            arr = arr * np.float32(hp["q_norm_scale"])
        if reorder:
            arr = A.reorder_rope_rows(kind, arr, hp)
        out[name] = arr
    if unplaced:
        raise SmoledgeError(f"checkpoint has weights llama.cpp's {graph.name} graph has no place for: "
                            f"{sorted(unplaced)[:5]}; this is not a plain {spec.model_type} model")
    required = A.expected_names(graph, hp["num_layers"], graph.required)
    if not hp["tied"]:
        required.append(A.gguf_name(T.OUTPUT, None, "weight"))  # else llama.cpp silently reuses the embedding
    missing = [n for n in required if n not in out]
    if missing:
        raise SmoledgeError(f"the checkpoint has nothing for {missing[:5]}, which llama.cpp's {graph.name} graph "
                            "requires; the model directory is incomplete")
    if hp["rope_freqs"] is not None and "rope_freqs" not in mistakes:
        out[A.gguf_name(T.ROPE_FREQS, None, "weight")] = hp["rope_freqs"]

    def order(name: str) -> tuple[int, int]:
        if name.startswith("blk."):
            return 1, int(name.split(".")[1])
        return (0 if name.startswith("token_embd") else 2), 0

    yield from sorted(out.items(), key=lambda item: order(item[0]))


def _tensor_type(name: str, arr: np.ndarray, matrix_type, notes: list[str], head: str = ""):
    """1-D tensors (norms) stay F32; matrices take the file's type where its block size fits, except
    the output projection `head`, which 4-bit files keep in C.HEAD_TYPE as llama.cpp's quantizer does."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    if arr.ndim == 1 or matrix_type == GGMLQuantizationType.F32:
        return GGMLQuantizationType.F32
    if matrix_type == GGMLQuantizationType.F16:
        return matrix_type
    if name == head and matrix_type in C.HEAD_TYPE:
        notes.append(f"{name}: the output projection, kept {C.HEAD_TYPE[matrix_type].name} as llama.cpp keeps it "
                     f"in {matrix_type.name} files")
        matrix_type = C.HEAD_TYPE[matrix_type]
    block = GGML_QUANT_SIZES[matrix_type][0]
    if arr.shape[-1] % block:
        notes.append(f"{name}: rows of {arr.shape[-1]} are not a multiple of {block}, kept {C.QUANT_FALLBACK.name}")
        return C.QUANT_FALLBACK
    return matrix_type
