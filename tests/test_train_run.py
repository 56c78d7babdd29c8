"""Training loop and the pretrain/distill stages on a tiny real model and real multilingual prose."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from smoledge.tokenizer.shards import Shard, write_split
from smoledge.errors import SmoledgeError
from smoledge.model.build import hf_config, init_model
from smoledge.model.config import ModelConfig
from smoledge.progress import Progress
from smoledge.recipe import Recipe
from smoledge.stage import StageContext
from smoledge.train.checkpoint import checkpoint_dirs, latest_checkpoint, load_checkpoint
from smoledge.train.config import PretrainConfig
from smoledge.train.data import PackedSampler, mixture_weights, validation_batches
from smoledge.train.loop import evaluate, train
from smoledge.train.metrics import read_metrics
from smoledge.train.optim import build_optimizer

REPO = Path(__file__).resolve().parents[1]

RECIPE = {
    "name": "t",
    "teacher": {"preset": "custom", "num_layers": 2, "hidden_size": 96, "intermediate_size": 256,
                "num_heads": 4, "num_kv_heads": 2, "max_position_embeddings": 256},
    "student": {"preset": "tiny", "max_position_embeddings": 256},
    "pretrain": {"max_steps": 80, "batch_size": 4, "seq_len": 64, "warmup_steps": 5, "checkpoint_every": 10,
                 "eval_every": 40, "eval_batches": 2, "threads": 1},
    "distill": {"max_steps": 40, "batch_size": 4, "seq_len": 64, "warmup_steps": 5, "checkpoint_every": 20,
                "eval_every": 20, "eval_batches": 2, "threads": 1},
}


def _docs(shared_data: Path, tokenizer) -> list[tuple[list[int], str, str]]:
    """Real prose, five lines to a document, tagged with the file's language and corpus."""
    docs = []
    for path in sorted((shared_data / "prose").glob("*.txt")):
        source, lang = path.stem.rsplit(".", 1)
        lines = [ln.strip() for ln in path.open(encoding="utf-8", errors="replace") if len(ln.strip()) > 40][:300]
        for i in range(0, len(lines), 5):
            docs.append((tokenizer("\n".join(lines[i:i + 5]))["input_ids"] + [tokenizer.eos_token_id], lang, source))
    return docs


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory, shared_data, tiny_tokenizer_dir) -> Path:
    """A runs/ root holding the train-tokenizer stage's output for recipe 't'."""
    import shutil

    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("runs")
    tok_dir = root / "t" / "tokenizer" / "tokenizer"
    shutil.copytree(tiny_tokenizer_dir, tok_dir)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    docs = _docs(shared_data, tok)
    shards = root / "t" / "tokenizer" / "shards"
    write_split(shards, "train", [d for i, d in enumerate(docs) if i % 20], len(tok))
    write_split(shards, "valid", docs[::20], len(tok))
    return root


def _ctx(recipe: Recipe, runs_root: Path, stage: str) -> StageContext:
    run_dir = runs_root / recipe.name
    d = run_dir / stage
    d.mkdir(parents=True, exist_ok=True)
    return StageContext(recipe=recipe, run_dir=run_dir, dir=d, progress=Progress(stage))


@pytest.fixture(scope="module")
def recipe() -> Recipe:
    return Recipe.from_dict(RECIPE)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def pretrained(tokenized: Path, recipe: Recipe):
    from smoledge.train import pretrain

    ctx = _ctx(recipe, tokenized, "pretrain")
    return ctx, pretrain.run(ctx)


# --- the loop -------------------------------------------------------------------------------

