"""YaRN context extension, configured at export: the exported model reads `factor` x its trained context.

YaRN (Peng et al. 2023) rescales RoPE's low frequencies (those that turn less than once over the trained
context) by 1/factor, keeps the high ones, ramps between them, and scales attention logits by
(0.1 ln(factor) + 1)^2. It needs no training, and transformers, onnxruntime (the graph optimum traces)
and llama.cpp (GGUF keys written by smoledge.export.gguf) all compute it from the config written here.

    from smoledge.export.yarn import apply_yarn
    apply_yarn("runs/q/export/hf", 4.0)   # config.json: rope_scaling yarn, max_position_embeddings x 4
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from smoledge.errors import SmoledgeError
from smoledge.export.gguf_constants import YARN_ROPE_TYPE
from smoledge.io import atomic_write_text


def yarn_rope_scaling(trained: int, factor: float) -> dict[str, Any]:
    """transformers' rope_scaling for YaRN over a model trained at `trained` tokens."""
    return {"rope_type": YARN_ROPE_TYPE, "factor": float(factor), "original_max_position_embeddings": int(trained)}


def apply_yarn(hf_dir: str | Path, factor: float, trained: int | None = None) -> dict[str, Any] | None:
    """Rewrite hf_dir/config.json for YaRN x`factor` (1.0: leave it alone). Returns the rope_scaling written.

    `trained` (default: the config's max_position_embeddings) is the context the model was trained at;
    it becomes the rope_scaling's original_max_position_embeddings, and max_position_embeddings becomes
    trained x factor, as transformers expects (its YaRN validation warns when the two disagree). YaRN's
    ramp is placed by it: frequencies that turn less than once over it are the ones interpolated."""
    if factor == 1.0:
        return None
    path = Path(hf_dir) / "config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    if cfg.get("rope_scaling"):
        raise SmoledgeError(f"{path} already has rope_scaling {cfg['rope_scaling']}; export.yarn_factor would scale "
                            "it twice. Set export.yarn_factor: 1.0 to export the model's own scaling")
    trained = int(trained or cfg["max_position_embeddings"])
    cfg["rope_scaling"] = yarn_rope_scaling(trained, factor)
    cfg["max_position_embeddings"] = int(round(trained * factor))
    atomic_write_text(path, json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return cfg["rope_scaling"]


def trained_context(cfg: dict[str, Any]) -> tuple[int, float]:
    """(trained context, YaRN factor) of a config.json dict: (max_position_embeddings, 1.0) without scaling."""
    rs = cfg.get("rope_scaling") or {}
    if rs.get("rope_type", rs.get("type")) == YARN_ROPE_TYPE:
        factor = float(rs["factor"])
        trained = rs.get("original_max_position_embeddings") or int(cfg["max_position_embeddings"])
        return int(trained), factor
    return int(cfg["max_position_embeddings"]), 1.0


def parity_text_beyond_trained(hf_dir: str | Path, text: str) -> str | None:
    """For a YaRN-scaled HF directory, `text` repeated past its trained context; None for plain RoPE."""
    from transformers import AutoTokenizer

    trained, factor = trained_context(json.loads((Path(hf_dir) / "config.json").read_text(encoding="utf-8")))
    if factor == 1.0:
        return None
    return beyond_trained_text(AutoTokenizer.from_pretrained(hf_dir), text, trained, factor)


def beyond_trained_text(tokenizer: Any, text: str, trained: int, factor: float) -> str:
    """`text` repeated until it tokenizes past the trained context (by a quarter of it, within
    trained x factor): the parity text at positions only YaRN makes meaningful."""
    target = min(int(trained * factor), trained + max(16, trained // 4))
    n = len(tokenizer.encode(text, add_special_tokens=False))
    if n == 0:
        raise SmoledgeError("the parity text tokenizes to nothing; set export.parity_text to a sentence")
    k = -(-target // n)
    while True:
        # Joined by spaces a repeat may merge a token or two: count the result, not the parts.
        long = " ".join([text] * k)
        if len(tokenizer.encode(long, add_special_tokens=False)) > trained:
            return long
        k += 1
