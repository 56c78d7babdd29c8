"""What this machine gives the process, and whether its CPU is real. Torch-free and import-free.

    from smoledge.host import local_cores, emulation
    threads = min(profile.threads, local_cores())
    if (why := emulation()) is not None:      # e.g. arm64 code on an x86_64 host through qemu-user
        print("timings are emulated:", why)

Emulation: an arm64 Debian root run on an x86 machine through qemu-user (smoledge's arm64 correctness
lane) reports platform.machine() == 'aarch64', and everything it measures is the emulator's speed, not an
ARM board's. qemu-user does not hide the host: the kernel's /proc/cpuinfo still lists the host's x86
CPUs, and PID 1 (the host's init, outside any chroot) is an x86 program. Either is evidence; a real
board shows neither.
"""

from __future__ import annotations

import os
import platform
import re

# ELF e_machine -> the architecture it is built for (the ones a smoledge host can be).
ELF_MACHINES = {3: "x86", 62: "x86_64", 40: "arm", 183: "aarch64", 243: "riscv64"}
# platform.machine() spellings -> the ELF names above.
MACHINE_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "armv8l": "aarch64",
                   "aarch64_be": "aarch64", "i386": "x86", "i686": "x86"}
# /proc/cpuinfo lines only an x86 CPU has.
_X86_CPUINFO = re.compile(r"^(vendor_id\s*:\s*(GenuineIntel|AuthenticAMD|HygonGenuine)|flags\s*:.*\bsse2\b)",
                          re.MULTILINE)


def local_cores() -> int:
    """Cores this process may run on: the affinity mask, which containers and taskset narrow, where the
    platform has one (Linux); else every core."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def elf_machine(path: str) -> str | None:
    """The architecture an ELF file is built for ('x86_64', 'aarch64'...), None when unreadable or not ELF."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    order = "little" if head[5] == 1 else "big"
    code = int.from_bytes(head[18:20], order)
    return ELF_MACHINES.get(code, f"elf-machine-{code}")


def emulation(machine: str | None = None, cpuinfo: str | None = None, init_machine: str | None = None) -> str | None:
    """Why this process's CPU is emulated (the evidence, one sentence), or None when nothing says so.

    Arguments default to this process's platform.machine(), /proc/cpuinfo and the architecture of
    /proc/1/exe; pass them to judge another machine's readings."""
    machine = machine if machine is not None else platform.machine()
    machine = MACHINE_ALIASES.get(machine.lower(), machine.lower())
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    if init_machine is None:
        init_machine = elf_machine("/proc/1/exe")  # readable as root; None otherwise, which proves nothing
    evidence = []
    if machine not in ("x86_64", "x86") and _X86_CPUINFO.search(cpuinfo):
        evidence.append(f"/proc/cpuinfo lists x86 CPUs while this process runs {machine} code")
    if init_machine is not None and init_machine != machine and (machine, init_machine) != ("x86", "x86_64"):
        evidence.append(f"PID 1 is an {init_machine} program while this process runs {machine} code")
    if not evidence:
        return None
    return f"{machine} code emulated on an {init_machine or 'x86'} host (qemu-user): " + "; ".join(evidence)
