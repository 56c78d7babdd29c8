"""Stage `curate`: raw sources -> filtered, scrubbed, deduplicated documents with a split.

    smoledge curate build/quickstart.yaml
    # or: smoledge.runs.build(recipe, until="curate")

Reads every source in recipe.data.sources (smoledge.data.readers) as a
stream of records, cut into shards of BATCH_DOCS. Each shard runs, on a
worker, the extraction of pages and PDFs (smoledge.data.web.extract), then
its source's per-document steps (smoledge.data.filters: boilerplate lines ->
language -> quality -> PII, as the source's `filters` policy says; `none`
keeps language, PII and dedup only) and, for the survivors, the dedup signatures
(smoledge.data.dedup: exact key + MinHash); smoledge.data.shard is that worker. The driver
spills the survivors to disk as they come back (kept.partial.arrow), and the
drops' rows too (excluded.partial.jsonl; smoledge.data.exclusions), both
removed at the end; it keeps only the survivors' ids and signatures, removes exact and near duplicates over all
documents at once, weights each kept document by its duplicate-cluster size
when curate.rehydrate is on (FineWeb2 rehydration), holds out documents for
validation by a hash of their id, and streams the result out.
Writes into runs/<name>/curate/:

  curated.parquet   id, text, lang, lang_score, source, file, offset, url, split,
                    dup_cluster_size, weight (sampling weight; 1.0 unless
                    rehydrating), filter_stats (JSON: the steps the document
                    passed and the numbers they counted on it), metadata (JSON:
                    the reader's provenance, e.g. format, extractor, pages)
  excluded.jsonl    id, source, file, offset, url, policy, reason, text (first 200
                    characters, PII scrubbed)

Every record read lands in exactly one of the two: a record that yields no
document (no main text, unreadable, an HTTP error, a WARC revisit...) is
excluded as "read:<reason>", so read = kept + excluded. `file` is the file
below the source's root and `offset` the place in it (smoledge.data.docs.Doc).

Where the shards run is curate.executor (smoledge.data.distributed): this
process, a pool of local processes, or a Ray cluster. Results come back in
shard order and every document is processed on its own, so the output is
byte-identical whichever ran it. A document whose processing raises is
dropped with reason "error:<ExceptionType>"; the run goes on.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from smoledge.data.config import CurateConfig, SourceConfig
from smoledge.data.docs import Doc
from smoledge.data.exclusions import Dropped, Exclusions
from smoledge.data.shard import ShardResult, excerpt, run_shard, setup_worker
from smoledge.data.readers import read_records, resolve_paths
from smoledge.errors import SmoledgeError
from smoledge.io import atomic_path, sha256_file
from smoledge.layout import CurateFiles
from smoledge.recipe import Recipe
from smoledge.stage import Stage, StageContext, StageResult

# Documents per shard: small enough that the last shards split evenly between workers (a shard of 64
# web pages is ~1.6 s of one core, through which the other worker sat idle at the end of a run), big
# enough that a shard's fixed cost (the executor's round trip, ~1 ms) stays well under 1% of its work.
BATCH_DOCS = 16
# Below this many documents, starting worker processes (each loads the language-ID model, tokenizers
# and trafilatura, ~3 s) costs more than it saves: `workers: 0` (all cores) then runs in one process.
POOL_MIN_DOCS = 200
# Every language gets at least this many held-out documents (when it has
# twice as many), so per-language perplexity is never computed on nothing.
MIN_VALID_PER_LANGUAGE = 3
# Parquet row group size of curated.parquet.
ROW_GROUP_ROWS = 8192

log = logging.getLogger(__name__)


def external_inputs(recipe: Recipe) -> dict[str, Any]:
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

def iter_sources(sources: list[SourceConfig], seed: int, report: dict[str, Any]) -> Iterator[Doc]:
    """Every source's documents in recipe order; fills `report[source]` as each one ends."""
    for source in sources:
        stats: Counter = Counter()
        count = 0
        for doc in read_records(source, seed, stats):
            count += 1
            yield doc
        report[source.name] = {"docs": count, **dict(sorted(stats.items()))}


# ----------------------------------------------------------------------------- driver

def _spill_schema() -> Any:
    import pyarrow as pa

    return pa.schema([
        ("id", pa.string()), ("text", pa.string()), ("lang", pa.string()), ("lang_score", pa.float64()),
        ("source", pa.string()), ("file", pa.string()), ("offset", pa.int64()), ("url", pa.string()),
        ("filter_stats", pa.string()), ("metadata", pa.string()),
    ])


