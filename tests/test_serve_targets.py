"""`smoledge serve TARGET` for every kind of TARGET: a bare GGUF described by its own metadata, an HF
directory served through its export (or refused with the command that makes one), and every kind of
bad target refused with what it was taken for and what is accepted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest
from test_serve_api import REPO, free_port

from smoledge.errors import SmoledgeError
from smoledge.serve.config import ServeConfig
from smoledge.serve.targets import ACCEPTED, resolve

def hf_copy(src: Path, dst: Path, weights: bool = True) -> Path:
    """A copy of an HF model directory (weights linked, not copied)."""
    dst.mkdir(parents=True)
    for p in src.iterdir():
        if p.suffix == ".safetensors":
            if weights:
                (dst / p.name).symlink_to(p)
        elif p.is_file():
            shutil.copy(p, dst / p.name)
    return dst


def ready_client(app, http) -> openai.OpenAI:
    deadline = time.monotonic() + 60
    while http.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, http.get("/ready").text
        time.sleep(0.05)
    return openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=http, max_retries=0)


def test_a_bare_gguf_is_described_by_its_metadata(tiny_gguf: Path, tiny_model_dir: Path) -> None:
    served = resolve(tiny_gguf)
    s, t = served.settings, served.target
    tok_config = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    assert served.kind == "gguf" and s.model_id == tiny_gguf.stem == "model-f32"
    assert (t.backend, t.model_path, t.device) == ("llama.cpp", tiny_gguf, None)
    # The writer records the tokenizer's template, special tokens and the trained context.
    assert s.chat_template == (tiny_model_dir / "chat_template.jinja").read_text()
    assert s.eos_token == tok_config["eos_token"] and s.eos_token in s.stop_tokens
    assert "<|im_end|>" in s.stop_tokens  # llama.cpp ends a generation on it: so does the server
    assert s.n_ctx_train == 512 and s.n_ctx == t.n_ctx == 512


def test_a_bare_gguf_serves_chat_through_the_openai_client(tiny_gguf: Path) -> None:
    from fastapi.testclient import TestClient

    from smoledge.serve.server import create_app

    app = create_app(ServeConfig(target=str(tiny_gguf), threads=1))
    with TestClient(app) as http:
        client = ready_client(app, http)
        assert [m.id for m in client.models.list().data] == ["model-f32"]
        chat = client.chat.completions.create(model="model-f32", messages=[{"role": "user", "content": "Ciao"}],
                                              max_tokens=8, temperature=0)
        assert chat.choices[0].finish_reason in ("stop", "length") and chat.usage.prompt_tokens > 5
        # The prompt is the file's ChatML template rendered: it ends with the assistant's header.
        prompt = http.post("/tokenize", json={"content": "<|im_start|>assistant\n", "with_pieces": True}).json()
        assert prompt["tokens"][0]["piece"] == "<|im_start|>"


def test_a_bare_gguf_takes_n_ctx_up_to_its_trained_context(tiny_gguf: Path) -> None:
    from smoledge.config import ConfigError
    from smoledge.serve.server import create_app

    state = create_app(ServeConfig(target=str(tiny_gguf), n_ctx=256)).state.smoledge
    assert state.n_ctx == 256
    with pytest.raises(ConfigError, match="--n-ctx 1024 exceeds the model's trained context of 512 tokens"):
        create_app(ServeConfig(target=str(tiny_gguf), n_ctx=1024))


def test_an_hf_directory_is_served_through_its_gguf(tmp_path: Path, tiny_model_dir: Path, tiny_gguf: Path) -> None:
    hf = hf_copy(tiny_model_dir, tmp_path / "my-model")
    # The HF directory lists a second end-of-turn id in generation_config.json, as Llama 3 does.
    gen = json.loads((hf / "generation_config.json").read_text())
    im_end = json.loads((hf / "tokenizer.json").read_text())["added_tokens"]
    im_end_id = next(t["id"] for t in im_end if t["content"] == "<|im_end|>")
    (hf / "generation_config.json").write_text(json.dumps({**gen, "eos_token_id": [gen["eos_token_id"], im_end_id]}))
    shutil.copy(tiny_gguf, hf / "model-f32.gguf")
    served = resolve(hf)
    assert served.kind == "hf" and served.target.backend == "llama.cpp"
    assert served.target.model_path == hf / "model-f32.gguf" and served.settings.model_id == "my-model"
    assert "<|im_end|>" in served.settings.stop_tokens and "model-f32.gguf" in served.note


def test_the_export_stage_layout_serves_its_preferred_gguf(tmp_path: Path, tiny_model_dir: Path,
                                                            tiny_gguf: Path) -> None:
    hf = hf_copy(tiny_model_dir, tmp_path / "export" / "hf")
    for name in ("model-f32.gguf", "model-q8_0.gguf"):
        (tmp_path / "export" / name).symlink_to(tiny_gguf)
    (tmp_path / "export" / "imatrix.gguf").write_bytes(b"not a model")
    served = resolve(hf)
    assert served.target.model_path.name == "model-q8_0.gguf" and served.note.endswith("../model-q8_0.gguf")


def test_an_hf_directory_without_export_is_refused_with_the_command(tmp_path: Path, tiny_model_dir: Path) -> None:
    hf = hf_copy(tiny_model_dir, tmp_path / "SmolLM2-135M-Instruct")
    # A model next to it is another model, not its export.
    shutil.copy(tiny_model_dir / "config.json", tmp_path / "model-q8_0.gguf")
    with pytest.raises(SmoledgeError, match=rf"{hf} was taken for an HF model directory; .* found none in it or "
                                            rf"next to it\. Make one with `smoledge deploy {hf} --device "
                                            r"x86_64-avx2-laptop`"):
        resolve(hf)


def test_an_hf_directory_without_tokenizer_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    hf = tmp_path / "bare"
    hf.mkdir()
    shutil.copy(tiny_model_dir / "config.json", hf / "config.json")
    with pytest.raises(SmoledgeError, match=r"was taken for an HF model directory \(it has config.json\), but it "
                                            r"has no tokenizer \(tokenizer.json, tokenizer_config.json\)"):
        resolve(hf)


@pytest.mark.parametrize("make, taken_for", [
    (lambda d, g: d / "missing.gguf", "does not exist"),
    (lambda d, g: _write(d / "notes.txt", b"hello"), "was taken for a file that is none of these"),
    (lambda d, g: _write(d / "weights.bin", g.read_bytes()), "was taken for a GGUF file named without .gguf"),
    (lambda d, g: _write(d / "notes.gguf", b"not a model at all"), "does not start with the GGUF magic"),
    (lambda d, g: _write(d / "half.gguf", g.read_bytes()[:1000]), "llama.cpp cannot read it"),
    (lambda d, g: _mkdir(d / "empty"), "no manifest.json .*no model.onnx .*no config.json"),
])
def test_bad_targets_say_what_they_were_taken_for(tmp_path: Path, tiny_gguf: Path, make, taken_for: str) -> None:
    target = make(tmp_path, tiny_gguf)
    with pytest.raises(SmoledgeError, match=taken_for) as e:
        resolve(target)
    assert str(target) in str(e.value)
    if "llama.cpp" not in taken_for:  # a GGUF llama.cpp cannot read is a GGUF: "get it again" is the fix
        assert ACCEPTED in str(e.value)


def test_device_needs_a_bundle(tiny_gguf: Path) -> None:
    with pytest.raises(SmoledgeError, match="--device picks one of a bundle's per-device models, and .* is not a "
                                            "bundle"):
        resolve(tiny_gguf, device="rpi5-8gb")


def test_the_cli_refuses_a_bad_target_without_a_traceback(tmp_path: Path) -> None:
    notes = _write(tmp_path / "notes.txt", b"hello")
    out = subprocess.run([sys.executable, "-m", "smoledge.cli", "serve", str(notes), "--port", str(free_port())],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert f"serve target {notes} was taken for a file that is none of these; pass " in out.stderr


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path
