"""The tokenizer stage and concern: training smoledge's byte-level BPE (bpe), borrowing a model's tokenizer
(pretrained), the mapping onto llama.cpp's GGUF tokenizer keys (llama_cpp, spm), rebuilding an HF tokenizer
from a GGUF file (from_gguf), and the packed token shards training reads (shards)."""
