"""smoledge command line: a thin map from subcommands to `run(config)` functions.

    smoledge build build/quickstart.yaml
    smoledge build build/quickstart.yaml --set pretrain.max_steps=50
    smoledge deploy HuggingFaceTB/SmolLM2-135M-Instruct --device rpi5-8gb
    smoledge serve runs/quickstart/bundle
    smoledge bench runs/quickstart/bundle --device x86_64-avx2-laptop
    smoledge sweep build/quickstart.yaml --grid pretrain.lr=1e-3,3e-3,1e-2 --grid pretrain.optimizer=adamw,muon
    smoledge scaling fit runs/quickstart/sweep/results.csv --holdout-largest
    smoledge arm64-check --device rpi5-8gb

Nothing heavy is imported here: `serve` and `bench` must start on a board
that has no torch or transformers.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
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


def _cmd_deploy(args: argparse.Namespace) -> int:
    from smoledge.deploy import DeployConfig, run

    run(DeployConfig(model=args.model, devices=args.devices or ["x86_64-avx2-laptop"], name=args.name,
                     runs_dir=args.runs_dir, revision=args.revision, max_ppl_delta_pct=args.max_ppl_delta,
                     force=tuple(args.force)))
    return 0


def _cmd_arm64_check(args: argparse.Namespace) -> int:
    from smoledge.arm64.check import CheckConfig, main

    return main(CheckConfig(recipe=args.recipe, device=args.device, name=args.name, runs_dir=args.runs_dir,
                            repo=args.repo, root=args.root))


def _cmd_sample(args: argparse.Namespace) -> int:
    from smoledge.data.sample import write_sample

    path = write_sample(args.out, num_docs=args.docs, seed=args.seed)
    print(path)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from smoledge.serve.config import ServeConfig
    from smoledge.serve.server import run

    run(ServeConfig(target=args.target, host=args.host, port=args.port, threads=args.threads, n_ctx=args.n_ctx,
                    device=args.device, slots=args.slots, queue=args.queue, request_timeout=args.request_timeout,
                    shutdown_timeout=args.shutdown_timeout, max_body_bytes=args.max_body_bytes,
                    api_keys=args.api_keys, cors_origins=args.cors_origins))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from smoledge.bench.run import BenchConfig, markdown, run

    results = run(BenchConfig(target=args.target, device=args.device, repeats=args.repeats, warmup=args.warmup,
                              pp=args.pp, tg=args.tg, ttft_prompt=args.ttft_prompt, all_backends=args.all_backends,
                              out=args.out, markdown=args.markdown))
    print(markdown(results))
    for path in (args.out, args.markdown):
        if path:
            print(f"wrote {path}", file=sys.stderr)
    return 0


def _int_list(text: str) -> list[int]:
    """"128,512" -> [128, 512]; "" -> []."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated token counts like 128,512, got {text!r}")


def _cmd_report(args: argparse.Namespace) -> int:
    from smoledge.evaluate.report import write_report

    print(write_report(Path(args.run)))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from smoledge.config import ConfigError
    from smoledge.errors import SmoledgeError
    from smoledge.sweep.config import SweepConfig
    from smoledge.sweep.space import parse_grid, parse_range

    params: dict = {}
    for text in args.grid:
        key, values = parse_grid(text)
        params[key] = values
    for text in args.range:
        key, bounds = parse_range(text)
        params[key] = bounds
    if args.range and args.random is None:
        raise ConfigError("--range draws random points; add --random N (how many)")
    cfg = SweepConfig(recipe=args.recipe, overrides=args.overrides, params=params,
                      method="random" if args.random is not None else ("grid" if args.grid else None),
                      trials=args.random, seed=args.seed, out=args.out, runs_dir=args.runs_dir,
                      retry_failed=args.retry_failed)
    if args.dry_run:
        from smoledge.sweep.runner import make_plan

        _, spec, plan, target = make_plan(cfg)
        print(f"{len(plan)} points ({spec.method}), each trained up to {target}:")
        for p in plan:
            print(f"  {p.id}  {p.label()}")
        return 0
    from smoledge.sweep.results import text_table
    from smoledge.sweep.runner import run_sweep

    result = run_sweep(cfg)
    print(text_table(result.rows, result.swept))
    print(f"\ntable:  {result.table}\n        {result.parquet}")
    print(f"plots:  {result.plots['lr']}\n        {result.plots['compute']}")
    if result.best is None:
        raise SmoledgeError(f"every point failed (see the error column of {result.table}); nothing to pick")
    print(f"best:   {result.best['point']} {result.best.get('val_loss'):.4f} val_loss -> {result.best_recipe}")
    return 0


