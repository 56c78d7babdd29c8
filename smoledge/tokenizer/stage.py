"""Stage `train-tokenizer`: byte-level BPE on the curated train split, then packed token shards.

    smoledge train-tokenizer build/quickstart.yaml
    # or: smoledge.runs.build(recipe, until="train-tokenizer")

Reads runs/<name>/curate/curated.parquet. Trains smoledge.tokenizer.bpe on the
`train` split only (the held-out split never shapes the vocabulary), or, with
tokenizer.pretrained, loads that tokenizer (a directory or hub id: a teacher's)
instead, then writes into runs/<name>/tokenizer/:

  tokenizer/        the HF tokenizer (tokenizer.json, tokenizer_config.json, ...)
  shards/           train.* and valid.* (smoledge.tokenizer.shards): each document's
                    token ids followed by the tokenizer's EOS (id 0 for smoledge's
                    BPE), with its language, source and sampling weight (curate's
                    `weight` column: rehydration, or 1.0)
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from smoledge.errors import SmoledgeError
from smoledge.io import atomic_dir
from smoledge.layout import TokenizerFiles
from smoledge.recipe import Recipe
from smoledge.stage import Stage, StageContext, StageResult
from smoledge.tokenizer.pretrained import load_pretrained, pretrained_inputs

SPLITS = ("train", "valid")
ENCODE_BATCH = 256


def load_curated(path: Path) -> dict[str, list[Any]]:
    """The columns of curated.parquet the tokenizer needs (`weight` is 1.0 where curate wrote none)."""
    import pyarrow.parquet as pq

    if not path.exists():
        raise SmoledgeError(f"{path} is missing; run `smoledge curate` for this recipe first")
    need = ["text", "lang", "source", "split"]
    names = pq.read_schema(path).names
    missing = set(need) - set(names)
    if missing:
        raise SmoledgeError(f"{path} lacks column(s) {sorted(missing)}; re-run the curate stage (--force curate)")
    has_weight = "weight" in names
    table = pq.read_table(path, columns=need + (["weight"] if has_weight else []))
    cols = {name: table.column(name).to_pylist() for name in need}
    cols["weight"] = table.column("weight").to_pylist() if has_weight else [1.0] * table.num_rows
    return cols


def external_inputs(recipe: Recipe) -> dict[str, Any]:
    return pretrained_inputs(recipe.tokenizer.pretrained)


def _fmt_count(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 1_000:
        return f"{n / 1e3:.0f}k"
    return str(n)


def run(ctx: StageContext) -> StageResult:
    from smoledge.tokenizer.bpe import train_bpe
    from smoledge.tokenizer.shards import pick_dtype, write_split

    recipe = ctx.recipe
    cfg = recipe.tokenizer
    cols = load_curated(ctx.files.curate.curated)
    by_split: dict[str, list[int]] = {s: [] for s in SPLITS}
    for i, split in enumerate(cols["split"]):
        if split in by_split:
            by_split[split].append(i)
    if not by_split["train"]:
        raise SmoledgeError("curated.parquet has no 'train' documents; add data or lower data.valid_fraction")

    if cfg.pretrained is not None:
        ctx.progress.update(f"loading tokenizer {cfg.pretrained}")
        tok = load_pretrained(cfg.pretrained)
    else:
        ctx.progress.update(f"training BPE (vocab {cfg.vocab_size}) on {len(by_split['train'])} docs")
        tok = train_bpe((cols["text"][i] for i in by_split["train"]), cfg.vocab_size, cfg.min_frequency)
        if tok.eos_token_id != 0:
            raise SmoledgeError(f"tokenizer EOS id is {tok.eos_token_id}, expected 0; smoledge.tokenizer.bpe must put "
                                "EOS first")
    vocab_size = len(tok)
    eos = tok.eos_token_id
    if pick_dtype(vocab_size, cfg.dtype) == "uint16" and vocab_size > 65536:
        raise SmoledgeError(f"tokenizer.dtype uint16 cannot hold the {vocab_size} ids of this tokenizer; "
                            "set tokenizer.dtype: auto (or uint32)")
    tok_dir = TokenizerFiles(ctx.dir).tokenizer
    with atomic_dir(tok_dir) as tmp:
        tok.save_pretrained(tmp)

    shard_dir = TokenizerFiles(ctx.dir).shards
    outputs = sorted(p for p in tok_dir.rglob("*") if p.is_file())
    tokens: dict[str, int] = {}
    tokens_per_lang: dict[str, dict[str, int]] = {}
    docs_per_split: dict[str, int] = {}
    total_bytes = total_tokens = 0
    for split in SPLITS:
        idx = by_split[split]
        lang_tokens: Counter = Counter()
        done = 0

        def encoded() -> Iterator[tuple[list[int], str, str, float]]:
            nonlocal done, total_bytes, total_tokens
            for k in range(0, len(idx), ENCODE_BATCH):
                chunk = idx[k:k + ENCODE_BATCH]
                texts = [cols["text"][i] for i in chunk]
                ids = tok(texts, add_special_tokens=False)["input_ids"]
                for i, text, doc_ids in zip(chunk, texts, ids):
                    lang_tokens[cols["lang"][i]] += len(doc_ids) + 1
                    total_bytes += len(text.encode("utf-8"))
                    total_tokens += len(doc_ids)
                    yield doc_ids + [eos], cols["lang"][i], cols["source"][i], cols["weight"][i]
                done += len(chunk)
                ctx.progress.update(f"tokenizing {split}", done, len(idx))

        outputs += write_split(shard_dir, split, encoded(), vocab_size=vocab_size, dtype=cfg.dtype)
        tokens[split] = sum(lang_tokens.values())
        tokens_per_lang[split] = dict(sorted(lang_tokens.items()))
        docs_per_split[split] = len(idx)

    metrics = {
        "vocab_size": vocab_size,
        "requested_vocab_size": None if cfg.pretrained else cfg.vocab_size,
        "pretrained": cfg.pretrained,
        "eos_id": eos,
        "tokens": tokens,
        "docs": docs_per_split,
        "tokens_per_language": tokens_per_lang,
        "bytes_per_token": round(total_bytes / max(total_tokens, 1), 4),
    }
    summary = f"vocab {vocab_size}, {_fmt_count(tokens['train'])} train tokens"
    return StageResult(outputs=outputs, metrics=metrics, summary=summary, artifact=tok_dir)


def not_needed(recipe: Recipe) -> str | None:
    """Nothing to curate, tokenize or train when the recipe imports its model."""
    return recipe.model.not_needed()


STAGE = Stage(run=run, not_needed=not_needed, external_inputs=external_inputs)
