"""The curate stage's dropped documents: counted as they come, their rows spilled to disk, written out in read order.

    log = Exclusions(CurateFiles(dir).excluded_spill)   # None: count only (curate.write_exclusions off)
    log.add(shard_result.dropped)                       # the filters' drops, shard after shard, in read order
    log.count(dedup_drops)                              # dedup's, known at the end
    log.write(CurateFiles(dir).excluded, dedup_drops)   # merged by read index -> excluded.jsonl
    log.reasons                                         # Counter of "<step>:<reason>"

At crawl scale almost every record is dropped (a language not kept, no main text, a quality
filter): holding each drop's row until the end cost the driver ~0.5 KB per record read, 15 GB for
the ~30M responses of 1 TB of WARC. Here the driver holds two counters; rows go to
excluded.partial.jsonl as shards come back (already in read order, since shards are), and the end
streams them out merged with dedup's drops (known only after global dedup, sorted by read index).
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from smoledge.data.docs import Doc
from smoledge.io import atomic_path


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

    def row(self) -> dict[str, Any]:
        """Its line of excluded.jsonl."""
        return {"id": self.id, "source": self.source, "file": self.file, "offset": self.offset, "url": self.url,
                "policy": self.policy, "reason": self.reason, "text": self.excerpt}


class Exclusions:
    """Every drop of one run; see the module docstring."""

    def __init__(self, spill: Path | None):
        self.reasons: Counter = Counter()
        """How many documents each "<step>:<reason>" dropped."""
        self.by_policy: dict[str, Counter] = {}
        """The same, per filter policy."""
        self.spill = spill
        self._f = open(spill, "w", encoding="utf-8") if spill is not None else None

    @property
    def total(self) -> int:
        return self.reasons.total()

    def count(self, rows: list[Dropped]) -> None:
        """Count `rows` (dedup's drops: `write` takes their rows at the end)."""
        for r in rows:
            self.reasons[r.reason] += 1
            self.by_policy.setdefault(r.policy, Counter())[r.reason] += 1

    def add(self, rows: list[Dropped]) -> None:
        """Count `rows` and spill them; calls must come in read order."""
        self.count(rows)
        if self._f is not None:
            for r in rows:
                self._f.write(json.dumps([r.index, r.row()], ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def _spilled(self) -> Iterator[tuple[int, dict[str, Any]]]:
        self.close()
        if self.spill is None:
            return
        with open(self.spill, encoding="utf-8") as f:
            for line in f:
                index, row = json.loads(line)
                yield index, row

    def write(self, path: Path, later: list[Dropped]) -> None:
        """excluded.jsonl: the spilled rows and `later`, in read order."""
        rest = ((r.index, r.row()) for r in sorted(later, key=lambda r: r.index))
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            for _, row in heapq.merge(self._spilled(), rest, key=lambda item: item[0]):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.remove()

    def remove(self) -> None:
        self.close()
        if self.spill is not None:
            self.spill.unlink(missing_ok=True)
