"""Stage `distill`: train the student (recipe.student shape) against a teacher.

    smoledge distill build/quickstart.yaml
    smoledge distill build/quickstart.yaml --set distill.alpha=0.3 --set distill.divergence=reverse
    smoledge distill build/quickstart.yaml --set distill.mode=online --set distill.top_k=0
    torchrun --nproc_per_node 2 -m smoledge.cli distill build/quickstart.yaml

Loss per labelled position: alpha * CE(labels) + (1 - alpha) * T^2 * D(teacher_T, student_T),
D a forward/reverse KL or JS over the teacher's top-k tokens plus one tail bin (or the whole
vocabulary with top_k 0), optionally plus feature losses (hidden states, attention maps).
The teacher is this recipe's pretrained model or distill.teacher (a local HF directory or hub
id). mode cache: its targets come memory-mapped from the teacher-cache stage (or
distill.cache_dir) and it is never loaded here, unless init: prune needs its weights; mode
online: it runs in the loop. Same loop, checkpoints, rollback and resume as pretraining;
writes runs/<name>/distill/model/ and metrics.jsonl.
"""

from __future__ import annotations

import gc
import hashlib
import time
from pathlib import Path
from typing import Any

from smoledge.io import atomic_write_json
from smoledge.layout import DistillFiles, TeacherCacheFiles
from smoledge.recipe import Recipe
from smoledge.stage import Stage, StageContext, StageResult
from smoledge.train.pretrain import base_metrics, check_context, stage_outputs, tokenized_inputs, training_data

# Calibration batches for pruning: importance is a mean over this many training batches.
PRUNE_CALIBRATION_BATCHES = 4


def cache_location(ctx: StageContext) -> TeacherCacheFiles:
    cfg = ctx.recipe.distill
    return TeacherCacheFiles(Path(cfg.cache_dir)) if cfg.cache_dir else ctx.files.teacher_cache


def external_inputs(recipe: Recipe) -> dict[str, Any]:
    """An external teacher, or another run's cache, is an input the recipe does not describe."""
    from smoledge.train.teacher import teacher_identity

    cfg = recipe.distill
    out: dict[str, Any] = {}
    if cfg.teacher:
        out["teacher"] = teacher_identity(cfg.teacher)
    if cfg.mode == "cache" and cfg.cache_dir:
        meta = TeacherCacheFiles(Path(cfg.cache_dir)).meta
        out["cache"] = hashlib.sha256(meta.read_bytes()).hexdigest() if meta.exists() else None
    return out


def preflight(ctx: StageContext) -> None:
    """Checked before the last student is cleared: a pruned student must fit its teacher (online, or with
    another run's cache, no teacher-cache stage checked it), an external teacher must speak the shards'
    tokenizer, and a cache must have been made from this run's teacher, tokenizer, data and batches."""
    from transformers import AutoTokenizer

    from smoledge.tokenizer.shards import Shard
    from smoledge.train.teacher import check_prune, check_tokenizer
    from smoledge.train.teacher_cache import tokenizer_name

    cfg = ctx.recipe.distill
    check_prune(ctx.recipe, ctx.files.pretrain)
    tok_dir, shards = ctx.files.tokenizer.tokenizer, ctx.files.tokenizer.shards
    if not (tok_dir / "tokenizer.json").exists() or not (shards / "train.meta.json").exists():
        return  # run() says what is missing
    if cfg.teacher:
        check_tokenizer(cfg.teacher, AutoTokenizer.from_pretrained(tok_dir), tokenizer_name(ctx.recipe, tok_dir))
    if cfg.mode == "cache" and cache_location(ctx).meta.exists():
        open_cache(ctx, tok_dir, Shard.open(shards, "train"))


def open_cache(ctx: StageContext, tok_dir: Path, train_shard: Any) -> Any:
    """The teacher cache this run reads, refused unless made from exactly its inputs."""
    from smoledge.train.data import mixture_weights
    from smoledge.train.teacher import teacher_source
    from smoledge.train.teacher_cache import TeacherCache, batches_needed, expected_identity

    cfg = ctx.recipe.distill
    source = teacher_source(ctx.recipe, ctx.files.pretrain)
    want = expected_identity(ctx, cfg, source, tok_dir, mixture_weights(train_shard, ctx.recipe.data))
    return TeacherCache.open(cache_location(ctx).dir, want, batches_needed(cfg))


