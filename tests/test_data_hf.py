"""The Hugging Face source: the real `datasets` streaming code, on a local dataset folder.

A hub id and a local folder go through the same `load_dataset(..., streaming=True)`
call, so this covers the code users run with network, without any network.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from smoledge.data.config import SourceConfig
from smoledge.data.readers import read_source
from smoledge.errors import SmoledgeError

pytest.importorskip("datasets")


def _local_dataset(root: Path) -> Path:
    data = root / "data"
    data.mkdir(parents=True)
    rows = [{"content": f"Document number {i} about the weather in Lyon.", "url": f"https://e.x/{i}"}
            for i in range(25)]
    (data / "train-00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (data / "test-00000.jsonl").write_text(json.dumps({"content": "held out"}) + "\n")
    return root


def test_streams_a_local_dataset_like_a_hub_id(tmp_path: Path) -> None:
    path = _local_dataset(tmp_path / "ds")
    src = SourceConfig(name="local-hf", kind="hf", path=str(path), text_field="content", max_docs=10)
    docs = list(read_source(src, seed=0, stats=Counter()))
    assert len(docs) == 10
    assert docs[0].text == "Document number 0 about the weather in Lyon."
    assert docs[3].source == "local-hf"
    test_docs = list(read_source(SourceConfig(name="t", kind="hf", path=str(path), split="test",
                                              text_field="content"), seed=0, stats=Counter()))
    assert [d.text for d in test_docs] == ["held out"]


def test_unknown_dataset_is_a_clear_error(tmp_path: Path) -> None:
    src = SourceConfig(name="nope", kind="hf", path=str(tmp_path / "missing-dataset"))
    with pytest.raises(SmoledgeError, match=r"could not open Hugging Face dataset .*check the id"):
        list(read_source(src, seed=0, stats=Counter()))


def test_without_datasets_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    src = SourceConfig(name="fw2", kind="hf", path="HuggingFaceFW/fineweb-2", subset="fra_Latn")
    with pytest.raises(SmoledgeError, match=r"pip install datasets"):
        list(read_source(src, seed=0, stats=Counter()))
