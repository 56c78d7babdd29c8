"""Device profiles (devices/*.yaml), validated like recipes. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from smoledge.config import ConfigError, Section


@dataclass
class DeviceProfile(Section):
    name: str = ""
    """Profile name (the file stem by convention)."""
    description: str = ""
    """Human-readable description."""
    arch: Literal["x86_64", "aarch64", "arm64"] = "x86_64"
    """CPU architecture."""
    isa: list[str] = field(default_factory=list)
    """ISA features the backend can use, e.g. avx2, avx512_vnni, neon, dotprod."""
    cores: int = 1
    """Physical cores available to inference."""
    ram_gb: float = 1.0
    """Total RAM in GB."""
    memory_bandwidth_gbs: float = 0.0
    """Theoretical (or measured) memory bandwidth in GB/s; 0 if unknown."""
    accelerators: list[str] = field(default_factory=list)
    """Accelerators present (e.g. cuda, metal); informational."""
    backend: Literal["llama.cpp", "onnxruntime"] = "llama.cpp"
    """Preferred inference backend."""
    threads: int = 1
    """Threads the backend should use."""
    max_context: int = 2048
    """Longest context to run on this device."""
    model_ram_budget_gb: float = 0.5
    """RAM the model (weights + KV cache) may use."""

    def __post_init__(self) -> None:
        if not self.name:
            self.fail("name", "a device profile needs a name")
        for key in ("cores", "threads", "max_context"):
            if getattr(self, key) <= 0:
                self.fail(key, f"must be > 0, got {getattr(self, key)}")
        if self.ram_gb <= 0 or self.model_ram_budget_gb <= 0:
            self.fail("model_ram_budget_gb", "ram_gb and model_ram_budget_gb must be > 0")
        if self.model_ram_budget_gb > self.ram_gb:
            self.fail("model_ram_budget_gb", f"{self.model_ram_budget_gb} exceeds ram_gb {self.ram_gb}")


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
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a device profile must be a mapping")
    return DeviceProfile.from_dict(data)  # type: ignore[return-value]