class Planted(PackedSampler):
    """The real sampler, except that chosen batch indices are poisoned or raise."""

    def __init__(self, *args, nan: set[int] = frozenset(), spike: set[int] = frozenset(),
                 interrupt_at: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.nan, self.spike, self.interrupt_at = nan, spike, interrupt_at

    def batch(self, k: int):
        if k == self.interrupt_at:
            self.interrupt_at = None
            raise KeyboardInterrupt  # stands in for a kill between two checkpoints
        b = super().batch(k)
        if k in self.nan:
            # A corrupt mask entry (NaN, as an overflow upstream would leave): the attention of that
            # query becomes NaN, and with it the loss of the whole batch.
            b.attention_mask[0, 0, 3, 0] = math.nan
        if k in self.spike:
            # Corrupt targets (every label the same rare id): a loss far above the running median.
            b.labels[b.labels != -100] = 1023
        return b


class Skipping(PackedSampler):
    """The real sampler with given batch indices removed from the stream (the reference for rollbacks)."""

    def __init__(self, *args, skip: set[int], **kwargs):
        super().__init__(*args, **kwargs)
        self.order = [k for k in range(1000) if k not in skip]

    def batch(self, k: int):
        return super().batch(self.order[k])


def _loop_run(tokenized: Path, out: Path, optimizer: str = "adamw", sampler_cls=PackedSampler, steps: int = 12,
              sampler_kw: dict | None = None, **cfg_kw):
    shards = tokenized / "t" / "tokenizer" / "shards"
    cfg = PretrainConfig(**{"max_steps": steps, "batch_size": 4, "seq_len": 64, "warmup_steps": 2,
                            "checkpoint_every": 4, "eval_every": 6, "eval_batches": 2, "threads": 1,
                            "optimizer": optimizer, "tensorboard": False, **cfg_kw})
    model = init_model(hf_config(ModelConfig(preset="tiny"), vocab_size=1024), seed=0)
    sampler = sampler_cls(Shard.open(shards, "train"), 4, 64, seed=1, **(sampler_kw or {}))
    valid = validation_batches(Shard.open(shards, "valid"), 4, 64, 2)
    return train(model, cfg, sampler, valid, out, Progress("t"), {"test": optimizer, **cfg_kw})


def _same_curve(a: Path, b: Path, tol: float = 1e-6) -> None:
    ra, rb = read_metrics(a / "metrics.jsonl"), read_metrics(b / "metrics.jsonl")
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    for x, y in zip(ra, rb):
        assert abs(x["loss"] - y["loss"]) <= tol and abs(x["grad_norm"] - y["grad_norm"]) <= tol
        assert abs(x.get("val_loss", 0.0) - y.get("val_loss", 0.0)) <= tol


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_resume_reproduces_the_uninterrupted_loss_curve(tokenized: Path, tmp_path: Path, optimizer: str) -> None:
    straight = _loop_run(tokenized, tmp_path / "straight", optimizer)
    with pytest.raises(KeyboardInterrupt):
        _loop_run(tokenized, tmp_path / "resumed", optimizer, Planted, sampler_kw={"interrupt_at": 9})
    assert latest_checkpoint(tmp_path / "resumed").name == "step-000008"
    resumed = _loop_run(tokenized, tmp_path / "resumed", optimizer)
    assert resumed.resumed_from == 8 and straight.resumed_from is None
    assert [r["step"] for r in read_metrics(tmp_path / "resumed" / "metrics.jsonl")] == list(range(1, 13))
    _same_curve(tmp_path / "straight", tmp_path / "resumed")
    assert abs(straight.val_loss - resumed.val_loss) <= 1e-6
    events = [e["event"] for e in map(json.loads, (tmp_path / "resumed" / "events.jsonl").read_text().splitlines())]
    assert events == ["start", "resume"]


def test_checkpoints_keep_the_last_two_and_check_the_config(tokenized: Path, tmp_path: Path) -> None:
    _loop_run(tokenized, tmp_path, "adamw")
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-000008", "step-000012"]
    (tmp_path / "checkpoints" / ".step-000016.abc.tmp").mkdir()   # an interrupted write
    (tmp_path / "checkpoints" / "step-000020").mkdir()             # no state.json: incomplete
    assert latest_checkpoint(tmp_path).name == "step-000012"
    state = json.loads((tmp_path / "checkpoints" / "step-000012" / "state.json").read_text())
    assert state["step"] == 12 and "numpy" in state["rng"] and "python" in state["rng"]
    assert state["extra"]["data"] == {"next_index": 12, "skipped": []} and len(state["extra"]["guard"]["history"]) == 12
    from smoledge.train.module import NextToken, TrainModule

    core = TrainModule(init_model(hf_config(ModelConfig(preset="tiny"), vocab_size=1024), seed=0), NextToken())
    optim = build_optimizer(core, PretrainConfig())
    with pytest.raises(SmoledgeError, match="different config"):
        load_checkpoint(latest_checkpoint(tmp_path), core, optim, {"test": "something else"})


def test_a_planted_nan_batch_is_rolled_back_and_skipped(tokenized: Path, tmp_path: Path) -> None:
    planted = _loop_run(tokenized, tmp_path / "planted", sampler_cls=Planted, sampler_kw={"nan": {5}})
    assert planted.rollbacks == 1 and math.isfinite(planted.val_loss)
    events = [json.loads(line) for line in (tmp_path / "planted" / "events.jsonl").read_text().splitlines()]
    rollback = [e for e in events if e["event"] == "rollback"]
    assert len(rollback) == 1
    assert rollback[0]["step"] == 6 and rollback[0]["batch"] == 5 and rollback[0]["restored"] == "step-000004"
    assert "loss is nan" in rollback[0]["reason"]
    rows = read_metrics(tmp_path / "planted" / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert [r["batch"] for r in rows] == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12]
    # Same floats as a run that never saw batch 5: the rollback restored everything exactly.
    _loop_run(tokenized, tmp_path / "reference", sampler_cls=Skipping, sampler_kw={"skip": {5}})
    _same_curve(tmp_path / "planted", tmp_path / "reference")
    state = json.loads((latest_checkpoint(tmp_path / "planted") / "state.json").read_text())
    assert state["extra"]["data"]["skipped"] == [5] and state["extra"]["rollbacks"] == 1


def test_a_loss_spike_rolls_back(tokenized: Path, tmp_path: Path) -> None:
    out = _loop_run(tokenized, tmp_path, sampler_cls=Planted, sampler_kw={"spike": {9}}, spike_window=4,
                    spike_factor=1.1)
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    spikes = [e for e in events if e["event"] == "rollback"]
    assert [e["batch"] for e in spikes] == [9] and "loss spike" in spikes[0]["reason"] and out.rollbacks == 1


def test_a_rollback_without_checkpoints_says_so(tokenized: Path, tmp_path: Path) -> None:
    import shutil

    class Vanishing(Planted):
        def batch(self, k: int):
            if k == 3:
                shutil.rmtree(tmp_path / "checkpoints")  # someone cleans the directory mid-run
            return super().batch(k)

    with pytest.raises(SmoledgeError, match=r"roll back at step 4 .*holds no checkpoint"):
        _loop_run(tokenized, tmp_path, sampler_cls=Vanishing, sampler_kw={"nan": {3}})
    assert (tmp_path / "events.jsonl").exists()  # the event log survives to explain what happened


def test_endless_nans_stop_with_a_clear_error(tokenized: Path, tmp_path: Path) -> None:
    with pytest.raises(SmoledgeError, match=r"rolled back 3 times .*lower the lr"):
        _loop_run(tokenized, tmp_path, sampler_cls=Planted, sampler_kw={"nan": set(range(2, 100))}, max_rollbacks=2)
    # What was produced before is still there to restart from.
    assert latest_checkpoint(tmp_path) is not None


def test_mtp_z_loss_and_qk_clip_train_and_stay_out_of_the_model(tokenized: Path, tmp_path: Path) -> None:
    out = _loop_run(tokenized, tmp_path, "muon", steps=8, mtp_heads=2, mtp_kind="sequential", z_loss=1e-4,
                    qk_clip=100.0)
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert {"ce", "mtp", "z_loss", "max_attn_logit", "clipped_heads", "mfu"} <= set(rows[-1])
    assert rows[-1]["loss"] == pytest.approx(rows[-1]["ce"] + 0.3 * rows[-1]["mtp"] + 1e-4 * rows[-1]["z_loss"],
                                             rel=1e-5)
    ckpt = load_file(str(latest_checkpoint(tmp_path) / "model.safetensors"))
    assert any(k.startswith("mtp.") for k in ckpt)  # the heads are trained and checkpointed ...
    names = {n for n, _ in out.model.named_parameters()}
    assert not any("mtp" in n or "blocks" in n for n in names)  # ... but the LM handed to export has none
    assert out.model.config._attn_implementation == "sdpa"
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_compiled_and_bf16_runs_track_the_eager_fp32_curve(tokenized: Path, tmp_path: Path) -> None:
    """The CUDA defaults (torch.compile, bf16 autocast), exercised on the CPU: compile changes no float that
    matters, bf16 stays on the same curve within bf16's precision."""
    _loop_run(tokenized, tmp_path / "eager", steps=6, eval_every=3)
    _loop_run(tokenized, tmp_path / "compiled", steps=6, eval_every=3, compile="on")
    _loop_run(tokenized, tmp_path / "bf16", steps=6, eval_every=3, precision="bf16")
    _same_curve(tmp_path / "eager", tmp_path / "compiled", tol=1e-4)
    eager, bf16 = (read_metrics(tmp_path / n / "metrics.jsonl") for n in ("eager", "bf16"))
    assert max(abs(x["loss"] - y["loss"]) for x, y in zip(eager, bf16)) < 0.05
    assert eager[-1]["val_loss"] != bf16[-1]["val_loss"]  # bf16 really ran


# --- the stages -----------------------------------------------------------------------------

def test_pretrain_loss_falls_and_the_model_is_a_standard_hf_dir(pretrained) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    ctx, result = pretrained
    rows = read_metrics(ctx.dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 81))
    assert {"loss", "lr", "grad_norm", "tokens_per_s"} <= set(rows[0])
    assert [r["step"] for r in rows if "val_loss" in r] == [40, 80]
    m = result.metrics
    assert rows[0]["loss"] > 6.5                             # ~ln(1024) at init
    assert m["val_loss"] < rows[0]["loss"] - 0.5             # real learning on real text
    assert m["val_ppl"] == pytest.approx(math.exp(m["val_loss"]), rel=1e-3)
    assert m["tokens"] == 80 * 4 * 64 and m["params"] > 0 and m["resumed_from_step"] is None
    assert result.summary.startswith("val loss ")
    model_dir = ctx.dir / "model"
    assert result.artifact == model_dir
    assert {model_dir / "model.safetensors", model_dir / "tokenizer.json", ctx.dir / "metrics.jsonl"} <= set(
        result.outputs)

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert GenerationConfig.from_pretrained(model_dir).eos_token_id == tok.eos_token_id == 0
    # The saved weights are the trained ones: the validation loss reproduces.
    shards = ctx.files.tokenizer.shards
    valid = validation_batches(Shard.open(shards, "valid"), 4, 64, 2)
    assert evaluate(model, valid) == pytest.approx(m["val_loss"], abs=1e-4)
    # token_type_ids is dropped: bpe.py's tokenizer still emits it and generate() rejects it.
    prompt = tok("The history of", return_tensors="pt", return_token_type_ids=False)
    out = model.generate(**prompt, max_new_tokens=6, do_sample=False)
    assert out.shape[0] == 1 and prompt["input_ids"].shape[1] < out.shape[1] <= prompt["input_ids"].shape[1] + 6
    assert isinstance(tok.decode(out[0]), str)


