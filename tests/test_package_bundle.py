"""The bundle as a user copies it to a board: each device's artifact (a GGUF, or an ONNX directory for an
onnxruntime device), server.json per device, a reproducible .tar.gz with its sha256, tamper refusal,
and safe unpacking (hand-made malicious archives are refused and leave nothing behind)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Callable

import pytest
from test_package_stage import NAME, fake_export_run, package
from test_serve_api import REPO, free_port, start_server, stop_server

from smoledge.errors import SmoledgeError
from smoledge.io import atomic_write_json
from smoledge.package.archive import write_archive
from smoledge.recipe import Recipe
from smoledge.serve.generation import Sampling
from smoledge.serve.bundle import load_bundle, member_problem
from smoledge.serve.ort_backend import OrtBackend

ONNX_DEVICE = "x86_64-onnx-box"
TOP = f"{NAME}-bundle"
EPOCH = "1767225600"  # 2026-01-01T00:00:00Z


def onnx_profile(path: Path) -> Path:
    path.write_text(f"""name: {ONNX_DEVICE}
description: an x86 box that runs onnxruntime
arch: x86_64
isa: [sse4_2, avx, avx2, fma, f16c]
cores: 2
ram_gb: 8
backend: onnxruntime
threads: 2
max_context: 256
model_ram_budget_gb: 1
""")
    return path


def onnx_recipe(profile: Path) -> Recipe:
    return Recipe.from_dict({"name": NAME, "export": {"gguf_types": ["f32", "q8_0"]},  # type: ignore[return-value]
                             "devices": ["x86_64-avx2-laptop", str(profile)]})


@pytest.fixture(scope="module")
def onnx_run(tmp_path_factory, tiny_model_dir: Path, tiny_gguf: Path) -> tuple[Path, Recipe]:
    """The fake export run plus an int8 ONNX export, and evaluate's choice: q8_0 GGUF for the laptop,
    onnx-int8-avx2 for the onnxruntime box."""
    from smoledge.export.onnx import export_onnx, quantize_onnx

    root = tmp_path_factory.mktemp("onnxpkg")
    run_dir = fake_export_run(root, tiny_model_dir, tiny_gguf)
    export = run_dir / "export"
    quantize_onnx(export_onnx(export / "hf", export / "onnx"), export / "onnx-int8-avx2", "avx2")
    report = json.loads((run_dir / "evaluate" / "report.json").read_text())
    report["devices"][ONNX_DEVICE] = {"artifact": "onnx-int8-avx2", "backend": "onnxruntime", "threads": 2,
                                      "n_ctx": 256, "reason": "smallest onnxruntime artifact that fits"}
    atomic_write_json(run_dir / "evaluate" / "report.json", report)
    return run_dir, onnx_recipe(onnx_profile(root / f"{ONNX_DEVICE}.yaml"))


@pytest.fixture(scope="module")
def packaged(onnx_run):
    run_dir, rcp = onnx_run
    bundle, result = package(run_dir, rcp)
    return run_dir, bundle, result


def test_each_device_gets_its_artifact(packaged) -> None:
    run_dir, bundle, result = packaged
    export = run_dir / "export"
    for f in ("model_quantized.onnx", "config.json", "tokenizer.json"):
        assert (bundle / "onnx-int8-avx2" / f).read_bytes() == (export / "onnx-int8-avx2" / f).read_bytes()
    assert (bundle / "model-q8_0.gguf").is_file() and not (bundle / "onnx").exists()  # only what was selected
    b = load_bundle(bundle)
    s = b.settings
    assert (s.backend, s.model_file) == ("llama.cpp", "model-q8_0.gguf")
    assert set(s.devices) == {"x86_64-avx2-laptop", ONNX_DEVICE}
    box = b.target(ONNX_DEVICE)
    assert (box.backend, box.model_path, box.threads, box.n_ctx) == ("onnxruntime", bundle / "onnx-int8-avx2", 2, 256)
    assert s.devices[ONNX_DEVICE].reason == "smallest onnxruntime artifact that fits"
    laptop, default = b.target("x86_64-avx2-laptop"), b.target()
    assert (laptop.backend, laptop.model_path.name, default.model_path.name) == ("llama.cpp", "model-q8_0.gguf",
                                                                                 "model-q8_0.gguf")
    with pytest.raises(SmoledgeError, match=rf"device 'rpi5-8gb' is not a target of this bundle \(its devices: "
                                            rf"x86_64-avx2-laptop, {ONNX_DEVICE}\)"):
        b.target("rpi5-8gb")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["artifacts"]["onnx-int8-avx2"]["devices"] == [ONNX_DEVICE]
    assert manifest["artifacts"]["onnx-int8-avx2"]["backend"] == "onnxruntime"
    assert manifest["evaluation"]["selection"][ONNX_DEVICE]["artifact"] == "onnx-int8-avx2"
    assert result.summary.startswith("q8_0 + onnx-int8-avx2, ")
    assert result.metrics["devices"] == {"x86_64-avx2-laptop": "model-q8_0.gguf", ONNX_DEVICE: "onnx-int8-avx2"}
    # MemoryMax: the larger budget (4 GB laptop vs 1 GB box) + 512 MiB.
    assert "\nMemoryMax=4608M\n" in (bundle / "serving" / "smoledge.service").read_text()


def test_the_onnx_device_serves_from_the_bundle(packaged) -> None:
    _, bundle, _ = packaged
    b = load_bundle(bundle)
    t, s = b.target(ONNX_DEVICE), b.settings
    backend = OrtBackend(t.model_path, t.n_ctx, t.threads, chat_template=s.chat_template, bos_token=s.bos_token,
                         eos_token=s.eos_token, stop_tokens=s.stop_tokens, tokenizer_dir=b.dir / "tokenizer")
    prompt = backend.render_chat([{"role": "user", "content": "Ciao"}])
    out = backend.complete(backend.prepare(prompt, Sampling(max_tokens=8, temperature=0.0, seed=0)))
    assert out.finish_reason in ("stop", "length") and out.prompt_tokens == len(backend.tokenize(prompt))
    backend.close()


def archive_members(archive: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(archive, "r:gz") as tar:
        return tar.getmembers()


def test_archive_is_reproducible_and_checksummed(packaged, tmp_path: Path) -> None:
    run_dir, bundle, result = packaged
    archive = run_dir / "bundle.tar.gz"
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert (run_dir / "bundle.tar.gz.sha256").read_text() == f"{sha}  bundle.tar.gz\n"
    check = subprocess.run(["sha256sum", "-c", "bundle.tar.gz.sha256"], cwd=run_dir, capture_output=True, text=True)
    assert check.returncode == 0 and "bundle.tar.gz: OK" in check.stdout
    assert result.metrics["archive"] == {"file": "bundle.tar.gz", "sha256": sha, "bytes": archive.stat().st_size,
                                         "sha256_file": "bundle.tar.gz.sha256"}
    manifest = json.loads((bundle / "manifest.json").read_text())
    from datetime import datetime

    created = int(datetime.fromisoformat(manifest["created"]).timestamp())
    members = archive_members(archive)
    names = [m.name for m in members]
    assert names == sorted(names) and names[0] == TOP
    files = {m.name[len(TOP) + 1:] for m in members if m.isfile()}
    assert files == set(manifest["files"]) | {"manifest.json"}  # no stage.json, no inprogress.json
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", created)}
    modes = {m.name.rsplit("/", 1)[-1]: m.mode for m in members}
    assert modes["run.sh"] == 0o755 and modes["server.json"] == 0o644 and modes["onnx-int8-avx2"] == 0o755
    # gzip header: the same mtime, no file name (FLG.FNAME unset).
    head = archive.read_bytes()[:10]
    assert int.from_bytes(head[4:8], "little") == created and not head[3] & 0x08
    # The same files give the same bytes.
    again = tmp_path / "again.tar.gz"
    assert write_archive(bundle, sorted(files), again, TOP, created) == sha
    assert again.read_bytes() == archive.read_bytes()


def test_same_inputs_same_archive(onnx_run, tmp_path: Path, monkeypatch) -> None:
    """With SOURCE_DATE_EPOCH (reproducible builds) two package runs give byte-identical archives."""
    run_dir, rcp = onnx_run
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    shas = []
    for i in range(2):
        other = tmp_path / str(i) / "runs" / NAME
        shutil.copytree(run_dir / "export", other / "export")
        shutil.copytree(run_dir / "evaluate", other / "evaluate")
        _, result = package(other, rcp)
        shas.append(result.metrics["archive"]["sha256"])
        assert json.loads((other / "bundle" / "manifest.json").read_text())["created"] == "2026-01-01T00:00:00+00:00"
    assert shas[0] == shas[1]


def test_archive_intact_notices_a_missing_or_changed_archive(packaged, tmp_path: Path) -> None:
    from smoledge.package.stage import archive_intact

    run_dir, bundle, result = packaged
    record = {"metrics": result.metrics}
    assert archive_intact(bundle, record)
    copy = tmp_path / "runs" / NAME
    shutil.copytree(run_dir, copy)
    (copy / "bundle.tar.gz").write_bytes(flip_middle_byte((copy / "bundle.tar.gz").read_bytes()))
    assert not archive_intact(copy / "bundle", record)
    (copy / "bundle.tar.gz").unlink()
    assert not archive_intact(copy / "bundle", record)


def test_archive_loads_and_verifies(packaged) -> None:
    run_dir, _, _ = packaged
    b = load_bundle(run_dir / "bundle.tar.gz")
    assert b.dir.name == TOP and b.target(ONNX_DEVICE).model_path.is_dir()


def test_serving_the_archive_leaves_no_unpacked_copy_after_sigterm(packaged, tmp_path: Path) -> None:
    """uvicorn ends a SIGTERM shutdown by re-raising the signal, which skips atexit hooks: the server
    itself must remove the copy it unpacked, or every restart of the unit leaves a model-sized dir."""
    run_dir, _, _ = packaged
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc, url = start_server(run_dir / "bundle.tar.gz", env)
    assert len(list(tmp_path.glob("smoledge-bundle-*"))) == 1  # unpacked while it serves
    log = stop_server(proc)
    assert "Application shutdown complete" in log, log
    assert not list(tmp_path.glob("smoledge-bundle-*"))


# -- tampering -------------------------------------------------------------------------------------


def repack(archive: Path, out: Path, name: str, edit: Callable[[bytes], bytes]) -> Path:
    """A copy of `archive` with member TOP/name's bytes passed through `edit` (size kept by the callers)."""
    with tarfile.open(archive, "r:gz") as src, tarfile.open(out, "w:gz") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isfile() else None  # type: ignore[union-attr]
            if m.name == f"{TOP}/{name}":
                data = edit(data)  # type: ignore[arg-type]
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    return out


