"""A recipe: one YAML file describing one build, loaded into typed sections.

    from smoledge.recipe import load_recipe
    recipe = load_recipe("build/quickstart.yaml", overrides=["pretrain.max_steps=50"])
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smoledge.bench.config import DeviceProfile, load_profile
from smoledge.config import ConfigError, Section, apply_override
from smoledge.data.config import CurateConfig, DataConfig
from smoledge.tokenizer.config import TokenizerConfig
from smoledge.evaluate.config import EvaluateConfig
from smoledge.export.config import ExportConfig
from smoledge.model.config import ModelConfig, SourceConfig
from smoledge.package.config import PackageConfig
from smoledge.sweep.config import SweepSpec
from smoledge.train.config import DistillConfig, PretrainConfig


def _teacher() -> ModelConfig:
    return ModelConfig(preset="small")


@dataclass
class Recipe(Section):
    name: str = "quickstart"
    """Run name: everything goes under runs/<name>/."""
    description: str = ""
    """Free text."""
    model: SourceConfig = field(default_factory=SourceConfig)
    """An existing model to deploy (hub id, HF directory or .gguf) instead of training one from data."""
    seed: int = 1234
    """Global seed (data generation, splits, init)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Raw sources, languages and mixture."""
    curate: CurateConfig = field(default_factory=CurateConfig)
    """Curation filters and dedup."""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    """Byte-level BPE training."""
    teacher: ModelConfig = field(default_factory=_teacher)
    """Shape of the pretrained teacher."""
    student: ModelConfig = field(default_factory=ModelConfig)
    """Shape of the distilled student (the shipped model)."""
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    """Teacher pretraining."""
    distill: DistillConfig = field(default_factory=DistillConfig)
    """Student distillation."""
    export: ExportConfig = field(default_factory=ExportConfig)
    """Artifacts to export."""
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    """Held-out evaluation."""
    devices: list[str] = field(default_factory=lambda: ["x86_64-avx2-laptop"])
    """Target device profiles (names in devices/ or paths)."""
    package: PackageConfig = field(default_factory=PackageConfig)
    """Deployable bundle."""
    sweep: SweepSpec = field(default_factory=SweepSpec)
    """Search space of `smoledge sweep` (no stage reads it: editing it re-runs nothing)."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            self.fail("name", f"{self.name!r} must be a plain directory name (letters, digits, _ . -)")
        if self.model.is_gguf:
            # The GGUF is the packaged model; export writes no others, and there is no PyTorch reference.
            if self.evaluate.gates.max_passkey_drop is not None:
                self.fail("evaluate.gates.max_passkey_drop", "compares with the PyTorch model, which a .gguf "
                          "model.source does not have; use gates.min_passkey_accuracy instead")
        elif self.package.gguf_type not in set(self.export.gguf_types) | {"f32"}:
            self.fail(
                "package.gguf_type",
                f"'{self.package.gguf_type}' is not exported; add it to export.gguf_types "
                f"{self.export.gguf_types}",
            )
        if self.model.source and (self.export.imatrix or self.export.onnx_int8_static):
            self.fail("export.imatrix" if self.export.imatrix else "export.onnx_int8_static",
                      "calibrates on the curated training split, and a model.source build curates no data; "
                      "set it false (or train from data)")
        for dev in self.devices:
            load_profile(dev)
        if self.student.rope_scaling and self.export.yarn_factor != 1.0 and not self.model.source:
            self.fail("export.yarn_factor", f"would replace the student's rope_scaling {self.student.rope_scaling} "
                                            "with YaRN's; set export.yarn_factor: 1.0")

    def device_profiles(self) -> list[DeviceProfile]:
        return [load_profile(d) for d in self.devices]

    def fingerprint(self, *sections: str) -> str:
        """sha256 of the named sections' resolved values (what a stage depends on)."""
        payload = {s: _jsonable(getattr(self, s)) for s in sections}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _jsonable(v: Any) -> Any:
    return v.to_dict() if isinstance(v, Section) else v


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe, apply `--set` overrides, validate everything up front."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"recipe {path} does not exist (recipes live in build/, e.g. build/quickstart.yaml)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of sections, got {type(raw).__name__}")
    for assignment in overrides or []:
        apply_override(raw, assignment)
    try:
        return Recipe.from_dict(raw)  # type: ignore[return-value]
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
