"""curate's output contract: rehydration weights end to end, byte-identical reruns, a raising document."""

from __future__ import annotations

import json

import numpy as np
import pytest

from smoledge.config import ConfigError
from smoledge.data import filters, shard
from smoledge.data.config import CurateConfig
from smoledge.data.dedup import rehydration_weights
from smoledge.data.sample import write_sample
from smoledge.recipe import Recipe
from smoledge.runs import build

N_DOCS, SEED = 240, 99


def recipe(name: str, sources: list[dict] | None = None, **curate_cfg) -> Recipe:
    return Recipe.from_dict({
        "name": name,
        "seed": SEED,
        "data": {"sources": sources or [{"name": "web", "kind": "sample", "sample_docs": N_DOCS}]},
        "curate": {"workers": 1, **curate_cfg},
        "tokenizer": {"vocab_size": 512},
    })


def read_rows(stage_dir) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(stage_dir / "curated.parquet").to_pylist()


@pytest.fixture(scope="module")
def rehydrated(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    r = recipe("rehy", rehydrate=True)
    build(r, runs_root=root, until="train-tokenizer", out=lambda s: None)
    return r, root / "rehy"


def test_rehydration_weights_reach_parquet_shards_and_sampler(rehydrated):
    from smoledge.tokenizer.shards import Shard
    from smoledge.train.data import mixture_weights

    r, run_dir = rehydrated
    rows = read_rows(run_dir / "curate")
    sizes = [row["dup_cluster_size"] for row in rows]
    assert [row["weight"] for row in rows] == rehydration_weights(sizes, r.curate.rehydrate_weights)
    # The sample plants exact and near copies: pairs weigh 3 (FineWeb2's table), singletons 1.
    assert {1.0, 3.0} <= {row["weight"] for row in rows}
    record = json.loads((run_dir / "curate" / "stage.json").read_text())["metrics"]
    assert record["rehydrate"] is True and record["weighted_docs"] == pytest.approx(sum(row["weight"] for row in rows))
    for split in ("train", "valid"):
        shard = Shard.open(run_dir / "tokenizer" / "shards", split)
        want = [row["weight"] for row in rows if row["split"] == split]
        assert shard.weight is not None and shard.weight.dtype == np.float32
        assert shard.weight.tolist() == want
        # The trainer's per-document weight is source x language x this weight (all others are 1 here).
        assert mixture_weights(shard, r.data).tolist() == want


def test_two_runs_write_identical_bytes_whatever_the_shard_size(rehydrated, tmp_path, monkeypatch):
    from smoledge.data import curate

    r, run_dir = rehydrated
    build(r, runs_root=tmp_path / "again", until="curate", out=lambda s: None)
    monkeypatch.setattr(curate, "BATCH_DOCS", 7)
    build(r, runs_root=tmp_path / "small_shards", until="curate", out=lambda s: None)
    for again in ("again", "small_shards"):
        stage = tmp_path / again / "rehy" / "curate"
        for name in ("curated.parquet", "excluded.jsonl"):
            assert (stage / name).read_bytes() == (run_dir / "curate" / name).read_bytes(), (again, name)
        assert sorted(p.name for p in stage.iterdir()) == ["curated.parquet", "excluded.jsonl", "stage.json"]


def test_curated_parquet_is_streamed_in_fixed_row_groups(rehydrated, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from smoledge.data import curate

    r, run_dir = rehydrated
    monkeypatch.setattr(curate, "ROW_GROUP_ROWS", 50)
    build(r, runs_root=tmp_path, until="curate", out=lambda s: None)
    small = pq.ParquetFile(tmp_path / "rehy" / "curate" / "curated.parquet")
    sizes = [small.metadata.row_group(k).num_rows for k in range(small.num_row_groups)]
    assert len(sizes) > 2 and set(sizes[:-1]) == {50} and 0 < sizes[-1] <= 50
    assert small.read().equals(pq.read_table(run_dir / "curate" / "curated.parquet"))


@pytest.mark.slow  # a local 2-CPU Ray instance whose 2 actors each load the curation models
def test_curate_on_ray_writes_the_same_bytes_as_local(rehydrated, tmp_path):
    import ray

    _, run_dir = rehydrated
    on_ray = recipe("rehy", rehydrate=True, executor="ray", workers=2)
    (outcome,) = build(on_ray, runs_root=tmp_path, until="curate", out=lambda s: None)
    assert outcome.record["metrics"]["executor"] == "ray" and outcome.record["metrics"]["workers"] == 2
    for name in ("curated.parquet", "excluded.jsonl"):
        assert (tmp_path / "rehy" / "curate" / name).read_bytes() == (run_dir / "curate" / name).read_bytes(), name
    assert not ray.is_initialized()  # curate started its own local Ray, and stopped it


class Exploding(filters.Filter):
    """A step that raises on marked pages: stands for a filter bug hit by one odd document."""

    name = "exploding"

    def filter(self, doc):
        if "KABOOM" in doc.text:
            raise ZeroDivisionError("a filter bug")
        return True


def test_a_document_that_raises_is_dropped_and_the_run_goes_on(tmp_path, monkeypatch):
    dump = write_sample(tmp_path / "dump.jsonl", num_docs=80, seed=SEED)
    lines = dump.read_text(encoding="utf-8").splitlines()
    clean_run = recipe("clean", sources=[{"name": "web", "kind": "jsonl", "path": str(dump)}])
    build(clean_run, runs_root=tmp_path / "runs", until="curate", out=lambda s: None)
    clean_rows = read_rows(tmp_path / "runs" / "clean" / "curate")
    clean_ids = [row["id"] for row in clean_rows]
    # Pages without copies: dropping one must not let a copy of it survive in its place.
    singles = [row["id"] for row in clean_rows if row["dup_cluster_size"] == 1]
    poisoned_ids = singles[3], singles[10]
    bad = tmp_path / "bad.jsonl"
    with open(bad, "w", encoding="utf-8") as f:
        for line in lines:
            rec = json.loads(line)
            if rec["id"] in poisoned_ids:
                rec["text"] += " KABOOM"
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    original = filters.build_pipeline

    def with_exploding_step(cfg, languages):
        pipeline = original(cfg, languages)
        pipeline.steps.insert(2, Exploding())  # after language ID, before quality
        return pipeline

    monkeypatch.setattr(shard, "build_pipeline", with_exploding_step)  # what the curate worker builds with
    bad_run = recipe("bad", sources=[{"name": "web", "kind": "jsonl", "path": str(bad)}])
    build(bad_run, runs_root=tmp_path / "runs", until="curate", out=lambda s: None)

    stage = tmp_path / "runs" / "bad" / "curate"
    assert [row["id"] for row in read_rows(stage)] == [i for i in clean_ids if i not in poisoned_ids]
    excluded = [json.loads(line) for line in (stage / "excluded.jsonl").read_text(encoding="utf-8").splitlines()]
    errors = [row for row in excluded if row["reason"].startswith("error:")]
    assert [(row["id"], row["reason"]) for row in errors] == [(i, "error:ZeroDivisionError") for i in poisoned_ids]
    m = json.loads((stage / "stage.json").read_text())["metrics"]
    assert m["read"] == 80 and m["dropped"]["error:ZeroDivisionError"] == 2
    assert m["filters"]["error"] == {"dropped": 2, "reasons": {"ZeroDivisionError": 2}}
    assert m["filters"]["exploding"]["dropped"] == 0
    assert m["filter_order"].index("exploding") == 2


def test_scale_and_rehydration_settings_are_validated():
    assert CurateConfig().executor == "local" and CurateConfig().rehydrate is False
    with pytest.raises(ConfigError, match="ray_address: is only used with executor: ray"):
        CurateConfig.from_dict({"ray_address": "auto"}, prefix="curate")
    with pytest.raises(ConfigError, match="curate.executor: 'dask' is not valid"):
        CurateConfig.from_dict({"executor": "dask"}, prefix="curate")
    with pytest.raises(ConfigError, match="rehydrate_weights: needs a weight for cluster size 1"):
        CurateConfig.from_dict({"rehydrate_weights": {2: 3.0}}, prefix="curate")
    with pytest.raises(ConfigError, match="rehydrate_weights: needs sizes >= 1 and weights > 0"):
        CurateConfig.from_dict({"rehydrate_weights": {1: 1.0, 5: 0.0}}, prefix="curate")
    ok = CurateConfig.from_dict({"executor": "ray", "ray_address": "auto", "rehydrate_weights": {1: 1, 3: 2.5}})
    assert ok.rehydrate_weights == {1: 1.0, 3: 2.5}


@pytest.mark.slow  # a local 2-CPU Ray instance; its actors extract real pages and PDFs
def test_real_pages_curated_on_ray_are_byte_identical_to_one_process(tmp_path, shared_data):
    """Extraction runs in the workers too: pages, a Common Crawl WARC and PDFs give the same bytes."""
    sources = [
        {"name": "pages", "kind": "html", "path": str(shared_data / "html" / "trafilatura" / "[a-m]*.html")},
        {"name": "cc", "kind": "warc", "path": str(shared_data / "warc" / "resiliparse" / "warcfile.warc.gz")},
        {"name": "pdfs", "kind": "pdf", "path": str(shared_data / "pdf" / "pdfminer.six")},
    ]
    outs = []
    for name, cfg in (("one", {"workers": 1}), ("ray", {"executor": "ray", "workers": 2})):
        (outcome,) = build(recipe("web", sources, **cfg), runs_root=tmp_path / name, until="curate",
                           out=lambda s: None)
        outs.append(outcome.record["metrics"])
    assert outs[1]["workers"] == 2 and outs[0]["kept"] > 20 and outs[0]["read"] == outs[1]["read"]
    for name in ("curated.parquet", "excluded.jsonl"):
        one = (tmp_path / "one" / "web" / "curate" / name).read_bytes()
        assert one == (tmp_path / "ray" / "web" / "curate" / name).read_bytes(), name
