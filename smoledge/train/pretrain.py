"""Stage `pretrain`: train the teacher (recipe.teacher shape) on the token shards.

    smoledge pretrain build/quickstart.yaml
    smoledge pretrain build/quickstart.yaml --set pretrain.max_steps=50 --set pretrain.optimizer=muon
    torchrun --nproc_per_node 2 -m smoledge.cli pretrain build/quickstart.yaml   # DDP (or FSDP2)

Reads runs/<name>/tokenizer/{tokenizer,shards}; writes runs/<name>/pretrain/
model/ (a standard HF directory: safetensors, tokenizer, generation config),
metrics.jsonl, health.jsonl (smoledge.train.health), events.jsonl (rollbacks, health
alerts), loss.png, tensorboard/ and checkpoints/
(resume points; a re-run continues from them).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from smoledge.config import ConfigError
from smoledge.errors import SmoledgeError
from smoledge.layout import PretrainFiles, TrainFiles
from smoledge.recipe import Recipe
from smoledge.stage import Stage, StageContext, StageResult

if TYPE_CHECKING:
    from smoledge.tokenizer.shards import Shard
    from smoledge.model.config import ModelConfig
    from smoledge.train.config import TrainConfig
    from smoledge.train.data import Batch, PackedSampler
    from smoledge.train.loop import TrainOutcome


def not_needed(recipe: Recipe) -> str | None:
    """Pretraining makes the teacher; a recipe that distills from an existing one, or imports its model, skips it."""
    if recipe.model.source:
        return recipe.model.not_needed()
    if recipe.distill.teacher:
        return f"the teacher is {recipe.distill.teacher} (distill.teacher)"
    return None


def tokenized_inputs(ctx: StageContext) -> tuple[Path, Any, "Shard", "Shard"]:
    """(tokenizer dir, tokenizer, train shard, valid shard) from the train-tokenizer stage."""
    from transformers import AutoTokenizer

    from smoledge.tokenizer.shards import Shard

    tok_dir, shards = ctx.files.tokenizer.tokenizer, ctx.files.tokenizer.shards
    for need in (tok_dir / "tokenizer.json", shards / "train.meta.json", shards / "valid.meta.json"):
        if not need.exists():
            raise SmoledgeError(f"{need} is missing; run `smoledge train-tokenizer` for this recipe first")
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    train_shard, valid_shard = Shard.open(shards, "train"), Shard.open(shards, "valid")
    for name, shard in (("train", train_shard), ("valid", valid_shard)):
        _check_ids(shard, len(tokenizer), shards / f"{name}.bin")
    return tok_dir, tokenizer, train_shard, valid_shard


def _check_ids(shard: "Shard", vocab_size: int, where: Path) -> None:
    if shard.vocab_size <= vocab_size or shard.tokens.size == 0:
        return
    # The shard's declared vocab may exceed what BPE produced; only real ids matter.
    top = int(np.max(shard.tokens))
    if top >= vocab_size:
        raise SmoledgeError(
            f"{where} holds token id {top} but the tokenizer has {vocab_size} tokens; re-run "
            f"train-tokenizer (--force train-tokenizer) so shards and tokenizer match"
        )


def check_context(cfg: "TrainConfig", model: "ModelConfig", section: str, model_section: str) -> None:
    if cfg.seq_len > model.max_position_embeddings:
        raise ConfigError(
            f"{section}.seq_len: {cfg.seq_len} exceeds {model_section}.max_position_embeddings "
            f"{model.max_position_embeddings}; lower seq_len or raise max_position_embeddings"
        )


def training_data(ctx: StageContext, cfg: "TrainConfig", train_shard: "Shard",
                  valid_shard: "Shard") -> tuple["PackedSampler", list["Batch"]]:
    from smoledge.train.data import PackedSampler, mixture_weights, validation_batches

    weights = mixture_weights(train_shard, ctx.recipe.data)
    sampler = PackedSampler(train_shard, cfg.batch_size, cfg.seq_len, cfg.seed, weights)
    valid = validation_batches(valid_shard, cfg.batch_size, cfg.seq_len, cfg.eval_batches)
    return sampler, valid


def base_metrics(outcome: "TrainOutcome", params: int, wall_s: float) -> dict[str, Any]:
    return {
        "params": params,
        "steps": outcome.steps,
        "tokens": outcome.tokens,
        "final_train_loss": round(outcome.final_train_loss, 5),
        "val_loss": round(outcome.val_loss, 5),
        "val_ppl": round(math.exp(outcome.val_loss), 3),
        "tokens_per_s": round(outcome.tokens_per_s, 1),
        "mfu": round(outcome.mfu, 5),
        "rollbacks": outcome.rollbacks,
        "wall_s": round(wall_s, 2),
        "resumed_from_step": outcome.resumed_from,
    }


def stage_outputs(files: TrainFiles, model_files: list[Path]) -> list[Path]:
    """The model directory plus the run's logs (the PNG exists once a step was logged)."""
    logs = [p for p in (files.metrics, files.health, files.events, files.plot) if p.exists()]
    return [*model_files, *logs]


def run(ctx: StageContext) -> StageResult:
    from smoledge.model.build import hf_config, init_model, num_params, special_ids
    from smoledge.train.checkpoint import save_model_dir
    from smoledge.train.loop import train

    t0 = time.time()
    recipe, cfg = ctx.recipe, ctx.recipe.pretrain
    check_context(cfg, recipe.teacher, "pretrain", "teacher")
    tok_dir, tokenizer, train_shard, valid_shard = tokenized_inputs(ctx)
    vocab = len(tokenizer)
    model = init_model(hf_config(recipe.teacher, vocab_size=vocab, **special_ids(tokenizer)), seed=cfg.seed)
    sampler, valid = training_data(ctx, cfg, train_shard, valid_shard)
    identity = {"stage": "pretrain", "model": recipe.teacher.to_dict(), "train": cfg.to_dict(),
                "data": recipe.data.to_dict(), "vocab_size": vocab}
    outcome = train(model, cfg, sampler, valid, ctx.dir, ctx.progress, identity)
    files = save_model_dir(outcome.model, tok_dir, PretrainFiles(ctx.dir).model) if ctx.is_main else []
    metrics = base_metrics(outcome, num_params(outcome.model), time.time() - t0)
    return StageResult(
        outputs=stage_outputs(PretrainFiles(ctx.dir), files),
        metrics=metrics,
        summary=f"val loss {metrics['val_loss']:.2f} (ppl {metrics['val_ppl']:.1f})",
        artifact=PretrainFiles(ctx.dir).model,
    )


STAGE = Stage(run=run, not_needed=not_needed)
