"""Device profiles (devices/*.yaml) and `smoledge devices detect` / `list`.

The shipped profiles load and their bandwidth comments compute their numbers; bad profiles fail naming the
key; /proc/cpuinfo, /proc/meminfo and macOS sysctl parsing is checked on captured text in the real formats;
detect runs for real on this machine (bandwidth measured) and its YAML loads back; the CLI runs with torch and
the other build-only libraries blocked, as on a board.
"""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_serve_torchfree import board_env  # noqa: F401  (fixture: torch, transformers, ... cannot import)

from smoledge.bench.config import ARM_ISA, X86_ISA, DeviceProfile, devices_dir, load_profile
from smoledge.bench.detect import (array_bytes_for, derive_budget, detect, fastest_cpus, isa_from_cpuinfo,
                                   isa_from_sysctl, measure_bandwidth, meminfo_bytes, normalise_arch, parse_cpuinfo,
                                   parse_sysctl, physical_cores, render, write)
from smoledge.config import ConfigError
from smoledge.errors import SmoledgeError

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted((REPO / "devices").glob("*.yaml"))

# A Raspberry Pi 5 (BCM2712, 4x Cortex-A76, part 0xd0b), 64-bit Raspberry Pi OS: 4 processor blocks and the
# board block the Pi kernel appends.
_PI5_CORE = """processor\t: {n}
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x4
CPU part\t: 0xd0b
CPU revision\t: 1
"""
PI5_CPUINFO = "\n".join(_PI5_CORE.format(n=n) for n in range(4)) + """
Revision\t: d04170
Serial\t\t: 5b1fc8a2e7d3c04e
Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""

# Raspberry Pi 4 (Cortex-A72, part 0xd08) under a 64-bit kernel: ARMv8.0, no asimddp / asimdhp.
PI4_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3
"""

# One package, 2 cores x 2 hyperthreads (an AVX2 laptop): processors 0 and 2 share core 0.
_X86_CORE = """processor\t: {n}
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 142
model name\t: Intel(R) Core(TM) i7-7500U CPU @ 2.70GHz
stepping\t: 9
cpu MHz\t\t: 2900.000
cache size\t: 4096 KB
physical id\t: 0
siblings\t: 4
core id\t\t: {core}
cpu cores\t: 2
apicid\t\t: {apic}
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi mmx fxsr sse \
sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc pni pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt \
aes xsave avx f16c rdrand lahf_lm abm 3dnowprefetch fsgsbase bmi1 avx2 smep bmi2 erms invpcid mpx rdseed adx smap \
clflushopt xsaveopt xsavec xgetbv1 xsaves
bogomips\t: 5799.77
"""
X86_CPUINFO = "\n".join(_X86_CORE.format(n=n, core=n % 2, apic=n) for n in range(4))

MEMINFO = """MemTotal:        8245112 kB
MemFree:         7012340 kB
MemAvailable:    7702156 kB
Buffers:           31204 kB
"""

# `sysctl -a` lines on an M2 MacBook Air (16 GB); an M1 reports FEAT_I8MM and FEAT_BF16 as 0.
M2_SYSCTL = """hw.ncpu: 8
hw.memsize: 17179869184
hw.physicalcpu: 8
hw.logicalcpu: 8
hw.perflevel0.physicalcpu: 4
hw.perflevel0.l2cachesize: 16777216
hw.perflevel1.physicalcpu: 4
hw.optional.arm.FEAT_DotProd: 1
hw.optional.arm.FEAT_I8MM: 1
hw.optional.arm.FEAT_BF16: 1
hw.optional.arm.FEAT_FP16: 1
hw.optional.arm.FEAT_SME: 0
hw.optional.neon: 1
hw.optional.neon_fp16: 1
machdep.cpu.brand_string: Apple M2
"""


# ---------------------------------------------------------------- shipped profiles

