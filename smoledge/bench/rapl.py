"""CPU package energy from Intel RAPL (Linux powercap), where it is readable. Torch-free.

    from smoledge.bench.rapl import Rapl
    rapl, why = Rapl.open()
    if rapl:
        start = rapl.read(); work(); print(rapl.joules(start, rapl.read()), "J")
    else:
        print("energy not readable:", why)

Each top-level zone /sys/class/powercap/intel-rapl:<N> is one CPU package; its energy_uj counter
counts microjoules since boot and wraps to 0 after max_energy_range_uj. Sub-zones
(intel-rapl:<N>:<M>: cores, uncore, dram) are parts of their package, so only packages are summed.
The counter covers the whole package: every process on it, not just the benchmark. Since Linux 5.10
energy_uj is readable by root only (CVE-2020-8694), and VMs and non-Intel/AMD CPUs have no zones:
both come back as the reason energy is not reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")


@dataclass
class Zone:
    name: str
    energy: Path
    """energy_uj: microjoules since boot, wrapping at max_range_uj."""
    max_range_uj: int


class Rapl:
    def __init__(self, zones: list[Zone]):
        self.zones = zones

    @classmethod
    def open(cls, root: Path = POWERCAP) -> tuple["Rapl | None", str]:
        """(Rapl, "") when every package counter reads, else (None, why energy is not readable)."""
        packages = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
        if not packages:
            return None, f"not readable: no RAPL package zones under {root} (not Intel/AMD, or a VM)"
        zones = []
        for p in packages:
            try:
                int((p / "energy_uj").read_text())
                max_range = int((p / "max_energy_range_uj").read_text())
            except PermissionError:
                return None, f"not readable: {p / 'energy_uj'} is root-only (CVE-2020-8694); run as root"
            except (OSError, ValueError) as exc:
                return None, f"not readable: {p} ({exc})"
            name = (p / "name").read_text().strip() if (p / "name").is_file() else p.name
            zones.append(Zone(name, p / "energy_uj", max_range))
        return cls(zones), ""

    def read(self) -> list[int]:
        """Every package's counter now, in microjoules."""
        return [int(z.energy.read_text()) for z in self.zones]

    def joules(self, start: list[int], end: list[int]) -> float:
        """Energy between two reads, summed over packages. A counter below its start wrapped once
        (a package counter spans hundreds of kJ: minutes at full power, far more than one timed run)."""
        total = 0
        for z, a, b in zip(self.zones, start, end):
            total += b - a if b >= a else b + z.max_range_uj - a
        return total / 1e6
