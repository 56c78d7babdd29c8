"""Stage `curate`: raw sources -> filtered, scrubbed, deduplicated documents with a split.

    smoledge curate build/quickstart.yaml
    # or: smoledge.runs.build(recipe, until="curate")

Reads every source in recipe.data.sources (smoledge.data.readers), runs the
per-document steps (smoledge.data.filters: boilerplate lines -> language ->
Gopher quality -> Gopher repetition -> PII), removes exact and near
duplicates (smoledge.data.dedup), then holds out documents for validation
by a hash of their id. Writes into runs/<name>/curate/:

  curated.parquet   id, text, lang, lang_score, source, url, split, dup_cluster_size
  excluded.jsonl    id, source, reason, text (first 200 characters, PII scrubbed)

The per-document steps may run in a pool of curate.workers processes; the
batches come back in order, so the output is the same as in one process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from smoledge.data.config import CurateConfig, SourceConfig
from smoledge.data.filters import BatchResult, Pipeline, build_pipeline
from smoledge.data.readers import Doc, read_source, resolve_paths
from smoledge.errors import SmoledgeError
from smoledge.io import atomic_path, sha256_file
from smoledge.runs import StageContext, StageResult

CURATED = "curated.parquet"
EXCLUDED = "excluded.jsonl"
BATCH_DOCS = 64
# Below this many documents, starting worker processes (each loads the
# language-ID model) costs more than it saves.
POOL_MIN_DOCS = 1000
# Every language gets at least this many held-out documents (when it has
# twice as many), so per-language perplexity is never computed on nothing.
MIN_VALID_PER_LANGUAGE = 3
EXCERPT_CHARS = 200


def external_inputs(recipe: Any) -> dict[str, Any]:
    """What the sources are, beyond the recipe: file checksums, dataset ids, sample version."""
    from smoledge.data.sample import SAMPLE_VERSION

    out: dict[str, Any] = {}
    for source in recipe.data.sources:
        if source.kind == "sample":
            out[source.name] = {"kind": "sample", "sample_version": SAMPLE_VERSION, "sample_docs": source.sample_docs}
        elif source.kind == "hf":
            out[source.name] = {"kind": "hf", "dataset": source.path, "subset": source.subset, "split": source.split}
        else:
            files = resolve_paths(source)
            out[source.name] = {"kind": source.kind, "files": {str(p): sha256_file(p) for p in files}}
    return out


# ----------------------------------------------------------------------------- reading

def read_all(sources: list[SourceConfig], seed: int, progress: Any = None) -> tuple[list[Doc], dict[str, Any]]:
    docs: list[Doc] = []
    report: dict[str, Any] = {}
    for source in sources:
        stats: Counter = Counter()
        start = len(docs)
        for doc in read_source(source, seed, stats):
            docs.append(doc)
            if progress is not None and len(docs) % 500 == 0:
                progress.update(f"reading {source.name}: {len(docs)} docs")
        report[source.name] = {"docs": len(docs) - start, **dict(sorted(stats.items()))}
    return docs, report


# ----------------------------------------------------------------------------- per-document steps

_WORKER_PIPELINE: Pipeline | None = None


def _init_worker(cfg: CurateConfig, languages: list[str]) -> None:
    global _WORKER_PIPELINE
    from smoledge.data.langid import identifier

    _WORKER_PIPELINE = build_pipeline(cfg, languages)
    identifier()  # load the model once per worker, not on its first batch


def _process_batch(batch: list[tuple[int, Doc]]) -> BatchResult:
    assert _WORKER_PIPELINE is not None
    return _WORKER_PIPELINE.process(batch)


def filter_docs(docs: list[Doc], cfg: CurateConfig, languages: list[str], workers: int,
                progress: Any = None) -> tuple[BatchResult, int]:
    """Run the per-document steps over `docs`; returns the merged result and the processes used."""
    # Steps rewrite doc.text: they work on copies so `docs` stays as read.
    indexed = [(i, dataclasses.replace(d)) for i, d in enumerate(docs)]
    batches = [indexed[k:k + BATCH_DOCS] for k in range(0, len(indexed), BATCH_DOCS)]
    workers = min(workers or os.cpu_count() or 1, max(len(batches), 1))
    if len(docs) < POOL_MIN_DOCS:
        workers = 1
    merged = BatchResult()

    def absorb(results) -> None:
        for k, res in enumerate(results, 1):
            merged.kept += res.kept
            merged.excluded += res.excluded
            merged.stats.update(res.stats)
            if progress is not None:
                progress.update("filtering", min(k * BATCH_DOCS, len(docs)), len(docs))

    if workers == 1:
        pipeline = build_pipeline(cfg, languages)
        absorb(pipeline.process(b) for b in batches)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        # spawn, not fork: the parent may hold torch/OpenMP threads, which fork can deadlock.
        # An executor (unlike multiprocessing.Pool, which respawns dead workers forever)
        # fails fast when workers cannot start.
        try:
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                     initargs=(cfg, languages)) as pool:
                absorb(pool.map(_process_batch, batches))  # map yields in submission order
        except BrokenProcessPool as exc:
            raise SmoledgeError(
                f"curate worker processes died ({exc}); if you call smoledge from your own script, put the "
                f"call under `if __name__ == '__main__':` (workers re-import the main module), or set "
                f"curate.workers: 1"
            ) from exc
    return merged, workers


# ----------------------------------------------------------------------------- splits

def split_hash(seed: int, source: str, doc_id: str) -> float:
    """A uniform number in [0, 1) fixed by the document's identity."""
    digest = hashlib.sha256(f"{seed}:{source}:{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(docs: list[Doc], seed: int, valid_fraction: float) -> list[str]:
    """'valid' when the id hash is below valid_fraction; topped up per language to a minimum."""
    u = [split_hash(seed, d.source, d.id) for d in docs]
    splits = ["valid" if x < valid_fraction else "train" for x in u]
    by_lang: dict[str, list[int]] = {}
    for i, d in enumerate(docs):
        by_lang.setdefault(d.lang, []).append(i)
    for idx in by_lang.values():
        need = min(MIN_VALID_PER_LANGUAGE, len(idx) // 2) - sum(splits[i] == "valid" for i in idx)
        # The next-lowest hashes move over: still a function of the ids alone.
        for i in sorted((i for i in idx if splits[i] == "train"), key=lambda i: u[i])[:max(need, 0)]:
            splits[i] = "valid"
    return splits


# ----------------------------------------------------------------------------- writing

def write_curated(path: Path, docs: list[Doc], splits: list[str], cluster_sizes: list[int]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("id", pa.string()), ("text", pa.string()), ("lang", pa.string()), ("lang_score", pa.float64()),
        ("source", pa.string()), ("url", pa.string()), ("split", pa.string()), ("dup_cluster_size", pa.int32()),
    ])
    table = pa.table({
        "id": [d.id for d in docs],
        "text": [d.text for d in docs],
        "lang": [d.lang for d in docs],
        "lang_score": [d.lang_score for d in docs],
        "source": [d.source for d in docs],
        "url": [d.url for d in docs],
        "split": splits,
        "dup_cluster_size": cluster_sizes,
    }, schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_exclusions(path: Path, rows: list[tuple[Doc, str]], scrub_pii: bool) -> None:
    from smoledge.data.pii import scrub

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for doc, reason in rows:
            excerpt = doc.text[:EXCERPT_CHARS]
            if scrub_pii:  # the exclusion log must not leak what curation scrubs
                excerpt = scrub(excerpt)[0]
            f.write(json.dumps({"id": doc.id, "source": doc.source, "reason": reason, "text": excerpt},
                               ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------- the stage

def run(ctx: StageContext) -> StageResult:
    from smoledge.data.dedup import deduplicate

    recipe = ctx.recipe
    cfg: CurateConfig = recipe.curate
    timings: dict[str, float] = {}

    t = time.time()
    ctx.progress.update("reading sources")
    raw, read_report = read_all(recipe.data.sources, recipe.seed, ctx.progress)
    timings["read"] = time.time() - t
    if not raw:
        raise SmoledgeError(
            f"no documents were read from data.sources ({', '.join(s.name for s in recipe.data.sources)}); "
            f"check their paths and text_field (read report: {read_report})"
        )

    t = time.time()
    filtered, workers = filter_docs(raw, cfg, list(recipe.data.languages), cfg.workers, ctx.progress)
    timings["filter"] = time.time() - t

    t = time.time()
    kept_docs = [d for _, d in filtered.kept]
    dd = deduplicate(
        [d.text for d in kept_docs], num_perm=cfg.minhash_num_perm, bands=cfg.minhash_bands,
        rows=cfg.minhash_rows, ngram=cfg.minhash_ngram, exact=cfg.dedup_exact,
        progress=lambda done, total: ctx.progress.update("near-dedup (MinHash LSH)", done, total),
    )
    timings["dedup"] = time.time() - t

    # Exclusions in read order, each with the text it had when it was dropped.
    dropped: list[tuple[int, Doc, str]] = [(i, raw[i], reason) for i, reason in filtered.excluded]
    final: list[Doc] = []
    cluster_sizes: list[int] = []
    for (i, doc), keep, reason, size in zip(filtered.kept, dd.keep, dd.reason, dd.cluster_size):
        if keep:
            final.append(doc)
            cluster_sizes.append(size)
        else:
            dropped.append((i, doc, f"dedup:{reason}"))
    dropped.sort(key=lambda x: x[0])
    if not final:
        top = Counter(r for _, _, r in dropped).most_common(3)
        raise SmoledgeError(
            f"curation kept none of {len(raw)} documents (top reasons: {top}); check data.languages and the "
            f"curate thresholds, and see {ctx.dir / EXCLUDED}"
        )

    t = time.time()
    ctx.progress.update("writing curated.parquet")
    splits = assign_splits(final, recipe.seed, recipe.data.valid_fraction)
    curated = ctx.dir / CURATED
    write_curated(curated, final, splits, cluster_sizes)
    outputs = [curated]
    if cfg.write_exclusions:
        write_exclusions(ctx.dir / EXCLUDED, [(d, r) for _, d, r in dropped], cfg.scrub_pii)
        outputs.append(ctx.dir / EXCLUDED)
    timings["write"] = time.time() - t

    kept_per_lang = Counter(d.lang for d in final)
    valid_per_lang = Counter(d.lang for d, s in zip(final, splits) if s == "valid")
    stats = filtered.stats
    metrics = {
        "read": len(raw),
        "read_per_source": read_report,
        "kept": len(final),
        "dropped_total": len(dropped),
        "dropped": dict(sorted(Counter(r for _, _, r in dropped).items())),
        "kept_per_language": dict(sorted(kept_per_lang.items())),
        "train_docs": splits.count("train"),
        "valid_docs": splits.count("valid"),
        "valid_per_language": dict(sorted(valid_per_lang.items())),
        "boilerplate_lines_removed": stats.get("boilerplate:lines_removed", 0),
        "emails_replaced": stats.get("pii:emails_replaced", 0),
        "ips_replaced": stats.get("pii:ips_replaced", 0),
        "kept_chars": sum(len(d.text) for d in final),
        "workers": workers,
        "seconds": {k: round(v, 3) for k, v in timings.items()},
    }
    summary = f"kept {len(final)}/{len(raw)} docs ({len(kept_per_lang)} langs)"
    return StageResult(outputs=outputs, metrics=metrics, summary=summary, artifact=curated)
