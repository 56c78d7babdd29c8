"""Evaluate stage: what quantization and each device's context limit cost in quality, before shipping.

For every artifact the export stage wrote (the HF model in PyTorch, each GGUF in llama.cpp, each ONNX in
onnxruntime), with the same texts and token ids:
  - perplexity and bits per byte per language on the curated held-out split, and on evaluate.eval_sets;
  - the quantization table (size, bits per weight, Δ perplexity vs the fp32 artifact of the same runtime).
For every device profile of the recipe: the artifact it should run (smoledge.bench.select: its backend and
ISA, its RAM budget, the perplexity gate), then the passkey grid and the tasks on that artifact, at the
device's context and thread count, next to the same checks on the fp32 PyTorch model.
Then the gates (evaluate.gates). Writes runs/<name>/evaluate/{report.json, report.md, report.html} before a
failing gate stops the build, so the numbers that failed it are there to read.

    smoledge build build/quickstart.yaml --until evaluate
    smoledge report runs/quickstart        # re-render report.html (e.g. after `smoledge bench --out ...`)
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from smoledge.errors import SmoledgeError
from smoledge.io import atomic_write_json, atomic_write_text, sha256_file
from smoledge.evaluate.device_checks import DeviceChecks, passkey_drop
from smoledge.evaluate.tables import (HF_ARTIFACT, quant_table, reference_note, report_markdown,
                                      summary_line)
from smoledge.host import local_cores
from smoledge.layout import EvaluateFiles, ExportFiles
from smoledge.recipe import Recipe
from smoledge.stage import Stage, StageContext, StageResult

REPORT_FORMAT = 2
# Where a model-source build's held-out text comes from (it curates none).
BUILTIN_SOURCE = "smoledge built-in held-out text (smoledge/evaluate/heldout, written for smoledge in 2026)"


def external_inputs(recipe: Recipe) -> dict[str, Any]:
    """Eval sets, tasks and device profiles by content: editing one must re-evaluate."""
    out: dict[str, Any] = {"devices": [p.to_dict() for p in recipe.device_profiles()]}
    for key, items in (("eval_sets", recipe.evaluate.eval_sets), ("tasks", recipe.evaluate.tasks)):
        out[key] = {i.name: sha256_file(i.path) if Path(i.path).is_file() else None for i in items}
    return out


def run(ctx: StageContext) -> StageResult:
    from transformers import AutoTokenizer

    from smoledge.bench.select import candidates, read_hf_config
    from smoledge.evaluate.gates import GateFailed, check_gates, failures_message
    from smoledge.evaluate.perplexity import token_byte_lengths
    from smoledge.evaluate.report import health_summary, read_health, write_report

    cfg = ctx.recipe.evaluate
    export_dir = ctx.files.export.dir
    hf = ctx.files.export.hf
    if not (hf / "config.json").exists():
        raise SmoledgeError(f"no exported model at {hf}; run the export stage first")
    hf_config = read_hf_config(export_dir)
    max_pos = int(hf_config["max_position_embeddings"])
    if cfg.seq_len > max_pos:
        raise SmoledgeError(f"evaluate.seq_len {cfg.seq_len} exceeds the model's context ({max_pos}); "
                            f"set evaluate.seq_len <= {max_pos}")
    tok = AutoTokenizer.from_pretrained(hf)
    token_bytes = token_byte_lengths(tok)
    ctx.progress.update("tokenizing held-out text")
    held_out_docs = (builtin_held_out(ctx.recipe.data.languages) if ctx.recipe.model.source
                     else held_out_documents(ctx.files.curate.curated))
    by_lang = pack_ids(held_out_docs, tok, cfg.max_tokens_per_language)
    sets = eval_set_ids(cfg, tok)
    tasks = load_tasks(cfg)

    # An imported GGUF is scored whatever its type; export's own intermediates are not shipped, so not scored.
    skip = set() if ctx.recipe.model.is_gguf else {ctx.files.export.gguf(t).name
                                                   for t in ctx.recipe.export.intermediate_types()}
    artifacts = list_artifacts(export_dir, cfg, skip)
    ppl, set_ppl, overall = score_artifacts(ctx, artifacts, by_lang, sets, token_bytes, cfg.seq_len)
    ggufs = [a.files[0] for a in artifacts if a.name.endswith(".gguf") and a.files]
    params = count_params(hf) or (gguf_params(ggufs[0]) if ggufs else 0)
    table = quant_table(overall, {a.name: a.files for a in artifacts if a.files}, params)

    trained = trained_length(ctx.recipe, hf_config)
    lengths = passkey_lengths(cfg, trained, max_pos)
    filler = english_first(held_out_docs)
    found = candidates(export_dir)
    deltas = {n: r["ppl_delta_pct_vs_fp32"] for n, r in table.items()}
    devices: dict[str, dict[str, Any]] = {}
    checks = DeviceChecks(tok, filler, lengths, tasks, cfg, trained,
                          lambda name, n_ctx, threads: make_scorer(export_dir, name, n_ctx, threads), ctx.progress)
    reference = checks.run(HF_ARTIFACT, lengths, None, None) if has_weights(hf) else None
    unsuited: list[str] = []
    for profile in ctx.recipe.device_profiles():
        n_ctx = min(profile.max_context, max_pos)
        # At most this machine's cores: more threads than cores make llama.cpp's and onnxruntime's
        # spinning workers wait on each other, several times slower for the same numbers.
        threads = min(profile.threads, local_cores())
        set_aside: dict[str, str] = {}
        while True:
            try:
                choice = select_for(profile, found, hf_config, n_ctx, deltas, cfg, set_aside)
            except GateFailed as exc:
                # Reported with the rest, then the build stops: the numbers that ruled every artifact out
                # stay readable.
                devices[profile.name] = {"artifact": None, "backend": profile.backend, "threads": profile.threads,
                                         "n_ctx": n_ctx, "reason": str(exc)}
                unsuited.append(str(exc))
                break
            check = checks.run(choice.name, [n for n in lengths if n <= n_ctx], threads, profile.name, reference)
            problem = checks.passkey_problem(check, reference)
            if problem is None:
                devices[profile.name] = {
                    "artifact": choice.name, "backend": choice.backend, "threads": profile.threads, "n_ctx": n_ctx,
                    "reason": choice.reason, "ram_bytes": choice.ram_bytes, "rejected": choice.rejected,
                    "ppl_delta_pct": deltas.get(choice.name),
                    "ppl": overall[choice.name].ppl if choice.name in overall else None,
                    "check": check, "passkey_drop": passkey_drop(check, reference)}
                break
            checks.set_aside(check, profile.name)
            set_aside[choice.name] = problem
    passkey = {c.label: c.passkey for c in checks.used() if c.passkey is not None}
    task_results = {t: {c.label: c.tasks[t] for c in checks.used()} for t in tasks}
    for d in devices.values():
        check = d.pop("check", None)
        if check is not None:
            d["passkey"], d["tasks"] = check.passkey, check.tasks

    gate_results = check_gates(cfg.gates, {n: d for n, d in devices.items() if d["artifact"]}, trained)
    report = {
        "format": REPORT_FORMAT,
        "name": ctx.recipe.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seq_len": cfg.seq_len,
        "trained_length": trained,
        "languages": sorted(by_lang),
        "perplexity": ppl,
        "eval_sets": set_ppl,
        "overall": {n: {"ppl": s.ppl, "bpb": s.bpb, "tokens": s.tokens} for n, s in overall.items()},
        "quantization": table,
        "reference": reference_note(table, {a.name: a.files for a in artifacts if a.files}),
        "held_out_source": (BUILTIN_SOURCE if ctx.recipe.model.source else "curated valid split"),
        "devices": devices,
        "passkey": passkey,
        "tasks": task_results,
        "gates": [g.to_dict() for g in gate_results],
        "training_health": health_summary(read_health(ctx.run_dir)),
    }
    ctx.progress.update("writing the report")
    files = EvaluateFiles(ctx.dir)
    atomic_write_json(files.report, report)
    atomic_write_text(files.markdown, report_markdown(report))
    write_report(ctx.run_dir, report)
    failed = [m for m in [*unsuited, failures_message(gate_results)] if m]
    if failed:
        raise GateFailed(" | ".join(failed))
    outputs = [files.report, files.markdown, files.html]
    metrics = {k: report[k] for k in ("overall", "quantization", "languages", "seq_len", "gates")}
    metrics["devices"] = {n: {k: d[k] for k in ("artifact", "backend", "threads", "n_ctx", "reason")}
                          for n, d in devices.items()}
    return StageResult(outputs=outputs, metrics=metrics, summary=summary_line(ppl, overall, table, devices),
                       artifact=files.html)


# ----------------------------------------------------------------------------- artifacts and scorers

class Artifact:
    def __init__(self, name: str, files: list[Path] | None):
        self.name, self.files = name, files


def list_artifacts(export_dir: Path, cfg: Any, skip: set[str] = frozenset()) -> list[Artifact]:
    """hf, then each GGUF (evaluate.gguf) not in `skip`, then onnx/ and its int8 variants (evaluate.onnx)."""
    from smoledge.bench.select import onnx_files

    # An imported GGUF has no weights in hf/: no PyTorch reference to score.
    out = [Artifact(HF_ARTIFACT, None)] if has_weights(ExportFiles(export_dir).hf) else []
    if cfg.gguf:
        ggufs = ExportFiles(export_dir).ggufs()
        if not ggufs:
            raise SmoledgeError(f"evaluate.gguf is true but {export_dir} holds no model-*.gguf; "
                                "re-run export or set evaluate.gguf: false")
        out += [Artifact(p.name, [p]) for p in ggufs if p.name not in skip]
    if cfg.onnx:
        # onnx/ first: it is the reference its int8 variants are compared with.
        dirs = [d for d in ExportFiles(export_dir).onnx_dirs() if onnx_files(d)]
        out += [Artifact(d.name, onnx_files(d)) for d in dirs]
    return out


def make_scorer(export_dir: Path, name: str, n_ctx: int, threads: int | None) -> Any:
    """The scorer of one artifact, by its report name, able to take n_ctx tokens, on `threads` threads."""
    from smoledge.evaluate.perplexity import GGUFScorer, ORTScorer, TorchScorer

    if name == HF_ARTIFACT:
        return TorchScorer(ExportFiles(export_dir).hf)
    if name.endswith(".gguf"):
        return GGUFScorer(export_dir / name, n_ctx, n_threads=threads)
    return ORTScorer(export_dir / name, n_threads=threads)


def score_artifacts(ctx: StageContext, artifacts: list[Artifact], by_lang: dict[str, list[int]],
                    sets: dict[str, dict[str, list[int]]], token_bytes: Any, seq_len: int
                    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Per artifact: held-out ppl/bpb per language, each eval set's, and the held-out total."""
    from smoledge.evaluate.perplexity import Score, score

    export_dir = ctx.files.export.dir
    texts = [(None, by_lang)] + list(sets.items())
    ppl: dict[str, dict[str, dict[str, float]]] = {}
    set_ppl: dict[str, dict[str, Any]] = {name: {} for name in sets}
    overall: dict[str, Score] = {}
    jobs = len(artifacts) * sum(len(ids) for _, ids in texts)
    done = 0
    for art in artifacts:
        scorer = make_scorer(export_dir, art.name, seq_len, None)
        overall[art.name] = Score(0.0, 0, 0)
        for set_name, per_lang in texts:
            out = ppl.setdefault(art.name, {}) if set_name is None else set_ppl[set_name].setdefault(art.name, {})
            for lang, ids in per_lang.items():
                ctx.progress.update(f"{art.name} {set_name or 'held-out'} {lang}", done, jobs)
                s = score(scorer, ids, token_bytes, seq_len)
                out[lang] = {"ppl": s.ppl, "bpb": s.bpb, "tokens": s.tokens}
                if set_name is None:
                    overall[art.name] = overall[art.name] + s
                done += 1
        del scorer
    return ppl, set_ppl, overall


