"""Write a device profile for the machine this runs on.

    smoledge devices detect                                  # print the profile (YAML) to stdout
    smoledge devices detect --name my-board --out devices/my-board.yaml

    from smoledge.bench.detect import detect, render
    found = detect(seconds=1.5)
    print(render(found))

What comes from where:
- read from the OS: arch (platform.machine), ISA flags (/proc/cpuinfo 'flags' on x86, 'Features' on ARM;
  `sysctl` on macOS), physical and logical cores (/proc/cpuinfo, sysfs topology, the affinity mask), RAM
  (/proc/meminfo, a cgroup memory limit if one is set);
- measured: memory bandwidth, with a short STREAM-like copy and triad over numpy arrays much larger than
  the last-level cache, on ONE thread (numpy's copy is single-threaded), so it understates the peak of a
  machine whose channels only fill with several cores reading at once;
- derived by the rules below: backend, threads, max_context, model_ram_budget_gb.

Torch-free (numpy and the standard library): it runs on the board it profiles.
"""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from smoledge.bench.config import ARM_ARCHES, ARM_ISA, X86_ISA, DeviceProfile
from smoledge.errors import SmoledgeError
from smoledge.host import emulation

# platform.machine() spellings -> the profile's arch.
ARCH_ALIASES = {"x86_64": "x86_64", "amd64": "x86_64", "x64": "x86_64", "aarch64": "aarch64", "arm64": "arm64",
                "armv8l": "aarch64", "aarch64_be": "aarch64"}
SYSFS_CPU = Path("/sys/devices/system/cpu")
# Linux AArch64 /proc/cpuinfo 'Features' names -> profile names ('neon' is how 32-bit kernels spell it).
LINUX_ARM_FEATURES = {"asimd": "neon", "neon": "neon", "asimdhp": "fp16", "asimddp": "dotprod", "i8mm": "i8mm",
                      "bf16": "bf16", "sve": "sve", "sve2": "sve2", "sme": "sme"}
# macOS sysctl keys (value 1 = present) -> profile names. Apple silicon, then Intel Macs (hw.optional.*).
MACOS_FEATURES = {"hw.optional.neon": "neon", "hw.optional.arm.FEAT_FP16": "fp16",
                  "hw.optional.arm.FEAT_DotProd": "dotprod", "hw.optional.arm.FEAT_I8MM": "i8mm",
                  "hw.optional.arm.FEAT_BF16": "bf16", "hw.optional.arm.FEAT_SME": "sme",
                  "hw.optional.sse4_1": "sse4_1", "hw.optional.sse4_2": "sse4_2", "hw.optional.avx1_0": "avx",
                  "hw.optional.avx2_0": "avx2", "hw.optional.fma": "fma", "hw.optional.f16c": "f16c",
                  "hw.optional.bmi2": "bmi2", "hw.optional.avx512f": "avx512f", "hw.optional.avx512bw": "avx512bw",
                  "hw.optional.avx512dq": "avx512dq", "hw.optional.avx512vl": "avx512vl",
                  "hw.optional.avx512vnni": "avx512_vnni"}

# Bandwidth measurement. STREAM's rule: each array at least 4x the last-level cache, so no rep is served
# from cache; 256 MiB when the cache size is unknown. Capped so the three triad arrays stay small next to RAM.
LLC_MULTIPLE = 4
MIN_ARRAY_BYTES = 256 << 20
MAX_RAM_FRACTION = 1 / 16
MIN_REPS = 3
TRIAD_SCALAR = 3.0
# The triad runs in blocks: numpy needs two ufunc passes (c*s, then +b), and in L2-sized blocks the second pass
# re-reads a block still in cache, so memory sees what STREAM's fused loop moves (read b and c, write a).
TRIAD_BLOCK = 32 * 1024  # float64 elements: 256 KiB per array, 768 KiB for the three

# Derived fields. Half the RAM for weights + KV cache: the OS, the server and the page cache that holds the
# mmapped GGUF need the rest. Context tiers: the KV cache and prefill time grow linearly with context.
BUDGET_FRACTION = 0.5
CONTEXT_TIERS = ((16e9, 8192), (6e9, 4096), (0.0, 2048))  # (RAM at least, max_context)