@pytest.fixture(scope="module")
def cached(pretrained, recipe: Recipe, tokenized: Path):
    from smoledge.train import teacher_cache

    ctx = _ctx(recipe, tokenized, "teacher-cache")
    return ctx, teacher_cache.run(ctx)


def test_distill_student_learns_from_the_teacher(pretrained, cached, recipe: Recipe, tokenized: Path) -> None:
    from transformers import AutoModelForCausalLM

    from smoledge.train import distill

    ctx = _ctx(recipe, tokenized, "distill")
    result = distill.run(ctx)
    rows = read_metrics(ctx.dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 41))
    assert {"ce", "soft"} <= set(rows[0])
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.5
    m = result.metrics
    assert m["mode"] == "cache" and m["top_k"] == 64
    assert m["val_loss"] < math.log(1024) - 0.4
    # The cache stage measured the teacher; distillation never loaded it.
    assert m["teacher_val_loss"] == pytest.approx(pretrained[1].metrics["val_loss"], abs=1e-4)
    assert m["params"] < m["teacher_params"]
    student = AutoModelForCausalLM.from_pretrained(ctx.dir / "model")
    assert student.config.num_hidden_layers == 2 and student.config.hidden_size == 64


def test_the_cache_round_trips_the_teacher_top_k(pretrained, cached, recipe: Recipe, tokenized: Path,
                                                 tmp_path: Path) -> None:
    """What distillation reads back for batch k is what the teacher says about batch k (to float16)."""
    from smoledge.io import sha256_file
    from smoledge.train.losses import teacher_targets
    from smoledge.train.teacher_cache import CACHE_META, TeacherCache

    ctx, result = cached
    meta = json.loads((ctx.dir / CACHE_META).read_text())
    assert result.metrics["num_batches"] == meta["num_batches"] == 40 + 5  # max_steps + max_rollbacks
    assert all(sha256_file(ctx.dir / name) == digest for name, digest in meta["files"].items())
    # top-64 of 1024 tokens: 64 uint16 ids + 65 float16 log-probs = 258 raw bytes, less after zlib.
    assert meta["raw_bytes_per_token"] == 258 and meta["bytes_per_token"] < 258
    cache = TeacherCache(ctx.dir, meta)
    teacher = AutoModelForCausalLM_from(pretrained[0].dir / "model")
    shards = ctx.files.tokenizer.shards
    sampler = PackedSampler(Shard.open(shards, "train"), 4, 64, recipe.distill.seed,
                            mixture_weights(Shard.open(shards, "train"), recipe.data))
    for k in (0, 44):
        batch = sampler.batch(k)
        with torch.no_grad():
            want_ids, want_logp = teacher_targets(teacher(**batch.model_inputs()).logits, recipe.distill.temperature, 64)
        ids, logp = cache.targets(k)
        order = want_ids.argsort(-1)
        assert torch.equal(torch.from_numpy(ids), want_ids.gather(-1, order))
        want_top = want_logp[..., :-1].gather(-1, order)
        assert torch.allclose(torch.from_numpy(logp[..., :-1]), want_top, atol=2e-2, rtol=1e-3)
        assert torch.allclose(torch.from_numpy(logp[..., -1]), want_logp[..., -1], atol=2e-2, rtol=1e-3)
    with pytest.raises(SmoledgeError, match="past the end"):
        cache.targets(45)
    # A damaged chunk (one byte flipped on disk) is a clear error, not a zlib traceback mid-training.
    damaged = tmp_path / "damaged"
    shutil.copytree(ctx.dir, damaged)
    data = bytearray((damaged / "topk.bin").read_bytes())
    data[int(cache.offsets[3]) + 10] ^= 0xFF
    (damaged / "topk.bin").write_bytes(bytes(data))
    broken = TeacherCache(damaged, meta)
    assert broken.targets(2)[0].shape == (4, 64, 64)
    with pytest.raises(SmoledgeError, match="batch 3 of the teacher cache .* is damaged.*--force teacher-cache"):
        broken.targets(3)


