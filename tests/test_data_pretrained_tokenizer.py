"""tokenizer.pretrained: the train-tokenizer stage shards with an existing tokenizer (a teacher's).

The stand-in is shaped like SmolLM3's (tests/standin.py): Llama-3 split regex,
specials after the merges, EOS <|im_end|> (not 0), no BOS, no pad.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from standin import IM_END, llama3_style_tokenizer

from smoledge.config import ConfigError
from smoledge.tokenizer import stage as tokenize
from smoledge.tokenizer.config import TokenizerConfig
from smoledge.tokenizer.shards import Shard
from smoledge.errors import SmoledgeError
from smoledge.model.build import hf_config, special_ids
from smoledge.model.config import ModelConfig
from smoledge.progress import Progress
from smoledge.recipe import Recipe
from smoledge.stage import StageContext


@pytest.fixture(scope="module")
def standin_dir(tmp_path_factory, prose_texts) -> Path:
    out = tmp_path_factory.mktemp("standin-tokenizer")
    llama3_style_tokenizer(prose_texts, 1000).save_pretrained(out)
    return out


def _curated(run_dir: Path, texts: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (run_dir / "curate").mkdir(parents=True)
    n = len(texts)
    pq.write_table(pa.table({
        "text": texts, "lang": ["en" if i % 2 else "fr" for i in range(n)], "source": ["web"] * n,
        "split": ["valid" if i % 10 == 0 else "train" for i in range(n)],
    }), run_dir / "curate" / "curated.parquet")


def _ctx(run_dir: Path, tokenizer: dict) -> StageContext:
    recipe = Recipe.from_dict({"name": run_dir.name, "tokenizer": tokenizer})
    d = run_dir / "tokenizer"
    d.mkdir(exist_ok=True)
    return StageContext(recipe=recipe, run_dir=run_dir, dir=d, progress=Progress("test"))


def test_pretrained_rejects_settings_it_would_ignore() -> None:
    with pytest.raises(ConfigError, match=r"vocab_size: is unused with tokenizer.pretrained"):
        TokenizerConfig.from_dict({"pretrained": "HuggingFaceTB/SmolLM3-3B", "vocab_size": 8192})
    with pytest.raises(ConfigError, match=r"min_frequency: is unused"):
        TokenizerConfig.from_dict({"pretrained": "HuggingFaceTB/SmolLM3-3B", "min_frequency": 5})
    with pytest.raises(ConfigError, match=r"pretrained: is empty"):
        TokenizerConfig.from_dict({"pretrained": " "})
    assert TokenizerConfig.from_dict({"pretrained": "HuggingFaceTB/SmolLM3-3B", "dtype": "uint32"}).pretrained


def test_stage_shards_with_the_pretrained_ids_and_its_eos(tmp_path: Path, standin_dir: Path, prose_texts) -> None:
    from transformers import AutoTokenizer

    texts = [" ".join(prose_texts[i:i + 4]) for i in range(0, 400, 4)]
    _curated(tmp_path, texts)
    result = tokenize.run(_ctx(tmp_path, {"pretrained": str(standin_dir)}))
    ref = AutoTokenizer.from_pretrained(standin_dir)
    eos = ref.convert_tokens_to_ids(IM_END)
    assert eos == ref.eos_token_id != 0
    assert result.metrics["eos_id"] == eos and result.metrics["vocab_size"] == len(ref) == 1000
    assert result.metrics["pretrained"] == str(standin_dir) and result.metrics["requested_vocab_size"] is None
    saved = AutoTokenizer.from_pretrained(tmp_path / "tokenizer" / "tokenizer")
    assert saved.get_vocab() == ref.get_vocab() and saved.eos_token_id == eos

    shard = Shard.open(tmp_path / "tokenizer" / "shards", "train")
    train_texts = [t for i, t in enumerate(texts) if i % 10]
    assert shard.num_docs == len(train_texts) and shard.tokens.dtype == np.uint16
    for i in (0, 7, len(train_texts) - 1):
        assert shard.doc(i).tolist() == ref.encode(train_texts[i], add_special_tokens=False) + [eos]
    # EOS only where a document ends: the shards never split a document on id 0.
    ends = np.flatnonzero(np.asarray(shard.tokens) == eos) + 1
    assert ends.tolist() == shard.offsets[1:].tolist()


def test_local_pretrained_tokenizer_is_fingerprinted_by_content(tmp_path: Path, standin_dir: Path) -> None:
    recipe = Recipe.from_dict({"tokenizer": {"pretrained": str(standin_dir)}})
    before = tokenize.external_inputs(recipe)
    assert set(before["pretrained"]) >= {"tokenizer.json", "tokenizer_config.json"}
    assert tokenize.external_inputs(Recipe.from_dict({"tokenizer": {"pretrained": "HuggingFaceTB/SmolLM3-3B"}})) == {}
    assert tokenize.external_inputs(Recipe()) == {}


def _big_vocab_tokenizer(out: Path) -> Path:
    """A byte-level BPE with 70,000 ids (> uint16) and EOS as the last one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    merges = []
    # Filler: every pair of byte symbols, then triples, each a real merge (ids text can reach).
    for left in alphabet + [a + b for a in alphabet for b in alphabet]:
        for b in alphabet:
            if len(vocab) == 69_999:
                break
            vocab[left + b] = len(vocab)
            merges.append((left, b))
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens(["</doc>"])
    PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="</doc>").save_pretrained(out)
    return out


