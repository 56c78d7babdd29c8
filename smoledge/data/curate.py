"""Stage `curate`: raw sources -> filtered, scrubbed, deduplicated documents with a split.

    smoledge curate build/quickstart.yaml
    # or: smoledge.runs.build(recipe, until="curate")

Reads every source in recipe.data.sources (smoledge.data.readers) as a
stream of records, cut into shards of BATCH_DOCS. Each shard runs, on a
worker, the extraction of pages and PDFs (smoledge.data.web.extract), then
its source's per-document steps (smoledge.data.filters: boilerplate lines ->
language -> quality -> PII, as the source's `filters` policy says; `none`
keeps language, PII and dedup only) and, for the survivors, the dedup signatures
(smoledge.data.dedup: exact key + MinHash). The driver spills the survivors
to disk as they come back (kept.partial.arrow, removed at the end) and keeps
only their ids and signatures, removes exact and near duplicates over all
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

import dataclasses
import hashlib
import itertools
import json
import logging
import multiprocessing
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from smoledge.data.config import CurateConfig, SourceConfig
from smoledge.data.docs import Doc
from smoledge.data.readers import read_records, resolve_paths
from smoledge.errors import SmoledgeError
from smoledge.io import atomic_path, sha256_file
from smoledge.layout import CurateFiles
from smoledge.recipe import Recipe
from smoledge.stage import Stage, StageContext, StageResult

BATCH_DOCS = 64
# Below this many documents, starting worker processes (each loads the language-ID model, tokenizers
# and trafilatura, ~3 s) costs more than it saves: `workers: 0` (all cores) then runs in one process.
POOL_MIN_DOCS = 200
# Every language gets at least this many held-out documents (when it has
# twice as many), so per-language perplexity is never computed on nothing.
MIN_VALID_PER_LANGUAGE = 3
EXCERPT_CHARS = 200
# Parquet row group size of curated.parquet.
ROW_GROUP_ROWS = 8192
# Run through the pipeline once per worker, so the language-ID model loads at start, not on a real page.
WARMUP_TEXT = "The weather was mild today and the market in the old town was open until the evening."

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


def excerpt(text: str, scrub_pii: bool) -> str:
    """The start of a dropped page for excluded.jsonl; it must not leak what curation scrubs."""
    from smoledge.data.pii import scrub

    head = text[:EXCERPT_CHARS]
    return scrub(head)[0] if scrub_pii else head


# ----------------------------------------------------------------------------- per-document work (workers)

@dataclass
class Dropped:
    index: int
    """Read order of the document."""
    id: str
    source: str
    reason: str
    """"read:<reason>", "<step>:<reason>", "dedup:<reason>" or "error:<ExceptionType>"."""
    excerpt: str
    file: str = ""
    offset: int = 0
    url: str = ""
    policy: str = ""
    """The source's filter policy (fineweb, none, custom)."""

    @classmethod
    def of(cls, index: int, doc: Doc, reason: str, excerpt: str, policy: str) -> Dropped:
        return cls(index, doc.id, doc.source, reason, excerpt, doc.file, doc.offset, doc.url, policy)


@dataclass
class ShardResult:
    """What one shard sends back to the driver."""

    kept: list[tuple[int, Doc, str]] = field(default_factory=list)
    """(read index, filtered document, filter_stats JSON) of the survivors, in order."""
    keys: list[bytes] = field(default_factory=list)
    """Exact-duplicate key of each survivor."""
    signatures: np.ndarray | None = None
    """(len(kept), num_perm) uint32 MinHash signatures of the survivors."""
    dropped: list[Dropped] = field(default_factory=list)
    stats: Counter = field(default_factory=Counter)
    """The steps' counters, summed over the shard."""
    read_stats: dict[str, Counter] = field(default_factory=dict)
    """Extraction's counters per source (html:bytes_replaced, skipped:html_no_text, ...)."""


