"""Per-language held-out perplexity of a teacher and its students: issue 20's quality table.

    .venv/bin/python benchmarks/student_quality.py build/smollm2-student.yaml          # teacher + pruned, untrained
    .venv/bin/python benchmarks/student_quality.py build/smollm2-student.yaml \
        --model scratch=runs/smollm2-scratch/distill/model --model distilled=runs/smollm2-student/distill/model

The recipe names the run (runs/<name>/, after its curate and train-tokenizer stages), the teacher
(distill.teacher, or the run's pretrained one) and the student's shape. Rows:
  teacher     the recipe's teacher
  pruned      the student the recipe's `distill.init: prune` cuts from that teacher before any training, on
              the same calibration batches the distill stage takes (its first PRUNE_CALIBRATION_BATCHES
              batches of the training split)
  LABEL       each --model LABEL=HF_DIR (students trained by other recipes, at equal tokens)
Text: the run's curated `valid` split, per language, each document followed by EOS as in training, capped at
--max-tokens per language; scored in --seq-len windows with the evaluate stage's arithmetic
(smoledge.evaluate.perplexity.score with TorchScorer, float32). Prints ppl and bits per byte per language, the
overall ppl, each row's ratio to the first --ratio-to row, and the load average. With --chat QUESTION, each
row's greedy reply to it (HF generate, float32, the run's tokenizer and its chat template): a chat sample per
model (the served ones come from `smoledge serve`, serving/chat_smoke.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from smoledge.evaluate.perplexity import Score, TorchScorer, score, token_byte_lengths  # noqa: E402
from smoledge.evaluate.stage import held_out_ids  # noqa: E402
from smoledge.host import local_cores  # noqa: E402
from smoledge.layout import RunFiles  # noqa: E402
from smoledge.progress import Progress  # noqa: E402
from smoledge.recipe import Recipe, load_recipe  # noqa: E402
from smoledge.stage import StageContext  # noqa: E402


def pruned_student(recipe: Recipe, run_dir: Path, out: Path) -> Path:
    """The recipe's student as distill's prune init makes it, saved to `out`."""
    import torch

    from smoledge.model.build import hf_config, special_ids
    from smoledge.train.distill import PRUNE_CALIBRATION_BATCHES
    from smoledge.train.pretrain import tokenized_inputs, training_data
    from smoledge.train.prune import prune_from_teacher
    from smoledge.train.teacher import load_teacher, teacher_source
    from smoledge.train.teacher_cache import tokenizer_name

    files = RunFiles(run_dir)
    ctx = StageContext(recipe=recipe, run_dir=run_dir, dir=files.distill.dir, progress=Progress("prune"))
    tok_dir, tokenizer, train_shard, valid_shard = tokenized_inputs(ctx)
    sampler, _ = training_data(ctx, recipe.distill, train_shard, valid_shard)
    teacher = load_teacher(teacher_source(recipe, files.pretrain), tokenizer, tokenizer_name(recipe, tok_dir),
                           torch.float32)
    cfg = hf_config(recipe.student, vocab_size=teacher.config.vocab_size, **special_ids(tokenizer))
    calib = [sampler.batch(k) for k in range(PRUNE_CALIBRATION_BATCHES)]
    student, _ = prune_from_teacher(teacher, cfg, calib)
    student.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def chat_reply(model, tok, question: str, max_new_tokens: int) -> str:
    """The model's greedy reply to one user turn, through the tokenizer's chat template."""
    ids = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                  return_tensors="pt")                                    # (1, T)
    out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)             # (1, T + n)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", type=Path)
    p.add_argument("--runs-dir", type=Path, default=Path("runs"))
    p.add_argument("--model", action="append", default=[], metavar="LABEL=HF_DIR", help="another model to score")
    p.add_argument("--no-pruned", action="store_true", help="leave out the untrained pruned student")
    p.add_argument("--max-tokens", type=int, default=8192, help="held-out tokens per language")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--ratio-to", default="", help="row whose ppl the others are divided by (default: none)")
    p.add_argument("--chat", default="", metavar="QUESTION", help="also print each model's greedy reply to this")
    p.add_argument("--chat-tokens", type=int, default=40, help="new tokens per chat reply")
    args = p.parse_args(argv)
    if bad := [m for m in args.model if "=" not in m or not Path(m.split("=", 1)[1]).is_dir()]:
        p.error(f"--model takes LABEL=HF_DIR with an existing directory; got {', '.join(bad)}")
    labels = ["teacher", *([] if args.no_pruned else ["pruned"]), *(m.split("=", 1)[0] for m in args.model)]
    if len(set(labels)) < len(labels):
        p.error(f"row labels must differ; got {', '.join(labels)}")
    if args.ratio_to and args.ratio_to not in labels:
        p.error(f"--ratio-to {args.ratio_to!r} names no row; choose from {', '.join(labels)}")
    import torch
    from transformers import AutoTokenizer

    from smoledge.train.teacher import teacher_source

    torch.set_num_threads(local_cores())
    recipe = load_recipe(args.recipe)
    run_dir = args.runs_dir / recipe.name
    files = RunFiles(run_dir)
    if not files.curate.curated.exists() or not files.tokenizer.tokenizer.is_dir():
        p.error(f"{run_dir} has no curated data or tokenizer; run `smoledge curate {args.recipe}` and "
                f"`smoledge train-tokenizer {args.recipe}` (or the build) first")
    tok = AutoTokenizer.from_pretrained(files.tokenizer.tokenizer)
    by_lang = held_out_ids(files.curate.curated, tok, args.max_tokens)
    token_bytes = token_byte_lengths(tok)
    rows: list[tuple[str, Path]] = [("teacher", Path(teacher_source(recipe, files.pretrain)))]
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_pruned:
            rows.append(("pruned", pruned_student(recipe, run_dir, Path(tmp) / "pruned")))
        rows += [(label, Path(path)) for label, path in (m.split("=", 1) for m in args.model)]
        table: dict[str, dict[str, Score]] = {}
        replies: dict[str, str] = {}
        for label, path in rows:
            scorer = TorchScorer(path)
            table[label] = {lang: score(scorer, ids, token_bytes, args.seq_len) for lang, ids in by_lang.items()}
            if args.chat:
                replies[label] = chat_reply(scorer.model, tok, args.chat, args.chat_tokens)
            del scorer
    langs = sorted(by_lang)
    print(f"held-out: {files.curate.curated} valid split, tokens per language "
          + ", ".join(f"{lang} {table['teacher'][lang].tokens}" for lang in langs)
          + f"; {args.seq_len}-token windows; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| model | " + " | ".join(f"{lang} ppl (bpb)" for lang in langs) + " | all ppl |" +
          (f" vs {args.ratio_to} |" if args.ratio_to else ""))
    print("|---|" + "---:|" * (len(langs) + 1) + ("---:|" if args.ratio_to else ""))
    for label, per in table.items():
        total = sum(per.values(), Score(0.0, 0, 0))
        ratio = ""
        if args.ratio_to:
            ref = sum(table[args.ratio_to].values(), Score(0.0, 0, 0))
            ratio = " " + " ".join(f"{lang} {per[lang].ppl / table[args.ratio_to][lang].ppl:.2f}x" for lang in langs) \
                + f" all {total.ppl / ref.ppl:.2f}x |"
        print(f"| {label} | " + " | ".join(f"{per[lang].ppl:.1f} ({per[lang].bpb:.3f})" for lang in langs)
              + f" | {total.ppl:.1f} |" + ratio)

    if replies:
        print(f"\nchat, greedy, {args.chat_tokens} new tokens at most: {args.chat!r}")
        for label, reply in replies.items():
            print(f"  {label}: {reply!r}")


if __name__ == "__main__":
    main()
