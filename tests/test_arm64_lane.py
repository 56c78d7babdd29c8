"""The arm64 lane's parts that run without an arm64 root: where the root comes from, what llama.cpp is compiled
for, the recipe the check builds, and the fingerprint comparison on real llama.cpp runs. The lane itself
(`make arm64-check`) needs root privileges, qemu-user and, the first time, an hour of emulated compiling:
it is not part of this suite (smoledge/arm64/check.py says why)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from smoledge.arm64 import fingerprint
from smoledge.arm64.check import CheckConfig, check_recipe, passes
from smoledge.arm64.install import march
from smoledge.arm64.root import DEFAULT_MIRROR, apt_mirror, require_host
from smoledge.bench.config import load_profile
from smoledge.errors import SmoledgeError


def test_the_mirror_is_the_one_apt_uses(tmp_path):
    deb822 = tmp_path / "sources.list.d"
    deb822.mkdir()
    (deb822 / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n")
    assert apt_mirror((tmp_path / "sources.list", deb822)) == "http://mirror.example/debian"
    one_line = tmp_path / "sources.list"
    one_line.write_text("# comment\ndeb [arch=amd64 signed-by=/k.gpg] https://other.example/debian bookworm main\n")
    assert apt_mirror((one_line,)) == "https://other.example/debian"
    assert apt_mirror((tmp_path / "missing",)) == DEFAULT_MIRROR


def test_llama_cpp_is_compiled_for_each_profiles_isa():
    assert march(load_profile("rpi5-8gb")) == "armv8.2-a+fp16+dotprod"     # Cortex-A76: SDOT/UDOT kernels
    assert march(load_profile("rpi4-4gb")) == "armv8-a"                    # Cortex-A72: NEON only
    assert march(load_profile("apple-m2-16gb")).startswith("armv8.6-a")    # i8mm needs 8.6


def test_the_check_builds_the_recipe_for_the_device_with_an_arm64_int8_model():
    recipe = check_recipe(CheckConfig(recipe="build/quickstart.yaml", device="rpi4-4gb", name="arm-x"))
    assert recipe.name == "arm-x"
    assert "rpi4-4gb" in recipe.devices and "x86_64-avx2-laptop" in recipe.devices
    assert recipe.export.onnx and "arm64" in recipe.export.onnx_int8 and "avx2" in recipe.export.onnx_int8
    with pytest.raises(SmoledgeError, match="x86_64-avx2-laptop is an x86_64 profile"):
        check_recipe(CheckConfig(device="x86_64-avx2-laptop"))


def test_without_root_privileges_the_check_says_how_to_run_it(monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(SmoledgeError, match="needs root privileges.*sudo make arm64-check"):
        require_host()


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory, tiny_model_dir, tiny_gguf):
    """The same model as an F32 GGUF in one export directory and as Q8_0 under the same name in another:
    a stand-in for one artifact computed by two machines that disagree a little."""
    from smoledge.export.gguf import write_gguf

    a, b = tmp_path_factory.mktemp("machine-a"), tmp_path_factory.mktemp("machine-b")
    shutil.copyfile(tiny_gguf, a / "model.gguf")
    write_gguf(tiny_model_dir, b / "model.gguf", "q8_0")
    return a, b


def fingerprints(export_dir: Path, tokenizer_dir: Path, out: Path) -> Path:
    return fingerprint.write(export_dir, tokenizer_dir / "tokenizer.json", ["model.gguf"], out)


def fingerprinted_twice(a: Path, b: Path, tokenizer_dir: Path, tmp_path: Path):
    """The comparison of export directory `b`'s fingerprints against `a`'s, and both files."""
    ref = fingerprints(a, tokenizer_dir, tmp_path / "a.npz")
    got = fingerprints(b, tokenizer_dir, tmp_path / "b.npz")
    [row] = fingerprint.compare(ref, got, ["model.gguf"])
    return row, ref, got


def edited(npz: Path, key: str, change, out: Path) -> Path:
    """A copy of the fingerprints in `npz` with the array at `key` changed in place by `change`."""
    arrays = {k: v.copy() for k, v in np.load(npz).items()}
    change(arrays[key])
    np.savez(out, **arrays)
    return out


@pytest.mark.slow
def test_fingerprints_of_the_same_artifact_agree_exactly(two_builds, tiny_tokenizer_dir, tmp_path):
    a, _ = two_builds
    row, first, _ = fingerprinted_twice(a, a, tiny_tokenizer_dir, tmp_path)
    assert row.ids_identical and row.greedy_identical == row.prompts == 6
    assert row.top1_agreement == 1.0 and row.max_abs_logit_diff == 0.0 and not row.first_divergence
    assert passes(row)
    data = np.load(first)
    assert data["model.gguf/en/logits"].shape == (fingerprint.PROMPT_TOKENS, 1024)         # (T, V)
    assert data["model.gguf/en/greedy"].shape == (fingerprint.GREEDY_TOKENS,)


@pytest.mark.slow
def test_a_different_computation_shows_in_the_comparison(two_builds, tiny_tokenizer_dir, tmp_path):
    a, b = two_builds
    row, ref, got = fingerprinted_twice(a, b, tiny_tokenizer_dir, tmp_path)
    assert row.ids_identical
    assert 0 < row.max_abs_logit_diff
    ref_logits, got_logits = np.load(ref)["model.gguf/de/logits"], np.load(got)["model.gguf/de/logits"]
    assert row.max_abs_logit_diff >= float(np.abs(ref_logits - got_logits).max())
    # A planted fork in one prompt's greedy tokens is found at its position.
    forked = edited(ref, "model.gguf/fr/greedy", lambda g: g.__setitem__(5, g[5] + 1), tmp_path / "forked.npz")
    [row] = fingerprint.compare(ref, forked, ["model.gguf"])
    assert row.greedy_identical == 5 and row.first_divergence == {"fr": 5}


@pytest.mark.slow
def test_a_tokenizer_that_differs_fails_the_artifact(two_builds, tiny_tokenizer_dir, tmp_path):
    a, _ = two_builds
    ref = fingerprints(a, tiny_tokenizer_dir, tmp_path / "ref.npz")
    other = edited(ref, "ids/it", lambda ids: ids.__setitem__(0, ids[0] + 1), tmp_path / "other.npz")
    [row] = fingerprint.compare(ref, other, ["model.gguf"])
    assert not row.ids_identical and not passes(row)


@pytest.mark.slow
def test_fingerprints_of_other_prompts_or_artifacts_are_refused_or_fail(two_builds, tiny_tokenizer_dir, tmp_path):
    a, _ = two_builds
    ref = fingerprints(a, tiny_tokenizer_dir, tmp_path / "ref.npz")
    with pytest.raises(SmoledgeError, match=r"has no model-q4_0.gguf/de/greedy.*--artifact"):
        fingerprint.compare(ref, ref, ["model-q4_0.gguf"])
    arrays = {k: v for k, v in np.load(ref).items()}
    arrays["ids/en"] = arrays["ids/en"][:-1]
    arrays["model.gguf/en/logits"] = arrays["model.gguf/en/logits"][:-1]  # a prompt one token shorter
    np.savez(tmp_path / "short.npz", **arrays)
    [row] = fingerprint.compare(ref, tmp_path / "short.npz", ["model.gguf"])
    assert not row.ids_identical and row.max_abs_logit_diff == float("inf") and not passes(row)


def test_an_incomplete_root_is_not_overwritten(tmp_path):
    from smoledge.arm64.root import ArmRoot

    half = tmp_path / "root"
    (half / "etc").mkdir(parents=True)
    (half / "etc" / "kept").write_text("a file of the user's")
    with pytest.raises(SmoledgeError, match="not a complete arm64 root.*remove it"):
        ArmRoot(half)._debootstrap(print)
    assert (half / "etc" / "kept").read_text() == "a file of the user's"


def test_fingerprinting_a_missing_artifact_names_it(tiny_tokenizer_dir, tmp_path):
    with pytest.raises(SmoledgeError, match="has no model-q8_0.gguf"):
        fingerprint.write(tmp_path, tiny_tokenizer_dir / "tokenizer.json", ["model-q8_0.gguf"], tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()