@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_shipped_profile_loads_and_its_bandwidth_comment_adds_up(path: Path) -> None:
    p = load_profile(str(path))
    assert p.name == path.stem and 1 <= p.threads <= p.cores
    assert set(p.isa) <= set(ARM_ISA if p.is_arm else X86_ISA)
    assert p.memory_bandwidth_kind == "theoretical" and p.memory_bandwidth_gbs > 0
    # The comment shows the sum: "<rate> MT/s x <bus> (<n> bytes) = <GB/s> GB/s", and it is the profile's figure.
    m = re.search(r"(\d+) MT/s x [^(]*\((\d+) bytes\) = ([\d.]+) GB/s", path.read_text())
    assert m, f"{path.name}: no 'MT/s x bus (bytes) = GB/s' comment"
    rate, width, stated = int(m.group(1)), int(m.group(2)), float(m.group(3))
    assert rate * width / 1000 == pytest.approx(stated, abs=0.05) and stated == p.memory_bandwidth_gbs
    assert p.model_ram_budget_gb <= p.ram_gb / 2  # the rest is the OS's, the server's and the page cache's


def test_the_boards_the_issue_names() -> None:
    pi5, pi4 = load_profile("rpi5-8gb"), load_profile("rpi4-4gb")
    assert pi5.ram_gb == 8 and {"neon", "dotprod", "fp16"} <= set(pi5.isa)
    assert pi4.isa == ["neon"]  # Cortex-A72 is ARMv8.0: no dotprod
    orin, m2, laptop = load_profile("jetson-orin-nano-8gb"), load_profile("apple-m2-16gb"), load_profile("x86_64-avx2-laptop")
    assert orin.cores == 6 and "cuda" in orin.accelerators and "dotprod" in orin.isa
    assert m2.arch == "arm64" and "metal" in m2.accelerators and "i8mm" in m2.isa and m2.threads == 4
    assert laptop.arch == "x86_64" and "avx2" in laptop.isa
    # The Pi profiles follow the same budget/context rule that detect derives for a machine of their RAM.
    for board in (pi5, pi4):
        assert derive_budget(int(board.ram_gb * 1e9)) == (board.model_ram_budget_gb, board.max_context)


GOOD = {"name": "board", "arch": "aarch64", "isa": ["neon", "dotprod"], "cores": 4, "ram_gb": 8,
        "memory_bandwidth_gbs": 17.07, "threads": 4, "max_context": 2048, "model_ram_budget_gb": 4}


@pytest.mark.parametrize("change, error", [
    ({"thread": 4}, r"unknown key 'thread'\. Did you mean 'threads'\?"),
    ({"threads": 8}, r"threads: 8 exceeds cores 4"),
    ({"cores": 0}, r"cores: must be > 0"),
    ({"isa": ["neon", "avx3"]}, r"isa: unknown aarch64 feature 'avx3'"),
    ({"isa": ["asimd"]}, r"isa: unknown aarch64 feature 'asimd' \(AArch64 Linux calls NEON 'asimd'; write 'neon'\)"),
    ({"isa": ["neon", "avx2"]}, r"isa: 'avx2' is not an aarch64 feature"),
    ({"arch": "x86_64"}, r"isa: 'neon' is not an x86_64 feature"),
    ({"isa": ["neon", "neon"]}, r"isa: duplicates"),
    ({"arch": "armv7l"}, r"arch: 'armv7l' is not valid"),
    ({"accelerators": ["tpu"]}, r"accelerators: unknown accelerator 'tpu'"),
    ({"memory_bandwidth_gbs": -1}, r"memory_bandwidth_gbs: -1\.0 GB/s is not a memory bandwidth"),
    ({"memory_bandwidth_kind": "guessed"}, r"memory_bandwidth_kind: 'guessed' is not valid"),
    ({"logical_cores": 2}, r"logical_cores: 2 is fewer than cores 4"),
    ({"ram_gb": 0}, r"ram_gb: must be > 0"),
    ({"model_ram_budget_gb": 16}, r"model_ram_budget_gb: 16\.0 exceeds ram_gb 8\.0"),
    ({"max_context": 1 << 21}, r"max_context: 2097152 is over 1M tokens"),
    ({"name": "my board"}, r"name: 'my board' is not a file-name-safe profile name"),
    ({"cores": "four"}, r"cores: expected an integer, got 'four'"),
])
def test_bad_profile_fails_naming_the_key(tmp_path: Path, change: dict, error: str) -> None:
    path = tmp_path / "board.yaml"
    path.write_text(yaml.safe_dump({**GOOD, **change}))
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ": " + error):
        load_profile(str(path))
    path.write_text(yaml.safe_dump(GOOD))  # the unchanged profile is fine
    assert load_profile(str(path)).threads == 4