def AutoModelForCausalLM_from(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).eval()


@pytest.mark.parametrize("change,named", [
    ({"temperature": 2.0}, "temperature: cache 1.0, this run 2.0"),
    ({"seed": 7}, "batches.seed: cache 1234, this run 7"),
    ({"top_k": 32}, "top_k: cache 64, this run 32"),
])
def test_a_cache_made_from_something_else_is_refused(cached, tokenized: Path, change: dict, named: str) -> None:
    from smoledge.train import distill

    other = Recipe.from_dict({**RECIPE, "distill": {**RECIPE["distill"], **change}})
    for check in (distill.preflight, distill.run):  # preflight: before the build clears the last student
        with pytest.raises(SmoledgeError) as exc:
            check(_ctx(other, tokenized, "distill-refused"))
        assert named in str(exc.value) and "--force teacher-cache" in str(exc.value)


def test_a_cache_too_short_for_the_run_is_refused(cached, tokenized: Path) -> None:
    from smoledge.train import distill

    longer = Recipe.from_dict({**RECIPE, "distill": {**RECIPE["distill"], "max_steps": 60}})
    with pytest.raises(SmoledgeError, match="holds 45 batches but this run may draw 65"):
        distill.run(_ctx(longer, tokenized, "distill-short"))


def test_online_top_k_distillation_matches_the_cached_one(pretrained, cached, tokenized: Path) -> None:
    """Same batches, same top-k targets: the cached run follows the online one up to float16 rounding."""
    from smoledge.train import distill

    short = {**RECIPE["distill"], "max_steps": 6, "checkpoint_every": 6, "eval_every": 6}
    curves = {}
    for mode in ("online", "cache"):
        r = Recipe.from_dict({**RECIPE, "distill": {**short, "mode": mode}})
        ctx = _ctx(r, tokenized, f"distill-{mode}")
        if mode == "cache":
            r.distill.cache_dir = str(cached[0].dir)  # another run's cache: valid, same batches
        distill.run(ctx)
        curves[mode] = [row["loss"] for row in read_metrics(ctx.dir / "metrics.jsonl")]
    assert len(curves["online"]) == 6
    assert max(abs(a - b) for a, b in zip(curves["online"], curves["cache"])) < 2e-3