def test_vocab_past_uint16_shards_as_uint32(tmp_path: Path, prose_texts) -> None:
    tok_dir = _big_vocab_tokenizer(tmp_path / "big")
    _curated(tmp_path / "run", [" ".join(prose_texts[i:i + 3]) for i in range(0, 60, 3)])
    result = tokenize.run(_ctx(tmp_path / "run", {"pretrained": str(tok_dir)}))
    assert result.metrics["vocab_size"] == 70_000 and result.metrics["eos_id"] == 69_999
    shard = Shard.open(tmp_path / "run" / "tokenizer" / "shards", "train")
    assert shard.tokens.dtype == np.uint32 and int(shard.doc(0)[-1]) == 69_999
    assert int(np.asarray(shard.tokens).max()) == 69_999
    with pytest.raises(SmoledgeError, match=r"tokenizer.dtype uint16 cannot hold the 70000 ids"):
        tokenize.run(_ctx(tmp_path / "run", {"pretrained": str(tok_dir), "dtype": "uint16"}))


def test_unloadable_pretrained_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.constants

    with pytest.raises(SmoledgeError, match=r"cannot load tokenizer.pretrained '.*missing'.*local directory"):
        tokenize.load_pretrained(str(tmp_path / "missing"))
    # A hub id without network (offline mode fails at once instead of retrying for a minute).
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SmoledgeError, match=r"cannot load tokenizer.pretrained 'HuggingFaceTB/SmolLM3-3B'.*"
                                             r"huggingface-cli download HuggingFaceTB/SmolLM3-3B"):
        tokenize.load_pretrained("HuggingFaceTB/SmolLM3-3B")


def test_pretrained_without_eos_or_exportable_pre_tokenizer_is_refused(tmp_path: Path, standin_dir: Path) -> None:
    no_eos = tmp_path / "no-eos"
    no_eos.mkdir()
    for f in standin_dir.iterdir():
        (no_eos / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((no_eos / "tokenizer_config.json").read_text())
    cfg["eos_token"] = None
    (no_eos / "tokenizer_config.json").write_text(json.dumps(cfg))
    (no_eos / "special_tokens_map.json").unlink()
    with pytest.raises(SmoledgeError, match=r"has no EOS token"):
        tokenize.load_pretrained(str(no_eos))

    metaspace = tmp_path / "metaspace"
    metaspace.mkdir()
    for f in standin_dir.iterdir():
        (metaspace / f.name).write_bytes(f.read_bytes())
    spec = json.loads((metaspace / "tokenizer.json").read_text())
    spec["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    (metaspace / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(SmoledgeError, match=r"no llama.cpp pre-tokenizer reproduces this tokenizer.*Metaspace"):
        tokenize.load_pretrained(str(metaspace))


def test_special_ids_come_from_the_tokenizer(standin_dir: Path, tiny_tokenizer_dir: Path) -> None:
    from transformers import AutoTokenizer

    standin = AutoTokenizer.from_pretrained(standin_dir)
    eos = standin.convert_tokens_to_ids(IM_END)
    # No BOS (SmolLM3's), no pad: pad falls back to EOS.
    assert special_ids(standin) == {"bos_id": None, "eos_id": eos, "pad_id": eos}
    cfg = hf_config(ModelConfig(), vocab_size=1024, **special_ids(standin))
    assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id, cfg.vocab_size) == (None, eos, eos, 1024)
    # smoledge's own BPE keeps its fixed ids.
    assert special_ids(AutoTokenizer.from_pretrained(tiny_tokenizer_dir)) == {"bos_id": 0, "eos_id": 0, "pad_id": 0}
