"""`pip install 'smoledge[serve]'` inside the arm64 root, from a wheelhouse that makes it work offline. Torch-free.

    from smoledge.arm64.install import install_serve
    python = install_serve(root, repo=Path("."), profile=load_profile("rpi5-8gb"))   # /opt/smoledge/venv/bin/python

What a board gets, and where each part comes from:
  - smoledge itself: a wheel built on the host from this checkout (hatchling, from the wheelhouse);
  - llama-cpp-python: PyPI has no aarch64 wheel (only its sdist), so it is compiled inside the root once,
    for the device profile's ISA (rpi5-8gb: -march=armv8.2-a+dotprod+fp16, the Cortex-A76's NEON
    dot-product kernels; GGML_NATIVE=OFF, since "native" under qemu would mean qemu's CPU), and kept as a
    wheel: 36 minutes of emulated compiling on 2 cores the first time, none after;
  - everything else (onnxruntime, tokenizers, numpy, fastapi, ...): PyPI's aarch64 wheels, downloaded by
    the root's own pip the first time so their platform tags are the board's, then kept.
The wheelhouse lives outside the root (~/.cache/smoledge/arm64/wheels), so a rebuilt root reinstalls
without the network or a new compile. The venv is /opt/smoledge/venv in the root; each run reinstalls
only smoledge's wheel.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Callable

from smoledge.arm64.root import BUILD_PACKAGES, ArmRoot, call
from smoledge.bench.config import DeviceProfile
from smoledge.errors import SmoledgeError
from smoledge.pypi_assets import cache_root

WHEELS_IN_ROOT = "/opt/smoledge/wheels"
VENV = "/opt/smoledge/venv"
PYTHON = f"{VENV}/bin/python"
# What the check itself runs in the root besides smoledge[serve]: the official client it talks to serve with.
CHECK_EXTRAS = ("openai>=1.40",)
# Build backend of smoledge's wheel (pyproject's build-system), kept so the wheel builds offline.
BUILD_BACKEND = "hatchling>=1.25"
# ARM ISA flags of a device profile -> the -march extension that lets llama.cpp use them.
MARCH_EXTENSIONS = {"dotprod": "+dotprod", "fp16": "+fp16", "i8mm": "+i8mm", "sve": "+sve", "sve2": "+sve2",
                    "bf16": "+bf16"}
# The lowest architecture version each extension needs.
MARCH_BASE = {"+dotprod": "armv8.2-a", "+fp16": "armv8.2-a", "+sve": "armv8.2-a", "+i8mm": "armv8.6-a",
              "+bf16": "armv8.6-a", "+sve2": "armv9-a"}
ARCH_ORDER = ("armv8-a", "armv8.2-a", "armv8.6-a", "armv9-a")


def wheelhouse() -> Path:
    return cache_root() / "arm64" / "wheels"


def march(profile: DeviceProfile) -> str:
    """The -march that gives llama.cpp the profile's ARM features (armv8-a: NEON only)."""
    ext = [MARCH_EXTENSIONS[f] for f in profile.isa if f in MARCH_EXTENSIONS]
    base = max([MARCH_BASE[e] for e in ext] or ["armv8-a"], key=ARCH_ORDER.index)
    return base + "".join(ext)


def llama_cpp_version() -> str:
    """The llama-cpp-python version smoledge[serve] pins (the host's installed one is the same pin)."""
    return metadata.version("llama_cpp_python")


def build_smoledge_wheel(repo: Path, out: Path) -> Path:
    """smoledge's wheel from the checkout at `repo`, built with hatchling from the wheelhouse (offline)."""
    backend = wheelhouse() / "build-backend"
    if not any(backend.glob("hatchling-*.whl")):
        call([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "-d", str(backend),
               BUILD_BACKEND], "download smoledge's build backend (hatchling) into the wheelhouse (once, from PyPI)")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("smoledge-*.whl"):
        old.unlink()
    call([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index", "--find-links", str(backend),
           "-w", str(out), str(repo)], f"build smoledge's wheel from {repo}")
    return next(out.glob("smoledge-*.whl"))