# ---------------------------------------------------------------- parsing captured text

def test_cpuinfo_pi5_aarch64(tmp_path: Path) -> None:
    blocks = parse_cpuinfo(PI5_CPUINFO)
    assert len(blocks) == 5 and blocks[-1]["Model"] == "Raspberry Pi 5 Model B Rev 1.0"
    isa, seen = isa_from_cpuinfo(blocks, "aarch64")
    assert isa == ["neon", "fp16", "dotprod"] and seen == 16  # all 16 Features words were read
    # ARM cpuinfo has no core ids: cores come from sysfs thread siblings (none shared on an A76).
    for cpu in range(4):
        (tmp_path / f"cpu{cpu}" / "topology").mkdir(parents=True)
        (tmp_path / f"cpu{cpu}" / "topology" / "thread_siblings_list").write_text(f"{cpu}\n")
    assert physical_cores(blocks, {0, 1, 2, 3}, sysfs=tmp_path) == 4
    assert physical_cores(blocks, {1, 3}, sysfs=tmp_path) == 2  # a restricted affinity mask counts
    assert fastest_cpus({0, 1, 2, 3}, sysfs=tmp_path) == {0, 1, 2, 3}  # no cpu_capacity files: all alike
    assert isa_from_cpuinfo(parse_cpuinfo(PI4_CPUINFO), "aarch64")[0] == ["neon"]


def test_big_little_threads_use_the_big_cores(tmp_path: Path) -> None:
    # An RK3588-like board: cpu0-3 Cortex-A55 (capacity 414), cpu4-7 Cortex-A76 (1024).
    for cpu in range(8):
        (tmp_path / f"cpu{cpu}").mkdir()
        (tmp_path / f"cpu{cpu}" / "cpu_capacity").write_text("414\n" if cpu < 4 else "1024\n")
    big = fastest_cpus(set(range(8)), sysfs=tmp_path)
    assert big == {4, 5, 6, 7}
    assert physical_cores([], big, sysfs=tmp_path) == 4  # threads: one per big core
    assert fastest_cpus({0, 1, 2}, sysfs=tmp_path) == {0, 1, 2}  # only LITTLE cores allowed: those are the fastest
    # Equal capacities (an x86 kernel reports 1024 for every CPU): all of them.
    for cpu in range(4, 8):
        (tmp_path / f"cpu{cpu}" / "cpu_capacity").write_text("414\n")
    assert fastest_cpus(set(range(8)), sysfs=tmp_path) == set(range(8))