@dataclass
class Bandwidth:
    copy_gbs: float
    """Best rate of a[:] = b, counting 2 x array bytes (read b, write a) as STREAM does."""
    triad_gbs: float
    """Best rate of a = b + s*c, counting 3 x array bytes."""
    array_bytes: int
    """Bytes per array."""
    llc_bytes: int | None
    """Last-level cache the array size was chosen against (None: unknown)."""
    reps: tuple[int, int]
    """Timed repetitions of copy and triad."""

    @property
    def best_gbs(self) -> float:
        return max(self.copy_gbs, self.triad_gbs)


@dataclass
class Detected:
    profile: DeviceProfile
    bandwidth: Bandwidth
    cpu_model: str
    sources: dict[str, str] = field(default_factory=dict)
    """Per profile field: where its value came from (written as a comment above it)."""


# ---------------------------------------------------------------- parsing (pure functions, tested on captured text)

def normalise_arch(machine: str) -> str:
    arch = ARCH_ALIASES.get(machine.lower())
    if arch is None:
        raise SmoledgeError(f"unsupported CPU architecture {machine!r}: smoledge profiles x86_64 and 64-bit ARM "
                            f"(aarch64/arm64). On a 32-bit ARM OS (armv7l) install the 64-bit OS image")
    return arch


def parse_cpuinfo(text: str) -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per block (processor entries; ARM kernels add a trailing board block)."""
    blocks, cur = [], {}
    for line in text.splitlines():
        if not line.strip():
            if cur:
                blocks.append(cur)
            cur = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            cur[key.strip()] = value.strip()
    if cur:
        blocks.append(cur)
    return blocks


def isa_from_cpuinfo(blocks: list[dict[str, str]], arch: str) -> tuple[list[str], int]:
    """The profile ISA names the first processor reports, and how many flags it reported in all."""
    procs = [b for b in blocks if "processor" in b]
    if not procs:
        return [], 0
    raw = (procs[0].get("flags") or procs[0].get("Features") or "").split()
    if arch in ARM_ARCHES:
        found = {LINUX_ARM_FEATURES[f] for f in raw if f in LINUX_ARM_FEATURES}
        return [f for f in ARM_ISA if f in found], len(raw)
    return [f for f in X86_ISA if f in raw], len(raw)


def physical_cores(blocks: list[dict[str, str]], allowed: set[int], sysfs: Path = SYSFS_CPU) -> int:
    """Distinct (package, core) pairs among the allowed logical CPUs; x86 cpuinfo lists them, ARM does not
    (each ARM CPU is then grouped with its SMT siblings from sysfs; without sysfs, one core per CPU)."""
    pairs = {(b.get("physical id", "0"), b["core id"]) for b in blocks
             if "core id" in b and int(b.get("processor", -1)) in allowed}
    if pairs:
        return len(pairs)
    sibling_sets = set()
    for cpu in allowed:
        p = sysfs / f"cpu{cpu}" / "topology" / "thread_siblings_list"
        sibling_sets.add(p.read_text().strip() if p.exists() else str(cpu))
    return len(sibling_sets)


def fastest_cpus(allowed: set[int], sysfs: Path = SYSFS_CPU) -> set[int]:
    """The allowed logical CPUs of the fastest kind: ARM big.LITTLE kernels report a per-CPU capacity; on a
    machine whose cores are all alike (or that reports none), all of them."""
    caps = {}
    for cpu in allowed:
        p = sysfs / f"cpu{cpu}" / "cpu_capacity"
        if p.exists():
            caps[cpu] = int(p.read_text())
    if not caps:
        return set(allowed)
    return {cpu for cpu, c in caps.items() if c == max(caps.values())}


def meminfo_bytes(text: str, key: str = "MemTotal") -> int:
    m = re.search(rf"^{key}:\s+(\d+)\s*kB", text, re.M)
    if not m:
        raise SmoledgeError(f"/proc/meminfo has no {key} line")
    return int(m.group(1)) * 1024


def parse_sysctl(text: str) -> dict[str, str]:
    """`sysctl -a` output ("key: value" lines) as a dict."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def isa_from_sysctl(values: dict[str, str], arch: str) -> list[str]:
    found = {name for key, name in MACOS_FEATURES.items() if values.get(key) == "1"}
    if arch in ARM_ARCHES:
        found.add("neon")  # every Apple silicon core has NEON (AArch64 requires it)
        return [f for f in ARM_ISA if f in found]
    return [f for f in X86_ISA if f in found]


# ---------------------------------------------------------------- what this machine reports

