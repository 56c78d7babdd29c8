"""Task evals with lm-evaluation-harness against `smoledge serve` (its `local-completions` model).

    smoledge serve runs/quickstart/bundle --port 8000 &
    python -m smoledge.evaluate.harness --bundle runs/quickstart/bundle --data my_items.jsonl \\
        --name my_task --task-dir runs/quickstart/lm_eval_tasks --url http://127.0.0.1:8000 \\
        --output runs/quickstart/lm_eval            # prints the lm_eval command; --run runs it too
    # --generate: a generation task on the same rows (greedy text == " " + the right choice)

`--data` is a local JSONL file, one multiple-choice item a line:
{"context": "The capital of France is", "choices": ["Paris", "Lyon"], "gold": 0}
(smoledge.evaluate.tasks' "generic" format). The harness scores " " + each choice
after the context by its log-likelihood, which it reads from the server's
/v1/completions with echo + logprobs; it tokenizes with the bundle's tokenizer/.
Benchmarks lm-eval ships (hellaswag, arc_easy...) work the same way with
`--tasks hellaswag` once their data sits in the local Hugging Face datasets cache.

Torch-free: this only writes a task YAML and builds the command line; lm-eval (the
`eval` extra) runs in its own process.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import yaml

from smoledge.errors import SmoledgeError
from smoledge.io import atomic_write_text
from smoledge.layout import PackageFiles


def check_items(data_file: str | Path) -> int:
    """Validate a generic multiple-choice JSONL file ({context, choices, gold} rows); returns the item count."""
    from smoledge.evaluate.tasks import load_task

    return len(load_task(data_file, "generic"))


def write_task(task_dir: str | Path, name: str, data_file: str | Path, generate: bool = False,
               max_gen_toks: int = 16) -> Path:
    """Write `<task_dir>/<name>.yaml`: an lm-eval task over a local JSONL file.

    Multiple choice (log-likelihood of each choice), or with `generate` a generation task:
    greedy text after the context, up to a newline, must equal " " + the right choice
    (exact_match). Pass `task_dir` to lm_eval as --include_path and `name` as --tasks. The
    data is read by Hugging Face datasets' local json loader: no hub access."""
    if not name.replace("_", "").isalnum():
        raise SmoledgeError(f"task name {name!r}: use letters, digits and underscores")
    check_items(data_file)
    task: dict = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(Path(data_file).resolve())}},
        "test_split": "test",
        "doc_to_text": "{{context}}",
    }
    if generate:
        task |= {
            "output_type": "generate_until",
            "doc_to_target": "{{' ' + choices[gold]}}",
            "generation_kwargs": {"until": ["\n"], "max_gen_toks": max_gen_toks, "do_sample": False,
                                  "temperature": 0.0},
            "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
        }
    else:
        task |= {
            "output_type": "multiple_choice",
            "doc_to_choice": "choices",
            "doc_to_target": "gold",
            # acc: the highest summed log-likelihood wins; acc_norm: per character of the choice.
            "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                            for m in ("acc", "acc_norm")],
        }
    task["metadata"] = {"version": 1.0}
    out = Path(task_dir) / f"{name}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, yaml.safe_dump(task, sort_keys=False))
    return out


def lm_eval_command(url: str, tokenizer_dir: str | Path, tasks: Sequence[str], max_length: int,
                    include_path: str | Path | None = None, output: str | Path | None = None,
                    limit: int | None = None, batch_size: int = 1, log_samples: bool = False,
                    lm_eval: str = "lm_eval") -> list[str]:
    """The `lm_eval run` argv for the server at `url` (http://host:port).

    max_length must not exceed the server's n_ctx: lm-eval left-truncates longer
    requests to it, and the server refuses what does not fit its context."""
    model_args = ",".join([
        f"base_url={url.rstrip('/')}/v1/completions",
        f"tokenizer={Path(tokenizer_dir).resolve()}",
        "tokenizer_backend=huggingface",
        f"max_length={max_length}",
        # The server runs one request at a time; batch_size > 1 sends several prompts per request.
        "num_concurrent=1",
        "max_retries=1",
    ])
    cmd = [lm_eval, "run", "--model", "local-completions", "--model_args", model_args,
           "--tasks", ",".join(tasks), "--batch_size", str(batch_size)]
    if include_path is not None:
        cmd += ["--include_path", str(Path(include_path).resolve())]
    if output is not None:
        cmd += ["--output_path", str(output)]
    if log_samples:
        cmd += ["--log_samples"]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    return cmd


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m smoledge.evaluate.harness", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="bundle directory the server serves (tokenizer/, server.json)")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the server (default %(default)s)")
    p.add_argument("--data", help="local JSONL task data: writes the task YAML (needs --name, --task-dir)")
    p.add_argument("--name", default="smoledge_mc", help="task name (default %(default)s)")
    p.add_argument("--generate", action="store_true",
                   help="a generation task (greedy text must equal the right choice) instead of multiple choice")
    p.add_argument("--task-dir", help="where the task YAML goes (--include_path)")
    p.add_argument("--tasks", help="comma-separated lm-eval tasks instead of --data (e.g. hellaswag)")
    p.add_argument("--max-length", type=int, help="default: the bundle's n_ctx")
    p.add_argument("--output", help="lm-eval --output_path")
    p.add_argument("--limit", type=int)
    p.add_argument("--run", action="store_true", help="run lm_eval (else print the command)")
    args = p.parse_args(argv)

    from smoledge.serve.bundle import load_bundle

    try:
        if not Path(args.bundle).is_dir():
            raise SmoledgeError(f"--bundle {args.bundle}: give the bundle directory (extract a .tar.gz first); "
                                "lm-eval reads its tokenizer/")
        bundle = load_bundle(args.bundle)
        if args.data:
            if not args.task_dir:
                raise SmoledgeError("--data needs --task-dir (where the task YAML is written)")
            write_task(args.task_dir, args.name, args.data, generate=args.generate)
            tasks, include = [args.name], args.task_dir
        elif args.tasks:
            tasks, include = args.tasks.split(","), args.task_dir
        else:
            raise SmoledgeError("give --data (a local JSONL task) or --tasks (lm-eval task names)")
        cmd = lm_eval_command(args.url, PackageFiles(bundle.dir).tokenizer, tasks,
                              args.max_length or bundle.settings.n_ctx,
                              include_path=include, output=args.output, limit=args.limit,
                              lm_eval=str(Path(sys.executable).with_name("lm_eval")) if args.run else "lm_eval")
    except SmoledgeError as exc:
        print(f"smoledge: {exc}", file=sys.stderr)
        return 2
    if not args.run:
        print(shlex.join(cmd))
        return 0
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main())
