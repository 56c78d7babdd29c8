"""smoledge command line: a thin map from subcommands to `run(config)` functions.

    smoledge build build/quickstart.yaml
    smoledge build build/quickstart.yaml --set pretrain.max_steps=50
    smoledge serve runs/quickstart/bundle
    smoledge bench runs/quickstart/bundle --device x86_64-avx2-laptop

Nothing heavy is imported here: `serve` and `bench` must start on a board
that has no torch or transformers.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Callable

STAGE_HELP = {
    "curate": "read the recipe's sources; language ID, quality filters, PII scrub, MinHash dedup",
    "train-tokenizer": "train the byte-level BPE tokenizer (or load tokenizer.pretrained) and write packed token shards",
    "pretrain": "pretrain the teacher (SmolLM3 architecture) on the token shards",
    "teacher-cache": "precompute the teacher's top-k log-probs for every distillation batch (mode: cache)",
    "distill": "distill the GQA student from the teacher",
    "export": "export the student as an HF directory and GGUF files, checked against PyTorch",
    "evaluate": "held-out perplexity per language for every artifact",
    "package": "assemble the deployable bundle (model, manifest with sha256, server config)",
}


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _add_recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", nargs="?", default="build/quickstart.yaml", help="recipe YAML (default: %(default)s)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set pretrain.max_steps=50 (repeatable)",
    )
    p.add_argument("--runs-dir", default="runs", help="root of run directories (default: %(default)s)")
    p.add_argument("--force", action="append", default=[], metavar="STAGE", help="re-run STAGE even if up to date")


def _cmd_stage(args: argparse.Namespace) -> int:
    from smoledge.recipe import load_recipe
    from smoledge.runs import build, summary_table

    recipe = load_recipe(args.recipe, args.overrides)
    until = None if args.command == "build" else args.command
    outcomes = build(recipe, runs_root=args.runs_dir, until=until, force=tuple(args.force))
    print(summary_table(outcomes))
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from smoledge.data.sample import write_sample

    path = write_sample(args.out, num_docs=args.docs, seed=args.seed)
    print(path)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from smoledge.serve.config import ServeConfig
    from smoledge.serve.server import run

    run(ServeConfig(bundle=args.bundle, host=args.host, port=args.port, threads=args.threads, n_ctx=args.n_ctx))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from smoledge.bench.run import BenchConfig, run

    run(BenchConfig(target=args.target, device=args.device, repeats=args.repeats, out=args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="smoledge", description=textwrap.dedent(__doc__ or ""), formatter_class=fmt
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "build", help="run the whole chain, skipping stages that are up to date", formatter_class=fmt,
        epilog=_examples(
            "smoledge build build/quickstart.yaml",
            "smoledge build build/quickstart.yaml --set pretrain.max_steps=50 --set distill.max_steps=50",
            "smoledge build build/quickstart.yaml --force export",
        ),
    )
    _add_recipe_args(p)
    p.set_defaults(func=_cmd_stage)

    for name, text in STAGE_HELP.items():
        p = sub.add_parser(
            name, help=text, description=f"{text}. Runs any stale upstream stage first.", formatter_class=fmt,
            epilog=_examples(
                f"smoledge {name} build/quickstart.yaml",
                f"smoledge {name} build/quickstart.yaml --runs-dir /tmp/runs --force {name}",
            ),
        )
        _add_recipe_args(p)
        p.set_defaults(func=_cmd_stage)

    p = sub.add_parser(
        "sample", help="write the built-in synthetic six-language web dump as JSONL", formatter_class=fmt,
        epilog=_examples("smoledge sample data/web_dump.jsonl", "smoledge sample dump.jsonl --docs 5000 --seed 7"),
    )
    p.add_argument("out", help="output .jsonl path")
    p.add_argument("--docs", type=int, default=2400, help="raw documents to generate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1234, help="generator seed (default: %(default)s)")
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser(
        "serve", help="serve a bundle over an OpenAI-compatible HTTP API (llama.cpp)", formatter_class=fmt,
        epilog=_examples(
            "smoledge serve runs/quickstart/bundle",
            "smoledge serve bundle.tar.gz --port 8080 --threads 4",
            "curl -s localhost:8000/v1/completions -H 'content-type: application/json' "
            "-d '{\"prompt\": \"The\", \"max_tokens\": 16}'",
        ),
    )
    p.add_argument("bundle", help="bundle directory (or .tar.gz)")
    p.add_argument("--host", default=None, help="bind address (default: the bundle's, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: the bundle's, 8000)")
    p.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: the bundle's)")
    p.add_argument("--n-ctx", type=int, default=None, help="context length (default: the bundle's)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser(
        "bench", help="measure load time, prompt and decode speed of a bundle or GGUF on this device",
        formatter_class=fmt,
        epilog=_examples(
            "smoledge bench runs/quickstart/bundle --device x86_64-avx2-laptop",
            "smoledge bench model.gguf --device devices/x86_64-avx2-laptop.yaml --repeats 5 --out bench.json",
        ),
    )
    p.add_argument("target", help="bundle directory or .gguf file")
    p.add_argument("--device", default="x86_64-avx2-laptop", help="device profile name or path")
    p.add_argument("--repeats", type=int, default=3, help="repetitions per measurement (median reported)")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    from smoledge.config import ConfigError
    from smoledge.errors import SmoledgeError

    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.func
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"smoledge: config error: {exc}", file=sys.stderr)
        return 2
    except SmoledgeError as exc:
        print(f"smoledge: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("smoledge: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
