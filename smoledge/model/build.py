"""Build a transformers SmolLM3 from a ModelConfig.

    from smoledge.model.build import hf_config, init_model, special_ids
    model = init_model(hf_config(ModelConfig(preset="tiny"), vocab_size=len(tok), **special_ids(tok)), seed=0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smoledge.errors import SmoledgeError
from smoledge.model.config import ModelConfig

if TYPE_CHECKING:
    from transformers import SmolLM3Config, SmolLM3ForCausalLM

# Special token ids of smoledge's own tokenizer (see smoledge.tokenizer.bpe); a pretrained
# tokenizer (tokenizer.pretrained) has its own: take them with special_ids(tokenizer).
EOS_ID = 0
BOS_ID = 0
PAD_ID = 0


def special_ids(tokenizer: Any) -> dict[str, int | None]:
    """hf_config's bos_id / eos_id / pad_id from a tokenizer: the ids the model's config and
    generation config must carry so HF generate() and the exported GGUF stop where the shards
    end documents (at the tokenizer's EOS). A tokenizer without a pad token pads with EOS;
    one without BOS (SmolLM3's) gives bos_id None."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise SmoledgeError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no EOS token; documents "
                            "and generations need one to end. Use a tokenizer that defines eos_token")
    pad = tokenizer.pad_token_id
    return {"bos_id": tokenizer.bos_token_id, "eos_id": eos, "pad_id": eos if pad is None else pad}


def hf_config(cfg: ModelConfig, vocab_size: int, bos_id: int | None = BOS_ID, eos_id: int = EOS_ID,
              pad_id: int = PAD_ID) -> "SmolLM3Config":
    """SmolLM3Config for this shape: GQA, NoPE every `no_rope_interval` layers, tied embeddings.

    `vocab_size` may exceed the tokenizer's length (a teacher's padded embedding table):
    the extra rows are ids no text maps to."""
    from transformers import SmolLM3Config

    layers, hidden, mlp, heads, kv = cfg.dims()
    interval = cfg.no_rope_interval
    return SmolLM3Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=mlp,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=cfg.max_position_embeddings,
        rope_theta=cfg.rope_theta,
        rope_scaling=dict(cfg.rope_scaling) if cfg.rope_scaling else None,
        rms_norm_eps=cfg.rms_norm_eps,
        initializer_range=cfg.init_std,
        no_rope_layers=cfg.use_rope_layers(),
        no_rope_layer_interval=interval if interval else layers + 1,
        tie_word_embeddings=True,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        use_cache=True,
    )


def init_model(config: "SmolLM3Config", seed: int) -> "SmolLM3ForCausalLM":
    """A freshly initialised model, deterministic for a given seed."""
    import torch
    from transformers import SmolLM3ForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmolLM3ForCausalLM(config)
    return model


def num_params(model) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
