"""Stage `distill`: train the student (recipe.student shape) against the pretrained teacher.

    smoledge distill build/quickstart.yaml
    smoledge distill build/quickstart.yaml --set distill.alpha=0.3 --set distill.temperature=1.0

Loss per labelled position: alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher_T || student_T),
the teacher (runs/<name>/pretrain/model) frozen in eval mode. Same loop, checkpoints
and resume as pretraining; writes runs/<name>/distill/model/ and metrics.jsonl.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from smoledge.errors import SmoledgeError
from smoledge.io import sha256_file
from smoledge.runs import StageContext, StageResult
from smoledge.train.pretrain import base_metrics, check_context, stage_outputs, tokenized_inputs, training_data


def load_teacher(model_dir: Path, tokenizer: Any) -> torch.nn.Module:
    """The frozen teacher, after checking it speaks the same tokenizer as the shards."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (model_dir / "config.json").exists():
        raise SmoledgeError(f"no teacher at {model_dir}; run `smoledge pretrain` for this recipe first")
    teacher = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    vocab = len(tokenizer)
    if teacher.config.vocab_size != vocab:
        raise SmoledgeError(
            f"teacher vocab_size {teacher.config.vocab_size} ({model_dir}) does not match the tokenizer's "
            f"{vocab} tokens (train-tokenizer); re-run pretrain with this tokenizer (--force pretrain)"
        )
    if (model_dir / "tokenizer.json").exists():
        teacher_vocab = AutoTokenizer.from_pretrained(model_dir).get_vocab()
        if teacher_vocab != tokenizer.get_vocab():
            raise SmoledgeError(
                f"the teacher's tokenizer ({model_dir}) differs from the train-tokenizer one "
                f"({len(teacher_vocab)} vs {vocab} tokens, different ids); re-run pretrain (--force pretrain)"
            )
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def run(ctx: StageContext) -> StageResult:
    from smoledge.model.build import hf_config, init_model, num_params
    from smoledge.train.checkpoint import save_model_dir
    from smoledge.train.loop import evaluate, train
    from smoledge.train.module import Distill

    t0 = time.time()
    recipe, cfg = ctx.recipe, ctx.recipe.distill
    check_context(cfg, recipe.student, "distill", "student")
    tok_dir, tokenizer, train_shard, valid_shard = tokenized_inputs(ctx)
    teacher = load_teacher(ctx.stage_dir("pretrain") / "model", tokenizer)
    vocab = len(tokenizer)
    student = init_model(hf_config(recipe.student, vocab_size=vocab), seed=cfg.seed)
    sampler, valid = training_data(ctx, cfg, train_shard, valid_shard)
    # The teacher's weights are part of what a checkpoint continues from.
    teacher_sha = sha256_file(ctx.stage_dir("pretrain") / "model" / "model.safetensors")
    identity = {"stage": "distill", "model": recipe.student.to_dict(), "train": cfg.to_dict(),
                "data": recipe.data.to_dict(), "vocab_size": vocab, "teacher": teacher_sha}
    objective = Distill(teacher, cfg.alpha, cfg.temperature)
    outcome = train(student, cfg, sampler, valid, ctx.dir, ctx.progress, identity, objective=objective)
    teacher_val = evaluate(teacher, valid)
    files = save_model_dir(outcome.model, tok_dir, ctx.dir / "model") if ctx.is_main else []
    metrics = base_metrics(outcome, num_params(outcome.model), time.time() - t0)
    metrics["teacher_val_loss"] = round(teacher_val, 5)
    metrics["teacher_params"] = num_params(teacher)
    return StageResult(
        outputs=stage_outputs(ctx.dir, files),
        metrics=metrics,
        summary=f"val loss {metrics['val_loss']:.2f} (ppl {metrics['val_ppl']:.1f}; teacher {teacher_val:.2f})",
        artifact=ctx.dir / "model",
    )
