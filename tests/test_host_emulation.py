"""Emulation is told from a real CPU: arm64 code under qemu-user on an x86 host sees the host's
/proc/cpuinfo and an x86 PID 1; a Raspberry Pi sees neither. bench marks emulated timings and sets no
roofline against them; `devices detect` refuses to profile an emulated machine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_bench_devices import PI5_CPUINFO

import smoledge.bench.detect as detect_mod
import smoledge.bench.run as run_mod
from smoledge.cli import main
from smoledge.errors import SmoledgeError
from smoledge.host import elf_machine, emulation

HOST_CPUINFO = Path("/proc/cpuinfo")


def test_a_real_board_and_this_host_are_not_emulated():
    assert emulation("aarch64", PI5_CPUINFO, "aarch64") is None
    assert emulation("aarch64", PI5_CPUINFO, None) is None  # PID 1 unreadable: no evidence either way
    assert emulation() is None  # this x86_64 host, as it is


@pytest.mark.skipif(not HOST_CPUINFO.exists() or "sse2" not in HOST_CPUINFO.read_text(), reason="needs an x86 host")
def test_arm_code_reading_this_x86_host_s_cpuinfo_is_emulated():
    host = HOST_CPUINFO.read_text()
    why = emulation("aarch64", host, None)
    assert why is not None and "qemu-user" in why and "/proc/cpuinfo lists x86 CPUs" in why
    why = emulation("arm64", PI5_CPUINFO, "x86_64")  # cpuinfo faked, but PID 1 is an x86 program
    assert why is not None and "PID 1 is an x86_64 program" in why


def test_elf_machine_reads_real_binaries(tmp_path):
    import sys

    assert elf_machine(sys.executable) in ("x86_64", "aarch64")
    (tmp_path / "text").write_text("not an ELF file")
    assert elf_machine(str(tmp_path / "text")) is None and elf_machine(str(tmp_path / "missing")) is None


def test_devices_detect_refuses_an_emulated_machine(monkeypatch):
    monkeypatch.setattr(detect_mod, "emulation", lambda: "aarch64 code emulated on an x86_64 host (qemu-user): ...")
    with pytest.raises(SmoledgeError, match="not the board it claims to be.*run `smoledge devices detect` on the board"):
        detect_mod.detect(seconds=0.1)


def test_bench_marks_emulated_timings_and_sets_no_roofline(smollm2_gguf: Path, tmp_path: Path, capsys, monkeypatch):
    why = "aarch64 code emulated on an x86_64 host (qemu-user): /proc/cpuinfo lists x86 CPUs"
    monkeypatch.setattr(run_mod, "emulation", lambda: why)
    gguf = shutil.copyfile(smollm2_gguf, tmp_path / "model.gguf")
    out = tmp_path / "bench.json"
    assert main(["bench", str(gguf), "--device", "rpi5-8gb", "--repeats", "1", "--pp", "16", "--tg", "4",
                 "--ttft-prompt", "0", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    result = json.loads(out.read_text())
    [row] = result["results"]
    assert result["machine"]["emulated"] == why and row["emulated"] is True and row["roofline"] is None
    assert table.lstrip().startswith("EMULATED: " + why) and "no roofline fraction" in table
    [tg] = [line for line in table.splitlines() if "| tg4 |" in line]
    assert tg.endswith("| - |")
