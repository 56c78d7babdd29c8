"""Constants of smoledge's GGUF writer: file types, the quantization rules, what llama.cpp hard-codes
(SmolLM3's NoPE interval, YaRN's betas, names that change its tokenizer), and the llama-family tensor
names smoledge's imatrix uses.

Kept apart from the writer so they can be read (and checked) at a glance. The per-architecture
tables (tensor mapping, transforms, keys, refusals) are smoledge.export.architectures; the
tokenizer's mapping is smoledge.tokenizer.llama_cpp.
"""

from __future__ import annotations

from gguf import GGMLQuantizationType, LlamaFileType

# Whole-model tensors (the writer maps the rest through gguf's TensorNameMap, smoledge.export.architectures).
GLOBAL_TENSORS: dict[str, str] = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}

# dtype name -> (ggml type for 2-D weight matrices, llama.cpp file type)
# (written in Python by gguf.quants).
GGUF_DTYPES: dict[str, tuple[GGMLQuantizationType, LlamaFileType]] = {
    "f32": (GGMLQuantizationType.F32, LlamaFileType.ALL_F32),
    "f16": (GGMLQuantizationType.F16, LlamaFileType.MOSTLY_F16),
    "bf16": (GGMLQuantizationType.BF16, LlamaFileType.MOSTLY_BF16),
    "q8_0": (GGMLQuantizationType.Q8_0, LlamaFileType.MOSTLY_Q8_0),
    "q4_0": (GGMLQuantizationType.Q4_0, LlamaFileType.MOSTLY_Q4_0),
}
# K-quants: gguf.quants cannot make them (NotImplementedError), so llama.cpp's own quantizer
# does, from the F16 file (dtype name -> llama_cpp LLAMA_FTYPE_* constant). It keeps mixed
# types per tensor (Q4_K_M: some attn_v/ffn_down in Q6_K) and falls back to a legacy quant
# where a row is not a multiple of 256.
LLAMA_CPP_QUANTS: dict[str, str] = {
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
}
EXPORT_TYPES = (*GGUF_DTYPES, *LLAMA_CPP_QUANTS)
# Row length of a K-quant super-block (llama.cpp's QK_K); shorter or ragged rows fall back.
K_QUANT_BLOCK = 256
# The output projection (token_embd when embeddings are tied) in 4-bit files: llama.cpp's quantizer
# keeps it at 8 bits (Q6_K where rows fit 256), since its rounding error lands straight on the logits.
# On the quickstart student, Q4_0 everywhere cost +11.4% held-out perplexity, with this +6.8%.
HEAD_TYPE: dict[GGMLQuantizationType, GGMLQuantizationType] = {GGMLQuantizationType.Q4_0: GGMLQuantizationType.Q8_0}
# Where a matrix's row length is not a multiple of the block size, it is kept in this type.
QUANT_FALLBACK = GGMLQuantizationType.F16

# llama.cpp's smollm3 graph skips RoPE in layer il when (il + 1) % 4 == 0; there is
# no GGUF key to change that, so only this interval can be exported faithfully.
LLAMA_CPP_NOPE_INTERVAL = 4

# Substrings of general.name on which llama.cpp 0.3.36 changes special-token attributes whatever the
# architecture (llama-vocab.cpp: "phi-3"/"phi3" strip the spaces after every special token and expect
# "</s>" in the vocabulary, failing to load without it); the writer spaces them out of the name.
LLAMA_CPP_NAME_TRIGGERS = ("phi-3", "phi3", "modern-bert")

# HF activation names llama.cpp's llama/smollm3/qwen/phi3 graphs compute (SwiGLU with SiLU).
SUPPORTED_ACTIVATIONS = ("silu", "swish")

# RoPE scaling: YaRN is the one transformers rope_scaling type smoledge writes to GGUF
# (`<arch>.rope.scaling.type/factor/original_context_length`, read by llama.cpp for every arch).
# llama.cpp computes what transformers does (modeling_rope_utils._compute_yarn_parameters): the same
# correction range (dims between the beta_fast and beta_slow rotation counts, floored/ceiled) and ramp,
# and cos/sin scaled by 0.1 ln(factor) + 1 (ggml's rope_yarn; llama_context cancels its own copy).
# It reads no beta keys from a GGUF (fixed at these values) and always floors/ceils the range, so a
# config that changes them cannot be exported faithfully.
YARN_ROPE_TYPE = "yarn"
YARN_FIXED = {"beta_fast": 32.0, "beta_slow": 1.0, "truncate": True}
# rope_scaling keys the writer understands; any other would change the model in ways it cannot map.
YARN_KEYS = ("rope_type", "type", "factor", "original_max_position_embeddings", "attention_factor", "mscale",
             "mscale_all_dim", *YARN_FIXED)