def _cmd_scaling(args: argparse.Namespace) -> int:
    from smoledge.sweep.scaling import FitConfig
    from smoledge.sweep.scaling_run import ScalingFitConfig, parse_pair, run, summary

    cfg = ScalingFitConfig(table=args.table, out=args.out, loss=args.loss, holdout=args.holdout,
                           holdout_largest=args.holdout_largest, predict=[parse_pair(t) for t in args.predict],
                           target=args.target,
                           target_overrides=args.target_overrides, target_stage=args.target_stage,
                           compute=args.compute,
                           fit=FitConfig(bootstrap=args.bootstrap, ci=args.ci, seed=args.seed, starts=args.starts))
    print(summary(run(cfg)))
    return 0


def _cmd_devices(args: argparse.Namespace) -> int:
    if args.devices_command == "detect":
        from smoledge.bench.detect import detect, refuse_overwrite, render, write

        if args.out:
            refuse_overwrite(Path(args.out), args.force)
        print(f"smoledge: measuring memory bandwidth for ~{args.seconds:g} s (one thread, numpy copy + triad)...",
              file=sys.stderr)
        found = detect(name=args.name, seconds=args.seconds)
        if args.out:
            write(found, Path(args.out), force=args.force)
            print(f"smoledge: wrote {args.out}", file=sys.stderr)
        print(render(found), end="")
        return 0
    from smoledge.bench.config import devices_dir, load_profile

    rows = [("profile", "arch", "cores/threads", "RAM GB", "bandwidth GB/s", "backend", "budget GB", "ctx", "isa")]
    for path in sorted(devices_dir().glob("*.yaml")):
        d = load_profile(str(path))
        bw = f"{d.memory_bandwidth_gbs:g} ({d.memory_bandwidth_kind})" if d.memory_bandwidth_gbs else "unknown"
        rows.append((d.name, d.arch, f"{d.cores}/{d.threads}", f"{d.ram_gb:g}", bw, d.backend,
                     f"{d.model_ram_budget_gb:g}", str(d.max_context), " ".join(d.isa)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
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
        "deploy", help="take a model you have (hub id, HF dir or .gguf) to a checked bundle for your devices",
        formatter_class=fmt,
        description="Export (GGUF gated on parity with PyTorch), evaluate (per-language perplexity on the built-in "
                    "held-out text, passkey grid, per device the smallest artifact within the RAM budget and the "
                    "perplexity gate) and package MODEL; prints the serve and bench commands per device.",
        epilog=_examples(
            "smoledge deploy HuggingFaceTB/SmolLM2-135M-Instruct --device x86_64-avx2-laptop --device rpi5-8gb",
            "smoledge deploy ./my-finetune --device rpi5-8gb --max-ppl-delta 5",
            "smoledge deploy SmolLM2-135M-Instruct.Q4_1.gguf --device rpi5-8gb",
        ),
    )
    p.add_argument("model", help="hub id, HF model directory or .gguf file")
    p.add_argument("--device", dest="devices", action="append", default=[], metavar="NAME",
                   help="target device profile (repeatable; default: x86_64-avx2-laptop)")
    p.add_argument("--name", default=None, help="run name under --runs-dir (default: from the model's name)")
    p.add_argument("--revision", default=None, help="hub revision of a hub id (default: its default branch)")
    p.add_argument("--max-ppl-delta", type=float, default=10.0, metavar="PCT",
                   help="a device gets the smallest artifact within PCT%% perplexity of the best (default: %(default)s)")
    p.add_argument("--runs-dir", default="runs", help="root of run directories (default: %(default)s)")
    p.add_argument("--force", action="append", default=[], metavar="STAGE", help="re-run STAGE even if up to date")
    p.set_defaults(func=_cmd_deploy)

    p = sub.add_parser(
        "sample", help="write the built-in synthetic six-language web dump as JSONL", formatter_class=fmt,
        epilog=_examples("smoledge sample data/web_dump.jsonl", "smoledge sample dump.jsonl --docs 5000 --seed 7"),
    )
    p.add_argument("out", help="output .jsonl path")
    p.add_argument("--docs", type=int, default=2400, help="raw documents to generate (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1234, help="generator seed (default: %(default)s)")
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser(
        "serve", help="serve a bundle, a GGUF, an ONNX export or an HF directory over an OpenAI-compatible HTTP API",
        formatter_class=fmt,
        epilog=_examples(
            "smoledge serve runs/quickstart/bundle",
            "smoledge serve bundle.tar.gz --port 8080 --threads 4",
            "smoledge serve SmolLM2-135M-Instruct.Q4_1.gguf --n-ctx 8192",
            "smoledge serve runs/quickstart/export/onnx-int8-avx2",
            "smoledge serve runs/quickstart/export/hf      # through its export's GGUF",
            "smoledge serve runs/quickstart/bundle --slots 2 --queue 16 --api-key \"$(openssl rand -hex 32)\"",
            "curl -s localhost:8000/v1/completions -H 'content-type: application/json' "
            "-d '{\"prompt\": \"The\", \"max_tokens\": 16}'",
        ),
    )
    p.add_argument("target", metavar="TARGET",
                   help="a bundle directory or .tar.gz, a .gguf file (chat template, EOS and context from its "
                        "metadata), an ONNX export directory (model.onnx + tokenizer.json), or an HF model "
                        "directory with a GGUF or ONNX export in it or beside it")
    p.add_argument("--host", default=None, help="bind address (default: the bundle's, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: the bundle's, 8000)")
    p.add_argument("--threads", type=int, default=None, help="llama.cpp threads in all (default: the bundle's)")
    p.add_argument("--n-ctx", type=int, default=None,
                   help="context length (default: the bundle's; for a bare model, its trained context up to 4096)")
    p.add_argument("--device", default=None, metavar="NAME",
                   help="serve the model evaluate selected for this target device (server.json devices), with its "
                        "backend (llama.cpp or onnxruntime), threads and context (default: the bundle's default GGUF)")
    p.add_argument("--slots", type=int, default=None,
                   help="requests generated at once, decoded together in one batch on all --threads (a KV "
                        "cache of --n-ctx each) (default: the bundle's, 1)")
    p.add_argument("--queue", type=int, default=None,
                   help="requests that may wait for a slot; beyond them a 429 with Retry-After (default: the "
                        "bundle's, 8)")
    p.add_argument("--request-timeout", type=float, default=None, metavar="SECONDS",
                   help="a request taking longer (queueing included) is stopped and answered 504 "
                        "(default: the bundle's, 300)")
    p.add_argument("--shutdown-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="on SIGTERM/SIGINT, time given to requests in flight before they are cancelled "
                        "(default: %(default)s)")
    p.add_argument("--max-body-bytes", type=int, default=None,
                   help="largest request body; bigger ones get a 413 (default: the bundle's, 2 MiB)")
    p.add_argument("--api-key", dest="api_keys", action="append", default=[], metavar="KEY",
                   help="require `Authorization: Bearer KEY` on every route but /health and /ready "
                        "(repeatable; keys in SMOLEDGE_API_KEYS, comma-separated, are added and stay out of ps)")
    p.add_argument("--cors-origin", dest="cors_origins", action="append", default=[], metavar="ORIGIN",
                   help="let browser pages from ORIGIN (e.g. http://localhost:3000) call the API; repeatable "
                        "(default: no CORS headers at all)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser(
        "bench", help="measure load, prompt and decode speed, TTFT, RSS and energy of a model on this device, "
                      "with the decode roofline", formatter_class=fmt,
        epilog=_examples(
            "smoledge bench runs/quickstart/bundle --device x86_64-avx2-laptop",
            "smoledge bench model.gguf --device devices/x86_64-avx2-laptop.yaml --repeats 5 --out bench.json",
            "smoledge bench runs/quickstart/export/onnx-int8-avx2 --pp 128 --tg 64",
            "smoledge bench runs/quickstart --all-backends --markdown bench.md",
        ),
    )
    p.add_argument("target", help="bundle (directory or .tar.gz), .gguf file, ONNX directory, or export/run "
                                   "directory (every artifact that fits the device)")
    p.add_argument("--device", default="x86_64-avx2-laptop", help="device profile name or path")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per test (median and spread reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before them (default: %(default)s)")
    p.add_argument("--pp", type=_int_list, default=[128, 512], metavar="N,N",
                   help="prompt-processing lengths (default: 128,512; '' for none)")
    p.add_argument("--tg", type=int, default=128, help="tokens decoded in the tg test (default: %(default)s; 0: none)")
    p.add_argument("--ttft-prompt", type=int, default=256,
                   help="prompt tokens of the time-to-first-token test (default: %(default)s; 0: none)")
    p.add_argument("--all-backends", action="store_true",
                   help="export/run directory: bench llama.cpp and onnxruntime artifacts, not only the profile's")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--markdown", default=None, help="write the markdown tables here too")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser(
        "report", help="re-render a run's evaluate/report.html (with any bench results in RUN/bench/)",
        formatter_class=fmt,
        epilog=_examples(
            "smoledge bench runs/quickstart/bundle --out runs/quickstart/bench/x86_64-avx2-laptop.json",
            "smoledge report runs/quickstart",
        ),
    )
    p.add_argument("run", help="run directory (runs/<recipe name>)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser(
        "sweep", help="grid or random search over recipe fields: small proxy trainings, table, plots, best recipe",
        formatter_class=fmt,
        description="Train one small proxy of the recipe (curate, train-tokenizer, pretrain; distill when "
                    "student/distill keys are swept) per point, one after another on all local cores. Axes come "
                    "from the recipe's `sweep:` section, or from --grid/--range, which replace them. "
                    "Finished points are recorded and never re-run; an interrupted one resumes. Writes "
                    "results.csv/.parquet, lr.png, compute.png, best.yaml (the recipe with the best values) and "
                    "manifest.json into the sweep directory.",
        epilog=_examples(
            "smoledge sweep build/quickstart.yaml --set pretrain.max_steps=60 \\",
            "    --grid pretrain.lr=1e-3,3e-3,1e-2 --grid pretrain.optimizer=adamw,muon",
            "smoledge sweep build/quickstart.yaml --random 8 --seed 0 --range pretrain.lr=1e-4:3e-2 "
            "--grid pretrain.optimizer=[adamw,muon]",
            "smoledge sweep build/quickstart.yaml --grid 'teacher=[{hidden_size: 64, num_heads: 4}, "
            "{hidden_size: 128, num_heads: 8}]'",
            "smoledge sweep build/quickstart.yaml --dry-run        # list the points of the recipe's sweep: section",
        ),
    )
    p.add_argument("recipe", nargs="?", default="build/quickstart.yaml", help="recipe YAML (default: %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value in every proxy training, e.g. --set pretrain.max_steps=60 "
                        "(repeatable; not written into the best recipe)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="an axis: a dotted recipe key and its values, e.g. pretrain.lr=1e-3,3e-3 or "
                        "'pretrain.optimizer=[adamw,muon]' (YAML list, for values with commas); repeatable. "
                        "Grid: every combination; with --random: the choices")
    p.add_argument("--range", action="append", default=[], metavar="KEY=LOW:HIGH[:log|:linear]",
                   help="a numeric range for --random, e.g. pretrain.lr=1e-4:1e-2 (log-uniform by default for "
                        "learning rates, uniform otherwise); repeatable")
    p.add_argument("--random", type=int, default=None, metavar="N", help="draw N random points instead of the grid")
    p.add_argument("--seed", type=int, default=None, help="seed of the random draw (default: sweep.seed, 0)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="sweep directory (default: <runs-dir>/<recipe name>/sweep)")
    p.add_argument("--runs-dir", default="runs", help="root of run directories (default: %(default)s)")
    p.add_argument("--retry-failed", action="store_true", help="train points recorded as failed again")
    p.add_argument("--dry-run", action="store_true", help="print the points and exit")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser(
        "scaling", help="scaling laws: fit L(N, D) = E + A/N^alpha + B/D^beta to a sweep's results",
        formatter_class=fmt,
    )
    scaling = p.add_subparsers(dest="scaling_command", required=True, metavar="ACTION")
    d = scaling.add_parser(
        "fit", formatter_class=fmt,
        help="fit the Chinchilla law to a sweep's table; predict held-out runs, a target recipe, optimal D/N",
        description="Fit L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, approach 3: Huber loss on "
                    "log L, L-BFGS from a grid of starts) to the finished points of a `smoledge sweep` results "
                    "table (N = n_params, non-embedding; D = tokens), with bootstrap intervals. Held-out points "
                    "are left out of the fit and predicted. Writes fit.json, fit.png and manifest.json.",
        epilog=_examples(
            "smoledge sweep build/quickstart.yaml --set pretrain.eval_every=100000 \\",
            "    --grid 'teacher=[{preset: custom, num_layers: 2, hidden_size: 48, intermediate_size: 144, "
            "num_heads: 4, num_kv_heads: 2}, ...]' --grid pretrain.max_steps=100,200,400",
            "smoledge scaling fit runs/quickstart/sweep/results.csv --holdout-largest",
            "smoledge scaling fit runs/quickstart/sweep/results.parquet --target build/quickstart.yaml "
            "--predict 4e5,2e6 --bootstrap 500",
        ),
    )
    d.add_argument("table", help="results.csv or results.parquet written by `smoledge sweep`")
    d.add_argument("--out", default=None, help="output directory (default: scaling/ next to the table)")
    d.add_argument("--loss", choices=["val_loss", "train_loss"], default="val_loss", help="column fitted as L")
    d.add_argument("--holdout", action="append", default=[], metavar="POINT",
                   help="leave this point id out of the fit and predict it (repeatable)")
    d.add_argument("--holdout-largest", action="store_true",
                   help="leave out the point with the largest compute 6ND and predict it")
    d.add_argument("--predict", action="append", default=[], metavar="N,D",
                   help="predict the loss at N non-embedding parameters and D tokens, e.g. 4e5,2e6 (repeatable)")
    d.add_argument("--target", default=None, metavar="RECIPE",
                   help="predict the loss of this recipe's trained model (its size and max_steps x batch x seq_len)")
    d.add_argument("--target-set", dest="target_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a value of the --target recipe (repeatable)")
    d.add_argument("--target-stage", choices=["pretrain", "distill"], default="pretrain",
                   help="predict the teacher (pretrain) or the student (distill) of --target (default: %(default)s)")
    d.add_argument("--compute", action="append", default=[], type=float, metavar="FLOPS",
                   help="also report the compute-optimal N, D and tokens/parameter at this compute (repeatable)")
    d.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples (default: %(default)s; 0: none)")
    d.add_argument("--ci", type=float, default=0.95, help="interval level (default: %(default)s)")
    d.add_argument("--starts", type=int, default=32, help="L-BFGS starts from the init grid (default: %(default)s)")
    d.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
    d.set_defaults(func=_cmd_scaling)

    p = sub.add_parser(
        "devices", help="device profiles: list the shipped ones, or detect this machine's", formatter_class=fmt,
        epilog=_examples("smoledge devices list", "smoledge devices detect",
                         "smoledge devices detect --name my-board --out devices/my-board.yaml"),
    )
    dev = p.add_subparsers(dest="devices_command", required=True, metavar="ACTION")
    d = dev.add_parser("list", help="table of the profiles in devices/")
    d.set_defaults(func=_cmd_devices)
    d = dev.add_parser(
        "detect", formatter_class=fmt,
        help="write a profile for this machine: arch, ISA, cores, RAM, measured memory bandwidth",
        description="Read arch, ISA flags, cores and RAM from the OS, measure memory bandwidth (one thread, "
                    "STREAM-like) and derive threads, context and RAM budget. Prints the YAML; --out also saves it.",
        epilog=_examples("smoledge devices detect", "smoledge devices detect --name my-board --out devices/my-board.yaml",
                         "smoledge bench runs/quickstart/bundle --device devices/my-board.yaml"),
    )
    d.add_argument("--out", default=None, help="also write the profile here (atomically)")
    d.add_argument("--name", default=None, help="profile name (default: this host's name)")
    d.add_argument("--seconds", type=float, default=1.5, help="bandwidth measurement time (default: %(default)s)")
    d.add_argument("--force", action="store_true", help="replace --out if it exists")
    d.set_defaults(func=_cmd_devices)

    p = sub.add_parser(
        "arm64-check", formatter_class=fmt,
        help="build a bundle for an ARM board, run it in an arm64 root under qemu-user, compare its tokens with x86",
        description="Build the recipe for an aarch64 device profile, install smoledge[serve] in a cached arm64 "
                    "Debian root (qemu-user; llama-cpp-python compiled once for the device's ISA), fingerprint "
                    "every GGUF and ONNX model there and on x86 (greedy tokens, top-1 agreement, max |dlogit|), "
                    "serve the bundle to the openai client and bench it there (marked emulated). Needs root "
                    "privileges; the first run needs qemu-user-static, debootstrap, the Debian mirror and PyPI.",
        epilog=_examples("sudo make arm64-check",
                         "smoledge arm64-check --recipe build/quickstart.yaml --device rpi5-8gb"),
    )
    p.add_argument("--recipe", default="build/quickstart.yaml", help="recipe to build (default: %(default)s)")
    p.add_argument("--device", default="rpi5-8gb", help="aarch64 device profile (default: %(default)s)")
    p.add_argument("--name", default="arm64-check", help="run name, runs/NAME (default: %(default)s)")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--repo", default=".", help="the smoledge checkout installed in the root (default: %(default)s)")
    p.add_argument("--root", default=None, help="arm64 root directory (default: ~/.cache/smoledge/arm64/root)")
    p.set_defaults(func=_cmd_arm64_check)
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