class Spill:
    """The survivors of the filters on disk, as they come back (an Arrow IPC file, one record batch
    per shard), so the driver holds only what dedup and the split need, never the texts."""

    def __init__(self, path: Path):
        import pyarrow as pa

        self.path = path
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_file(self._sink, _spill_schema())
        self._open = True

    def append(self, kept: list[tuple[int, Doc, str]]) -> None:
        import pyarrow as pa

        if not kept:
            return
        docs = [d for _, d, _ in kept]
        self._writer.write_batch(pa.record_batch({
            "id": [d.id for d in docs], "text": [d.text for d in docs], "lang": [d.lang for d in docs],
            "lang_score": [d.lang_score for d in docs], "source": [d.source for d in docs],
            "file": [d.file for d in docs], "offset": [d.offset for d in docs],
            "url": [d.url for d in docs], "filter_stats": [stats for _, _, stats in kept],
            "metadata": [json.dumps(d.metadata, sort_keys=True, ensure_ascii=False, default=str) for d in docs],
        }, schema=_spill_schema()))

    def close(self) -> None:
        if self._open:
            self._open = False
            self._writer.close()
            self._sink.close()

    def batches(self) -> Iterator[Any]:
        """The record batches in order, read one at a time (not memory-mapped: mapped pages that were
        read would count in the driver's resident memory until the end)."""
        import pyarrow as pa

        with pa.OSFile(str(self.path), "rb") as src:
            reader = pa.ipc.open_file(src)
            for k in range(reader.num_record_batches):
                yield reader.get_batch(k)


@dataclass
class Filtered:
    """All shards' results, merged in read order (the survivors' texts are in the spill)."""

    read: int = 0
    kept: list[Doc] = field(default_factory=list)
    """Per survivor, in order: id, source, lang and provenance only (text left empty)."""
    indices: list[int] = field(default_factory=list)
    """Read index of each survivor."""
    keys: list[bytes] = field(default_factory=list)
    signatures: list[np.ndarray] = field(default_factory=list)
    dropped: Exclusions = field(default_factory=lambda: Exclusions(None))
    """The filters' drops: counted, their rows spilled (not held)."""
    stats: Counter = field(default_factory=Counter)
    read_stats: dict[str, Counter] = field(default_factory=dict)

    def absorb(self, res: ShardResult, spill: Spill) -> None:
        spill.append(res.kept)
        self.read += len(res.kept) + len(res.dropped)
        self.kept += [Doc(id=d.id, text="", source=d.source, lang=d.lang, file=d.file, offset=d.offset, url=d.url)
                      for _, d, _ in res.kept]
        self.indices += [i for i, _, _ in res.kept]
        self.keys += res.keys
        self.signatures.append(res.signatures)
        self.dropped.add(res.dropped)
        self.stats.update(res.stats)
        for source, counts in res.read_stats.items():
            self.read_stats.setdefault(source, Counter()).update(counts)


def _shards(docs: Iterable[Doc], size: int) -> Iterator[list[tuple[int, Doc]]]:
    it = enumerate(docs)
    while shard := list(itertools.islice(it, size)):
        yield shard


def filter_docs(docs: Iterable[Doc], cfg: CurateConfig, languages: list[str], sources: list[SourceConfig],
                spill: Spill, progress: Any = None, exclusions: Exclusions | None = None) -> tuple[Filtered, int]:
    """Run the per-document work over `docs` (any iterable, read lazily) on cfg.executor, survivors
    into `spill`; returns the merged result and how many workers ran."""
    from smoledge.data.distributed import make_executor

    docs = iter(docs)
    head = list(itertools.islice(docs, POOL_MIN_DOCS))
    workers = cfg.workers
    if cfg.executor == "local" and cfg.workers == 0 and len(head) < POOL_MIN_DOCS:  # all cores, unless too few
        workers = 1
    executor = make_executor(cfg.executor, workers, cfg.ray_address)
    merged = Filtered(dropped=exclusions if exclusions is not None else Exclusions(None))
    shards = _shards(itertools.chain(head, docs), BATCH_DOCS)
    for res in executor.map(run_shard, shards, setup=setup_worker,
                                setup_args=(cfg, list(languages), list(sources))):
        merged.absorb(res, spill)
        if progress is not None:
            progress.update(f"filtering on {executor.workers} {cfg.executor} worker(s): {merged.read} docs, "
                            f"{len(merged.kept)} kept")
    return merged, executor.workers


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

def _curated_schema() -> Any:
    import pyarrow as pa

    return pa.schema([
        ("id", pa.string()), ("text", pa.string()), ("lang", pa.string()), ("lang_score", pa.float64()),
        ("source", pa.string()), ("file", pa.string()), ("offset", pa.int64()), ("url", pa.string()),
        ("split", pa.string()), ("dup_cluster_size", pa.int32()),
        ("weight", pa.float64()), ("filter_stats", pa.string()), ("metadata", pa.string()),
    ])