def doc_filter_stats(stats: Counter) -> str:
    """One document's record of its pass through the steps, as compact sorted JSON:
    {"passed": [steps in order], "<step>": {"<counter>": n, ...}, ...}."""
    out: dict[str, Any] = {"passed": []}
    for key, n in stats.items():
        step, _, counter = key.partition(":")
        if step == "dropped":
            continue
        if counter == "seen":
            out["passed"].append(step)
        else:
            out.setdefault(step, {})[counter] = n
    return json.dumps(out, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class ShardWorker:
    """Extraction, each source's per-document steps and the dedup signer, built once per worker process."""

    def __init__(self, cfg: CurateConfig, languages: list[str], sources: list[SourceConfig]):
        from smoledge.data.dedup import Signer
        from smoledge.data.filters import build_pipeline
        from smoledge.data.web import ocr_hook

        self.sources = {s.name: s for s in sources}
        by_policy: dict[str, Any] = {}
        self.pipelines = {}
        for s in sources:
            # Sources with the same steps and thresholds share one pipeline (and its tokenizers).
            key = json.dumps([s.filters, s.filter_settings], sort_keys=True)
            if key not in by_policy:
                by_policy[key] = build_pipeline(cfg.for_source(s), languages)
            self.pipelines[s.name] = by_policy[key]
        self.hooks = {s.name: ocr_hook(s) for s in sources}
        self.signer = Signer(cfg.minhash_num_perm, cfg.minhash_ngram)
        self.num_perm = cfg.minhash_num_perm
        self.scrub_pii = cfg.scrub_pii
        self._reported: set[str] = set()
        for pipeline in by_policy.values():
            pipeline.preload()  # every language's tokenizer now, not on the first page in it
            pipeline.process([(-1, Doc(id="warmup", text=WARMUP_TEXT, source="warmup"))])

    def _extract(self, doc: Doc, read_stats: dict[str, Counter], screened: list[Counter]) -> Doc:
        from smoledge.data.web import extract

        if doc.payload is None:
            return doc
        stats = read_stats.setdefault(doc.source, Counter())

        def screen(visible: str) -> bool:
            drop = self.pipelines[doc.source].screen(visible)
            if drop is not None:
                screened.append(drop)
            return drop is not None

        return extract(doc, self.sources[doc.source], stats, self.hooks[doc.source], screen)

    def __call__(self, shard: list[tuple[int, Doc]]) -> ShardResult:
        out = ShardResult()
        sigs: list[np.ndarray] = []
        for i, doc in shard:
            policy = self.sources[doc.source].policy
            # Each document alone: its counters are its own, and one that raises takes nothing else down.
            # Steps rewrite the text and extraction fills the metadata: `doc` stays as read.
            work = dataclasses.replace(doc, metadata=dict(doc.metadata))
            try:
                screened: list[Counter] = []
                work = self._extract(work, out.read_stats, screened)
                if screened:  # language ID on the page's visible text: not worth extracting
                    out.stats.update(screened[0])
                    out.dropped.append(Dropped.of(i, work, "language:unwanted_language",
                                                  excerpt(work.text, self.scrub_pii), policy))
                    continue
                if work.dropped:
                    out.dropped.append(Dropped.of(i, work, f"read:{work.dropped}", "", policy))
                    continue
                text_as_read = work.text
                res = self.pipelines[doc.source].process([(i, work)])
                signed = self.signer(res.kept[0][1].text) if res.kept else None
            except Exception as exc:  # a bad page must not end the run: count it and go on
                reason = f"error:{type(exc).__name__}"
                if reason not in self._reported:  # once per type and worker, with the traceback
                    self._reported.add(reason)
                    log.warning("curate: document %r (source %s) raised; dropped as %s", doc.id, doc.source,
                                reason, exc_info=True)
                out.dropped.append(Dropped.of(i, doc, reason, excerpt(doc.text, self.scrub_pii), policy))
                continue
            out.stats.update(res.stats)
            if signed is not None:
                out.kept.append((i, res.kept[0][1], doc_filter_stats(res.stats)))
                out.keys.append(signed[0])
                sigs.append(signed[1])
            else:
                reason = res.excluded[0][1]
                out.dropped.append(Dropped.of(i, work, reason, excerpt(text_as_read, self.scrub_pii), policy))
        out.signatures = np.stack(sigs) if sigs else np.zeros((0, self.num_perm), dtype=np.uint32)
        return out


_WORKER: ShardWorker | None = None


def _setup_worker(cfg: CurateConfig, languages: list[str], sources: list[SourceConfig]) -> None:
    global _WORKER
    if multiprocessing.parent_process() is not None and "torch" not in sys.modules:
        # A worker process of ours needs no torch, but spaCy's thinc imports it when it is installed
        # (1.1 s of a worker's 2.7 s start, measured); an absent module makes thinc run without it.
        # Never in the driver, which later stages use for training.
        sys.modules["torch"] = None  # type: ignore[assignment]
    _WORKER = ShardWorker(cfg, languages, sources)


def _run_shard(shard: list[tuple[int, Doc]]) -> ShardResult:
    assert _WORKER is not None, "_setup_worker did not run in this process"
    return _WORKER(shard)


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
    dropped: list[Dropped] = field(default_factory=list)
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
        self.dropped += res.dropped
        self.stats.update(res.stats)
        for source, counts in res.read_stats.items():
            self.read_stats.setdefault(source, Counter()).update(counts)


def _shards(docs: Iterable[Doc], size: int) -> Iterator[list[tuple[int, Doc]]]:
    it = enumerate(docs)
    while shard := list(itertools.islice(it, size)):
        yield shard


def filter_docs(docs: Iterable[Doc], cfg: CurateConfig, languages: list[str], sources: list[SourceConfig],
                spill: Spill, progress: Any = None) -> tuple[Filtered, int]:
    """Run the per-document work over `docs` (any iterable, read lazily) on cfg.executor, survivors
    into `spill`; returns the merged result and how many workers ran."""
    from smoledge.data.distributed import make_executor

    docs = iter(docs)
    head = list(itertools.islice(docs, POOL_MIN_DOCS))
    workers = cfg.workers
    if cfg.executor == "local" and cfg.workers == 0 and len(head) < POOL_MIN_DOCS:  # all cores, unless too few
        workers = 1
    executor = make_executor(cfg.executor, workers, cfg.ray_address)
    merged = Filtered()
    shards = _shards(itertools.chain(head, docs), BATCH_DOCS)
    for res in executor.map(_run_shard, shards, setup=_setup_worker,
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


def write_exclusions(path: Path, rows: list[Dropped]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"id": r.id, "source": r.source, "file": r.file, "offset": r.offset, "url": r.url,
                                "policy": r.policy, "reason": r.reason, "text": r.excerpt},
                               ensure_ascii=False) + "\n")