def test_distillation_runs_with_the_rest_of_the_engine(pretrained, cached, tokenized: Path) -> None:
    """Muon, MTP heads, z-loss and QK-clip under the distillation objective, from the cache."""
    from smoledge.train import distill

    cfg = {**RECIPE["distill"], "max_steps": 8, "checkpoint_every": 4, "eval_every": 8, "optimizer": "muon",
           "lr": 1e-2, "mtp_heads": 1, "z_loss": 1e-4, "qk_clip": 100.0, "divergence": "js"}
    ctx = _ctx(Recipe.from_dict({**RECIPE, "distill": cfg}), tokenized, "distill-engine")
    result = distill.run(ctx)
    rows = read_metrics(ctx.dir / "metrics.jsonl")
    assert {"ce", "soft", "mtp", "z_loss"} <= set(rows[0]) and len(rows) == 8
    assert all(math.isfinite(r["loss"]) for r in rows) and result.metrics["rollbacks"] == 0
    assert [p.name for p in checkpoint_dirs(ctx.dir)][-1] == "step-000008"


def test_a_student_pruned_from_the_teacher_starts_ahead_of_a_random_one(pretrained, cached, tokenized: Path) -> None:
    from smoledge.train import distill

    first = {}
    for init in ("random", "prune"):
        cfg = {**RECIPE["distill"], "max_steps": 6, "checkpoint_every": 6, "eval_every": 6, "init": init}
        # Another student shape than the recipe's, from the same cache: 1 layer, head dim 24 like the teacher's.
        student = {"preset": "custom", "num_layers": 1, "hidden_size": 48, "intermediate_size": 128,
                   "num_heads": 2, "num_kv_heads": 1, "max_position_embeddings": 256}
        ctx = _ctx(Recipe.from_dict({**RECIPE, "student": student, "distill": cfg}), tokenized, f"distill-{init}")
        result = distill.run(ctx)
        first[init] = read_metrics(ctx.dir / "metrics.jsonl")[0]["ce"]
    # One of the teacher's two layers is kept (depth), and 48 of its 96 channels (width).
    assert len(result.metrics["prune"]["kept_layers"]) == 1 and len(result.metrics["prune"]["dropped_layers"]) == 1
    report = json.loads((ctx.dir / "prune.json").read_text())
    assert len(report["hidden_channels"]) == 48
    assert first["prune"] < first["random"] - 0.3, first


