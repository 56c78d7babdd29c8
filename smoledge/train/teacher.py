"""The distillation teacher: where it comes from, what identifies it, whether it speaks our tokenizer, and
whether the student can be pruned from it.

    from smoledge.train.teacher import teacher_source, load_teacher
    source = teacher_source(recipe, ctx.files.pretrain)        # "runs/x/pretrain/model" or "HuggingFaceTB/SmolLM3-3B"
    check_prune(recipe, ctx.files.pretrain)                    # a preflight: from the teacher's config alone
    teacher = load_teacher(source, tokenizer, "runs/x/tokenizer/tokenizer")

A teacher is any Hugging Face causal-LM directory or hub id (distill.teacher), or
the model this recipe's pretrain stage made. Its tokenizer must be the one the
shards were tokenized with: the soft targets are distributions over token ids, so
a teacher whose ids mean other strings would teach nonsense. A mismatch is an
error naming both tokenizers; nothing is remapped.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from smoledge.errors import SmoledgeError
from smoledge.layout import PretrainFiles
from smoledge.model.source import model_identity
from smoledge.recipe import Recipe
from smoledge.tokenizer.llama_cpp import PROBE_TEXTS


def teacher_source(recipe: Recipe, pretrain: PretrainFiles) -> str:
    """distill.teacher when set, else the model this recipe's pretrain stage writes."""
    return recipe.distill.teacher or str(pretrain.model)


def teacher_identity(source: str) -> dict[str, Any]:
    """What a cache or checkpoint made with this teacher depends on (smoledge.model.source.model_identity)."""
    return model_identity(source, "distill.teacher")


def _missing(source: str) -> SmoledgeError:
    if source.endswith("/pretrain/model"):
        return SmoledgeError(f"no teacher at {source}; run `smoledge pretrain` for this recipe first")
    return SmoledgeError(
        f"could not load the teacher '{source}': it is not a local directory, and the hub did not answer "
        f"(no network?); download it where there is network (huggingface-cli download {source} --local-dir DIR) "
        f"and set distill.teacher to DIR"
    )


def teacher_config(source: str) -> Any:
    """The teacher's HF config, without its weights (vocab size, shape)."""
    from transformers import AutoConfig

    if source.endswith("/pretrain/model") and not (Path(source) / "config.json").exists():
        raise _missing(source)
    try:
        return AutoConfig.from_pretrained(source)
    except OSError:
        raise _missing(source) from None


def check_prune(recipe: Recipe, pretrain: PretrainFiles) -> None:
    """With distill.init: prune, refuse a teacher the recipe's student cannot be sliced out of
    (smoledge.train.prune_fit), reading only the teacher's config: for the preflight of the first stage that
    would load its weights."""
    if recipe.distill.init != "prune":
        return
    from smoledge.train.prune_fit import check_prunable

    source = teacher_source(recipe, pretrain)
    check_prunable(teacher_config(source), recipe.student, f" {source}")


def check_tokenizer(source: str, tokenizer: Any, tokenizer_name: str) -> None:
    """The teacher's tokenizer must map every string to the same ids as the shards' tokenizer."""
    from transformers import AutoTokenizer

    try:
        theirs = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise SmoledgeError(
            f"the teacher '{source}' has no loadable tokenizer ({exc}); its token ids cannot be checked against "
            f"the shards' tokenizer ({tokenizer_name}); save the teacher's tokenizer next to its weights"
        ) from None
    ours_vocab, their_vocab = tokenizer.get_vocab(), theirs.get_vocab()
    problem = None
    if ours_vocab != their_vocab:
        differ = sum(1 for tok, i in ours_vocab.items() if their_vocab.get(tok) != i)
        problem = (f"their vocabularies differ ({len(their_vocab)} vs {len(ours_vocab)} tokens, "
                   f"{differ} of ours with another id or missing)")
    else:
        for text in PROBE_TEXTS:
            a = tokenizer(text, add_special_tokens=False)["input_ids"]
            b = theirs(text, add_special_tokens=False)["input_ids"]
            if a != b:
                problem = f"they split {text!r} differently ({b[:8]}... vs {a[:8]}...)"
                break
    if problem:
        raise SmoledgeError(
            f"the teacher's tokenizer ({theirs.name_or_path or source}) is not the shards' tokenizer "
            f"({tokenizer_name}): {problem}. Token ids are not remapped; tokenize the data with the teacher's "
            f"tokenizer (tokenizer.pretrained: {source}) or pick a teacher trained with this one"
        )


def load_teacher(source: str, tokenizer: Any, tokenizer_name: str, dtype: Any = None) -> Any:
    """The frozen teacher in eval mode, after checking its tokenizer and vocabulary size."""
    import torch
    from transformers import AutoModelForCausalLM

    config = teacher_config(source)
    check_tokenizer(source, tokenizer, tokenizer_name)
    if config.vocab_size < len(tokenizer):
        raise SmoledgeError(
            f"the teacher '{source}' has vocab_size {config.vocab_size}, fewer than the {len(tokenizer)} tokens of "
            f"its own tokenizer ({tokenizer_name}); the model and tokenizer do not belong together"
        )
    teacher = AutoModelForCausalLM.from_pretrained(source, dtype=dtype or torch.float32)
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def teacher_dtype(cfg: Any) -> Any:
    """bf16 where training runs in bf16 (a frozen teacher needs no fp32 master weights: half the memory
    of a 3B teacher), else fp32."""
    import torch

    cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and cuda)
    return torch.bfloat16 if bf16 else torch.float32


def tokenizer_identity(tok_dir: Path) -> str:
    """sha256 of the tokenizer's vocabulary and merges (tokenizer.json's model section)."""
    spec = json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8"))
    payload = {"model": spec.get("model"), "added": spec.get("added_tokens"), "pre": spec.get("pre_tokenizer")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
