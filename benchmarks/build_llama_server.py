"""Build llama.cpp's own C++ `llama-server` from the llama.cpp vendored in the installed llama-cpp-python's sdist.

    .venv/bin/python benchmarks/build_llama_server.py            # prints the binary's path (builds once)
    .venv/bin/python benchmarks/build_llama_server.py --jobs 2

The anchor `smoledge serve` is compared against (issue 19; Ollama runs on the same server): the same
llama.cpp commit and the same CPU features as the Python runtime, so a difference in speed is the
serving layer's, not the kernels'. GGML_NATIVE=OFF as in the Makefile's CMAKE_ARGS: the runtime is
built for portable x86-64/AVX2, and a -march=native build dies with SIGILL on VMs whose CPU advertises
AMX it cannot run. No curl (no model downloads) and no prebuilt web UI (nothing fetched at build time).

Compiling takes 10-15 minutes on 2 cores; the binary is cached in
~/.cache/smoledge/llama-server-<llama-cpp-python version>/bin/llama-server and reused after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from smoledge.pypi_assets import cache_root, llama_cpp_full_source  # noqa: E402

CMAKE_FLAGS = ("-DGGML_NATIVE=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_USE_PREBUILT_UI=OFF",
               "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_TESTS=OFF",
               "-DLLAMA_BUILD_EXAMPLES=OFF")


def build_dir(version: str | None = None) -> Path:
    return cache_root() / f"llama-server-{version or metadata.version('llama_cpp_python')}"


def llama_server_binary(jobs: int = 2, version: str | None = None) -> Path:
    """The built llama-server; builds it first if the cache has none."""
    out = build_dir(version)
    binary = out / "bin" / "llama-server"
    if binary.is_file():
        return binary
    src = llama_cpp_full_source(version)
    work = out.with_name(out.name + ".building")
    shutil.rmtree(work, ignore_errors=True)
    # Static (BUILD_SHARED_LIBS=OFF): the binary does not depend on the build tree, so only it is kept.
    subprocess.run(["cmake", "-S", str(src), "-B", str(work), *CMAKE_FLAGS], check=True)
    subprocess.run(["cmake", "--build", str(work), "--target", "llama-server", "-j", str(jobs)], check=True)
    (out / "bin").mkdir(parents=True, exist_ok=True)
    tmp = binary.with_suffix(".tmp")
    shutil.copy2(work / "bin" / "llama-server", tmp)
    os.replace(tmp, binary)  # atomic: a half-copied binary never looks built
    shutil.rmtree(work, ignore_errors=True)
    return binary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=2, help="parallel compile jobs")
    args = p.parse_args(argv)
    print(llama_server_binary(args.jobs))


if __name__ == "__main__":
    main()