def flip_middle_byte(data: bytes) -> bytes:
    b = bytearray(data)
    b[len(b) // 2] ^= 0x01
    return bytes(b)


@pytest.mark.parametrize("name", ["model-q8_0.gguf", "server.json", "onnx-int8-avx2/model_quantized.onnx"])
def test_one_changed_byte_is_refused(packaged, tmp_path: Path, name: str) -> None:
    run_dir, _, _ = packaged
    bad = repack(run_dir / "bundle.tar.gz", tmp_path / "bad.tar.gz", name, flip_middle_byte)
    with pytest.raises(SmoledgeError, match=rf"'{name}' fails its sha256 check \(modified or corrupted\); "
                                            r"re-run `smoledge package` or copy the bundle again"):
        load_bundle(bad)


def test_serve_refuses_a_tampered_archive(packaged, tmp_path: Path) -> None:
    """The user-facing path: `smoledge serve` exits 1 with the reason, no traceback, nothing served."""
    run_dir, _, _ = packaged
    bad = repack(run_dir / "bundle.tar.gz", tmp_path / "bad.tar.gz", "server.json",
                 lambda d: d.replace(b'"port": 8000', b'"port": 8001'))
    out = subprocess.run([sys.executable, "-m", "smoledge.cli", "serve", str(bad), "--port", str(free_port())],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    assert "smoledge: error: bundle" in out.stderr and "'server.json' fails its sha256 check" in out.stderr
    assert "Traceback" not in out.stderr


# -- malicious archives ----------------------------------------------------------------------------


def _info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname, info.mode = kind, size, link, 0o644
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3  # /dev/null's numbers
    return info


def evil_archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """A .tar.gz that starts like a bundle (a real file first, so refusing must also clean up) then the members."""
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(_info(f"{TOP}/tokenizer/ok.txt", size=3), io.BytesIO(b"ok\n"))
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """(private TMPDIR the bundle is unpacked under, a sibling dir the attacks aim at)."""
    tmp, outside = tmp_path / "tmp", tmp_path / "outside"
    tmp.mkdir()
    outside.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp, outside


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


CASES = {
    # name -> (members, expected message); OUT is replaced by the attacked directory's absolute path.
    "dotdot": ([(_info("../../outside/evil.txt", size=4), b"evil")], r"member '\.\./\.\./outside/evil\.txt' has a "
                                                                     r"'\.\.' component \(path traversal\)"),
    "dotdot-inside": ([(_info(f"{TOP}/tokenizer/../../../outside/evil.txt", size=4), b"evil")], r"path traversal"),
    "absolute": ([(_info("OUT/evil.txt", size=4), b"evil")], r"member '/.*/outside/evil\.txt' has an absolute path"),
    "symlink-out": ([(_info(f"{TOP}/link", tarfile.SYMTYPE, link="../../outside"), None),
                     (_info(f"{TOP}/link/evil.txt", size=4), b"evil")],
                    rf"member '{TOP}/link' is a symbolic link to '\.\./\.\./outside' \(outside the bundle\); "
                    r"a bundle holds no links"),
    "symlink-absolute": ([(_info(f"{TOP}/passwd", tarfile.SYMTYPE, link="/etc/passwd"), None)],
                         r"is a symbolic link to '/etc/passwd' \(outside the bundle\)"),
    "symlink-inside": ([(_info(f"{TOP}/alias.json", tarfile.SYMTYPE, link="manifest.json"), None)],
                       r"is a symbolic link to 'manifest\.json'; a bundle holds no links"),
    "hardlink-out": ([(_info(f"{TOP}/hl", tarfile.LNKTYPE, link="../outside/target.txt"), None)],
                     r"is a hard link to '\.\./outside/target\.txt' \(outside the bundle\)"),
    "hardlink-absolute": ([(_info(f"{TOP}/hl", tarfile.LNKTYPE, link="/etc/shadow"), None)],
                          r"is a hard link to '/etc/shadow' \(outside the bundle\)"),
    "char-device": ([(_info(f"{TOP}/null", tarfile.CHRTYPE), None)], rf"member '{TOP}/null' is a device file"),
    "block-device": ([(_info(f"{TOP}/sda", tarfile.BLKTYPE), None)], r"is a device file"),
    "fifo": ([(_info(f"{TOP}/pipe", tarfile.FIFOTYPE), None)], r"is a FIFO"),
    "duplicate": ([(_info(f"{TOP}/tokenizer/ok.txt", size=4), b"evil")], r"appears twice"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malicious_archives_are_refused_and_leave_nothing(sandbox, tmp_path: Path, case: str) -> None:
    tmp, outside = sandbox
    (outside / "target.txt").write_text("precious\n")
    members, message = CASES[case]
    members = [(_info(i.name.replace("OUT", str(outside)), i.type, i.size, i.linkname), d) for i, d in members]
    before = _tree(tmp_path)
    archive = evil_archive(tmp_path / f"{case}.tar.gz", members)
    with pytest.raises(SmoledgeError, match=message) as e:
        load_bundle(archive)
    assert "refusing to unpack it: re-run `smoledge package` or copy the bundle again" in str(e.value)
    # Nothing written anywhere: the attacked directory is as it was, the temp dir is gone.
    assert _tree(outside) == ["target.txt"] and (outside / "target.txt").read_text() == "precious\n"
    assert _tree(tmp) == []
    assert _tree(tmp_path) == sorted(before + [archive.name])


def test_member_checks_pass_a_real_bundle(packaged) -> None:
    run_dir, _, _ = packaged
    assert all(member_problem(m) is None for m in archive_members(run_dir / "bundle.tar.gz"))


def test_corrupt_and_foreign_archives_are_refused(sandbox, tmp_path: Path) -> None:
    tmp, _ = sandbox
    truncated = tmp_path / "truncated.tar.gz"
    data = gzip.compress(b"x" * 100_000)
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(SmoledgeError, match=r"cannot unpack the bundle archive"):
        load_bundle(truncated)
    foreign = evil_archive(tmp_path / "foreign.tar.gz", [])
    with pytest.raises(SmoledgeError, match=r"no manifest\.json at the top of the archive"):
        load_bundle(foreign)
    assert _tree(tmp) == []


def test_archive_larger_than_free_space_is_refused(sandbox, tmp_path: Path, monkeypatch) -> None:
    tmp, _ = sandbox
    big = evil_archive(tmp_path / "big.tar.gz", [(_info(f"{TOP}/model.gguf", size=5000), b"\0" * 5000)])
    usage = shutil.disk_usage(tmp)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=4096))
    with pytest.raises(SmoledgeError, match=r"unpacking needs more than the 4096 bytes free in .*set TMPDIR"):
        load_bundle(big)
    assert _tree(tmp) == []


def test_unit_memory_max_follows_the_profiles(onnx_run, tmp_path: Path) -> None:
    from smoledge.package.stage import render_unit

    _, rcp = onnx_run
    template = (REPO / "serving" / "smoledge.service").read_text()
    profiles = rcp.device_profiles()
    box = [p for p in profiles if p.name == ONNX_DEVICE]
    assert "\nMemoryMax=4608M\n" in render_unit(template, profiles)  # the larger budget, 4 GB, + 512 MiB
    assert "\nMemoryMax=1536M\n" in render_unit(template.replace("MemoryMax=1536M", "MemoryMax=1G"), box)
    assert render_unit(template, []) == template
    with pytest.raises(SmoledgeError, match="exactly one MemoryMax= line"):
        render_unit(template.replace("MemoryMax=", "#MemoryMax="), box)
    assert os.access(REPO / "serving" / "run.sh", os.X_OK)


def ort_backends(bundle, target, n_ctx: int, threads: int):
    """The server's BackendFactory for an onnxruntime target: one OrtBackend running `slots` sequences
    (one session, a KV cache per slot), handed to the slot pool once per slot."""
    s = bundle.settings

    def make(slots: int) -> list:
        ort = OrtBackend(target.model_path, n_ctx=n_ctx, threads=threads, chat_template=s.chat_template,
                         bos_token=s.bos_token, eos_token=s.eos_token, stop_tokens=s.stop_tokens,
                         tokenizer_dir=bundle.dir / "tokenizer", slots=slots)
        return [ort] * slots

    return make


def test_the_server_answers_through_the_onnx_backend(packaged) -> None:
    """The OpenAI API over the bundle's onnxruntime device, called with the official openai client."""
    import time

    import openai
    from fastapi.testclient import TestClient

    from smoledge.serve.config import ServeConfig
    from smoledge.serve.server import create_app

    _, bundle_dir, _ = packaged
    b = load_bundle(bundle_dir)
    t = b.target(ONNX_DEVICE)
    app = create_app(ServeConfig(bundle=str(bundle_dir), n_ctx=t.n_ctx, threads=t.threads, slots=2),
                     backend_factory=ort_backends(b, t, t.n_ctx, t.threads))
    with TestClient(app) as http:
        deadline = time.monotonic() + 60
        while http.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, http.get("/ready").text
            time.sleep(0.05)
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=http, max_retries=0)
        chat = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Ciao"}],
                                              max_tokens=8, temperature=0)
        assert chat.choices[0].finish_reason in ("stop", "length") and chat.usage.prompt_tokens > 0
        whole = client.completions.create(model=NAME, prompt="Le renard", max_tokens=12, temperature=0)
        parts = client.completions.create(model=NAME, prompt="Le renard", max_tokens=12, temperature=0, stream=True)
        assert "".join(c.choices[0].text for c in parts if c.choices) == whole.choices[0].text
        scored = client.completions.create(model=NAME, prompt="Le renard brun", max_tokens=0, echo=True, logprobs=1)
        lp = scored.choices[0].logprobs
        assert scored.choices[0].text == "Le renard brun" and lp.token_logprobs[0] is None
        assert all(v < 0 for v in lp.token_logprobs[1:])
        seeded = [client.completions.create(model=NAME, prompt="Le", max_tokens=12, temperature=1.0, seed=5)
                  .choices[0].text for _ in range(2)]
        assert seeded[0] == seeded[1]
        r = http.post("/v1/completions", json={"prompt": "x", "max_tokens": 4, "grammar": 'root ::= "a"'})
        assert r.status_code == 400, r.text
        ids = http.post("/tokenize", json={"content": "Le renard"}).json()["tokens"]
        assert len(ids) >= 2 and all(isinstance(i, int) for i in ids)
        assert http.post("/detokenize", json={"tokens": ids}).json()["content"] == "Le renard"
