"""Passkey fall-off on a student that can retrieve: where the grid says retrieval stops, with and without YaRN.

    .venv/bin/python benchmarks/passkey_falloff.py --run /tmp/qs-runs/quickstart --work /work/bench-work/passkey \
        [--steps 1500 --trained 256 --yarn 4 --out passkey.json]

The quickstart student scores 0 on the passkey grid at every length: 2 layers of 64 trained 300 steps on web
text never learn to look a number up. This benchmark gives the grid a model that does, so its fall-off and
YaRN's effect on it can be read:

1. A 4-layer, 128-wide SmolLM3 (smoledge's model code, NoPE at layer 4, the run's tokenizer) is trained
   only on passkey prompts made by smoledge.evaluate.passkey's own builder from the run's *training* split
   (English), at 64..`--trained` tokens, the loss on the key tokens alone.
2. Saved as an HF directory; a copy gets YaRN x`--yarn` over the trained length (smoledge.export.yarn).
3. Both are written to F32 GGUF by smoledge's writer, and each of the four is run through the evaluate
   stage's passkey grid (held-out English filler, 5 depths, `--trials` keys per cell) from trained/4 to
   trained x yarn, by PyTorch and by llama.cpp.

Prints accuracy by length for each, and where it falls off. Results: BENCHMARKS.md, "Passkey fall-off".
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def english_texts(parquet: Path, split: str) -> list[str]:
    import pyarrow.parquet as pq

    rows = pq.read_table(parquet, columns=["text", "lang", "split"], filters=[("split", "==", split)]).to_pylist()
    return [r["text"] for r in rows if r["lang"] == "en" and r["text"]]


def train(args: argparse.Namespace, tok: Any, filler: list[str], out: Path) -> dict[str, Any]:
    import numpy as np
    import torch

    from smoledge.evaluate.passkey import PasskeyBuilder
    from smoledge.model.build import hf_config, init_model, special_ids
    from smoledge.model.config import ModelConfig
    from smoledge.train.checkpoint import save_model_dir

    torch.manual_seed(0)
    shape = ModelConfig(preset="custom", num_layers=4, hidden_size=128, intermediate_size=384, num_heads=4,
                        num_kv_heads=2, max_position_embeddings=args.trained)
    model = init_model(hf_config(shape, vocab_size=len(tok), **special_ids(tok)), seed=0).to(args.device)
    builder = PasskeyBuilder(tok, filler, max_tokens=200_000)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    rng = np.random.default_rng(0)
    lengths = [n for n in (64, 96, 128, 192, 256, 384, 512) if n <= args.trained]
    t0, losses = time.time(), []
    model.train()
    for step in range(1, args.steps + 1):
        length = int(rng.choice(lengths))
        prompts = [builder.prompt(length, float(rng.uniform()), str(int(rng.integers(10_000, 100_000))),
                                  int(rng.integers(len(builder.sentences)))) for _ in range(args.batch_size)]
        ids = torch.tensor([p.ids for p in prompts], device=args.device)  # (B, T)
        # A key takes 2-4 tokens: gather each prompt's own key positions (row j predicts token j + 1).
        b_idx = torch.tensor([b for b, p in enumerate(prompts) for _ in p.key_ids], device=args.device)  # (K,)
        t_idx = torch.tensor([p.key_start + j for p in prompts for j in range(len(p.key_ids))],
                             device=args.device)  # (K,)
        logits = model(ids[:, :-1]).logits  # (B, T-1, V)
        loss = torch.nn.functional.cross_entropy(logits[b_idx, t_idx - 1], ids[b_idx, t_idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for g in opt.param_groups:  # linear warmup, then constant
            g["lr"] = args.lr * min(1.0, step / 50)
        opt.step()
        losses.append(loss.item())
        if step % 100 == 0 or step == args.steps:
            print(f"step {step}/{args.steps} key loss {np.mean(losses[-100:]):.3f} ({time.time() - t0:.0f} s)",
                  flush=True)
    model.eval().to("cpu")
    save_model_dir(model, Path(args.run) / "tokenizer" / "tokenizer", out)
    return {"steps": args.steps, "batch_size": args.batch_size, "lengths": lengths, "seconds": time.time() - t0,
            "final_key_loss": float(np.mean(losses[-100:])), "device": args.device}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a run with curate/ and tokenizer/ (smoledge build ... --until train-tokenizer)")
    p.add_argument("--work", required=True)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--trained", type=int, default=256, help="longest training prompt = the model's context")
    p.add_argument("--yarn", type=float, default=4.0)
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--out", default=None)
    p.add_argument("--device", default="cpu", help="where to train (cuda on a GPU machine); scoring runs on the CPU")
    p.add_argument("--train-only", action="store_true", help="stop after training (e.g. on a GPU machine "
                   "without llama.cpp); rerun here with the same --work to score")
    args = p.parse_args()

    from transformers import AutoTokenizer

    run, work = Path(args.run), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(run / "tokenizer" / "tokenizer")
    parquet = run / "curate" / "curated.parquet"
    hf = work / "hf"
    settings = {k: getattr(args, k) for k in ("steps", "batch_size", "lr", "trained")}
    stamp = work / "hf-settings.json"
    if not (stamp.exists() and json.loads(stamp.read_text()) == settings):
        shutil.rmtree(hf, ignore_errors=True)
        training = train(args, tok, english_texts(parquet, "train"), hf)
        stamp.write_text(json.dumps(settings))
        (work / "training.json").write_text(json.dumps(training))
    training = json.loads((work / "training.json").read_text())
    if args.train_only:
        return

    from smoledge.evaluate.passkey import default_lengths, passkey_prompts, run_passkey
    from smoledge.evaluate.perplexity import GGUFScorer, TorchScorer
    from smoledge.export.gguf import write_gguf
    from smoledge.export.yarn import apply_yarn

    yarn = work / "hf-yarn"
    shutil.rmtree(yarn, ignore_errors=True)
    shutil.copytree(hf, yarn)
    apply_yarn(yarn, args.yarn)

    top = int(args.trained * args.yarn)
    lengths = default_lengths(args.trained, top)
    prompts = passkey_prompts(tok, lengths, trials=args.trials, seed=1234, filler=english_texts(parquet, "valid"))
    results: dict[str, Any] = {"training": training, "lengths": lengths, "trials": args.trials}
    for label, d in (("RoPE", hf), (f"YaRN x{args.yarn:g}", yarn)):
        gguf = write_gguf(d, work / f"{d.name}-f32.gguf", "f32")
        for runtime, scorer in (("PyTorch", TorchScorer(d)), ("llama.cpp", GGUFScorer(gguf, max(lengths), n_threads=2))):
            t0 = time.time()
            grid = run_passkey(scorer, prompts)
            name = f"{label}, {runtime}"
            results[name] = {"by_length": {str(n): a for n, a in grid.accuracy_by_length().items()},
                             "falloff": grid.falloff(0.5), "seconds": time.time() - t0}
            del scorer
    print(f"\ntrained: {training['steps']} steps x {training['batch_size']} prompts of {training['lengths']} tokens, "
          f"{training['seconds'] / 60:.1f} min, final key loss {training['final_key_loss']:.3f}")
    print("\n| model, runtime | " + " | ".join(str(n) for n in lengths) + " | holds up to | first below 0.5 |")
    print("|---|" + "---:|" * len(lengths) + "---:|---:|")
    for name, r in results.items():
        if isinstance(r, dict) and "by_length" in r:
            cells = " | ".join(f"{r['by_length'][str(n)]:.2f}" for n in lengths)
            print(f"| {name} | {cells} | {r['falloff']['longest_ok']} | {r['falloff']['first_below']} |")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
