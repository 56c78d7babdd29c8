"""Tiny local stand-ins for what a real-scale recipe pulls from the Hugging Face hub.

- `llama3_style_tokenizer`: a byte-level BPE shaped like SmolLM3's (Llama 3's): the Llama-3
  split regex, ignore_merges, special tokens appended after the merges (so EOS is NOT 0),
  EOS <|im_end|>, no BOS, no pad, a ChatML chat template.
- `save_teacher`: a random tiny SmolLM3 saved with that tokenizer, its embedding table padded
  past the tokenizer's length as HF teachers pad theirs.
- `local_hub_dataset`: a dataset folder with named subsets that `datasets.load_dataset(path,
  subset, split="train", streaming=True)` streams exactly like a hub id (FineWeb2's layout).

Used by tests/test_export_pretrained_tokenizer.py and tests/test_realscale_standin.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

BEGIN, END_TEXT, IM_START, IM_END = "<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"
# Llama 3 puts its specials after the 128000 merges, then reserved ones; the same shape here.
STANDIN_SPECIALS = (BEGIN, END_TEXT, "<|reserved_special_token_0|>", IM_START, IM_END,
                    "<|reserved_special_token_1|>")


def llama3_style_tokenizer(texts: Iterable[str], vocab_size: int):
    """A PreTrainedTokenizerFast with SmolLM3's tokenizer structure (see module docstring)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from smoledge.tokenizer.bpe import CHAT_TEMPLATE
    from smoledge.tokenizer.llama_cpp import LLAMA3_SPLIT_REGEX

    tokenizer = Tokenizer(models.BPE(ignore_merges=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(STANDIN_SPECIALS), min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    tokenizer.add_special_tokens(list(STANDIN_SPECIALS))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=None, eos_token=IM_END, pad_token=None, unk_token=None,
        clean_up_tokenization_spaces=False, model_max_length=1 << 20,
        model_input_names=["input_ids", "attention_mask"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def padded(n: int, multiple: int = 64) -> int:
    """n rounded up to a multiple (how HF checkpoints size their embedding tables)."""
    return -(-n // multiple) * multiple


def save_teacher(out: Path, tokenizer, num_layers: int = 4, hidden: int = 64, seed: int = 0) -> Path:
    """A random tiny SmolLM3 (NoPE at layer 3) with a padded vocabulary, saved with `tokenizer`."""
    from smoledge.model.build import hf_config, init_model, special_ids
    from smoledge.model.config import ModelConfig

    cfg = ModelConfig(preset="custom", num_layers=num_layers, hidden_size=hidden, intermediate_size=2 * hidden,
                      num_heads=4, num_kv_heads=2, max_position_embeddings=512)
    model = init_model(hf_config(cfg, vocab_size=padded(len(tokenizer)), **special_ids(tokenizer)), seed=seed)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def local_hub_dataset(root: Path, subsets: dict[str, list[str]]) -> Path:
    """A dataset folder whose README declares one config per subset (data/<subset>/train/*.parquet)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    configs = []
    for subset, texts in subsets.items():
        part = root / "data" / subset / "train"
        part.mkdir(parents=True, exist_ok=True)
        ids = [f"<urn:uuid:{subset}-{i}>" for i in range(len(texts))]
        pq.write_table(pa.table({"text": texts, "id": ids}), part / "000_00000.parquet")
        configs.append(f"- config_name: {subset}\n  data_files:\n  - split: train\n    path: data/{subset}/train/*\n")
    (root / "README.md").write_text("---\nconfigs:\n" + "".join(configs) + "---\n", encoding="utf-8")
    return root