def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _cgroup_memory_limit() -> int | None:
    """The memory limit of this process's cgroup (v2 memory.max or v1 memory.limit_in_bytes), if any."""
    for line in _read("/proc/self/cgroup").splitlines():
        _, controllers, rel = line.split(":", 2)
        if controllers == "":
            text = _read(f"/sys/fs/cgroup{rel}/memory.max").strip()
        elif "memory" in controllers.split(","):
            text = _read(f"/sys/fs/cgroup/memory{rel}/memory.limit_in_bytes").strip()
        else:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # "max" or a huge number: no limit
            return int(text)
    return None


def _linux_llc_bytes() -> int | None:
    sizes = []
    for index in (SYSFS_CPU / "cpu0" / "cache").glob("index*"):
        size = _read(str(index / "size")).strip()
        m = re.fullmatch(r"(\d+)([KMG]?)", size)
        if m and _read(str(index / "type")).strip() != "Instruction":
            level = int(_read(str(index / "level")) or 0)
            sizes.append((level, int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]))
    return max(sizes)[1] if sizes else None


@dataclass
class _Machine:
    arch: str
    isa: list[str]
    cores: int
    logical: int
    big: int
    ram_bytes: int
    usable_ram_bytes: int
    llc_bytes: int | None
    cpu_model: str
    accelerators: list[str]
    sources: dict[str, str]


def _linux(arch: str) -> _Machine:
    blocks = parse_cpuinfo(_read("/proc/cpuinfo"))
    isa, seen = isa_from_cpuinfo(blocks, arch)
    allowed = set(os.sched_getaffinity(0))
    phys = physical_cores(blocks, allowed)
    ram = meminfo_bytes(_read("/proc/meminfo"))
    limit = _cgroup_memory_limit()
    procs = [b for b in blocks if "processor" in b]
    board = _read("/sys/firmware/devicetree/base/model").strip("\0\n ")
    model = (procs[0].get("model name") if procs else None) or board or platform.processor() or arch
    accel = []
    if Path("/proc/driver/nvidia/version").exists() or Path("/etc/nv_tegra_release").exists():
        accel.append("cuda")
    flag_key = "Features" if arch in ARM_ARCHES else "flags"
    sources = {
        "isa": f"/proc/cpuinfo '{flag_key}' ({seen} flags), keeping those inference kernels use",
        "cores": "/proc/cpuinfo (physical id, core id) pairs, else sysfs thread siblings, within the affinity mask",
        "logical_cores": "os.sched_getaffinity: the logical CPUs this process may run on",
        "ram_gb": "/proc/meminfo MemTotal" + (f"; this cgroup is limited to {limit / 1e9:.2f} GB" if limit else ""),
        "accelerators": "an NVIDIA driver (/proc/driver/nvidia or /etc/nv_tegra_release)" if accel else "none found",
    }
    big = physical_cores(blocks, fastest_cpus(allowed))
    return _Machine(arch, isa, phys, len(allowed), big, ram,
                    min(ram, limit) if limit else ram, _linux_llc_bytes(), model, accel, sources)


