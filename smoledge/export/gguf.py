"""Write an HF model directory (SmolLM3 or Llama) as a GGUF file.

smoledge's own writer over the `gguf` package: llama.cpp's converter recognises
a BPE tokenizer by a hash of one sample's tokens, which no vocabulary smoledge
trains can match, and owning the mapping lets us refuse, with a reason,
anything llama.cpp would run differently from PyTorch. The tokenizer keys come
from smoledge.tokenizer.llama_cpp, which proves its pre-tokenizer in llama.cpp.

    from smoledge.export.gguf import write_gguf
    write_gguf("runs/quickstart/export/hf", "model-q8_0.gguf", "q8_0")
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from smoledge.errors import SmoledgeError
from smoledge.export import gguf_constants as C
from smoledge.io import atomic_path, read_json
from smoledge.tokenizer.llama_cpp import MODEL_FILES_MISSING, add_vocab, gguf_vocab_for_dir


def write_gguf(hf_dir: str | Path, out_path: str | Path, dtype: str, notes: list[str] | None = None,
               *, _permute_qk: bool = True) -> Path:
    """Write `hf_dir` as a GGUF of `dtype` (f32 | f16 | bf16 | q8_0 | q4_0) at `out_path`, atomically.

    `notes` (if given) receives one line per tensor kept wider than asked (rows not a
    multiple of the quantization block). `_permute_qk=False` writes Q/K in HF row order,
    a deliberately wrong file the parity tests use to prove the gate catches it.
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

    cfg = read_json(hf_dir / "config.json", MODEL_FILES_MISSING)
    hp = model_hparams(cfg, hf_dir)
    vocab = gguf_vocab_for_dir(hf_dir, hp["vocab_size"])
    weights = _load_weights(hf_dir)

    tensors = list(_gguf_tensors(weights, hp, permute=_permute_qk))
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
        w.add_name(hf_dir.name)
        w.add_context_length(hp["context_length"])
        w.add_embedding_length(hp["hidden_size"])
        w.add_block_count(hp["num_layers"])
        w.add_feed_forward_length(hp["intermediate_size"])
        w.add_head_count(hp["num_heads"])
        w.add_head_count_kv(hp["num_kv_heads"])
        w.add_rope_dimension_count(hp["head_dim"])
        w.add_rope_freq_base(hp["rope_theta"])
        if hp["yarn"]:
            w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
            w.add_rope_scaling_factor(hp["yarn"]["factor"])
            w.add_rope_scaling_orig_ctx_len(hp["yarn"]["original_context_length"])
            if hp["yarn"]["attn_factor"] != 1.0:
                w.add_rope_scaling_attn_factors(hp["yarn"]["attn_factor"])
        w.add_layer_norm_rms_eps(hp["rms_norm_eps"])
        w.add_vocab_size(hp["vocab_size"])
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


# ---------------------------------------------------------------- model config


def model_hparams(cfg: dict[str, Any], where: Path | str = "") -> dict[str, Any]:
    """Check a SmolLM3/Llama config.json is exportable and return what the GGUF needs."""
    where = f" in {where}" if where else ""
    model_type = cfg.get("model_type")
    if model_type not in ("smollm3", "llama"):
        raise SmoledgeError(f"model_type '{model_type}'{where} is not exportable; smoledge exports smollm3/llama models")
    act = cfg.get("hidden_act", "silu")
    if act not in C.SUPPORTED_ACTIVATIONS:
        raise SmoledgeError(f"hidden_act '{act}'{where}: llama.cpp runs SwiGLU with SiLU only; train with silu")
    for flag in ("attention_bias", "mlp_bias"):
        if cfg.get(flag):
            raise SmoledgeError(f"{flag}=true{where}: the llama/smollm3 GGUF graph has no biases; train without them")
    yarn = yarn_hparams(cfg, where)
    if cfg.get("use_sliding_window"):
        raise SmoledgeError(f"use_sliding_window=true{where}: llama.cpp's smollm3 graph has no sliding window; "
                            "train with full attention")

    layers = int(cfg["num_hidden_layers"])
    hidden = int(cfg["hidden_size"])
    heads = int(cfg["num_attention_heads"])
    kv = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    if head_dim * heads != hidden:
        raise SmoledgeError(f"head_dim {head_dim} x {heads} heads != hidden_size {hidden}{where}; "
                            "llama.cpp expects head_dim = hidden_size / num_attention_heads")

    use_rope = cfg.get("no_rope_layers") or [1] * layers
    if len(use_rope) != layers:
        raise SmoledgeError(f"no_rope_layers has {len(use_rope)} entries for {layers} layers{where}; the config is corrupt")
    if all(use_rope):
        arch = "llama"
    else:
        expected = [int((i + 1) % C.LLAMA_CPP_NOPE_INTERVAL != 0) for i in range(layers)]
        if [int(bool(x)) for x in use_rope] != expected:
            nope = [i for i, x in enumerate(use_rope) if not x]
            want = [i for i, x in enumerate(expected) if not x]
            raise SmoledgeError(
                f"NoPE layers {nope}{where} do not follow llama.cpp's fixed pattern (every "
                f"{C.LLAMA_CPP_NOPE_INTERVAL}th layer: {want}); llama.cpp would run a different model. "
                f"Train with no_rope_interval: {C.LLAMA_CPP_NOPE_INTERVAL} (or 0 for no NoPE layers)"
            )
        arch = "smollm3"
    return {
        "arch": arch,
        "num_layers": layers,
        "hidden_size": hidden,
        "intermediate_size": int(cfg["intermediate_size"]),
        "num_heads": heads,
        "num_kv_heads": kv,
        "head_dim": head_dim,
        "context_length": int(cfg.get("max_position_embeddings", 2048)),
        "rope_theta": float(cfg.get("rope_theta", 10000.0)),
        "rms_norm_eps": float(cfg.get("rms_norm_eps", 1e-6)),
        "vocab_size": int(cfg["vocab_size"]),
        "tied": bool(cfg.get("tie_word_embeddings", True)),
        "yarn": yarn,
    }


