"""The CLI is thin: every subcommand has help with examples, and nothing heavy loads at import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from smoledge.cli import build_parser

COMMANDS = ["build", "curate", "train-tokenizer", "pretrain", "teacher-cache", "distill", "export", "evaluate",
            "bench", "package", "serve", "sample", "report", "devices"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help_with_examples(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and f"smoledge {command}" in text


def test_importing_cli_loads_no_ml_library() -> None:
    code = (
        "import sys, smoledge.cli; smoledge.cli.build_parser();"
        "heavy = [m for m in ('torch', 'transformers', 'datasketch', 'pyarrow') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