def _macos(arch: str) -> _Machine:
    try:
        text = subprocess.run(["sysctl", "-a"], capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise SmoledgeError(f"could not run `sysctl -a` to read this Mac's CPU ({exc}); write a profile by hand "
                            f"from devices/apple-m2-16gb.yaml") from exc
    v = parse_sysctl(text)
    phys, logical = int(v.get("hw.physicalcpu", 1)), int(v.get("hw.logicalcpu", 1))
    big = int(v.get("hw.perflevel0.physicalcpu", phys))
    llc = v.get("hw.l3cachesize") or v.get("hw.perflevel0.l2cachesize") or v.get("hw.l2cachesize")
    ram = int(v.get("hw.memsize", 0))
    isa = isa_from_sysctl(v, arch)
    sources = {
        "isa": "sysctl hw.optional.* feature keys",
        "cores": "sysctl hw.physicalcpu",
        "logical_cores": "sysctl hw.logicalcpu",
        "ram_gb": "sysctl hw.memsize",
        "accelerators": "Metal: every Apple-silicon Mac has it" if arch in ARM_ARCHES else "none assumed",
    }
    return _Machine(arch, isa, phys, logical, big, ram, ram,
                    int(llc) if llc and llc.isdigit() and int(llc) > 0 else None,
                    v.get("machdep.cpu.brand_string", arch), ["metal"] if arch in ARM_ARCHES else [], sources)


def _machine() -> _Machine:
    arch = normalise_arch(platform.machine())
    if sys.platform.startswith("linux"):
        return _linux(arch)
    if sys.platform == "darwin":
        return _macos(arch)
    raise SmoledgeError(f"`smoledge devices detect` reads Linux /proc or macOS sysctl; on {sys.platform} copy the "
                        f"closest profile in devices/ and edit it")


# ---------------------------------------------------------------- measured: memory bandwidth

def array_bytes_for(llc_bytes: int | None, ram_bytes: int) -> int:
    """Bytes per array: LLC_MULTIPLE x the last-level cache (at least MIN_ARRAY_BYTES), at most RAM/16."""
    want = max(LLC_MULTIPLE * (llc_bytes or 0), MIN_ARRAY_BYTES)
    return int(min(want, ram_bytes * MAX_RAM_FRACTION)) // 4096 * 4096


def measure_bandwidth(seconds: float, array_bytes: int, llc_bytes: int | None = None) -> Bandwidth:
    """Best-of-N STREAM copy and triad on one thread, about `seconds` in all (at least MIN_REPS of each)."""
    import numpy as np

    n = array_bytes // 8
    a = np.empty(n)
    b = np.full(n, 1.0)  # writing every element now puts the page faults outside the timed loop
    c = np.full(n, 2.0)

    def copy() -> None:
        np.copyto(a, b)  # a[:] = b

    def triad() -> None:
        for i in range(0, n, TRIAD_BLOCK):
            blk = slice(i, i + TRIAD_BLOCK)
            np.multiply(c[blk], TRIAD_SCALAR, out=a[blk])  # (TRIAD_BLOCK,)
            np.add(a[blk], b[blk], out=a[blk])             # second pass hits the block in cache

    def best(kernel, bytes_moved: int, budget_s: float) -> tuple[float, int]:
        kernel()  # untimed warm-up (STREAM also discards its first iteration)
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < MIN_REPS or time.perf_counter() - start < budget_s:
            t0 = time.perf_counter()
            kernel()
            times.append(time.perf_counter() - t0)
        return bytes_moved / min(times) / 1e9, len(times)

    copy_gbs, copy_reps = best(copy, 2 * n * 8, seconds / 2)
    triad_gbs, triad_reps = best(triad, 3 * n * 8, seconds / 2)
    if not np.allclose(a[:: max(1, n // 1024)], 1.0 + TRIAD_SCALAR * 2.0):
        raise SmoledgeError("the bandwidth triad computed wrong values; the numpy install is broken")
    return Bandwidth(round(copy_gbs, 2), round(triad_gbs, 2), n * 8, llc_bytes, (copy_reps, triad_reps))


# ---------------------------------------------------------------- derived fields and the profile

def derive_budget(usable_ram_bytes: int) -> tuple[float, int]:
    """model_ram_budget_gb (BUDGET_FRACTION of usable RAM, rounded down to 0.1 GB) and max_context (by RAM tier)."""
    budget = max(0.1, int(usable_ram_bytes * BUDGET_FRACTION / 1e8) / 10)
    context = next(ctx for floor, ctx in CONTEXT_TIERS if usable_ram_bytes >= floor)
    return budget, context


def default_name() -> str:
    host = re.sub(r"[^A-Za-z0-9._-]+", "-", socket.gethostname()).strip("-._")
    return host or "this-machine"


def detect(name: str | None = None, seconds: float = 1.5, array_bytes: int | None = None) -> Detected:
    """Profile this machine: read arch/ISA/cores/RAM, measure bandwidth for about `seconds`, derive the rest."""
    if seconds <= 0:
        raise SmoledgeError(f"--seconds must be > 0, got {seconds}")
    why = emulation()
    if why is not None:
        raise SmoledgeError(
            f"this is not the board it claims to be: {why}. A profile written here would give the host's "
            f"memory bandwidth and an emulated CPU's features as a board's; run `smoledge devices detect` on the "
            f"board itself, or use a shipped profile (e.g. --device rpi5-8gb)")
    m = _machine()
    size = array_bytes or array_bytes_for(m.llc_bytes, m.ram_bytes)
    bw = measure_bandwidth(seconds, size, m.llc_bytes)
    budget, context = derive_budget(m.usable_ram_bytes)
    ram_gb = round(m.ram_bytes / 1e9, 2)
    profile = DeviceProfile(
        name=name or default_name(),
        description=f"Detected on {socket.gethostname()}: {m.cpu_model}, {m.cores} cores, {ram_gb} GB",
        arch=m.arch,  # type: ignore[arg-type]
        isa=m.isa,
        cores=m.cores,
        logical_cores=m.logical,
        ram_gb=ram_gb,
        memory_bandwidth_gbs=bw.best_gbs,
        memory_bandwidth_kind="measured",
        accelerators=m.accelerators,
        backend="llama.cpp",
        threads=max(1, m.big),
        max_context=context,
        model_ram_budget_gb=min(budget, ram_gb),
    )
    llc = f"{m.llc_bytes / 2**20:.0f} MiB last-level cache" if m.llc_bytes else "last-level cache unknown"
    sources = dict(m.sources)
    sources.update({
        "arch": f"platform.machine() = {platform.machine()!r}, normalised",
        "memory_bandwidth_gbs": (
            f"MEASURED, best of {bw.reps[0]} copies (a[:] = b: {bw.copy_gbs} GB/s) and {bw.reps[1]} triads "
            f"(a = b + {TRIAD_SCALAR}*c: {bw.triad_gbs} GB/s) over {bw.array_bytes / 2**20:.0f} MiB float64 arrays "
            f"({llc}); bytes counted as STREAM does (copy 2, triad 3 arrays per element, no write-allocate "
            f"traffic); the higher of the two is recorded. ONE thread "
            f"(numpy's copy is single-threaded): this understates the peak of a machine whose memory channels need "
            f"several cores to fill"),
        "backend": "derived: llama.cpp by default (GGUF Q4/Q8 read the fewest bytes per decoded token)",
        "threads": ("derived: the physical cores of the fastest kind (sysfs cpu_capacity)" if m.big != m.cores
                    else "derived: one per physical core"),
        "max_context": "derived: " + ", ".join(f"{c} tokens from {f / 1e9:.0f} GB" for f, c in CONTEXT_TIERS[:-1])
                       + f" of usable RAM, else {CONTEXT_TIERS[-1][1]}",
        "model_ram_budget_gb": (f"derived: {BUDGET_FRACTION:.0%} of usable RAM "
                                f"({m.usable_ram_bytes / 1e9:.2f} GB), rounded down to 0.1 GB"),
    })
    return Detected(profile, bw, m.cpu_model, sources)


def render(found: Detected) -> str:
    """The profile as YAML, each field under a comment saying whether it was read, measured or derived."""
    import yaml

    p = found.profile
    lines = [
        f"# Written by `smoledge devices detect` on {time.strftime('%Y-%m-%d %H:%M:%S %Z')}.",
        "# Read from the OS: arch, isa, cores, logical_cores, ram_gb, accelerators.",
        "# MEASURED: memory_bandwidth_gbs (one thread; see its comment).",
        "# Derived by rules in smoledge/bench/detect.py: backend, threads, max_context, model_ram_budget_gb.",
    ]
    for key, value in p.to_dict().items():
        if key in found.sources:
            lines += textwrap.wrap(found.sources[key], width=110, initial_indent="# ", subsequent_indent="# ")
        if isinstance(value, list):  # one line: isa: [avx, avx2]
            lines.append(f"{key}: " + yaml.safe_dump(value, default_flow_style=True, width=10_000).strip())
        else:
            lines.append(yaml.safe_dump({key: value}, default_flow_style=False, width=10_000).strip())
    text = "\n".join(lines) + "\n"
    again = DeviceProfile.from_dict(yaml.safe_load(text))
    if again != p:  # the file must load back to the same profile
        raise SmoledgeError(f"internal error: the rendered profile does not load back: {again} != {p}")
    return text


def refuse_overwrite(out: Path, force: bool) -> None:
    """An existing profile (maybe hand-edited) is kept unless `force`; checked before measuring, and again on write."""
    if out.exists() and not force:
        raise SmoledgeError(f"{out} exists; pass --force to replace it, or choose another --out")


def write(found: Detected, out: Path, force: bool = False) -> Path:
    """Write the rendered profile atomically."""
    from smoledge.io import atomic_write_text

    refuse_overwrite(out, force)
    return atomic_write_text(out, render(found))
