"""A model that arrives as a GGUF file, turned into an HF directory smoledge can check, export and distill from.

    from smoledge.model.from_gguf import hf_dir_from_gguf
    hf_dir_from_gguf("SmolLM2-135M-Instruct.Q4_1.gguf", "models/smollm2-135m-instruct")

The weights are dequantized by transformers' GGUF loader into float32 (a Q4_1 file gives the exact
values llama.cpp multiplies with, so PyTorch and llama.cpp run the same function on it). The tokenizer
is rebuilt by smoledge.tokenizer.from_gguf with the family's real pre-tokenizer, not transformers'
byte-fallback stand-in, and checked against llama.cpp on the same file. What this does not do: recover
the full-precision weights a quantized file was made from, or the original tokenizer_config.json's
extras (the chat template and special tokens come from the GGUF).
"""

from __future__ import annotations

from pathlib import Path

from smoledge.errors import SmoledgeError
from smoledge.io import atomic_dir
from smoledge.tokenizer.from_gguf import tokenizer_from_gguf


def hf_dir_from_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Write `gguf_path` as an HF model directory (safetensors, config, tokenizer, generation config)."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    if not gguf_path.is_file():
        raise SmoledgeError(f"{gguf_path} does not exist; give the path of a .gguf model file")
    tok = tokenizer_from_gguf(gguf_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise SmoledgeError(f"transformers cannot load {gguf_path.name} as a model ({type(exc).__name__}: "
                            f"{str(exc).strip()[:300]}); its architecture or quantization type is not one "
                            "transformers' GGUF loader dequantizes. Use the model's original HF directory") from None
    if model.config.vocab_size < len(tok):
        raise SmoledgeError(f"{gguf_path.name}: the model's vocab_size {model.config.vocab_size} is smaller than its "
                            f"tokenizer ({len(tok)} tokens); the file is inconsistent")
    model.config.bos_token_id, model.config.eos_token_id = tok.bos_token_id, tok.eos_token_id
    model.config.pad_token_id = tok.pad_token_id
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id).save_pretrained(tmp)
    return out_dir
