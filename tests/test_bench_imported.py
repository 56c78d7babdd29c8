"""`smoledge bench` on models smoledge did not train: the GGUF's own metadata and tensor table name the family
and quantization and give the weight bytes of the roofline (smoledge.bench.gguf_info), checked against gguf-py
on the real SmolLM2-135M-Instruct, on GGUFs gguf-py writes, and end to end through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from smoledge.bench.gguf_info import identity, read_gguf
from smoledge.cli import main
from smoledge.errors import SmoledgeError


def test_tensor_table_matches_gguf_py(smollm2_gguf: Path) -> None:
    from gguf import GGUFReader

    ref = GGUFReader(smollm2_gguf)
    info = read_gguf(smollm2_gguf)
    assert [(t.name, t.type_id, t.shape, t.nbytes) for t in info.tensors] == \
        [(t.name, int(t.tensor_type), tuple(int(d) for d in t.shape), int(t.n_bytes)) for t in ref.tensors]
    for key in ("general.architecture", "general.basename", "general.size_label", "general.file_type",
                "llama.block_count", "llama.attention.head_count_kv"):
        assert info.metadata[key] == ref.fields[key].contents()
    assert "tokenizer.ggml.tokens" not in info.metadata  # arrays are skipped, not kept
    ident = identity(info)
    assert ident["architecture"] == "llama" and ident["family"] == "llama · smollm2 135M"
    assert ident["quantization"] == "Q4_1"  # general.file_type 3, although token_embd is Q8_0
    assert list(ident["tensor_types"]) == ["Q4_1", "Q8_0", "F32"]
    # Tied embeddings (no output.weight): the output layer reads the whole table, so every byte counts.
    assert ident["weight_bytes_per_token"] == sum(int(t.n_bytes) for t in ref.tensors)


def write_gguf(path: Path, tied: bool, file_type: int | None, name: str | None = None) -> Path:
    import gguf

    w = gguf.GGUFWriter(path, "llama")
    if name:
        w.add_name(name)
        w.add_size_label("7M")
    if file_type is not None:
        w.add_file_type(file_type)
    rng = np.random.default_rng(0)
    w.add_tensor("token_embd.weight", rng.standard_normal((100, 16)).astype(np.float32))  # 100 tokens x 16
    if not tied:
        w.add_tensor("output.weight", rng.standard_normal((100, 16)).astype(np.float32))
    for i in range(3):
        w.add_tensor(f"blk.{i}.ffn_up.weight", rng.standard_normal((64, 64)).astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_untied_embeddings_read_one_row_and_missing_file_type_is_guessed(tmp_path: Path) -> None:
    embd, blocks = 100 * 16 * 4, 3 * 64 * 64 * 2
    untied = identity(read_gguf(write_gguf(tmp_path / "untied.gguf", tied=False, file_type=None)))
    # The lookup reads one 16-float row; the output layer reads its whole table.
    assert untied["weight_bytes_per_token"] == 16 * 4 + embd + blocks
    assert untied["tensor_types"] == {"F16": blocks, "F32": 2 * embd}
    # No general.file_type: the type holding most bytes, marked as a guess.
    assert untied["quantization"] == "F16 (guessed)" and untied["family"] == "llama"
    tied = identity(read_gguf(write_gguf(tmp_path / "tied.gguf", tied=True, file_type=1, name="Tiny")))
    assert tied["weight_bytes_per_token"] == embd + blocks
    assert tied["quantization"] == "F16" and tied["family"] == "llama · Tiny 7M"


def test_unreadable_gguf_is_named(tmp_path: Path, smollm2_gguf: Path) -> None:
    (tmp_path / "x.gguf").write_bytes(b"PK\x03\x04 a zip")
    with pytest.raises(SmoledgeError, match="x.gguf is not a GGUF file"):
        read_gguf(tmp_path / "x.gguf")
    raw = smollm2_gguf.read_bytes()
    (tmp_path / "head.gguf").write_bytes(raw[:200_000])  # cut inside the vocabulary array
    with pytest.raises(SmoledgeError, match="head.gguf ends inside its GGUF header; the file is truncated"):
        read_gguf(tmp_path / "head.gguf")
    (tmp_path / "half.gguf").write_bytes(raw[:len(raw) // 2])  # the header whole, half the weights
    with pytest.raises(SmoledgeError, match="half.gguf: tensor .* lies past the end of the file; the file is trunc"):
        read_gguf(tmp_path / "half.gguf")


def test_bench_real_smollm2_row(smollm2_gguf: Path, tmp_path: Path, capsys) -> None:
    # A bare GGUF nobody recorded anything about: everything comes from the file.
    gguf = shutil.copyfile(smollm2_gguf, tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf")
    out = tmp_path / "bench.json"
    rc = main(["bench", str(gguf), "--device", "x86_64-avx2-laptop", "--repeats", "1", "--pp", "32", "--tg", "8",
               "--ttft-prompt", "0", "--out", str(out)])
    table = capsys.readouterr().out
    assert rc == 0
    [row] = json.loads(out.read_text())["results"]
    assert row["architecture"] == "llama" and row["family"] == "llama · smollm2 135M" and row["quantization"] == "Q4_1"
    roof = row["roofline"]
    assert roof["weight_bytes"] == row["weight_bytes_per_token"] == row["model_bytes"] == 96_576_768
    # 30 layers x 3 KV heads x 64 x K and V x f16.
    assert row["kv_bytes_per_position"] == 30 * 3 * 64 * 2 * 2
    assert 0 < roof["fraction"] < 1.5
    [tg] = [line for line in table.splitlines() if "| tg8 |" in line]
    assert "| llama · smollm2 135M | Q4_1 | " in tg and tg.endswith(f"| {100 * roof['fraction']:.1f}% |")
