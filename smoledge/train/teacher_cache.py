"""Stage `teacher-cache`: the teacher's top-k log-probabilities for every distillation batch, once, to disk.

    smoledge teacher-cache build/quickstart.yaml
    smoledge distill build/quickstart.yaml          # reads it memory-mapped; no teacher in memory

Batch k of distillation is a pure function of (seed, k) (smoledge.train.data), so
the cache is keyed by batch index: for k in [0, max_steps + max_rollbacks) (a
rollback skips one batch and draws the next), the teacher runs once and its
distribution at distill.temperature is kept as the top-k token ids plus k + 1
log-probs (the last is the tail: all the other tokens' mass). Any student with
the same batches (seed, batch_size, seq_len, data, mixture) can learn from it,
whatever its shape, optimizer, alpha or divergence: other recipes point at it
with distill.cache_dir.

Layout of runs/<name>/teacher-cache/:
  cache.json   what it was made from (teacher, tokenizer, data, batches, k, T), the
               encoding, the teacher's validation loss and the sha256 of the files
  topk.bin     one zlib chunk per batch, back to back: ids sorted ascending and
               delta-coded (uint16, or uint32 past 65536 tokens), then float16 log-probs
  index.npy    int64 byte offsets of the chunks (num_batches + 1)

topk.bin is memory-mapped; reading batch k inflates one chunk (~0.5 MB for
8 x 256 x 64). Sorting the ids makes their deltas small, which is what zlib
compresses; the log-probs are float16 noise to zlib and stay near 2 bytes each.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from smoledge.errors import SmoledgeError
from smoledge.io import atomic_path, atomic_write_json, sha256_file
from smoledge.layout import CACHE_DATA, CACHE_INDEX, CACHE_META, TokenizerFiles
from smoledge.recipe import Recipe
from smoledge.stage import Stage, StageContext, StageResult, read_record

FORMAT = 1
# Teacher logits of at most this many floats are materialised at once (rows are run in groups).
MAX_LOGITS = 1 << 26


def not_needed(recipe: Recipe) -> str | None:
    cfg = recipe.distill
    if recipe.model.source:
        return recipe.model.not_needed()
    if cfg.mode == "online":
        return "distill.mode is online"
    if cfg.cache_dir:
        return f"distill.cache_dir names an existing cache ({cfg.cache_dir})"
    return None


def external_inputs(recipe: Recipe) -> dict[str, Any]:
    """The distill settings a cache depends on (not alpha, lr, divergence...: those leave it valid)."""
    from smoledge.train.teacher import teacher_identity

    cfg = recipe.distill
    keys = ("teacher", "top_k", "temperature", "seed", "batch_size", "seq_len", "max_steps", "max_rollbacks")
    out: dict[str, Any] = {k: getattr(cfg, k) for k in keys}
    out["mixture"] = recipe.data.to_dict()
    if cfg.teacher:
        out["teacher_identity"] = teacher_identity(cfg.teacher)
    return out


def preflight(ctx: StageContext) -> None:
    """Before the last cache is cleared and the teacher runs over every batch: a student that distill.init:
    prune could not cut out of this teacher is refused now, not when distillation starts."""
    from smoledge.train.teacher import check_prune

    check_prune(ctx.recipe, ctx.files.pretrain)


def batches_needed(cfg: Any) -> int:
    """Every batch index a run of cfg can draw: max_steps, plus one per allowed rollback."""
    return cfg.max_steps + cfg.max_rollbacks


def data_identity(tokenizer_stage: TokenizerFiles) -> str:
    """sha256 of the train shard: from the train-tokenizer record when there is one (hashed once, when
    written), else of the files themselves."""
    shards = tokenizer_stage.shards.relative_to(tokenizer_stage.dir).as_posix()
    record = read_record(tokenizer_stage.dir)
    if record is not None:
        outputs = record.get("outputs", {})
        mine = {k: v["sha256"] for k, v in sorted(outputs.items()) if k.startswith(f"{shards}/train.")}
        if mine:
            return hashlib.sha256(json.dumps(mine, sort_keys=True).encode()).hexdigest()
    files = sorted(tokenizer_stage.shards.glob("train.*"))
    mine = {f"{shards}/{p.name}": sha256_file(p) for p in files}
    return hashlib.sha256(json.dumps(mine, sort_keys=True).encode()).hexdigest()


def expected_identity(ctx: StageContext, cfg: Any, source: str, tok_dir: Path, weights: np.ndarray) -> dict[str, Any]:
    """What a cache usable by this recipe's distill stage must have been made from."""
    from smoledge.train.teacher import teacher_identity, tokenizer_identity

    return {
        "format": FORMAT,
        "teacher": teacher_identity(source),
        "tokenizer": tokenizer_identity(tok_dir),
        "data": data_identity(ctx.files.tokenizer),
        "batches": {"seed": cfg.seed, "batch_size": cfg.batch_size, "seq_len": cfg.seq_len,
                    "mixture": hashlib.sha256(np.ascontiguousarray(weights, dtype=np.float64).tobytes()).hexdigest()},
        "top_k": cfg.top_k,
        "temperature": cfg.temperature,
    }


