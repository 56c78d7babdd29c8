"""Config section for the tokenizer stage: train smoledge's byte-level BPE or borrow a model's tokenizer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from smoledge.config import Section

DEFAULT_VOCAB_SIZE = 4096
DEFAULT_MIN_FREQUENCY = 2


@dataclass
class TokenizerConfig(Section):
    pretrained: str | None = None
    """Use this existing tokenizer instead of training one: a local directory or a Hugging Face hub id
    (e.g. HuggingFaceTB/SmolLM3-3B, the teacher's own, so its soft targets line up with the shards).
    It must be a fast byte-level BPE tokenizer with an EOS token; documents end with its EOS.
    null: train smoledge's byte-level BPE on the curated train split."""
    vocab_size: int = DEFAULT_VOCAB_SIZE
    """Size of the byte-level BPE vocabulary, special tokens included. Unused with `pretrained`
    (the vocabulary is the pretrained tokenizer's), where setting it is an error."""
    min_frequency: int = DEFAULT_MIN_FREQUENCY
    """Minimum pair frequency for a BPE merge. Unused with `pretrained`, where setting it is an error."""
    dtype: Literal["auto", "uint16", "uint32"] = "auto"
    """Token id dtype of the packed shards (auto: uint16 when the vocab fits, else uint32)."""

    def __post_init__(self) -> None:
        if self.pretrained is not None:
            if not self.pretrained.strip():
                self.fail("pretrained", "is empty; name a tokenizer directory or hub id, or remove the key")
            # A vocab_size next to a pretrained tokenizer would silently mean nothing: refuse it.
            for key, default in (("vocab_size", DEFAULT_VOCAB_SIZE), ("min_frequency", DEFAULT_MIN_FREQUENCY)):
                if getattr(self, key) != default:
                    self.fail(key, f"is unused with tokenizer.pretrained ({self.pretrained}): the vocabulary is "
                                   f"the pretrained tokenizer's; remove {key} or remove pretrained")
        if not 300 <= self.vocab_size <= 1_000_000:
            self.fail("vocab_size", f"must be in [300, 1000000] (256 bytes + merges), got {self.vocab_size}")
        if self.dtype == "uint16" and self.vocab_size > 65536:
            self.fail("dtype", f"uint16 cannot hold vocab_size {self.vocab_size}; use uint32 or auto")