def per_filter_metrics(stats: Counter, dropped: list[Dropped], deduped: int) -> dict[str, dict[str, Any]]:
    """Per step, in pipeline order: documents seen, dropped, per reason (and the step's counters);
    then dedup and errors, which are not pipeline steps."""
    from smoledge.data.filters import filter_metrics

    steps = filter_metrics(stats)
    order = [key.removesuffix(":seen") for key in stats if key.endswith(":seen")]  # first shard's step order
    out = {s: steps[s] for s in order if s in steps} | {s: v for s, v in steps.items() if s not in order}
    extra: dict[str, Counter] = {"read": Counter(), "dedup": Counter(), "error": Counter()}
    for r in dropped:
        step, _, reason = r.reason.partition(":")
        if step in extra:
            extra[step][reason] += 1
    if extra["read"]:
        out = {"read": {"dropped": extra["read"].total(), "reasons": dict(sorted(extra["read"].items()))}} | out
    out["dedup"] = {"seen": deduped, "dropped": extra["dedup"].total(), "reasons": dict(sorted(extra["dedup"].items()))}
    if extra["error"]:
        out["error"] = {"dropped": extra["error"].total(), "reasons": dict(sorted(extra["error"].items()))}
    return out


# ----------------------------------------------------------------------------- the stage

def run(ctx: StageContext) -> StageResult:
    recipe = ctx.recipe
    spill = Spill(CurateFiles(ctx.dir).spill)
    try:
        return _run(ctx, recipe, recipe.curate, spill)
    finally:
        spill.close()
        spill.path.unlink(missing_ok=True)


def _run(ctx: StageContext, recipe: Recipe, cfg: CurateConfig, spill: Spill) -> StageResult:
    from smoledge.data.dedup import cluster, rehydration_weights

    timings: dict[str, float] = {}
    t = time.time()
    ctx.progress.update("reading sources")
    read_report: dict[str, Any] = {}
    docs = iter_sources(recipe.data.sources, recipe.seed, read_report)
    filtered, workers = filter_docs(docs, cfg, list(recipe.data.languages), recipe.data.sources, spill,
                                    ctx.progress)
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
    dropped = filtered.dropped + dedup_exclusions(spill.batches(), filtered, dd.keep, dd.reason, cfg.scrub_pii,
                                                  policies)
    dropped.sort(key=lambda r: r.index)
    final = [doc for doc, keep in zip(filtered.kept, dd.keep) if keep]
    if not final:
        if cfg.write_exclusions:  # the reasons are what the user needs to fix the recipe
            write_exclusions(CurateFiles(ctx.dir).excluded, dropped)
        top = Counter(r.reason for r in dropped).most_common(3)
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
        write_exclusions(CurateFiles(ctx.dir).excluded, dropped)
        outputs.append(CurateFiles(ctx.dir).excluded)
    timings["write"] = time.time() - t

    kept_per_lang = Counter(d.lang for d in final)
    valid_per_lang = Counter(d.lang for d, s in zip(final, splits) if s == "valid")
    stats = filtered.stats
    filters = per_filter_metrics(stats, dropped, deduped=len(filtered.kept))
    metrics = {
        "read": filtered.read,
        "read_per_source": read_report,
        "kept": len(final),
        "dropped_total": len(dropped),
        "dropped": dict(sorted(Counter(r.reason for r in dropped).items())),
        "dropped_per_policy": {policy: dict(sorted(Counter(r.reason for r in dropped if r.policy == policy).items()))
                               for policy in sorted({r.policy for r in dropped})},
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