def _differences(made: Any, want: Any, where: str = "") -> list[str]:
    if isinstance(made, dict) and isinstance(want, dict):
        out = []
        for key in sorted(set(made) | set(want)):
            out += _differences(made.get(key), want.get(key), f"{where}.{key}" if where else key)
        return out
    return [] if made == want else [f"{where}: cache {made!r}, this run {want!r}"]


class CacheWriter:
    """Encodes batches into the open topk.bin temp file; `finish` writes the index and cache.json.

        with atomic_path(dir / CACHE_DATA) as tmp, open(tmp, "wb") as fh:
            writer = CacheWriter(fh, vocab_size)
            for k in ...: writer.add(ids, logp)
        writer.finish(dir, meta, shape)      # after the rename: cache.json is written last
    """

    def __init__(self, fh: Any, vocab_size: int):
        self.fh = fh
        self.ids_dtype = np.dtype(np.uint16 if vocab_size <= 65536 else np.uint32)
        self.vocab_size = vocab_size
        self.offsets = [0]
        self.tokens = 0
        self.raw_bytes = 0

    def add(self, ids: np.ndarray, logp: np.ndarray) -> None:
        """ids (B, T, k) int, logp (B, T, k + 1) float: one batch, in batch-index order."""
        order = np.argsort(ids, axis=-1)                                   # (B, T, k)
        ids = np.take_along_axis(ids, order, axis=-1)                      # (B, T, k) ascending
        top = np.take_along_axis(logp[..., :-1], order, axis=-1)           # (B, T, k)
        logp = np.concatenate([top, logp[..., -1:]], axis=-1)              # (B, T, k + 1)
        # Distinct ascending ids: every delta after the first is >= 1 and fits the id dtype.
        delta = np.diff(ids, axis=-1, prepend=0).astype(self.ids_dtype)    # (B, T, k)
        raw = delta.tobytes() + logp.astype(np.float16).tobytes()
        chunk = zlib.compress(raw, 6)
        self.fh.write(chunk)
        self.offsets.append(self.offsets[-1] + len(chunk))
        self.tokens += ids.shape[0] * ids.shape[1]
        self.raw_bytes += len(raw)

    def finish(self, directory: Path, meta: dict[str, Any], shape: tuple[int, int, int]) -> list[Path]:
        """Index, then cache.json (its presence marks a complete cache). Returns the three files."""
        directory = Path(directory)
        index = directory / CACHE_INDEX
        with atomic_path(index) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.asarray(self.offsets, dtype=np.int64), allow_pickle=False)
        meta = {**meta, "num_batches": len(self.offsets) - 1, "shape": list(shape), "vocab_size": self.vocab_size,
                "encoding": {"ids": f"{self.ids_dtype.name} delta-coded, ascending", "logp": "float16",
                             "compression": "zlib"},
                "bytes": self.offsets[-1], "tokens": self.tokens,
                "bytes_per_token": round(self.offsets[-1] / max(self.tokens, 1), 2),
                "raw_bytes_per_token": round(self.raw_bytes / max(self.tokens, 1), 2),
                "files": {CACHE_DATA: sha256_file(directory / CACHE_DATA), CACHE_INDEX: sha256_file(index)}}
        atomic_write_json(directory / CACHE_META, meta)
        return [directory / CACHE_DATA, index, directory / CACHE_META]


