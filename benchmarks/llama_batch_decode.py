"""Cost of one llama.cpp decode step by batch size: why smoledge serve decodes its slots together.

    .venv/bin/python benchmarks/llama_batch_decode.py --gguf /path/model-q8_0.gguf --threads 2

After a 16-token prompt, times --steps decode steps of B tokens each (B = 1, 2, 4, 8: what B requests
generating at once put in one batch) and prints ms per step and tokens/s. A memory-bound step reads
the weights once whatever B is, so tokens/s grows with B until arithmetic catches up; B separate
contexts (one token each) would cost B single steps.
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gguf", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4, 8])
    args = p.parse_args()
    import llama_cpp

    llm = llama_cpp.Llama(args.gguf, n_ctx=2048, n_threads=args.threads, n_threads_batch=args.threads, verbose=False)
    prompt = llm.tokenize(b"The quick brown fox jumps over the lazy dog. Once upon a time")
    print(f"{args.gguf}, threads {args.threads}, load1 {os.getloadavg()[0]:.2f}")
    base = None
    for b in args.batch:
        llm.reset()
        llm.eval(prompt)
        t0 = time.perf_counter()
        for i in range(args.steps):
            llm.eval([prompt[i % len(prompt)]] * b)  # B new positions in one llama_decode
        step = (time.perf_counter() - t0) / args.steps
        base = base or step
        print(f"batch {b}: {step * 1e3:6.1f} ms/step ({step / base:.2f}x batch 1), {b / step:6.0f} tok/s")
    llm.close()


if __name__ == "__main__":
    main()
