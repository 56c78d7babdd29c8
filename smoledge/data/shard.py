"""The per-document work of a curate worker: extraction, each source's steps, dedup signatures.

    from smoledge.data.shard import ShardWorker
    worker = ShardWorker(recipe.curate, recipe.data.languages, recipe.data.sources)   # once per process
    result = worker([(read_index, doc), ...])       # a ShardResult: survivors, their signatures, drops

curate (smoledge.data.curate) builds one ShardWorker per worker process (`setup_worker`,
then `run_shard` per shard, on whatever executor runs them) and merges the ShardResults in
read order. A page whose visible text is confidently in a language not kept is dropped before
extraction (filters.Pipeline.screen); every other record is extracted (smoledge.data.web),
run through its source's pipeline (its `filters` policy) and, when it survives, signed for
dedup. Every document comes back either kept or dropped with its reason.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smoledge.data.config import CurateConfig, SourceConfig
from smoledge.data.docs import Doc
from smoledge.data.exclusions import Dropped
from smoledge.data.dedup import Signer
from smoledge.data.filters import SCREENED_REASON, SCREENED_STATS, build_pipeline
from smoledge.data.pii import scrub
from smoledge.data.web import SCREENED, extract, ocr_hook

EXCERPT_CHARS = 200
# Run through the pipeline once per worker, so the language-ID model loads at start, not on a real page.
WARMUP_TEXT = "The weather was mild today and the market in the old town was open until the evening."

log = logging.getLogger(__name__)


def excerpt(text: str, scrub_pii: bool) -> str:
    """The start of a dropped page for excluded.jsonl; it must not leak what curation scrubs."""
    head = text[:EXCERPT_CHARS]
    return scrub(head)[0] if scrub_pii else head


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

    def _extract(self, doc: Doc, read_stats: dict[str, Counter]) -> Doc:
        if doc.payload is None:
            return doc
        stats = read_stats.setdefault(doc.source, Counter())
        return extract(doc, self.sources[doc.source], stats, self.hooks[doc.source],
                       self.pipelines[doc.source].screen)

    def __call__(self, shard: list[tuple[int, Doc]]) -> ShardResult:
        out = ShardResult()
        sigs: list[np.ndarray] = []
        for i, doc in shard:
            policy = self.sources[doc.source].policy
            # Each document alone: its counters are its own, and one that raises takes nothing else down.
            # Steps rewrite the text and extraction fills the metadata: `doc` stays as read.
            work = dataclasses.replace(doc, metadata=dict(doc.metadata))
            try:
                work = self._extract(work, out.read_stats)
                if work.dropped == SCREENED:  # language ID on the page's visible text: not worth extracting
                    out.stats.update(SCREENED_STATS)
                    out.dropped.append(Dropped.of(i, work, SCREENED_REASON, excerpt(work.text, self.scrub_pii),
                                                  policy))
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


def setup_worker(cfg: CurateConfig, languages: list[str], sources: list[SourceConfig]) -> None:
    global _WORKER
    if multiprocessing.parent_process() is not None and "torch" not in sys.modules:
        # A worker process of ours needs no torch, but spaCy's thinc imports it when it is installed
        # (1.1 s of a worker's 2.7 s start, measured); an absent module makes thinc run without it.
        # Never in the driver, which later stages use for training.
        sys.modules["torch"] = None  # type: ignore[assignment]
    _WORKER = ShardWorker(cfg, languages, sources)


def run_shard(shard: list[tuple[int, Doc]]) -> ShardResult:
    assert _WORKER is not None, "setup_worker did not run in this process"
    return _WORKER(shard)
