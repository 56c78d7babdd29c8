"""Write the best point back as a recipe: the base recipe's YAML with only the swept values changed.

The edit is made on the text, so the recipe keeps its layout and comments; each changed line says
what it was. When a key cannot be edited in place (flow-style sections, anchors...), the recipe is
dumped again from its parsed form instead (same structure and key order, comments lost). Either way
the result is parsed back and must equal the base recipe with the new values, and must load.

    from smoledge.sweep.best import write_best_recipe
    write_best_recipe(Path("build/quickstart.yaml"), {"pretrain.lr": 0.003}, Path("best.yaml"), "why")
"""

from __future__ import annotations

import copy
import re
import textwrap
from pathlib import Path
from typing import Any

from smoledge.errors import SmoledgeError
from smoledge.io import atomic_write_text

INDENT = 2  # for keys the base recipe does not have yet


def flow(value: Any) -> str:
    """One-line YAML for a value (scalar, list or mapping)."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30, allow_unicode=True).strip()
    return text[: -len("...")].strip() if text.endswith("\n...") else text


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _content(line: str) -> bool:
    """A line holding YAML (not blank, not only a comment)."""
    s = line.strip()
    return bool(s) and not s.startswith("#")


def _set_line(lines: list[str], parts: list[str], value: Any) -> list[str] | None:
    """`lines` with block-mapping key parts[0].parts[1]... set to `value`; None if not editable in place."""
    start, end, parent_indent = 0, len(lines), -1
    for depth, part in enumerate(parts):
        body = [i for i in range(start, end) if _content(lines[i])]
        child = _indent(lines[body[0]]) if body else parent_indent + INDENT
        key = re.compile(rf"^ {{{child}}}{re.escape(part)}:(?=\s|$)")
        found = next((i for i in body if key.match(lines[i])), None)
        if found is None:
            # Append the missing keys at the end of this block, after its last YAML line.
            at = body[-1] + 1 if body else start
            new = [f"{' ' * (child + INDENT * k)}{p}:" for k, p in enumerate(parts[depth:])]
            new[-1] += f" {flow(value)}  # smoledge sweep: best"
            return lines[:at] + new + lines[at:]
        # The block under this key: following lines indented deeper (blank lines and comments inside).
        stop = next((i for i in range(found + 1, end) if _content(lines[i]) and _indent(lines[i]) <= child), end)
        rest = lines[found][child + len(part) + 1:]
        m = re.match(r"^(\s*)(.*?)(\s+#.*)?$", rest)
        inline = m.group(2) if m else rest.strip()
        if depth < len(parts) - 1:
            if inline:
                return None  # a flow-style section ({a: 1}): leave it to the re-dump
            start, end, parent_indent = found + 1, stop, child
            continue
        deeper = [i for i in range(found + 1, stop) if _content(lines[i])]
        if inline and not deeper and _parses_to(inline, value):
            return lines  # already this value: keep the line and its comment
        was = inline or "a block"
        line = f"{' ' * child}{part}: {flow(value)}  # smoledge sweep: best (was {was})"
        cut = deeper[-1] + 1 if deeper else found + 1
        return lines[:found] + [line] + lines[cut:]
    return None


def _parses_to(text: str, value: Any) -> bool:
    import yaml

    try:
        return yaml.safe_load(text) == value
    except yaml.YAMLError:
        return False


def edit_text(text: str, values: dict[str, Any]) -> str | None:
    lines = text.splitlines()
    for dotted, value in values.items():
        edited = _set_line(lines, dotted.split("."), value)
        if edited is None:
            return None
        lines = edited
    return "\n".join(lines) + "\n"


def write_best_recipe(recipe_path: Path, values: dict[str, Any], out: Path, header: str) -> Path:
    """`out`: the recipe at `recipe_path` with `values` ({dotted key: value}) set; it must load."""
    import yaml

    from smoledge.config import ConfigError
    from smoledge.recipe import load_recipe

    text = recipe_path.read_text(encoding="utf-8")
    raw = yaml.safe_load(text) or {}
    expected = copy.deepcopy(raw)
    for dotted, value in values.items():
        _set(expected, dotted, value)
    new = edit_text(text, values)
    if new is None or yaml.safe_load(new) != expected:
        new = yaml.safe_dump(expected, sort_keys=False, allow_unicode=True, width=100)
    comment = "\n".join(f"# {line}" for line in textwrap.wrap(header, 100))
    atomic_write_text(out, f"{comment}\n{new}")
    try:
        load_recipe(out)
    except ConfigError as exc:
        raise SmoledgeError(f"the best recipe written to {out} does not load ({exc}); this is a bug in "
                            "smoledge sweep, please report it") from None
    return out
