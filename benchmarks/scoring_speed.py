"""Held-out scoring speed against llama.cpp's own prompt processing on the same windows (issue 19).

    .venv/bin/python benchmarks/scoring_speed.py runs/NAME/export/model-q8_0.gguf [more.gguf ...] --rounds 3

Three sides per file, alternating within each round, 2 threads, 24 windows of 256 ids (random ids of the
vocabulary: speed does not depend on the text):
  smoledge   smoledge.evaluate.perplexity.score with GGUFScorer: the logits of every position, then the NLL
  all-logits llama-cpp-python's eval with logits_all (every position's logits, F32 KV cache as the scorer),
             nothing scored: the floor for anything that needs per-position logits
  pp         llama-cpp-python's eval with the last position's logits only: pure prompt processing
Prints tok/s per side (median over rounds), smoledge's ratio to each and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from smoledge.evaluate.perplexity import GGUFScorer, score, windows  # noqa: E402

SEQ_LEN = 256


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gguf", type=Path, nargs="+")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--windows", type=int, default=24)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    import llama_cpp

    for path in args.gguf:
        scorer = GGUFScorer(path, SEQ_LEN, n_threads=args.threads)
        n_vocab = scorer.llm.n_vocab()
        ids = np.random.default_rng(0).integers(0, n_vocab, SEQ_LEN * args.windows + 1).tolist()
        spans = windows(len(ids), SEQ_LEN)
        n = sum(b - a for a, b in spans)
        ones = np.ones(n_vocab, dtype=np.int64)

        def runtime(logits_all: bool) -> llama_cpp.Llama:
            return llama_cpp.Llama(str(path), n_ctx=SEQ_LEN, n_batch=SEQ_LEN, n_threads=args.threads,
                                   n_threads_batch=args.threads, logits_all=logits_all, verbose=False,
                                   type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)

        def read(llm: llama_cpp.Llama) -> None:
            for a, b in spans:
                llm.reset()
                llm.eval(ids[a:b])

        full, last = runtime(True), runtime(False)
        sides = {"smoledge": lambda: score(scorer, ids, ones, SEQ_LEN), "all-logits": lambda: read(full),
                 "pp": lambda: read(last)}
        for fn in sides.values():  # first touch of the weights and buffers
            fn()
        rates: dict[str, list[float]] = {k: [] for k in sides}
        for rnd in range(args.rounds):
            for name in (list(sides) if rnd % 2 == 0 else list(sides)[::-1]):
                t = time.perf_counter()
                sides[name]()
                rates[name].append(n / (time.perf_counter() - t))
        med = {k: statistics.median(v) for k, v in rates.items()}
        print(f"{path.name}: {n} tokens x {args.rounds} rounds, {args.threads} threads, load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print("  " + "   ".join(f"{k} {v:.0f} tok/s" for k, v in med.items()))
        print(f"  smoledge / all-logits {med['smoledge'] / med['all-logits']:.2f}x   "
              f"smoledge / pp {med['smoledge'] / med['pp']:.2f}x")
        full.close()
        last.close()
        scorer.llm.close()


if __name__ == "__main__":
    main()