def test_feature_distillation_trains_projections_that_stay_out_of_the_model(pretrained, tokenized: Path) -> None:
    from safetensors import safe_open

    from smoledge.train import distill

    cfg = {**RECIPE["distill"], "max_steps": 6, "checkpoint_every": 6, "eval_every": 6, "mode": "online",
           "hidden_weight": 1.0, "attention_weight": 1.0}
    ctx = _ctx(Recipe.from_dict({**RECIPE, "distill": cfg}), tokenized, "distill-features")
    distill.run(ctx)
    rows = read_metrics(ctx.dir / "metrics.jsonl")
    assert {"hidden", "attention", "soft", "ce"} <= set(rows[0])
    assert rows[-1]["hidden"] < rows[0]["hidden"]
    ckpt = latest_checkpoint(ctx.dir)
    with safe_open(str(ckpt / "model.safetensors"), "pt") as f:
        assert any(k.startswith("features.") for k in f.keys())
    saved = json.loads((ctx.dir / "model" / "config.json").read_text())
    assert saved.get("_attn_implementation", "sdpa") != "eager"
    with safe_open(str(ctx.dir / "model" / "model.safetensors"), "pt") as f:
        assert f.keys() and not any("features" in k for k in f.keys())


def test_distill_rejects_a_teacher_with_another_tokenizer(pretrained, prose_texts, tmp_path: Path) -> None:
    from smoledge.tokenizer.bpe import train_bpe
    from smoledge.train.teacher import load_teacher

    other = train_bpe(prose_texts[:300], vocab_size=512)
    with pytest.raises(SmoledgeError) as exc:
        load_teacher(str(pretrained[0].dir / "model"), other, "other-bpe (test)")
    msg = str(exc.value)
    assert str(pretrained[0].dir / "model") in msg and "other-bpe (test)" in msg
    assert "1024 vs 512 tokens" in msg and "not remapped" in msg