def run(ctx: StageContext) -> StageResult:
    from smoledge.model.build import hf_config, init_model, num_params, special_ids
    from smoledge.train.checkpoint import save_model_dir
    from smoledge.train.loop import evaluate, train
    from smoledge.train.module import Distill
    from smoledge.train.teacher import load_teacher, teacher_dtype, teacher_identity, teacher_source
    from smoledge.train.teacher_cache import CachedBatches, tokenizer_name

    t0 = time.time()
    recipe, cfg = ctx.recipe, ctx.recipe.distill
    check_context(cfg, recipe.student, "distill", "student")
    tok_dir, tokenizer, train_shard, valid_shard = tokenized_inputs(ctx)
    source = teacher_source(recipe, ctx.files.pretrain)
    sampler, valid = training_data(ctx, cfg, train_shard, valid_shard)
    tok_name = tokenizer_name(recipe, tok_dir)

    teacher = None
    if cfg.mode == "online" or cfg.init == "prune":
        teacher = load_teacher(source, tokenizer, tok_name, teacher_dtype(cfg))
    identity: dict[str, Any] = {"stage": "distill", "model": recipe.student.to_dict(), "train": cfg.to_dict(),
                                "data": recipe.data.to_dict(), "teacher": teacher_identity(source)}
    if cfg.mode == "cache":
        cache = open_cache(ctx, tok_dir, train_shard)
        batches: Any = CachedBatches(sampler, cache)
        vocab = cache.vocab_size
        identity["cache"] = cache.meta["files"]
        teacher_val = cache.meta.get("teacher_val_loss")
    else:
        batches = sampler
        vocab = teacher.config.vocab_size
        teacher_val = None
    identity["vocab_size"] = vocab

    student_cfg = hf_config(recipe.student, vocab_size=vocab, **special_ids(tokenizer))
    prune_report = None
    if cfg.init == "prune":
        from smoledge.train.prune import prune_from_teacher

        calib = [sampler.batch(k) for k in range(PRUNE_CALIBRATION_BATCHES)]
        student, prune_report = prune_from_teacher(teacher, student_cfg, calib)
    else:
        student = init_model(student_cfg, seed=cfg.seed)
    if cfg.mode == "cache":
        teacher = None  # the point of the cache: distillation runs with the student alone in memory
        gc.collect()

    features = None
    if cfg.hidden_weight > 0 or cfg.attention_weight > 0:
        from smoledge.train.features import FeatureDistill, use_eager_attention

        features = FeatureDistill(student.config, teacher.config, cfg.hidden_weight, cfg.attention_weight)
        if features.output_flags()["output_attentions"]:
            use_eager_attention(student)  # only eager attention returns the maps
            use_eager_attention(teacher)
    objective = Distill(teacher, cfg.alpha, cfg.temperature, cfg.divergence, cfg.top_k)
    outcome = train(student, cfg, batches, valid, ctx.dir, ctx.progress, identity, objective=objective,
                    features=features)
    if teacher is not None:
        teacher_val = evaluate(teacher, valid)
    if outcome.model.config._attn_implementation == "eager":
        outcome.model.set_attn_implementation("sdpa")  # the exported model names the stock implementation
    files = save_model_dir(outcome.model, tok_dir, DistillFiles(ctx.dir).model) if ctx.is_main else []
    metrics = base_metrics(outcome, num_params(outcome.model), time.time() - t0)
    metrics.update(mode=cfg.mode, divergence=cfg.divergence, top_k=cfg.top_k, init=cfg.init,
                   teacher=source, teacher_params=teacher_params(source))
    if teacher_val is not None:
        metrics["teacher_val_loss"] = round(teacher_val, 5)
    if prune_report is not None and ctx.is_main:
        # Every kept channel and neuron: too long for the stage record, so a file of its own.
        files.append(atomic_write_json(DistillFiles(ctx.dir).prune_report, prune_report))
        metrics["prune"] = {"kept_layers": [layer["teacher"] for layer in prune_report["layers"]],
                            "dropped_layers": prune_report["dropped_layers"], "report": DistillFiles(ctx.dir).prune_report.name}
    shown_teacher = f"; teacher {teacher_val:.2f}" if teacher_val is not None else ""
    return StageResult(
        outputs=stage_outputs(DistillFiles(ctx.dir), files),
        metrics=metrics,
        summary=f"val loss {metrics['val_loss']:.2f} (ppl {metrics['val_ppl']:.1f}{shown_teacher})",
        artifact=DistillFiles(ctx.dir).model,
    )


def teacher_params(source: str) -> int:
    """The teacher's parameter count from its config alone (no weights loaded): a meta-device model."""
    import torch
    from transformers import AutoModelForCausalLM

    from smoledge.model.build import num_params
    from smoledge.train.teacher import teacher_config

    with torch.device("meta"):
        shell = AutoModelForCausalLM.from_config(teacher_config(source))
    return num_params(shell)


def not_needed(recipe: Recipe) -> str | None:
    """Nothing to curate, tokenize or train when the recipe imports its model."""
    return recipe.model.not_needed()


STAGE = Stage(run=run, not_needed=not_needed, external_inputs=external_inputs, preflight=preflight)
