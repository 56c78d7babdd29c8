"""Device profiles (devices/*.yaml), validated like recipes. Torch-free.

    from smoledge.bench.config import load_profile
    pi = load_profile("rpi5-8gb")          # by name, from devices/
    me = load_profile("my-board.yaml")     # or by path, e.g. written by `smoledge devices detect`
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from smoledge.config import ConfigError, Section

# ISA feature names a profile may list. x86 names are the Linux /proc/cpuinfo 'flags' spellings; ARM names are
# the features llama.cpp / onnxruntime kernels test for (Linux spells them asimd, asimdhp, asimddp: see detect.py).
X86_ISA = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx_vnni", "avx512f", "avx512bw",
           "avx512dq", "avx512vl", "avx512vbmi", "avx512_vnni", "avx512_bf16", "avx512_fp16",
           "amx_tile", "amx_int8", "amx_bf16")
ARM_ISA = ("neon", "fp16", "dotprod", "i8mm", "bf16", "sve", "sve2", "sme")
ARM_ARCHES = ("aarch64", "arm64")  # arm64 is Apple's name for AArch64
ACCELERATORS = ("cuda", "metal", "vulkan", "opencl", "rocm", "ane", "npu")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass
class DeviceProfile(Section):
    name: str = ""
    """Profile name (the file stem by convention): letters, digits, '.', '_' and '-'."""
    description: str = ""
    """Human-readable description."""
    arch: Literal["x86_64", "aarch64", "arm64"] = "x86_64"
    """CPU architecture (arm64 is Apple's name for aarch64)."""
    isa: list[str] = field(default_factory=list)
    """ISA features the backend can use, from X86_ISA (x86_64) or ARM_ISA (aarch64/arm64), e.g. avx2, neon, dotprod."""
    cores: int = 1
    """Physical cores available to inference."""
    logical_cores: int = 0
    """Hardware threads (cores x SMT ways); 0 means the same as cores (no SMT, or not recorded)."""
    ram_gb: float = 1.0
    """Total RAM in GB."""
    memory_bandwidth_gbs: float = 0.0
    """Memory bandwidth in GB/s, the roofline's bound for decode; 0 if unknown."""
    memory_bandwidth_kind: Literal["theoretical", "measured"] = "theoretical"
    """theoretical: bus width x transfer rate from the datasheet; measured: `smoledge devices detect`'s one-thread
    STREAM-like copy, which understates a multi-channel machine's peak."""
    accelerators: list[str] = field(default_factory=list)
    """Accelerators present (from ACCELERATORS: cuda, metal, ...); informational, the CPU backend does not use them."""
    backend: Literal["llama.cpp", "onnxruntime"] = "llama.cpp"
    """Preferred inference backend."""
    threads: int = 1
    """Threads the backend should use (at most cores: SMT siblings share one core's vector units)."""
    max_context: int = 2048
    """Longest context to run on this device."""
    model_ram_budget_gb: float = 0.5
    """RAM the model (weights + KV cache) may use."""

    def __post_init__(self) -> None:
        if not self.name:
            self.fail("name", "a device profile needs a name")
        if not NAME_RE.fullmatch(self.name):
            self.fail("name", f"{self.name!r} is not a file-name-safe profile name; use letters, digits, '.', '_', '-'")
        for key in ("cores", "threads", "max_context"):
            if getattr(self, key) <= 0:
                self.fail(key, f"must be > 0, got {getattr(self, key)}")
        if self.threads > self.cores:
            self.fail("threads", f"{self.threads} exceeds cores {self.cores}; more threads than physical cores "
                                 f"only adds contention in memory-bound decode")
        if self.logical_cores and self.logical_cores < self.cores:
            self.fail("logical_cores", f"{self.logical_cores} is fewer than cores {self.cores}; use 0 if unknown")
        if self.max_context > 1 << 20:
            self.fail("max_context", f"{self.max_context} is over 1M tokens; a device profile sets a practical limit")
        if self.ram_gb <= 0:
            self.fail("ram_gb", f"must be > 0, got {self.ram_gb}")
        if self.model_ram_budget_gb <= 0:
            self.fail("model_ram_budget_gb", f"must be > 0, got {self.model_ram_budget_gb}")
        if self.model_ram_budget_gb > self.ram_gb:
            self.fail("model_ram_budget_gb", f"{self.model_ram_budget_gb} exceeds ram_gb {self.ram_gb}")
        if not 0 <= self.memory_bandwidth_gbs < 10_000:
            self.fail("memory_bandwidth_gbs", f"{self.memory_bandwidth_gbs} GB/s is not a memory bandwidth; "
                                              f"use 0 if unknown")
        self._check_isa()
        for acc in self.accelerators:
            if acc not in ACCELERATORS:
                self.fail("accelerators", f"unknown accelerator {acc!r}; known: {', '.join(ACCELERATORS)}")
        if len(set(self.accelerators)) != len(self.accelerators):
            self.fail("accelerators", f"duplicates in {self.accelerators}")

    def _check_isa(self) -> None:
        own, other = (ARM_ISA, X86_ISA) if self.arch in ARM_ARCHES else (X86_ISA, ARM_ISA)
        for flag in self.isa:
            if flag in other:
                self.fail("isa", f"{flag!r} is not an {self.arch} feature (arch is {self.arch})")
            if flag not in own:
                hint = " (AArch64 Linux calls NEON 'asimd'; write 'neon')" if flag.startswith("asimd") else ""
                self.fail("isa", f"unknown {self.arch} feature {flag!r}{hint}; known: {', '.join(own)}")
        if len(set(self.isa)) != len(self.isa):
            self.fail("isa", f"duplicates in {self.isa}")

    @property
    def is_arm(self) -> bool:
        return self.arch in ARM_ARCHES


def devices_dir() -> Path:
    """The devices/ folder of profiles (checkout or installed wheel)."""
    from smoledge.assets import asset_dir

    return asset_dir("devices")


def load_profile(name_or_path: str) -> DeviceProfile:
    """Load a profile by path, or by name from devices/."""
    import yaml

    path = Path(name_or_path)
    if not path.suffix:
        path = devices_dir() / f"{name_or_path}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in devices_dir().glob("*.yaml"))
        raise ConfigError(f"device profile '{name_or_path}' not found; known profiles: {', '.join(known)}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a device profile must be a mapping")
    try:
        return DeviceProfile.from_dict(data)  # type: ignore[return-value]
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