def select_for(profile: Any, found: list[Any], hf_config: dict[str, Any], n_ctx: int,
               deltas: dict[str, float], cfg: Any, set_aside: dict[str, str]) -> Any:
    """The artifact this device runs. Only artifacts evaluate scored can pass a perplexity gate."""
    from smoledge.bench.select import select

    if profile.backend == "llama.cpp" and not cfg.gguf:
        raise SmoledgeError(f"device '{profile.name}' runs llama.cpp but evaluate.gguf is false; set it true")
    if profile.backend == "onnxruntime" and not cfg.onnx:
        raise SmoledgeError(f"device '{profile.name}' runs onnxruntime but evaluate.onnx is false; set it true")
    from smoledge.evaluate.gates import GateFailed

    try:
        return select(profile, found, hf_config, n_ctx, deltas, cfg.gates.max_ppl_delta_pct, set_aside)
    except SmoledgeError as exc:
        raise GateFailed(str(exc)) from None


# ----------------------------------------------------------------------------- long context and tasks

def trained_length(recipe: Recipe, hf_config: dict[str, Any]) -> int:
    """The context the model was trained at: YaRN's original length when RoPE is scaled, the distill
    sequence length for a student, the declared context for an imported model."""
    scaling = hf_config.get("rope_scaling") or {}
    if scaling.get("original_max_position_embeddings"):
        return int(scaling["original_max_position_embeddings"])
    if recipe.model.source:
        return int(hf_config["max_position_embeddings"])
    return int(recipe.distill.seq_len)