class TeacherCache:
    """A finished cache, memory-mapped. `targets(k)` -> (ids (B, T, k) int64, logp (B, T, k + 1) float32)."""

    def __init__(self, directory: Path, meta: dict[str, Any]):
        self.dir = Path(directory)
        self.meta = meta
        self.offsets = np.load(self.dir / CACHE_INDEX, allow_pickle=False)
        self.data = np.memmap(self.dir / CACHE_DATA, dtype=np.uint8, mode="r")
        self.shape = tuple(meta["shape"])
        self.ids_dtype = np.dtype(meta["encoding"]["ids"].split()[0])

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def num_batches(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def open(cls, directory: str | Path, expected: dict[str, Any], need_batches: int) -> "TeacherCache":
        """The cache at `directory`, refused unless it was made from exactly what `expected` names and
        holds at least `need_batches` batches. (Reading every chunk to check its sha256 would cost a pass over
        the whole cache; a damaged chunk is caught where it is read, in `targets`.)"""
        directory = Path(directory)
        meta_path = directory / CACHE_META
        if not meta_path.exists():
            raise SmoledgeError(f"no teacher cache at {directory} ({CACHE_META} missing); build one with "
                                f"`smoledge teacher-cache RECIPE` or fix distill.cache_dir")
        meta = json.loads(meta_path.read_text())
        diffs = _differences({k: meta.get(k) for k in expected}, expected)
        if diffs:
            raise SmoledgeError(
                f"the teacher cache at {directory} was made from something else than this run uses: "
                + "; ".join(diffs) + ". Rebuild it (smoledge teacher-cache RECIPE --force teacher-cache), or point "
                "distill.cache_dir at a cache made with these settings")
        if meta["num_batches"] < need_batches:
            raise SmoledgeError(
                f"the teacher cache at {directory} holds {meta['num_batches']} batches but this run may draw "
                f"{need_batches} (max_steps + max_rollbacks); rebuild it for this run or lower distill.max_steps")
        return cls(directory, meta)

    def targets(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= k < self.num_batches:
            raise SmoledgeError(f"batch {k} is past the end of the teacher cache at {self.dir} "
                                f"({self.num_batches} batches); rebuild it for this run")
        b, t, top = self.shape
        n_ids = b * t * top * self.ids_dtype.itemsize
        try:
            raw = zlib.decompress(self.data[self.offsets[k]:self.offsets[k + 1]].tobytes())
        except zlib.error as exc:
            raw, why = b"", str(exc)
        else:
            why = f"{len(raw)} bytes"
        if len(raw) != n_ids + b * t * (top + 1) * 2:
            raise SmoledgeError(
                f"batch {k} of the teacher cache at {self.dir} is damaged ({why}; its sha256 is in {CACHE_META}); "
                f"rebuild the cache (smoledge teacher-cache RECIPE --force teacher-cache)")
        delta = np.frombuffer(raw[:n_ids], dtype=self.ids_dtype).reshape(b, t, top)       # (B, T, k)
        ids = np.cumsum(delta, axis=-1, dtype=np.int64)                                     # (B, T, k)
        logp = np.frombuffer(raw[n_ids:], dtype=np.float16).reshape(b, t, top + 1)        # (B, T, k + 1)
        return ids, logp.astype(np.float32)


class CachedBatches:
    """The distillation batches with the cached teacher targets attached (a BatchSource)."""

    def __init__(self, sampler: Any, cache: TeacherCache):
        self.sampler = sampler
        self.cache = cache

    def batch(self, k: int) -> Any:
        import torch

        ids, logp = self.cache.targets(k)
        return replace(self.sampler.batch(k), teacher_ids=torch.from_numpy(ids), teacher_logp=torch.from_numpy(logp))


def tokenizer_name(recipe: Recipe, tok_dir: Path) -> str:
    """How error messages name the shards' tokenizer."""
    pretrained = getattr(recipe.tokenizer, "pretrained", None)
    return f"{pretrained} (tokenizer.pretrained)" if pretrained else f"smoledge BPE trained by this recipe, {tok_dir}"


def _row_groups(batch_rows: int, seq_len: int, vocab: int) -> int:
    return max(1, min(batch_rows, MAX_LOGITS // max(seq_len * vocab, 1)))


def build_cache(ctx: StageContext) -> tuple[list[Path], dict[str, Any]]:
    """Run the teacher over every batch distillation can draw and write the cache into ctx.dir."""
    import torch

    from smoledge.train.data import mixture_weights
    from smoledge.train.loop import evaluate
    from smoledge.train.losses import teacher_targets
    from smoledge.train.pretrain import tokenized_inputs, training_data
    from smoledge.train.runtime import Runtime
    from smoledge.train.teacher import load_teacher, teacher_dtype, teacher_source

    recipe, cfg = ctx.recipe, ctx.recipe.distill
    tok_dir, tokenizer, train_shard, valid_shard = tokenized_inputs(ctx)
    source = teacher_source(recipe, ctx.files.pretrain)
    teacher = load_teacher(source, tokenizer, tokenizer_name(recipe, tok_dir), teacher_dtype(cfg))
    vocab = teacher.config.vocab_size
    rt = Runtime.from_config(cfg, 0)
    teacher.to(rt.device)
    sampler, valid = training_data(ctx, cfg, train_shard, valid_shard)
    identity = expected_identity(ctx, cfg, source, tok_dir, mixture_weights(train_shard, recipe.data))
    total = batches_needed(cfg)
    group = _row_groups(cfg.batch_size, cfg.seq_len, vocab)
    (ctx.dir / CACHE_META).unlink(missing_ok=True)  # a half-rebuilt cache must never look complete
    with atomic_path(ctx.dir / CACHE_DATA) as tmp, open(tmp, "wb") as fh:
        writer = CacheWriter(fh, vocab)
        for k in range(total):
            batch = sampler.batch(k)
            ids_parts, logp_parts = [], []
            for lo in range(0, cfg.batch_size, group):
                inputs = {n: t[lo:lo + group].to(rt.device) for n, t in batch.model_inputs().items()}
                with torch.no_grad(), rt.autocast():
                    logits = teacher(**inputs, use_cache=False).logits                 # (g, T, V)
                ids, logp = teacher_targets(logits, cfg.temperature, cfg.top_k)        # (g, T, k), (g, T, k + 1)
                ids_parts.append(ids.cpu().numpy())
                logp_parts.append(logp.cpu().numpy())
            writer.add(np.concatenate(ids_parts), np.concatenate(logp_parts))
            ctx.progress.update(f"teacher top-{cfg.top_k} at T={cfg.temperature}", k + 1, total)
    teacher_val = evaluate(teacher, valid)
    files = writer.finish(ctx.dir, {**identity, "teacher_val_loss": teacher_val},
                          (cfg.batch_size, cfg.seq_len, cfg.top_k))
    meta = json.loads((ctx.dir / CACHE_META).read_text())
    return files, meta


def run(ctx: StageContext) -> StageResult:
    from smoledge.train.loop import training_threads

    with training_threads(ctx.recipe.distill):
        files, meta = build_cache(ctx)
    metrics = {k: meta[k] for k in ("num_batches", "tokens", "bytes", "bytes_per_token", "raw_bytes_per_token",
                                    "teacher_val_loss", "top_k", "temperature")}
    return StageResult(
        outputs=files,
        metrics=metrics,
        summary=f"{meta['num_batches']} batches, top-{meta['top_k']}, {meta['bytes_per_token']:.0f} B/token",
        artifact=ctx.dir,
    )


STAGE = Stage(run=run, not_needed=not_needed, external_inputs=external_inputs, preflight=preflight)