def yarn_hparams(cfg: dict[str, Any], where: str = "") -> dict[str, float] | None:
    """The GGUF YaRN keys for a config's rope_scaling (None for plain RoPE); refuses scaling llama.cpp
    would compute differently. `attn_factor` multiplies llama.cpp's own 0.1 ln(factor) + 1, so it is
    transformers' attention factor divided by that (1.0 unless the config sets its own)."""
    rs = cfg.get("rope_scaling")
    if not rs:
        return None
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "default":
        return None
    if kind != C.YARN_ROPE_TYPE:
        raise SmoledgeError(f"rope_scaling{where} is {kind!r} ({rs}); smoledge exports plain RoPE or YaRN only "
                            "(export.yarn_factor); remove rope_scaling from the model config")
    unknown = sorted(set(rs) - set(C.YARN_KEYS))
    if unknown:
        raise SmoledgeError(f"rope_scaling{where} has {unknown}, which smoledge cannot map to llama.cpp's YaRN; "
                            f"use only {', '.join(C.YARN_KEYS)}")
    for key, fixed in C.YARN_FIXED.items():
        if rs.get(key) is not None and rs[key] != fixed:
            raise SmoledgeError(f"rope_scaling.{key}{where} is {rs[key]!r}; llama.cpp's YaRN runs with {key}={fixed} "
                                "(no GGUF key changes it), so the GGUF would compute a different model. Remove it")
    factor = float(rs["factor"])
    if factor < 1.0:
        raise SmoledgeError(f"rope_scaling.factor{where} is {factor}; YaRN extends the context, it must be >= 1")

    def mscale(scale: float, m: float = 1.0) -> float:  # transformers' get_mscale
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention = rs.get("attention_factor")
    if attention is None:
        attention = (mscale(factor, rs["mscale"]) / mscale(factor, rs["mscale_all_dim"])
                     if rs.get("mscale") and rs.get("mscale_all_dim") else mscale(factor))
    return {
        "factor": factor,
        "original_context_length": int(rs.get("original_max_position_embeddings")
                                       or cfg.get("max_position_embeddings", 2048)),
        "attn_factor": float(attention) / mscale(factor),
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


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF rotates the two halves of each head (rotate_half); llama.cpp's NORM RoPE rotates
    adjacent pairs. Reordering each head's rows from [x0..x_{d/2-1}, y0..] to [x0, y0, x1, y1..]
    makes llama.cpp rotate the same pairs. Applied to Q and K alike, the q.k products of
    NoPE layers are unchanged, so every layer gets it."""
    rows, cols = w.shape
    hd = rows // n_head
    return w.reshape(n_head, 2, hd // 2, cols).swapaxes(1, 2).reshape(rows, cols)  # (n_head*hd, cols)


def _gguf_tensors(weights: dict[str, np.ndarray], hp: dict[str, Any], permute: bool = True):
    """Yield (llama.cpp name, float32 array) in the order llama.cpp lists them."""
    unused = set(weights)

    def take(name: str) -> np.ndarray:
        if name not in weights:
            raise SmoledgeError(f"weight '{name}' is missing from the checkpoint; the model directory is incomplete")
        unused.discard(name)
        return weights[name]

    yield C.GLOBAL_TENSORS["model.embed_tokens.weight"], take("model.embed_tokens.weight")
    for i in range(hp["num_layers"]):
        for hf_name, gg_name in C.LAYER_TENSORS.items():
            arr = take(f"model.layers.{i}.{hf_name}")
            if permute and gg_name in C.ROPE_PERMUTED:
                n = hp["num_heads"] if gg_name == "attn_q.weight" else hp["num_kv_heads"]
                arr = permute_qk(arr, n)
            yield f"blk.{i}.{gg_name}", arr
    yield C.GLOBAL_TENSORS["model.norm.weight"], take("model.norm.weight")
    if hp["tied"]:
        unused.discard("lm_head.weight")  # saved copies of a tied head are the embedding
    else:
        yield C.GLOBAL_TENSORS["lm_head.weight"], take("lm_head.weight")
    # Rotary caches some checkpoints carry are recomputed by llama.cpp.
    unused = {n for n in unused if not n.endswith("rotary_emb.inv_freq")}
    if unused:
        raise SmoledgeError(f"checkpoint has weights the GGUF graph has no place for: {sorted(unused)[:5]}; "
                            "this is not a plain SmolLM3/Llama model")



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