def llama_cpp_wheel(root: ArmRoot, profile: DeviceProfile, out: Callable[[str], None] = print) -> str:
    """The aarch64 llama-cpp-python wheel for the profile's ISA (path inside the root), compiled once."""
    version, flags = llama_cpp_version(), march(profile)
    rel = f"llama-cpp-{version}-{flags.replace('+', '_')}"
    found = sorted((wheelhouse() / rel).glob("llama_cpp_python-*.whl"))
    if found:
        return f"{WHEELS_IN_ROOT}/{rel}/{found[-1].name}"
    if not root.inside("/usr/bin/cmake").exists():
        out(f"arm64 root: apt-get install {' '.join(BUILD_PACKAGES)} (once, to compile llama-cpp-python)")
        needs = "the first time this needs the Debian mirror"
        root.run(["apt-get", "update", "-q"], f"apt-get update ({needs})")
        root.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *BUILD_PACKAGES],
                 f"apt-get install the compilers ({needs})")
    out(f"arm64 root: compiling llama-cpp-python {version} for aarch64 -march={flags} (once; emulated, slow)")
    env = {"CMAKE_ARGS": f"-DGGML_NATIVE=OFF -DGGML_CPU_ARM_ARCH={flags} -DLLAVA_BUILD=OFF",
           "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 1)}
    with root.mounted({wheelhouse(): WHEELS_IN_ROOT}):
        root.run([PYTHON, "-m", "pip", "wheel", "--no-deps", "--no-binary=llama-cpp-python", "-w",
                  f"{WHEELS_IN_ROOT}/{rel}", f"llama-cpp-python=={version}"],
                 f"compile llama-cpp-python (the first time this needs PyPI for its sdist and build tools; the wheel "
                 f"is then kept in {wheelhouse() / rel})", env=env)
    if not any((wheelhouse() / rel).glob("llama_cpp_python-*.whl")):
        raise SmoledgeError(f"compiling llama-cpp-python left no wheel in {wheelhouse() / rel}")
    return llama_cpp_wheel(root, profile, out)


def install_serve(root: ArmRoot, repo: Path, profile: DeviceProfile, out: Callable[[str], None] = print) -> str:
    """smoledge[serve] (and the check's client) in the root's venv; returns the venv's python inside the root."""
    if not root.inside(PYTHON).exists():
        root.run(["python3", "-m", "venv", VENV], "create the venv")
    with root.mounted({wheelhouse(): WHEELS_IN_ROOT}):
        llama = llama_cpp_wheel(root, profile, out)
        own = build_smoledge_wheel(repo, wheelhouse() / "smoledge")
        wheel = f"{WHEELS_IN_ROOT}/smoledge/{own.name}"
        links = ["--find-links", WHEELS_IN_ROOT + "/pypi", "--find-links", str(Path(llama).parent),
                 "--find-links", WHEELS_IN_ROOT + "/smoledge"]
        wanted = [f"{wheel}[serve]", *CHECK_EXTRAS]
        if not _offline_install(root, links, wanted):
            out("arm64 root: downloading aarch64 wheels from PyPI into the wheelhouse (once)")
            root.run([PYTHON, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "-d",
                      WHEELS_IN_ROOT + "/pypi", *links, *wanted],
                     f"download the aarch64 wheels (the first time this needs PyPI; they are then kept in "
                     f"{wheelhouse() / 'pypi'})")
            _offline_install(root, links, wanted, check=True)
        root.run([PYTHON, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--force-reinstall", wheel],
                 "install smoledge's wheel")
    return PYTHON


def _offline_install(root: ArmRoot, links: list[str], wanted: list[str], check: bool = False) -> bool:
    """pip install from the wheelhouse alone; False when a wheel is missing (unless `check`: then raise)."""
    cmd = [PYTHON, "-m", "pip", "install", "--quiet", "--no-index", "--only-binary=:all:", *links, *wanted]
    if check:
        root.run(cmd, "pip install smoledge[serve] from the wheelhouse")
        return True
    with root.mounted():
        proc = subprocess.run(root.command(cmd), capture_output=True, text=True)
    if proc.returncode and not re.search(r"No matching distribution|Could not find a version", proc.stderr):
        raise SmoledgeError(f"pip install in the arm64 root failed: {proc.stderr.strip()[-1500:]}")
    return proc.returncode == 0
