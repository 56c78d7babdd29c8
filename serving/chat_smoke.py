"""Start `smoledge serve TARGET`, ask one chat question through the official openai client, print the answers.

    python serving/chat_smoke.py runs/NAME/bundle "What is the capital of France?" --device rpi5-8gb
    python serving/chat_smoke.py model.gguf "Bonjour !" --port 8011 --max-tokens 64

The check to run after `smoledge deploy` (issue 19): the same greedy request three times, non-streamed,
streamed, and streamed with `cache_prompt: false`, each with its finish_reason and usage. The first two can
differ at a near-tie on llama.cpp: the second reuses the prompt the first left in the slot's KV cache, and
llama.cpp's kernels round a cached prefix plus one token differently from a whole prompt. The third reads the
whole prompt and must equal the first. Arguments after the question go to `smoledge serve`. Needs `openai`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import urllib.request


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target")
    p.add_argument("question")
    p.add_argument("--port", type=int, default=8010)
    p.add_argument("--max-tokens", type=int, default=48)
    args, serve_args = p.parse_known_args(argv)
    from openai import OpenAI

    proc = subprocess.Popen([sys.executable, "-m", "smoledge.cli", "serve", args.target, "--port", str(args.port),
                             *serve_args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(480):
            if proc.poll() is not None:
                print(proc.stdout.read() if proc.stdout else "", file=sys.stderr)
                return 1
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{args.port}/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        client = OpenAI(base_url=f"http://127.0.0.1:{args.port}/v1", api_key="unused")
        model = client.models.list().data[0].id
        ask = dict(model=model, messages=[{"role": "user", "content": args.question}], temperature=0,
                   max_tokens=args.max_tokens)
        r = client.chat.completions.create(**ask)
        print(f"serve {args.target}\n  model id: {model}\n  answer: {r.choices[0].message.content!r}\n"
              f"  finish_reason: {r.choices[0].finish_reason}  usage: {r.usage.prompt_tokens} prompt, "
              f"{r.usage.completion_tokens} completion")
        for label, extra in (("streamed", {}), ("streamed, cache_prompt false", {"cache_prompt": False})):
            text, finish = "", None
            for c in client.chat.completions.create(**ask, stream=True, extra_body=extra):
                if c.choices:
                    text += c.choices[0].delta.content or ""
                    finish = c.choices[0].finish_reason or finish
            print(f"  {label}: {text!r}  finish_reason: {finish}")
        return 0
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    sys.exit(main())
