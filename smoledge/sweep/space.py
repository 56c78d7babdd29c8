"""The search space: dotted recipe keys, their values, and the points of a grid or random draw.

    from smoledge.sweep.space import axes, grid_points, random_points
    ax = axes({"pretrain.lr": [1e-3, 3e-3], "pretrain.optimizer": ["adamw", "muon"]}, "grid")
    grid_points(ax)                  # 4 points, in axis order
    random_points(axes({"pretrain.lr": {"min": 1e-4, "max": 1e-2}}, "random"), trials=8, seed=0)

A key is any recipe field a proxy training reads, written dotted as in `--set`
(`pretrain.lr`, `teacher.hidden_size`, `tokenizer.vocab_size`). Values are checked
against the field's type up front, so a typo fails before anything trains. A point
is a flat {dotted key: value}; its id is a short hash of that mapping, so the same
values always land in the same directory (that is what makes a sweep resumable).

Torch-free (SweepSpec validation runs while a recipe loads).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import random
import types
import typing
from dataclasses import dataclass
from typing import Any

from smoledge.config import ConfigError, Section, _coerce, _plain

# Keys a sweep cannot sensibly vary: every point gets its own name, and the space is not in the space.
FIXED_KEYS = ("name", "description", "sweep")
# How many draws `random_points` makes at most per requested trial before giving up on finding new points
# (a space of 3 choices cannot yield 8 distinct points).
DRAWS_PER_TRIAL = 20
# Random floats are rounded to this many significant digits: readable columns, stable ids.
SIG_DIGITS = 4


@dataclass(frozen=True)
class Point:
    """One proxy training: the swept values, flat and dotted, in axis order."""

    values: dict[str, Any]

    @property
    def id(self) -> str:
        return hashlib.sha256(json.dumps(self.values, sort_keys=True).encode()).hexdigest()[:10]

    def overrides(self) -> list[str]:
        """`--set` assignments; JSON is valid YAML flow, so load_recipe parses them back exactly."""
        return [f"{k}={json.dumps(v)}" for k, v in self.values.items()]

    def label(self) -> str:
        return " ".join(f"{k}={_short(v)}" for k, v in self.values.items())


@dataclass(frozen=True)
class Axis:
    """One entry of `params`: listed choices (each a flat mapping, >1 key for a section's partial
    mapping), or a numeric range for random draws."""

    key: str
    choices: list[dict[str, Any]] | None = None
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    integer: bool = False


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else json.dumps(v) if not isinstance(v, str) else v


def _recipe_cls() -> type:
    from smoledge.recipe import Recipe  # lazy: recipe.py imports the sweep config, which imports us

    return Recipe


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Section)


def proxy_sections() -> set[str]:
    """Recipe sections read by the stages a proxy training may run (curate up to distill)."""
    from smoledge.runs import STAGES, STAGE_NAMES

    last = STAGE_NAMES.index("distill")
    return {sec for s in STAGES[: last + 1] for sec in s.sections}


def top_sections(params: dict[str, Any]) -> set[str]:
    return {key.split(".")[0] for key in params}


def field_type(dotted: str, where: str) -> Any:
    """The annotation of recipe field `dotted`; ConfigError naming `where` (and a close key) if none."""
    cls = _recipe_cls()
    parts = dotted.split(".")
    if not all(parts):
        raise ConfigError(f"{where}: '{dotted}' is not a dotted recipe key like pretrain.lr")
    for i, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        if part not in names:
            here = ".".join(parts[:i])
            full = [f"{here}.{n}" if here else n for n in names]
            close = difflib.get_close_matches(dotted, full, n=1) or difflib.get_close_matches(part, names, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{where}: unknown recipe key '{dotted}'.{hint} "
                              f"Valid keys under {here or 'the recipe'}: {', '.join(sorted(names))}")
        tp = typing.get_type_hints(cls)[part]
        if i < len(parts) - 1:
            if not _is_section(tp):
                raise ConfigError(f"{where}: '{'.'.join(parts[: i + 1])}' is a value, not a section; "
                                  f"'{dotted}' does not exist")
            cls = tp
    return tp


def _flatten(key: str, value: Any, where: str) -> dict[str, Any]:
    """{dotted key: checked value}; a mapping given for a section key fans out to its fields."""
    tp = field_type(key, where)
    if _is_section(tp):
        if not isinstance(value, dict) or not value:
            raise ConfigError(f"{where}: '{key}' is a section; give a mapping of its fields, e.g. "
                              f"{{{next(iter(f.name for f in dataclasses.fields(tp)))}: ...}}, got {value!r}")
        out: dict[str, Any] = {}
        for sub, v in value.items():
            out.update(_flatten(f"{key}.{sub}", v, where))
        return out
    # _coerce builds Section objects for section-typed lists (data.sources); a point holds plain values.
    return {key: _plain(_coerce(value, tp, where))}


def _numeric(tp: Any) -> type | None:
    """int or float when the field takes numbers (null allowed), else None."""
    arms = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    kinds = [a for a in arms if a in (int, float)]
    return float if float in kinds else int if int in kinds else None


def is_lr_key(key: str) -> bool:
    leaf = key.rsplit(".", 1)[-1]
    return leaf == "lr" or leaf.endswith("_lr")


def _check_key(key: str, where: str) -> None:
    top = key.split(".")[0]
    if top in FIXED_KEYS:
        raise ConfigError(f"{where}: '{key}' cannot be swept (each point gets its own run name; the sweep "
                          "settings are not part of the search space)")
    field_type(key, where)
    if top not in proxy_sections():
        raise ConfigError(f"{where}: '{key}' is not read by the proxy training (curate, train-tokenizer, "
                          "pretrain, distill): every point would train the same model")


def axes(params: dict[str, Any], method: str, prefix: str = "sweep.params") -> list[Axis]:
    """Parse and check `params`; every error names the dotted key."""
    out = []
    for key, value in params.items():
        where = f"{prefix}.{key}"
        _check_key(key, where)
        if isinstance(value, list):
            if not value:
                raise ConfigError(f"{where}: the list of values is empty")
            choices = [_flatten(key, v, f"{where}[{i}]") for i, v in enumerate(value)]
            seen = [json.dumps(c, sort_keys=True) for c in choices]
            dup = next((value[i] for i, s in enumerate(seen) if s in seen[:i]), None)
            if len(set(seen)) != len(seen):
                raise ConfigError(f"{where}: {dup!r} is listed twice")
            out.append(Axis(key, choices=choices))
        elif isinstance(value, dict):
            out.append(_range_axis(key, value, method, where))
        else:
            raise ConfigError(f"{where}: expected a list of values (e.g. [1.0e-3, 3.0e-3]) or, with method "
                              f"random, a range {{min: ..., max: ...}}; got {value!r}")
    return out


def _range_axis(key: str, value: dict[str, Any], method: str, where: str) -> Axis:
    kind = _numeric(field_type(key, where))
    if kind is None:
        raise ConfigError(f"{where}: a range needs a numeric key; '{key}' is not. List its values instead")
    unknown = set(value) - {"min", "max", "log"}
    if unknown or not {"min", "max"} <= set(value):
        raise ConfigError(f"{where}: a range is {{min: ..., max: ..., log: true|false}}, got {value!r}")
    if method != "random":
        raise ConfigError(f"{where}: a range {{min, max}} needs method random (--random N); a grid takes a "
                          "list of values")
    low, high = (_coerce(value[k], float, f"{where}.{k}") for k in ("min", "max"))
    if not low < high:
        raise ConfigError(f"{where}: min must be < max, got {low} and {high}")
    log = value.get("log")
    if log is None:
        log = is_lr_key(key)  # learning rates matter in ratios: draw them log-uniformly
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log: expected true or false, got {log!r}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log-uniform range needs min > 0, got {low}")
    return Axis(key, low=low, high=high, log=log, integer=kind is int)


def check_params(params: dict[str, Any], method: str, prefix: str = "sweep.params") -> None:
    if params:
        axes(params, method, prefix)


def grid_points(ax: list[Axis]) -> list[Point]:
    """Every combination, the last axis varying fastest."""
    for a in ax:
        if a.choices is None:
            raise ConfigError(f"sweep.params.{a.key}: a range needs method random; a grid takes a list")
    points = []
    for combo in itertools.product(*(a.choices for a in ax)):  # type: ignore[misc]
        values: dict[str, Any] = {}
        for part in combo:
            values.update(part)
        points.append(Point(values))
    return points


def _draw(a: Axis, rng: random.Random) -> dict[str, Any]:
    if a.choices is not None:
        return rng.choice(a.choices)
    if a.log:
        x = math.exp(rng.uniform(math.log(a.low), math.log(a.high)))
    else:
        x = rng.uniform(a.low, a.high)
    if a.integer:
        return {a.key: min(max(int(round(x)), math.ceil(a.low)), math.floor(a.high))}
    return {a.key: float(f"{x:.{SIG_DIGITS}g}")}


def random_points(ax: list[Axis], trials: int, seed: int) -> list[Point]:
    """`trials` distinct points drawn with `seed` (fewer when the space holds fewer)."""
    rng = random.Random(seed)
    points: dict[str, Point] = {}
    for _ in range(trials * DRAWS_PER_TRIAL):
        if len(points) == trials:
            break
        values: dict[str, Any] = {}
        for a in ax:
            values.update(_draw(a, rng))
        p = Point(values)
        points.setdefault(p.id, p)
    return list(points.values())


def points(params: dict[str, Any], method: str, trials: int, seed: int) -> list[Point]:
    ax = axes(params, method)
    if not ax:
        raise ConfigError("sweep.params: nothing to sweep; give axes in the recipe's sweep.params or on the "
                          "command line (--grid pretrain.lr=1e-3,3e-3,1e-2)")
    return grid_points(ax) if method == "grid" else random_points(ax, trials, seed)


# ----------------------------------------------------------------------------- command-line axes

def parse_grid(text: str) -> tuple[str, list[Any]]:
    """`KEY=V1,V2,...` or `KEY=[V1, V2]` (YAML, for values holding commas) -> (key, [values])."""
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or not raw.strip():
        raise ConfigError(f"--grid {text!r}: expected KEY=V1,V2,... e.g. pretrain.lr=1e-3,3e-3,1e-2")
    raw = raw.strip()
    if raw.startswith("["):
        try:
            values = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--grid {key}: not a valid YAML list: {exc}") from None
        if not isinstance(values, list):
            raise ConfigError(f"--grid {key}: expected a list like [adamw, muon], got {raw!r}")
        return key.strip(), values
    return key.strip(), [yaml.safe_load(v.strip()) for v in raw.split(",")]


def parse_range(text: str) -> tuple[str, dict[str, Any]]:
    """`KEY=LOW:HIGH` or `KEY=LOW:HIGH:log` / `:linear` -> (key, {min, max[, log]})."""
    key, sep, raw = text.partition("=")
    parts = raw.split(":")
    if not sep or not key.strip() or len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("log", "linear")):
        raise ConfigError(f"--range {text!r}: expected KEY=LOW:HIGH[:log|:linear] e.g. pretrain.lr=1e-4:1e-2")
    out: dict[str, Any] = {"min": parts[0].strip(), "max": parts[1].strip()}
    if len(parts) == 3:
        out["log"] = parts[2] == "log"
    return key.strip(), out