def test_distill_preflight_refuses_an_external_teacher_with_another_tokenizer(pretrained, prose_texts, tmp_path: Path,
                                                                          tokenized: Path) -> None:
    """Checked before the build clears the previous student (runs.py calls preflight first)."""
    from smoledge.tokenizer.bpe import train_bpe
    from smoledge.train import distill

    other_dir = tmp_path / "other-teacher"
    other = train_bpe(prose_texts[:300], vocab_size=512)
    init_model(hf_config(ModelConfig(preset="tiny"), vocab_size=len(other)), seed=0).save_pretrained(other_dir)
    other.save_pretrained(other_dir)
    recipe = Recipe.from_dict({**RECIPE, "distill": {**RECIPE["distill"], "teacher": str(other_dir),
                                                     "mode": "online"}})
    ctx = _ctx(recipe, tokenized, "distill-preflight")
    with pytest.raises(SmoledgeError, match=r"512 vs 1024 tokens.*not remapped"):
        distill.preflight(ctx)


def test_distill_needs_a_pretrained_teacher(tmp_path: Path, tiny_tokenizer_dir: Path) -> None:
    from transformers import AutoTokenizer

    from smoledge.train.teacher import load_teacher

    with pytest.raises(SmoledgeError, match="smoledge pretrain"):
        load_teacher(str(tmp_path / "pretrain" / "model"), AutoTokenizer.from_pretrained(tiny_tokenizer_dir), "t")
    with pytest.raises(SmoledgeError, match="huggingface-cli download"):
        load_teacher("no-such-org/no-such-model", AutoTokenizer.from_pretrained(tiny_tokenizer_dir), "t")


TINY_BUILD = {
    "name": "tiny",
    "data": {"sources": [{"name": "sample", "kind": "sample", "sample_docs": 300}]},
    "curate": {"workers": 1},
    "tokenizer": {"vocab_size": 1024},
    "teacher": RECIPE["teacher"],
    "pretrain": {**RECIPE["pretrain"], "max_steps": 60},
    "distill": {**RECIPE["distill"], "max_steps": 60},
}


@pytest.mark.slow
@pytest.mark.parametrize("stage,before", [("pretrain", "train-tokenizer"), ("distill", "teacher-cache")])
def test_sigkilled_training_cli_resumes_and_matches(tmp_path: Path, stage: str, before: str) -> None:
    """`smoledge pretrain` / `smoledge distill` killed with SIGKILL after a checkpoint resumes there and
    ends on the same floats."""
    import shutil

    from smoledge.recipe import load_recipe
    from smoledge.runs import build
    from smoledge.stage import read_record

    recipe_path = tmp_path / "tiny.yaml"
    recipe_path.write_text(yaml.safe_dump(TINY_BUILD))
    recipe = load_recipe(recipe_path)
    quiet = lambda s: None  # noqa: E731
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    build(recipe, straight, until=before, out=quiet)
    shutil.copytree(straight, killed)
    build(recipe, straight, until=stage, out=quiet)  # the uninterrupted reference, in-process

    cmd = [sys.executable, "-m", "smoledge.cli", stage, str(recipe_path), "--runs-dir", str(killed)]
    name, stage = stage, killed / "tiny" / stage
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    # Kill after a periodic checkpoint (step 0 is written at the start).
    while latest_checkpoint(stage) is None or latest_checkpoint(stage).name == "step-000000":
        assert first.poll() is None, first.communicate()[1].decode()[-2000:]
        assert time.time() < deadline, "no checkpoint within 120 s"
        time.sleep(0.01)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL
    killed_at = int(latest_checkpoint(stage).name.split("-")[1])
    assert killed_at < 60, "the run finished before it could be killed"
    assert read_record(stage) is None and not (stage / "model").exists()

    second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    record = read_record(stage)
    assert record["resumed"] is True
    assert record["metrics"]["resumed_from_step"] >= killed_at >= 10
    rows = read_metrics(stage / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 61))
    reference = read_metrics(straight / "tiny" / name / "metrics.jsonl")
    assert max(abs(a["loss"] - b["loss"]) for a, b in zip(rows, reference)) <= 1e-6
    assert record["metrics"]["val_loss"] == read_record(straight / "tiny" / name)["metrics"]["val_loss"]
