"""Recipes and device profiles: every file loads; bad input fails up front, naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from smoledge.bench.config import DeviceProfile, load_profile
from smoledge.config import ConfigError
from smoledge.recipe import Recipe, load_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "build").glob("*.yaml"))
PROFILES = sorted((REPO / "devices").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.name
    assert recipe.device_profiles()


def test_quickstart_is_the_default_recipe() -> None:
    assert (REPO / "build" / "quickstart.yaml") in RECIPES


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_every_device_profile_loads(path: Path) -> None:
    profile = load_profile(str(path))
    assert profile.name == path.stem
    assert profile.threads <= profile.cores


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_misspelled_key_names_it_and_suggests(tmp_path: Path) -> None:
    path = _write(tmp_path, {"name": "x", "pretrain": {"max_stpes": 10}})
    with pytest.raises(ConfigError) as exc:
        load_recipe(path)
    msg = str(exc.value)
    assert "pretrain.max_stpes" in msg and "max_steps" in msg


def test_unknown_top_level_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'pretrian'.*'pretrain'"):
        load_recipe(_write(tmp_path, {"pretrian": {}}))


def test_wrong_type_names_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pretrain.batch_size: expected an integer, got 'eight'"):
        load_recipe(_write(tmp_path, {"pretrain": {"batch_size": "eight"}}))


def test_bad_choice_lists_valid_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pretrain.optimizer: 'sgd' is not valid; choose one of: adamw, muon"):
        load_recipe(_write(tmp_path, {"pretrain": {"optimizer": "sgd"}}))


def test_impossible_gqa_shape(tmp_path: Path) -> None:
    data = {"student": {"preset": "custom", "num_layers": 2, "hidden_size": 64,
                        "intermediate_size": 128, "num_heads": 4, "num_kv_heads": 3}}
    with pytest.raises(ConfigError, match=r"student.num_kv_heads: num_heads 4 is not divisible by num_kv_heads 3"):
        load_recipe(_write(tmp_path, data))


def test_nested_list_items_are_validated(tmp_path: Path) -> None:
    data = {"data": {"sources": [{"name": "web", "kind": "jsonl"}]}}
    with pytest.raises(ConfigError, match=r"data.sources\[0\].path"):
        load_recipe(_write(tmp_path, data))


def test_package_type_must_be_exported(tmp_path: Path) -> None:
    data = {"export": {"gguf_types": ["f32"]}, "package": {"gguf_type": "q8_0"}}
    with pytest.raises(ConfigError, match=r"package.gguf_type.*not exported"):
        load_recipe(_write(tmp_path, data))


def test_unknown_device_lists_known(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"device profile 'toaster' not found; known profiles: .*x86_64-avx2-laptop"):
        load_recipe(_write(tmp_path, {"devices": ["toaster"]}))


def test_overrides_apply_and_validate() -> None:
    recipe = load_recipe(REPO / "build" / "quickstart.yaml", ["pretrain.max_steps=50", "pretrain.lr=1e-3"])
    assert recipe.pretrain.max_steps == 50 and recipe.pretrain.lr == 1e-3
    with pytest.raises(ConfigError, match=r"pretrain.max_steps: must be > 0"):
        load_recipe(REPO / "build" / "quickstart.yaml", ["pretrain.max_steps=0"])
    with pytest.raises(ConfigError, match=r"unknown key 'pretrain.max_step'"):
        load_recipe(REPO / "build" / "quickstart.yaml", ["pretrain.max_step=5"])
    with pytest.raises(ConfigError, match=r"expected KEY=VALUE"):
        load_recipe(REPO / "build" / "quickstart.yaml", ["pretrain.max_steps"])


def test_round_trip_through_dict() -> None:
    recipe = load_recipe(REPO / "build" / "quickstart.yaml")
    again = Recipe.from_dict(recipe.to_dict())
    assert again == recipe
    assert again.fingerprint("pretrain") == recipe.fingerprint("pretrain")
    assert again.fingerprint("pretrain") != recipe.fingerprint("distill")


def test_bad_device_profile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model_ram_budget_gb: 16.0 exceeds ram_gb 8.0"):
        DeviceProfile.from_dict({"name": "pi", "ram_gb": 8, "model_ram_budget_gb": 16})


def test_cli_fails_fast_on_misspelled_key(tmp_path: Path) -> None:
    path = _write(tmp_path, {"name": "typo", "tokenizr": {"vocab_size": 1000}})
    proc = subprocess.run(
        [sys.executable, "-m", "smoledge.cli", "build", str(path), "--runs-dir", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "unknown key 'tokenizr'" in proc.stderr and "'tokenizer'" in proc.stderr
    assert not (tmp_path / "runs").exists(), "nothing may run before the recipe is valid"


@pytest.mark.parametrize("override,named", [
    ("distill.top_k=0", "distill.top_k: a cache holds the teacher's top-k only"),
    ("distill.hidden_weight=1.0", "distill.hidden_weight: feature distillation needs the teacher"),
    ("distill.divergence=kl", "distill.divergence: 'kl' is not valid; choose one of: forward, reverse, js"),
    ("distill.init=copy", "distill.init: 'copy' is not valid"),
    ("distill.cache_dir=/tmp/x", None),
])
def test_distill_settings_are_checked_with_their_key(override: str, named: str | None) -> None:
    quickstart = REPO / "build" / "quickstart.yaml"
    if named is None:  # valid in cache mode
        assert load_recipe(quickstart, [override]).distill.cache_dir == "/tmp/x"
        with pytest.raises(ConfigError, match="distill.cache_dir: is only read with mode: cache"):
            load_recipe(quickstart, [override, "distill.mode=online"])
        return
    with pytest.raises(ConfigError) as exc:
        load_recipe(quickstart, [override])
    assert named in str(exc.value)