def passkey_lengths(cfg: Any, trained: int, max_pos: int) -> list[int]:
    from smoledge.evaluate.passkey import default_lengths

    if cfg.passkey.lengths:
        too_long = [n for n in cfg.passkey.lengths if n > max_pos]
        if too_long:
            raise SmoledgeError(f"evaluate.passkey.lengths {too_long} exceed the exported context ({max_pos}); "
                                "drop them or export with RoPE scaling (export.yarn_factor)")
        return sorted(cfg.passkey.lengths)
    return default_lengths(trained, max_pos)


def english_first(docs: list[tuple[str, str]]) -> list[str]:
    """Filler for the passkey haystack: the English held-out text when there is any (the needle and
    question are English, so the haystack should not be what makes the key stand out), else all."""
    en = [text for lang, text in docs if lang == "en"]
    return en or [text for _, text in docs]


def load_tasks(cfg: Any) -> dict[str, list[Any]]:
    from smoledge.evaluate.tasks import load_task

    return {t.name: load_task(t.path, t.format, t.limit or None, t.lang or None) for t in cfg.tasks}


# ----------------------------------------------------------------------------- text

def held_out_documents(parquet: Path) -> list[tuple[str, str]]:
    """(lang, text) of the curated `valid` split, in file order."""
    import pyarrow.parquet as pq

    if not parquet.exists():
        raise SmoledgeError(f"{parquet} is missing; run the curate stage first")
    missing = {"text", "lang", "split"} - set(pq.read_schema(parquet).names)
    if missing:
        raise SmoledgeError(f"{parquet} lacks column(s) {sorted(missing)}; re-run the curate stage")
    # Only the held-out rows are read: the training split can be large.
    rows = pq.read_table(parquet, columns=["text", "lang", "split"], filters=[("split", "==", "valid")]).to_pylist()
    docs = [(r["lang"], r["text"]) for r in rows if r["split"] == "valid" and r["text"]]
    if not docs:
        raise SmoledgeError(f"{parquet} has no rows with split == 'valid'; raise data.valid_fraction "
                            "or add more documents")
    return docs


