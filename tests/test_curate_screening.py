"""Screening before extraction: a page whose visible text is confidently in a language not kept is
dropped without extracting it, and only pages that extraction and the filters would drop too."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from smoledge.data.config import CurateConfig, SourceConfig
from smoledge.data.shard import ShardWorker
from smoledge.data.filters import build_pipeline
from smoledge.data.readers import read_records
from smoledge.data.web import extract

LANGS = ["en", "fr", "es", "de", "it", "pt"]


@pytest.fixture(scope="module")
def pages(shared_data):
    sources = [SourceConfig(name="html", kind="html", path=str(shared_data / "html")),
               SourceConfig(name="warc", kind="warc", path=str(shared_data / "warc"))]
    docs = [d for s in sources for d in read_records(s, seed=0) if d.payload is not None]
    return sources, docs


@pytest.mark.slow  # every shared page extracted and filtered twice
def test_screened_pages_are_pages_the_full_path_drops(pages):
    sources, docs = pages
    cfg = CurateConfig()
    worker = ShardWorker(cfg, LANGS, sources)
    pipeline = build_pipeline(cfg, LANGS)
    by_name = {s.name: s for s in sources}
    screened = same = 0
    for i, doc in enumerate(docs):
        res = worker([(i, doc)])
        full = extract(dataclasses.replace(doc, metadata=dict(doc.metadata)), by_name[doc.source], Counter(), None)
        ref = pipeline.process([(i, full)]) if not full.dropped else None
        if res.stats["language:screened_before_extraction"]:
            screened += 1
            assert res.dropped[0].reason == "language:unwanted_language" and res.dropped[0].excerpt
            # Without the screen the page is dropped as well: for its language, or before language ID.
            assert full.dropped or not ref.kept, (doc.file, doc.url)
            continue
        # Every page not screened takes the full path: the same decision and text.
        kept = [d.text for _, d, _ in res.kept]
        assert kept == ([d.text for _, d in ref.kept] if ref else []), (doc.file, doc.url)
        same += 1
    assert screened >= 40 and same >= 100
