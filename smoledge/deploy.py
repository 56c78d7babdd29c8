"""`smoledge deploy`: one command from a model the user already has to a checked bundle for their devices.

    smoledge deploy HuggingFaceTB/SmolLM2-135M-Instruct --device x86_64-avx2-laptop --device rpi5-8gb
    smoledge deploy ./my-finetune --device rpi5-8gb --max-ppl-delta 5
    smoledge deploy SmolLM2-135M-Instruct.Q4_1.gguf --device rpi5-8gb

It writes a recipe with `model.source` (kept as runs/<name>/deploy.yaml, so `smoledge build` on it repeats
the deployment) and runs the same stages as any build: export (every GGUF gated on parity with PyTorch),
evaluate (per-language perplexity on smoledge's built-in held-out text, the passkey grid at each device's
context, then per device the smallest artifact that fits its RAM budget, passes the perplexity gate and
keeps the PyTorch model's passkey retrieval within one needle in five) and package. The defaults are what a user shipping to these boards would pick: the GGUF types llama.cpp runs
well on CPUs (q8_0 and q4_k_m; q4_0 where an ARM device's llama.cpp repacks it for its dot-product kernels),
ONNX only for a device whose backend is onnxruntime, and a perplexity gate of 10% over the best artifact.
At the end it prints the serve and bench command for each device.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from smoledge.bench.config import load_profile
from smoledge.io import atomic_write_text
from smoledge.recipe import Recipe
from smoledge.runs import StageOutcome, build, summary_table

# llama.cpp's CPU types worth shipping: q8_0 (near-lossless), q4_k_m (its recommended 4-bit).
DEFAULT_GGUF_TYPES = ("q8_0", "q4_k_m")
# llama.cpp repacks q4_0 at load time into the interleaved layout of its ARM dot-product kernels.
ARM_GGUF_TYPES = ("q4_0",)
DEFAULT_MAX_PPL_DELTA_PCT = 10.0
# Passkey accuracy a device's artifact may lose at any length against the PyTorch model: one needle in
# five depths. SmolLM2-135M's q4_k_m passes the perplexity gate (+9.8%) yet retrieves nothing at 1024
# tokens where the model and its q8_0 retrieve 4 in 5.
DEFAULT_MAX_PASSKEY_DROP = 0.2
# Passkey lengths checked by default: where a small model's retrieval usually falls off. One trial per
# length and depth: the grid costs about as many tokens as the perplexity texts, per scorer.
PASSKEY_LENGTHS = (512, 1024, 2048)


@dataclass
class DeployConfig:
    model: str
    """Hub id, HF model directory or .gguf."""
    devices: list[str] = field(default_factory=lambda: ["x86_64-avx2-laptop"])
    """Device profiles (names in devices/ or paths)."""
    name: str | None = None
    """Run name (runs/<name>/); default: from the model's name."""
    runs_dir: str = "runs"
    revision: str | None = None
    """Hub revision of a hub id."""
    max_ppl_delta_pct: float = DEFAULT_MAX_PPL_DELTA_PCT
    """Perplexity gate: a device gets the smallest artifact within this of the best one."""
    force: tuple[str, ...] = ()


def run_name(model: str) -> str:
    """runs/<name> for a model: its last path component, without .gguf, as a plain directory name."""
    stem = Path(model.rstrip("/")).name
    stem = stem[: -len(".gguf")] if stem.endswith(".gguf") else stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "model"


def deploy_recipe(cfg: DeployConfig) -> Recipe:
    """The recipe `smoledge deploy` builds: the model, the devices and the defaults above."""
    profiles = [load_profile(d) for d in cfg.devices]
    arm = any(p.arch in ("arm64", "aarch64") for p in profiles)
    onnx_targets = sorted({"arm64" if p.arch in ("arm64", "aarch64") else "avx2"
                           for p in profiles if p.backend == "onnxruntime"})
    gguf_types = [*DEFAULT_GGUF_TYPES, *(ARM_GGUF_TYPES if arm else ())]
    raw = {
        "name": cfg.name or run_name(cfg.model),
        "description": f"smoledge deploy {cfg.model} to {', '.join(cfg.devices)}",
        "model": {"source": cfg.model, "revision": cfg.revision},
        "devices": list(cfg.devices),
        "export": {"gguf_types": gguf_types, "onnx": bool(onnx_targets), "onnx_int8": onnx_targets},
        "evaluate": {"onnx": bool(onnx_targets), "passkey": {"lengths": list(PASSKEY_LENGTHS), "trials": 1},
                     "gates": {"max_ppl_delta_pct": cfg.max_ppl_delta_pct,
                               # A .gguf source has no PyTorch model to compare with.
                               "max_passkey_drop": None if cfg.model.endswith(".gguf") else DEFAULT_MAX_PASSKEY_DROP}},
        "package": {"gguf_type": "q8_0"},
    }
    return Recipe.from_dict(raw)  # type: ignore[return-value]


def commands(recipe: Recipe, bundle: Path) -> list[str]:
    """The serve and bench command for each device of the bundle."""
    out = []
    for dev in recipe.devices:
        out.append(f"smoledge serve {bundle} --device {dev}")
        out.append(f"smoledge bench {bundle} --device {dev} --out {bundle.parent}/bench/{dev}.json")
    return out


def run(cfg: DeployConfig, out: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)
        ) -> tuple[Recipe, list[StageOutcome]]:
    """Write the recipe, build it, print the summary and the commands; return the recipe and the outcomes."""
    import yaml

    recipe = deploy_recipe(cfg)
    run_dir = Path(cfg.runs_dir) / recipe.name
    run_dir.mkdir(parents=True, exist_ok=True)
    recipe_path = atomic_write_text(run_dir / "deploy.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False,
                                                                            allow_unicode=True))
    out(f"smoledge deploy: recipe {recipe_path} (rebuild with `smoledge build {recipe_path}`)")
    outcomes = build(recipe, runs_root=cfg.runs_dir, force=cfg.force, out=out)
    print(summary_table(outcomes))
    from smoledge.layout import RunFiles

    files = RunFiles(run_dir)
    print(f"\nreport:  {files.evaluate.html}\nbundle:  {files.package.dir}  ({files.package.archive.name} beside it)")
    for line in commands(recipe, files.package.dir):
        print(f"  {line}")
    return recipe, outcomes
