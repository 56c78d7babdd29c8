"""An arm64 Debian root on an x86 machine, its programs run through qemu-user. Torch-free.

    from smoledge.arm64.root import ArmRoot
    root = ArmRoot.ensure()                      # ~/.cache/smoledge/arm64/root: built once (debootstrap), then reused
    print(root.run(["uname", "-m"]).stdout)      # aarch64

Why a root and qemu-user rather than a board or a full VM: the kernel's binfmt_misc hands every aarch64
ELF to qemu-aarch64-static, so an arm64 Debian userland (Python, pip, onnxruntime's aarch64 wheel,
llama.cpp built with NEON and dot-product instructions) runs under `chroot` at a few percent of native
speed, with no kernel, disk image or network to set up. That says nothing about a board's speed
(smoledge.host.emulation() marks such timings) and everything about whether the same model gives the same
tokens there.

The root is Debian 12 (bookworm), the release Raspberry Pi OS is built on, so its Python (3.11) and glibc
are the board's. It needs, once: root privileges (debootstrap, chroot and mount do), Debian's
qemu-user-static and debootstrap, the Debian mirror in this machine's apt sources (~170 s, ~550 MB).
After that nothing is downloaded. What it does not do: run anything but aarch64, or isolate the root
from the host (it is a chroot, not a container: run only smoledge's own commands in it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from smoledge.errors import SmoledgeError
from smoledge.pypi_assets import cache_root

# Debian 12: Raspberry Pi OS's base, Python 3.11 (smoledge supports 3.11-3.12).
SUITE = "bookworm"
# What the root starts with: Python to run smoledge and pip to install it (its wheels come from the host).
PACKAGES = ("python3", "python3-venv", "python3-pip")
# Compilers for llama-cpp-python, which PyPI ships no aarch64 wheel of: added once, when the wheel is built.
BUILD_PACKAGES = ("build-essential", "cmake")
QEMU = Path("/usr/bin/qemu-aarch64-static")
BINFMT = Path("/proc/sys/fs/binfmt_misc")
BINFMT_ENTRY = BINFMT / "qemu-aarch64"
# Debian's registration line for qemu-aarch64 (package qemu-user-static), used where update-binfmts is absent.
BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
DEFAULT_MIRROR = "http://deb.debian.org/debian"
INSTALL_HINT = "apt-get install qemu-user-static debootstrap"


def default_path() -> Path:
    return cache_root() / "arm64" / "root"


def apt_mirror(sources: Sequence[Path] = APT_SOURCES) -> str:
    """The Debian mirror this machine's apt uses (deb822 `URIs:` or one-line `deb URL`), else Debian's CDN."""
    files: list[Path] = []
    for s in sources:
        files += sorted(s.glob("*.sources")) + sorted(s.glob("*.list")) if s.is_dir() else [s] if s.is_file() else []
    for f in files:
        for line in f.read_text(errors="replace").splitlines():
            m = re.match(r"\s*(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+)", line)
            if m and "security" not in m.group(1) and m.group(1).startswith(("http://", "https://")):
                return m.group(1).rstrip("/")
    return DEFAULT_MIRROR


def require_host() -> None:
    """Refuse, naming the fix, when this machine cannot run an arm64 root."""
    if os.geteuid() != 0:
        raise SmoledgeError("the arm64 check needs root privileges (debootstrap, chroot and mount do); "
                            "run it as root, e.g. `sudo make arm64-check`")
    missing = [str(QEMU)] if not QEMU.exists() else []
    missing += [] if shutil.which("debootstrap") else ["debootstrap"]
    if missing:
        raise SmoledgeError(f"the arm64 check needs {' and '.join(missing)}: `{INSTALL_HINT}` "
                            "(Debian's packages; the first time only)")


def enable_binfmt() -> None:
    """Make the kernel hand aarch64 programs to qemu-aarch64-static (binfmt_misc), if it does not already."""
    if BINFMT_ENTRY.exists() and BINFMT_ENTRY.read_text().startswith("enabled"):
        return
    if not (BINFMT / "register").exists():
        call(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], "mount binfmt_misc")
    if BINFMT_ENTRY.exists():
        BINFMT_ENTRY.write_text("1")
    elif shutil.which("update-binfmts"):
        call(["update-binfmts", "--enable", "qemu-aarch64"], "register qemu-aarch64 with binfmt_misc")
    elif BINFMT_CONF.is_file():
        (BINFMT / "register").write_text(BINFMT_CONF.read_text().strip())
    else:
        raise SmoledgeError(f"no binfmt_misc registration for qemu-aarch64 ({BINFMT_CONF} is missing): "
                            f"`{INSTALL_HINT}`")
    if not BINFMT_ENTRY.exists():
        raise SmoledgeError("qemu-aarch64 did not register with binfmt_misc; check "
                            "`cat /proc/sys/fs/binfmt_misc/status`")


def call(argv: Sequence[str], what: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run a host command; a failure or a timeout raises, saying `what` failed with the end of its output."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise SmoledgeError(f"{what}: still running after {timeout:.0f} s ({' '.join(argv)})") from e
    if proc.returncode != 0:
        raise SmoledgeError(f"{what} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-1500:]}")
    return proc


def _unmount_under(path: Path) -> None:
    """Unmount everything mounted at or below `path`, deepest first."""
    prefix = str(path.resolve())
    with open("/proc/mounts", encoding="utf-8") as f:
        points = [line.split()[1] for line in f]
    for point in sorted((p for p in points if p == prefix or p.startswith(prefix + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


@dataclass(frozen=True)
class ArmRoot:
    path: Path

    @classmethod
    def ensure(cls, path: Path | None = None, out: Callable[[str], None] = print) -> "ArmRoot":
        """The root at `path` (default ~/.cache/smoledge/arm64/root), built first if missing."""
        require_host()
        enable_binfmt()
        root = cls(Path(path) if path else default_path())
        if not (root.path / "usr/bin/python3").exists():
            root._debootstrap(out)
        root._host_files()
        return root

    def _debootstrap(self, out: Callable[[str], None]) -> None:
        if self.path.exists():
            raise SmoledgeError(f"{self.path} exists but is not a complete arm64 root (no usr/bin/python3); "
                                "remove it (`rm -rf` it as root) and run again to build a new one")
        mirror = apt_mirror()
        partial = self.path.with_name(self.path.name + ".partial")
        _unmount_under(partial)  # a killed debootstrap can leave its /proc and /sys mounted there
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        out(f"arm64 root: debootstrap {SUITE} arm64 from {mirror} into {self.path} (once, ~3 min, ~550 MB)")
        call(["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
               str(partial), mirror], f"debootstrap of the arm64 root from {mirror} (needed once: the mirror must "
                                     "be reachable)")
        partial.rename(self.path)

    def _host_files(self) -> None:
        """The host's CA bundle (pip behind an intercepting proxy trusts what the host trusts) and resolver."""
        for src in (HOST_CA_BUNDLE, Path("/etc/resolv.conf")):
            if src.is_file():
                dest = self.path / str(src).lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)

    @contextmanager
    def mounted(self, binds: dict[Path, str] | None = None) -> Iterator[None]:
        """/proc inside the root (Python, pip and onnxruntime read it) and each host directory of `binds` at
        its path inside the root; all unmounted after. Nested calls mount only what is not mounted yet."""
        mounts = [(["mount", "-t", "proc", "proc"], self.path / "proc")]
        for host, inside in (binds or {}).items():
            Path(host).mkdir(parents=True, exist_ok=True)
            mounts.append((["mount", "--bind", str(host)], self.inside(inside)))
        done: list[Path] = []
        try:
            for argv, target in mounts:
                if not os.path.ismount(target):
                    target.mkdir(parents=True, exist_ok=True)
                    call([*argv, str(target)], f"mount {target}")
                    done.append(target)
            yield
        finally:
            for target in reversed(done):
                subprocess.run(["umount", "-l", str(target)], capture_output=True)

    def command(self, argv: Sequence[str], env: dict[str, str] | None = None) -> list[str]:
        """`argv` (paths as seen inside the root) as a host command: chroot, with a clean environment."""
        base = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
                "LANG": "C.UTF-8", "SSL_CERT_FILE": str(HOST_CA_BUNDLE), "PIP_CERT": str(HOST_CA_BUNDLE)}
        return ["chroot", str(self.path), "/usr/bin/env", "-i",
                *[f"{k}={v}" for k, v in {**base, **(env or {})}.items()], *argv]

    def run(self, argv: Sequence[str], what: str, env: dict[str, str] | None = None,
            timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run `argv` in the root; raise with its output if it fails."""
        with self.mounted():
            return call(self.command(argv, env), f"{what} (in the arm64 root)", timeout)

    def inside(self, path: str) -> Path:
        """Where the root's `path` (absolute inside it) is on the host."""
        return self.path / path.lstrip("/")
