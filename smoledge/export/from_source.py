"""The export stage's input when the recipe imports its model (`model.source`) instead of training one.

An HF directory or hub id is copied into export/hf/ and then exported like a distilled student: every GGUF
and ONNX file gated on parity with PyTorch. A .gguf is different: the file *is* the model, so it is placed
as export/model-<its quantization>.gguf untouched (re-quantizing an already quantized file only adds
rounding), checked to load and run in llama.cpp, and export/hf/ gets its config, tokenizer and generation
config but no weights. There is no PyTorch reference; evaluate measures it against the best artifact
present and its report says so.

    from smoledge.export.from_source import import_gguf
    report = import_gguf(Path("SmolLM2-135M-Instruct.Q4_1.gguf"), Path("runs/x/export"))
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from smoledge.errors import SmoledgeError
from smoledge.io import atomic_dir, atomic_path, atomic_write_json
from smoledge.layout import ExportFiles

# What parity.json says in place of a PyTorch comparison.
NO_REFERENCE = ("imported GGUF: there is no PyTorch reference (its weights exist only quantized); evaluate "
                "measures it against the best artifact present")


def gguf_dtype(path: Path) -> str:
    """The file's quantization as an export type name (q4_1, q8_0, f16...), from general.file_type."""
    from smoledge.bench.gguf_info import quantization, read_gguf

    name = quantization(read_gguf(path))
    if name.endswith("(guessed)") or name == "unknown":
        name = name.split()[0]
    return name.lower()


def import_gguf(gguf: Path, out_dir: Path) -> dict[str, Any]:
    """Place `gguf` as out_dir/model-<type>.gguf and its config and tokenizer in out_dir/hf/; write and return
    parity.json (the llama.cpp load check, no PyTorch comparison)."""
    from transformers import AutoConfig, GenerationConfig

    from smoledge.export.kquant import tensor_types
    from smoledge.export.parity import probe_gguf
    from smoledge.tokenizer.from_gguf import tokenizer_from_gguf

    files = ExportFiles(out_dir)
    dtype = gguf_dtype(gguf)
    dst = files.gguf(dtype)
    with atomic_path(dst) as tmp:
        try:
            os.link(gguf, tmp)  # same filesystem: no copy of a large file
        except OSError:
            shutil.copyfile(gguf, tmp)
    probe_gguf(dst)
    tok = tokenizer_from_gguf(dst)
    try:
        config = AutoConfig.from_pretrained(dst.parent, gguf_file=dst.name)
    except (ValueError, KeyError, OSError) as exc:
        raise SmoledgeError(f"transformers cannot read the architecture of {gguf.name} ({type(exc).__name__}: "
                            f"{str(exc).strip()[:200]}); import the model's HF directory instead") from None
    eos = [t for t in (tok.eos_token_id,) if t is not None]
    with atomic_dir(files.hf) as tmp:
        config.bos_token_id, config.eos_token_id, config.pad_token_id = tok.bos_token_id, tok.eos_token_id, \
            tok.pad_token_id
        config.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=eos or None,
                         pad_token_id=tok.pad_token_id).save_pretrained(tmp)
    report: dict[str, Any] = {
        "source": {"gguf": str(gguf), "type": dtype},
        "reference": None,
        "note": NO_REFERENCE,
        "order": [dtype],
        "files": {dst.name: {"bytes": dst.stat().st_size, "tensor_types": tensor_types(dst), "imported": True}},
    }
    atomic_write_json(files.parity, report)
    return report