def write_curated(path: Path, batches: Iterable[Any], keep: list[bool], splits: list[str],
                  cluster_sizes: list[int], weights: list[float]) -> int:
    """Stream the spilled survivors that `keep` marks into curated.parquet, with their split, cluster
    size and weight (one entry per kept row, in order); returns the characters written.

    Row groups hold ROW_GROUP_ROWS rows whatever the shard size, so the bytes depend on the
    kept documents alone."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = _curated_schema()
    pos = out = chars = 0
    pending = None
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for batch in batches:
            n = batch.num_rows
            kept = pa.Table.from_batches([batch]).filter(pa.array(keep[pos:pos + n], pa.bool_()))
            pos += n
            m = kept.num_rows
            table = pa.table({
                **{name: kept.column(name)
                   for name in ("id", "text", "lang", "lang_score", "source", "file", "offset", "url")},
                "split": splits[out:out + m], "dup_cluster_size": cluster_sizes[out:out + m],
                "weight": weights[out:out + m], "filter_stats": kept.column("filter_stats"),
                "metadata": kept.column("metadata"),
            }, schema=schema)
            out += m
            chars += pc.sum(pc.utf8_length(kept.column("text"))).as_py() or 0
            pending = table if pending is None else pa.concat_tables([pending, table])
            while pending.num_rows >= ROW_GROUP_ROWS:
                writer.write_table(pending.slice(0, ROW_GROUP_ROWS), row_group_size=ROW_GROUP_ROWS)
                pending = pending.slice(ROW_GROUP_ROWS)
        if pending is not None and pending.num_rows:
            writer.write_table(pending, row_group_size=ROW_GROUP_ROWS)
    return chars


def dedup_exclusions(batches: Iterable[Any], filtered: Filtered, keep: list[bool], reason: list[str | None],
                     scrub_pii: bool, policies: dict[str, str]) -> list[Dropped]:
    """The survivors of the filters that dedup dropped, with an excerpt of their spilled text."""
    out: list[Dropped] = []
    pos = 0
    for batch in batches:
        n = batch.num_rows
        texts = batch.column("text")
        for r in range(n):
            if not keep[pos + r]:
                doc = filtered.kept[pos + r]
                out.append(Dropped.of(filtered.indices[pos + r], doc, f"dedup:{reason[pos + r]}",
                                      excerpt(texts[r].as_py(), scrub_pii), policies[doc.source]))
        pos += n
    return out


def per_filter_metrics(stats: Counter, reasons: Counter, deduped: int) -> dict[str, dict[str, Any]]:
    """Per step, in pipeline order: documents seen, dropped, per reason (and the step's counters);
    then dedup and errors, which are not pipeline steps."""
    from smoledge.data.filters import filter_metrics

    steps = filter_metrics(stats)
    order = [key.removesuffix(":seen") for key in stats if key.endswith(":seen")]  # first shard's step order
    out = {s: steps[s] for s in order if s in steps} | {s: v for s, v in steps.items() if s not in order}
    extra: dict[str, Counter] = {"read": Counter(), "dedup": Counter(), "error": Counter()}
    for full, n in reasons.items():
        step, _, reason = full.partition(":")
        if step in extra:
            extra[step][reason] += n
    if extra["read"]:
        out = {"read": {"dropped": extra["read"].total(), "reasons": dict(sorted(extra["read"].items()))}} | out
    out["dedup"] = {"seen": deduped, "dropped": extra["dedup"].total(), "reasons": dict(sorted(extra["dedup"].items()))}
    if extra["error"]:
        out["error"] = {"dropped": extra["error"].total(), "reasons": dict(sorted(extra["error"].items()))}
    return out


# ----------------------------------------------------------------------------- the stage

def run(ctx: StageContext) -> StageResult:
    recipe = ctx.recipe
    files = CurateFiles(ctx.dir)
    spill = Spill(files.spill)
    exclusions = Exclusions(files.excluded_spill if recipe.curate.write_exclusions else None)
    try:
        return _run(ctx, recipe, recipe.curate, spill, exclusions)
    finally:
        spill.close()
        spill.path.unlink(missing_ok=True)
        exclusions.remove()


def _run(ctx: StageContext, recipe: Recipe, cfg: CurateConfig, spill: Spill, exclusions: Exclusions) -> StageResult:
    from smoledge.data.dedup import cluster, rehydration_weights

    timings: dict[str, float] = {}
    t = time.time()
    ctx.progress.update("reading sources")
    read_report: dict[str, Any] = {}
    docs = iter_sources(recipe.data.sources, recipe.seed, read_report)
    filtered, workers = filter_docs(docs, cfg, list(recipe.data.languages), recipe.data.sources, spill,
                                    ctx.progress, exclusions)
    for name, counts in filtered.read_stats.items():  # the workers' extraction counters join the reader's
        report = read_report[name]
        report.update({k: report.get(k, 0) + n for k, n in counts.items()})
        read_report[name] = dict(sorted(report.items()))
    spill.close()
    timings["read_and_filter"] = time.time() - t
    if not filtered.read:
        raise SmoledgeError(
            f"no documents were read from data.sources ({', '.join(s.name for s in recipe.data.sources)}); "
            f"check their paths and text_field (read report: {read_report})"
        )

    t = time.time()
    sigs = np.concatenate(filtered.signatures) if filtered.signatures else None  # (n_kept, num_perm)
    dd = cluster(filtered.keys, sigs, cfg.minhash_bands, cfg.minhash_rows, exact=cfg.dedup_exact,
                 progress=lambda done, total: ctx.progress.update("near-dedup (MinHash LSH)", done, total))
    timings["dedup"] = time.time() - t

    # Exclusions in read order: the filters' (with the text as read), then dedup's (text as filtered).
    policies = {s.name: s.policy for s in recipe.data.sources}
    deduped = dedup_exclusions(spill.batches(), filtered, dd.keep, dd.reason, cfg.scrub_pii, policies)
    exclusions.count(deduped)
    final = [doc for doc, keep in zip(filtered.kept, dd.keep) if keep]
    if not final:
        if cfg.write_exclusions:  # the reasons are what the user needs to fix the recipe
            exclusions.write(CurateFiles(ctx.dir).excluded, deduped)
        top = exclusions.reasons.most_common(3)
        raise SmoledgeError(
            f"curation kept none of {filtered.read} documents (top reasons: {top}); check data.languages and the "
            f"curate thresholds, and see {CurateFiles(ctx.dir).excluded}"
        )
    cluster_sizes = [size for size, keep in zip(dd.cluster_size, dd.keep) if keep]
    weights = rehydration_weights(cluster_sizes, cfg.rehydrate_weights) if cfg.rehydrate else [1.0] * len(final)

    t = time.time()
    ctx.progress.update("writing curated.parquet")
    splits = assign_splits(final, recipe.seed, recipe.data.valid_fraction)
    curated = CurateFiles(ctx.dir).curated
    kept_chars = write_curated(curated, spill.batches(), dd.keep, splits, cluster_sizes, weights)
    outputs = [curated]
    if cfg.write_exclusions:
        exclusions.write(CurateFiles(ctx.dir).excluded, deduped)
        outputs.append(CurateFiles(ctx.dir).excluded)
    timings["write"] = time.time() - t

    kept_per_lang = Counter(d.lang for d in final)
    valid_per_lang = Counter(d.lang for d, s in zip(final, splits) if s == "valid")
    stats = filtered.stats
    filters = per_filter_metrics(stats, exclusions.reasons, deduped=len(filtered.kept))
    metrics = {
        "read": filtered.read,
        "read_per_source": read_report,
        "kept": len(final),
        "dropped_total": exclusions.total,
        "dropped": dict(sorted(exclusions.reasons.items())),
        "dropped_per_policy": {policy: dict(sorted(c.items())) for policy, c in sorted(exclusions.by_policy.items())},
        "filters": filters,
        "filter_order": list(filters),  # the record's JSON sorts keys; this keeps the pipeline order
        "kept_per_language": dict(sorted(kept_per_lang.items())),
        "train_docs": splits.count("train"),
        "valid_docs": splits.count("valid"),
        "valid_per_language": dict(sorted(valid_per_lang.items())),
        "dup_cluster_sizes": {str(k): v for k, v in sorted(Counter(cluster_sizes).items())},
        "rehydrate": cfg.rehydrate,
        "weighted_docs": round(sum(weights), 3),
        "boilerplate_lines_removed": stats.get("boilerplate:lines_removed", 0),
        "emails_replaced": stats.get("pii:emails_replaced", 0),
        "ips_replaced": stats.get("pii:ips_replaced", 0),
        "kept_chars": kept_chars,
        "executor": cfg.executor,
        "workers": workers,
        "seconds": {k: round(v, 3) for k, v in timings.items()},
    }
    drops = ", ".join(f"{step} {v['dropped']}" for step, v in filters.items() if v["dropped"])
    summary = f"kept {len(final)}/{filtered.read} docs ({len(kept_per_lang)} langs)"
    summary += f"; dropped {drops}" if drops else ""
    return StageResult(outputs=outputs, metrics=metrics, summary=summary, artifact=curated)


def not_needed(recipe: Recipe) -> str | None:
    """Nothing to curate, tokenize or train when the recipe imports its model."""
    return recipe.model.not_needed()


STAGE = Stage(run=run, not_needed=not_needed, external_inputs=external_inputs)