def test_cpuinfo_x86_hyperthreads(tmp_path: Path) -> None:
    blocks = parse_cpuinfo(X86_CPUINFO)
    isa, seen = isa_from_cpuinfo(blocks, "x86_64")
    assert isa == ["sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "bmi2"] and seen == 67
    assert physical_cores(blocks, {0, 1, 2, 3}, sysfs=tmp_path) == 2  # 4 logical CPUs, 2 cores
    assert physical_cores(blocks, {0, 2}, sysfs=tmp_path) == 1  # two hyperthreads of core 0
    profile = DeviceProfile(name="laptop", isa=isa, cores=2, logical_cores=4, threads=2)
    assert profile.isa == isa  # what detect keeps validates


def test_meminfo_sysctl_and_arch() -> None:
    assert meminfo_bytes(MEMINFO) == 8245112 * 1024
    assert meminfo_bytes(MEMINFO, "MemAvailable") == 7702156 * 1024
    with pytest.raises(SmoledgeError, match="no MemTotal"):
        meminfo_bytes("Buffers: 1 kB\n")
    values = parse_sysctl(M2_SYSCTL)
    assert values["hw.memsize"] == "17179869184" and values["machdep.cpu.brand_string"] == "Apple M2"
    assert isa_from_sysctl(values, "arm64") == ["neon", "fp16", "dotprod", "i8mm", "bf16"]
    m1 = parse_sysctl(M2_SYSCTL.replace("FEAT_I8MM: 1", "FEAT_I8MM: 0").replace("FEAT_BF16: 1", "FEAT_BF16: 0"))
    assert isa_from_sysctl(m1, "arm64") == ["neon", "fp16", "dotprod"]
    assert [normalise_arch(m) for m in ("x86_64", "AMD64", "aarch64", "arm64")] == ["x86_64", "x86_64", "aarch64", "arm64"]
    with pytest.raises(SmoledgeError, match="64-bit OS"):
        normalise_arch("armv7l")


def test_sizing_and_derived_rules() -> None:
    mib = 1 << 20
    assert array_bytes_for(300 * mib, 25_000_000_000) == 1200 * mib  # 4x a 300 MiB L3
    assert array_bytes_for(None, 8_000_000_000) == 256 * mib  # unknown cache: 256 MiB
    assert array_bytes_for(2 * mib, 8_000_000_000) == 256 * mib  # a Pi 5's 2 MB L3: the 256 MiB floor
    assert array_bytes_for(300 * mib, 1 << 30) == 64 * mib  # capped at RAM/16 on a small board
    assert derive_budget(int(16e9)) == (8.0, 8192)
    assert derive_budget(int(8e9)) == (4.0, 4096)
    assert derive_budget(int(3.9e9)) == (1.9, 2048)


def test_bandwidth_counts_bytes_like_stream() -> None:
    bw = measure_bandwidth(0.05, 4 << 20)
    assert bw.array_bytes == 4 << 20 and min(bw.reps) >= 3
    assert bw.copy_gbs > 0 and bw.triad_gbs > 0 and bw.best_gbs == max(bw.copy_gbs, bw.triad_gbs)


# ---------------------------------------------------------------- detect on this machine, for real

@pytest.fixture(scope="module")
def here():
    return detect(name="this-machine", seconds=1.0)


def test_detect_this_machine(here, tmp_path: Path) -> None:
    p = here.profile
    assert p.arch == normalise_arch(platform.machine())
    if sys.platform.startswith("linux"):
        blocks = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
        flags = set((blocks[0].get("flags") or blocks[0].get("Features") or "").split())
        if p.arch == "x86_64":
            assert "avx2" in p.isa and set(p.isa) == flags & set(X86_ISA)
        mem_total = meminfo_bytes(Path("/proc/meminfo").read_text())
        assert abs(p.ram_gb * 1e9 - mem_total) <= 0.1 * mem_total
        import os

        assert p.logical_cores == len(os.sched_getaffinity(0))
    assert 1 <= p.threads <= p.cores <= p.logical_cores
    assert p.memory_bandwidth_kind == "measured" and p.memory_bandwidth_gbs > 0.5
    assert here.bandwidth.array_bytes >= min(256 << 20, int(p.ram_gb * 1e9 / 16) - 4096)
    assert p.model_ram_budget_gb <= p.ram_gb / 2 and p.max_context >= 2048
    text = render(here)
    assert "MEASURED" in text and "ONE thread" in text and "as STREAM does" in text
    out = write(here, tmp_path / "this-machine.yaml")
    assert load_profile(str(out)) == p  # round-trips through load_profile
    with pytest.raises(SmoledgeError, match="exists; pass --force"):
        write(here, out)
    out.write_text("# hand-edited\n" + out.read_text())
    write(here, out, force=True)
    assert not out.read_text().startswith("# hand-edited")


def test_cli_devices_on_a_board(board_env, tmp_path: Path) -> None:  # noqa: F811
    env, log = board_env
    cli = [sys.executable, "-m", "smoledge.cli", "devices"]
    listed = subprocess.run(cli + ["list"], env=env, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert listed.returncode == 0, listed.stderr
    for path in PROFILES:
        assert path.stem in listed.stdout
    out = tmp_path / "board.yaml"
    run = subprocess.run(cli + ["detect", "--name", "board", "--seconds", "0.5", "--out", str(out)],
                         env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr
    printed = DeviceProfile.from_dict(yaml.safe_load(run.stdout))
    assert printed == load_profile(str(out)) and printed.name == "board"
    assert "blocked" not in log.read_text()  # detect never even tried to import torch & co
    # An existing profile is kept, and the refusal comes before the bandwidth run.
    again = subprocess.run(cli + ["detect", "--out", str(out)], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "exists; pass --force" in again.stderr and "measuring" not in again.stderr
    assert devices_dir() == REPO / "devices"
