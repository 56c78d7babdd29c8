"""The model card (README.md with Hugging Face YAML metadata) written into export/hf/.

    from smoledge.export.model_card import model_card
    text = model_card(recipe, RunFiles(run_dir), hf_config_dict, params, parity_report)

Everything in it is read from the run: the recipe, the train-tokenizer and distill stage
records (tokens per language, validation loss) and the export's own parity results. A
number the run did not record is written as "not recorded", never guessed. The per-language
held-out perplexity of every artifact comes later, from the evaluate stage (report.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smoledge.layout import RunFiles
from smoledge.recipe import Recipe
from smoledge.stage import read_record

NOT_RECORDED = "not recorded"
DIVERGENCES = {"forward": "forward KL", "reverse": "reverse KL", "js": "Jensen-Shannon"}


def _front_matter(recipe: Recipe) -> str:
    import yaml

    meta: dict[str, Any] = {
        "language": list(recipe.data.languages),
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["smoledge", "smollm3", "distillation", "gguf", "onnx"],
    }
    hub_sources = sorted({s.path for s in recipe.data.sources if s.kind == "hf" and s.path})
    if hub_sources:
        meta["datasets"] = hub_sources
    teacher = recipe.distill.teacher
    if teacher and not Path(teacher).exists():
        meta["base_model"] = teacher  # a hub id: the model this one was distilled from
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def model_card(recipe: Recipe, files: RunFiles, config: dict[str, Any], params: int, parity: dict[str, Any]) -> str:
    tok = (read_record(files.tokenizer.dir) or {}).get("metrics", {})
    distill = (read_record(files.distill.dir) or {}).get("metrics", {})
    cfg = recipe.distill
    per_lang = tok.get("tokens_per_language", {}).get("train", {})
    langs = ", ".join(f"{lang} {n:,}" for lang, n in per_lang.items()) or NOT_RECORDED
    sources = ", ".join(f"{s.name} ({s.kind}{': ' + s.path if s.path else ''})" for s in recipe.data.sources)
    val = distill.get("val_loss")
    teacher_val = distill.get("teacher_val_loss")
    teacher_params = distill.get("teacher_params")
    teacher_size = f"{teacher_params:,}" if isinstance(teacher_params, int) else NOT_RECORDED
    lines = [
        _front_matter(recipe),
        f"# {recipe.name}",
        "",
        recipe.description or "A small SmolLM3-architecture language model built by smoledge.",
        "",
        "## Model",
        "",
        f"- SmolLM3 architecture (GQA, NoPE every {recipe.student.no_rope_interval or 'no'}th layer), "
        f"{params:,} parameters: {config.get('num_hidden_layers')} layers, hidden size {config.get('hidden_size')}, "
        f"{config.get('num_attention_heads')} query / {config.get('num_key_value_heads')} key-value heads, "
        f"context {config.get('max_position_embeddings')} tokens, vocabulary {config.get('vocab_size')}.",
        "",
        "## Training",
        "",
        f"- Data: {sources}; languages {', '.join(recipe.data.languages)}; curated (language ID, "
        f"quality filters, PII scrub, MinHash dedup).",
        f"- Training tokens in the shards per language: {langs}.",
        f"- Distilled from {cfg.teacher or 'the teacher this recipe pretrained'} "
        f"({teacher_size} parameters): {DIVERGENCES[cfg.divergence]} over the "
        f"teacher's {'full vocabulary' if cfg.top_k == 0 else f'top-{cfg.top_k} tokens plus a tail bin'}, "
        f"alpha {cfg.alpha}, temperature {cfg.temperature}, {cfg.mode} mode, {cfg.init} init; "
        f"{cfg.optimizer}, lr {cfg.lr}, {cfg.schedule} schedule, {cfg.max_steps} steps of "
        f"{cfg.batch_size} x {cfg.seq_len} tokens.",
        "",
        "## Evaluation",
        "",
        f"- Validation loss {val if val is not None else NOT_RECORDED} "
        f"(teacher {teacher_val if teacher_val is not None else NOT_RECORDED}).",
    ]
    for name, entry in parity.get("files", {}).items():
        logits = entry.get("logits", {})
        if "max_abs_diff" in logits:
            lines.append(f"- {name}: max |logit difference| vs PyTorch {logits['max_abs_diff']:.2e}, "
                         f"top-1 agreement {logits.get('top1_agreement', float('nan')):.2f}.")
    for name, entry in parity.get("onnx", {}).items():
        lines.append(f"- {name}/ (ONNX): max |logit difference| vs PyTorch {entry['max_abs_diff']:.2e}, "
                     f"top-1 agreement {entry['top1_agreement']:.2f}.")
    lines += [
        "- Held-out perplexity per language for every artifact: the run's evaluate/report.md.",
        "",
        "## Intended use",
        "",
        "On-device text generation and completion in the languages above, on laptops and ARM boards "
        "(GGUF through llama.cpp, ONNX through onnxruntime). It is a small model trained on a limited "
        "corpus: it makes factual errors, and it is not tuned for safety or for following instructions.",
        "",
    ]
    return "\n".join(lines)
