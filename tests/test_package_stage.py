"""Package stage: bundle layout, manifest checksums, server.json; bundle verification refuses tampering."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from smoledge.errors import SmoledgeError
from smoledge.io import atomic_write_json
from smoledge.progress import Progress
from smoledge.recipe import Recipe
from smoledge.layout import INPROGRESS, RECORD
from smoledge.stage import StageContext
from smoledge.serve.bundle import ServerSettings, load_bundle

REPO = Path(__file__).resolve().parents[1]
NAME = "tinybundle"


def fake_export_run(root: Path, model_dir: Path, f32_gguf: Path) -> Path:
    """runs/<NAME>/ with export/ (hf, f32 + q8_0 GGUFs, parity.json) and evaluate/report.json,
    laid out as the export and evaluate stages write them."""
    from smoledge.export.gguf import write_gguf

    run_dir = root / "runs" / NAME
    export = run_dir / "export"
    shutil.copytree(model_dir, export / "hf")
    shutil.copyfile(f32_gguf, export / "model-f32.gguf")
    write_gguf(export / "hf", export / "model-q8_0.gguf", "q8_0")
    atomic_write_json(export / "parity.json", {"files": {}})
    ppl = {name: {"en": {"ppl": p, "bpb": 3.1, "tokens": 900}, "fr": {"ppl": p + 9, "bpb": 3.4, "tokens": 800}}
           for name, p in (("hf", 1000.0), ("model-f32.gguf", 1000.0), ("model-q8_0.gguf", 1003.5))}
    gate = {"gate": "max_ppl_delta_pct", "device": "x86_64-avx2-laptop", "artifact": "model-q8_0.gguf",
            "measured": 0.35, "limit": 5.0, "passed": True}
    report = {"perplexity": ppl, "gates": [gate],
              "devices": {"x86_64-avx2-laptop": {
                  "artifact": "model-q8_0.gguf", "backend": "llama.cpp", "reason": "smallest that fits",
                  "passkey": {"by_length": {"64": 1.0}, "trials": [{"key": "12345", "retrieved": True}]}}}}
    atomic_write_json(run_dir / "evaluate" / "report.json", report)
    return run_dir


def recipe(**package) -> Recipe:
    return Recipe.from_dict({"name": NAME, "export": {"gguf_types": ["f32", "q8_0"]},
                             "devices": ["x86_64-avx2-laptop"], "package": package})  # type: ignore[return-value]


def package(run_dir: Path, rcp: Recipe | None = None):
    """Run the package stage the way smoledge.runs does (records already in the stage dir)."""
    from smoledge.package.stage import run

    bundle = run_dir / "bundle"
    bundle.mkdir(exist_ok=True)
    atomic_write_json(bundle / INPROGRESS, {"fingerprint": "x"})
    ctx = StageContext(recipe=rcp or recipe(), run_dir=run_dir, dir=bundle, progress=Progress("package"))
    result = run(ctx)
    atomic_write_json(bundle / RECORD, {"stage": "package"})  # as runs.build writes after run()
    return bundle, result


def make_bundle(root: Path, model_dir: Path, f32_gguf: Path) -> Path:
    """A verified q8_0 bundle of the tiny model, for the serve and bench tests."""
    bundle, _ = package(fake_export_run(root, model_dir, f32_gguf))
    return bundle


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir: Path, tiny_gguf: Path) -> Path:
    return fake_export_run(tmp_path_factory.mktemp("pkg"), tiny_model_dir, tiny_gguf)


@pytest.fixture(scope="module")
def packaged(run_dir: Path):
    return package(run_dir)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_manifest_covers_every_file_with_correct_sha256(packaged, run_dir: Path) -> None:
    bundle, result = packaged
    manifest = json.loads((bundle / "manifest.json").read_text())
    on_disk = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert on_disk - set(manifest["files"]) == {"manifest.json", RECORD, INPROGRESS}
    for rel, meta in manifest["files"].items():
        assert meta == {"sha256": _sha(bundle / rel), "bytes": (bundle / rel).stat().st_size}, rel
    # The model is a byte copy of the chosen export; tokenizer and serving assets are in.
    assert _sha(bundle / "model-q8_0.gguf") == _sha(run_dir / "export" / "model-q8_0.gguf")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        assert _sha(bundle / "tokenizer" / name) == _sha(run_dir / "export" / "hf" / name)
    for name in ("Containerfile", "run.sh", "server.example.json", "README.md"):
        assert (bundle / "serving" / name).read_bytes() == (REPO / "serving" / name).read_bytes()
    # The unit is the repo's with MemoryMax from the device budget: 4 GB (x86_64-avx2-laptop) + 512 MiB.
    unit = (REPO / "serving" / "smoledge.service").read_text()
    assert (bundle / "serving" / "smoledge.service").read_text() == unit.replace("MemoryMax=1536M", "MemoryMax=4608M")
    assert os.access(bundle / "serving" / "run.sh", os.X_OK)
    # Every bundle file is a stage output (so runs.py checksums it too), nothing else.
    assert sorted(Path(p).relative_to(bundle).as_posix() for p in result.outputs) == sorted(
        set(manifest["files"]) | {"manifest.json"})
    assert result.summary.startswith("q8_0, ") and f", {len(result.outputs)} files, bundle.tar.gz " in result.summary


def test_manifest_records_provenance(packaged, run_dir: Path) -> None:
    bundle, _ = packaged
    manifest = json.loads((bundle / "manifest.json").read_text())
    rcp = recipe()
    assert manifest["recipe"]["fingerprint"] == rcp.fingerprint(*rcp.to_dict())
    assert manifest["recipe"]["sections"]["package"]["gguf_type"] == "q8_0"
    report = json.loads((run_dir / "evaluate" / "report.json").read_text())
    assert manifest["evaluation"]["bundled"] == report["perplexity"]["model-q8_0.gguf"]
    assert manifest["evaluation"]["reference"] == report["perplexity"]["hf"]
    assert manifest["evaluation"]["gates"] == report["gates"]
    # The choice and its reason are kept; the passkey trials stay in evaluate/report.json.
    assert manifest["evaluation"]["selection"] == {
        name: {k: v for k, v in d.items() if k != "passkey"} | {"passkey": {"by_length": d["passkey"]["by_length"]}}
        for name, d in report["devices"].items()}
    assert [d["name"] for d in manifest["devices"]] == ["x86_64-avx2-laptop"]
    assert {"python", "numpy", "llama_cpp_python"} <= set(manifest["versions"])
    assert manifest["model"]["file"] == "model-q8_0.gguf" and manifest["created"]
    assert manifest["artifacts"] == {"model-q8_0.gguf": {"backend": "llama.cpp", "bytes": manifest["model"]["bytes"],
                                                         "default": True, "devices": ["x86_64-avx2-laptop"]}}


def test_server_json(packaged, tiny_model_dir: Path) -> None:
    bundle, _ = packaged
    s = load_bundle(bundle).settings
    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    assert (s.model_id, s.model_file, s.gguf_type) == (NAME, "model-q8_0.gguf", "q8_0")
    # n_ctx: the trained length (512), below the device profile's max_context (4096).
    assert s.n_ctx == s.n_ctx_train == cfg["max_position_embeddings"] == 512
    assert s.threads == 2  # devices/x86_64-avx2-laptop.yaml
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.chat_template == (tiny_model_dir / "chat_template.jinja").read_text()
    assert s.stop_tokens == ["<|im_end|>", "<|endoftext|>"] and s.eos_token == "<|endoftext|>"
    assert s.backend == "llama.cpp" and list(s.devices) == ["x86_64-avx2-laptop"]
    d = s.devices["x86_64-avx2-laptop"]
    assert (d.backend, d.model_file, d.threads, d.n_ctx, d.reason) == ("llama.cpp", "model-q8_0.gguf", 2, 512,
                                                                       "smallest that fits")


def test_package_options_and_rerun(run_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "runs" / NAME
    shutil.copytree(run_dir / "export", other / "export")
    shutil.copytree(run_dir / "evaluate", other / "evaluate")
    (other / "bundle").mkdir()
    (other / "bundle" / "leftover.txt").write_text("from an interrupted attempt")
    bundle, result = package(other, recipe(gguf_type="f32", n_ctx=256, threads=1, port=9000))
    s = load_bundle(bundle).settings
    assert (s.model_file, s.n_ctx, s.threads, s.port) == ("model-f32.gguf", 256, 1, 9000)
    assert not (bundle / "leftover.txt").exists()
    # The device keeps the artifact evaluate selected for it, next to the f32 default.
    assert s.devices["x86_64-avx2-laptop"].model_file == "model-q8_0.gguf" and (bundle / "model-q8_0.gguf").is_file()
    assert result.summary.startswith("f32 + model-q8_0.gguf, ")


def test_missing_inputs_name_the_fix(run_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "runs" / NAME
    shutil.copytree(run_dir / "export", other / "export")
    (other / "export" / "model-q8_0.gguf").unlink()
    with pytest.raises(SmoledgeError, match=r"model-q8_0\.gguf is missing.*smoledge export"):
        package(other)
    shutil.copyfile(run_dir / "export" / "model-q8_0.gguf", other / "export" / "model-q8_0.gguf")
    with pytest.raises(SmoledgeError, match=r"report\.json is missing.*smoledge evaluate"):
        package(other)
    shutil.copytree(run_dir / "evaluate", other / "evaluate")
    with pytest.raises(SmoledgeError, match=r"package\.n_ctx 4096 exceeds the model's trained context 512"):
        package(other, recipe(n_ctx=4096))


@pytest.fixture
def bundle_copy(packaged, tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(packaged[0], dst)
    return dst


def test_tampered_gguf_is_refused(bundle_copy: Path) -> None:
    load_bundle(bundle_copy)  # intact: loads
    gguf = bundle_copy / "model-q8_0.gguf"
    data = bytearray(gguf.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, same size
    gguf.write_bytes(bytes(data))
    with pytest.raises(SmoledgeError, match=r"'model-q8_0\.gguf' fails its sha256 check.*re-run `smoledge package`"):
        load_bundle(bundle_copy)


def test_truncated_missing_and_extra_files_are_refused(bundle_copy: Path) -> None:
    tok = bundle_copy / "tokenizer" / "tokenizer.json"
    tok.write_bytes(tok.read_bytes()[:-10])
    with pytest.raises(SmoledgeError, match=r"'tokenizer/tokenizer\.json' has \d+ bytes, the manifest says"):
        load_bundle(bundle_copy)
    tok.unlink()
    with pytest.raises(SmoledgeError, match=r"'tokenizer/tokenizer\.json' listed in the manifest is missing"):
        load_bundle(bundle_copy)


def test_extra_file_is_refused(bundle_copy: Path) -> None:
    (bundle_copy / "model-f16.gguf").write_bytes(b"GGUF")
    with pytest.raises(SmoledgeError, match=r"'model-f16\.gguf' is not in the manifest"):
        load_bundle(bundle_copy)


def test_edited_server_json_is_refused(bundle_copy: Path) -> None:
    p = bundle_copy / "server.json"
    p.write_text(p.read_text().replace('"port": 8000', '"port": 8001'))
    with pytest.raises(SmoledgeError, match=r"'server\.json'.*re-run `smoledge package` or copy the bundle again"):
        load_bundle(bundle_copy)


def test_tar_gz_bundle_loads(packaged, tmp_path: Path) -> None:
    archive = tmp_path / "bundle.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(packaged[0], arcname="bundle")
    b = load_bundle(archive)
    assert b.model_path.is_file() and b.settings.model_id == NAME


def test_server_example_matches_schema() -> None:
    data = json.loads((REPO / "serving" / "server.example.json").read_text())
    assert set(data) == set(ServerSettings(model_id="x", model_file="m.gguf").to_dict())
    assert ServerSettings.from_dict(data).devices["x86_64-onnx-laptop"].backend == "onnxruntime"