def pack_ids(docs: list[tuple[str, str]], tok: Any, max_tokens: int) -> dict[str, list[int]]:
    """Per language, the documents' ids (each followed by EOS, as in training), capped."""
    from smoledge.evaluate.evalsets import pack_documents

    return pack_documents(docs, tok, max_tokens)


def held_out_ids(parquet: Path, tok: Any, max_tokens: int) -> dict[str, list[int]]:
    """Per language, the `valid` documents' ids, capped (benchmarks/quant_quality.py scores these too)."""
    return pack_ids(held_out_documents(parquet), tok, max_tokens)


def eval_set_ids(cfg: Any, tok: Any) -> dict[str, dict[str, list[int]]]:
    from smoledge.evaluate.evalsets import load_eval_set

    return {s.name: load_eval_set(s.path, tok, cfg.max_tokens_per_language, s.lang or None) for s in cfg.eval_sets}


# ----------------------------------------------------------------------------- sizes


def has_weights(hf: Path) -> bool:
    return any(hf.glob("*.safetensors"))


def gguf_params(path: Path) -> int:
    """Parameters of a GGUF model from its tensor table (for an imported GGUF, which has no safetensors)."""
    from smoledge.bench.gguf_info import read_gguf

    return sum(math.prod(t.shape) for t in read_gguf(path).tensors)


def builtin_held_out(languages: list[str]) -> list[tuple[str, str]]:
    """(lang, text) of smoledge's built-in held-out text (smoledge/evaluate/heldout), in the recipe's languages."""
    from smoledge.evaluate.builtin_text import builtin_documents

    return [(lang, doc) for lang, docs in builtin_documents(languages).items() for doc in docs]


def count_params(hf: Path) -> int:
    """Parameters of the exported model, from its safetensors headers (no weights loaded)."""
    from safetensors import safe_open

    total = 0
    for path in sorted(hf.glob("*.safetensors")):
        with safe_open(str(path), "np") as f:
            for name in f.keys():
                total += math.prod(f.get_slice(name).get_shape())
    return total


STAGE = Stage(run=run, external_inputs=external_inputs)
