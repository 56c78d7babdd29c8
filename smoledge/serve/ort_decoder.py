"""Greedy-ready decoding over smoledge's ONNX exports with onnxruntime and numpy only. Torch-free.

    from smoledge.serve.ort_decoder import OrtDecoder
    dec = OrtDecoder("runs/quickstart/export/onnx-int8-avx2", n_threads=2)
    logits = dec.prefill([1, 2, 3])          # (3, V): a new sequence
    token = int(logits[-1].argmax())
    logits = dec.step(token)                 # (V,): one more token, read against the KV cache
    dec.reset()                              # forget the sequence

The graph is optimum's text-generation-with-past decoder, as `smoledge export` writes it
(onnx/model.onnx, onnx-int8-*/model_quantized.onnx):
  inputs   input_ids (B, T), attention_mask (B, past + T), position_ids (B, T),
           past_key_values.<i>.key / .value (B, n_kv, past, head_dim) for every layer i
  outputs  logits (B, T, V), present.<i>.key / .value (B, n_kv, past + T, head_dim)
Each call's presents are the next call's pasts. They stay onnxruntime OrtValues between calls, so the
cache never round-trips through numpy; only the logits are copied out. One sequence at a time, batch 1:
an instance is not safe to share between threads.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from smoledge.errors import SmoledgeError
from smoledge.export.onnx import model_file  # numpy-only at import: fine on a board

PAST = re.compile(r"past_key_values\.(\d+)\.(key|value)")
# onnxruntime's type strings for the tensors this graph can carry.
DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
          "tensor(int32)": np.int32}


class OrtDecoder:
    def __init__(self, onnx_dir: str | Path, n_threads: int | None = None):
        """Open the graph in `onnx_dir` on the CPU; n_threads caps onnxruntime's intra-op pool
        (a device profile's thread count), None leaves onnxruntime's default (every core)."""
        import onnxruntime as ort

        self.dir = Path(onnx_dir)
        self.path = self.dir / model_file(self.dir)
        if not self.path.is_file():
            raise SmoledgeError(f"{self.dir} holds no model.onnx or model_quantized.onnx; export one with "
                                f"`smoledge export` (export.onnx: true)")
        options = ort.SessionOptions()
        if n_threads:
            options.intra_op_num_threads = n_threads
            options.inter_op_num_threads = 1  # one decoder graph: no independent branches worth a second pool
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own RuntimeError subclasses for unreadable graphs
            raise SmoledgeError(f"onnxruntime could not load {self.path} ({type(exc).__name__}: {exc}); "
                                f"re-run `smoledge export`") from None
        self._ort = ort
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        layers = sorted({int(m.group(1)) for name in inputs if (m := PAST.fullmatch(name))})
        if "input_ids" not in inputs or "logits" not in outputs or not layers:
            raise SmoledgeError(f"{self.path} is not a decoder with a KV cache (inputs {sorted(inputs)}); "
                                f"export it with task text-generation-with-past (`smoledge export`)")
        self.past_names = [f"past_key_values.{i}.{kv}" for i in layers for kv in ("key", "value")]
        self.present_names = [n.replace("past_key_values.", "present.") for n in self.past_names]
        missing = [n for n in self.past_names + self.present_names if n not in inputs and n not in outputs]
        if missing:
            raise SmoledgeError(f"{self.path} lacks {missing[0]}; re-run `smoledge export`")
        self.output_names = ["logits", *self.present_names]
        first = inputs[self.past_names[0]]
        _, n_kv, _, head_dim = first.shape  # (B, n_kv, past, hd): only n_kv and hd are fixed numbers
        self.n_layers = len(layers)
        self.n_kv_heads, self.head_dim = int(n_kv), int(head_dim)
        self.kv_dtype = DTYPES[first.type]
        self.id_dtype = DTYPES[inputs["input_ids"].type]
        self.mask_dtype = DTYPES[inputs["attention_mask"].type] if "attention_mask" in inputs else None
        self.has_position_ids = "position_ids" in inputs
        vocab = outputs["logits"].shape[-1]
        self.config = self._read_config()
        self.n_vocab = int(vocab) if isinstance(vocab, int) else int(self.config.get("vocab_size", 0))
        self.n_ctx_train: int | None = self.config.get("max_position_embeddings")
        """Longest context the model was built for (config.json); None when the directory has no config."""
        self.reset()

    def _read_config(self) -> dict[str, Any]:
        path = self.dir / "config.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    @property
    def kv_cache_bytes_per_position(self) -> int:
        """Bytes one position of context adds to the cache: K and V of every layer."""
        return 2 * self.n_layers * self.n_kv_heads * self.head_dim * np.dtype(self.kv_dtype).itemsize

    def reset(self) -> None:
        """Forget the sequence: the next call starts from an empty cache."""
        empty = np.zeros((1, self.n_kv_heads, 0, self.head_dim), dtype=self.kv_dtype)  # (1, n_kv, 0, hd)
        self._past = {name: self._ort.OrtValue.ortvalue_from_numpy(empty) for name in self.past_names}
        self.n_past = 0

    def eval(self, ids: list[int]) -> np.ndarray:
        """Append `ids` to the sequence; (T, V) float32 logits, row t predicting the token after ids[t]."""
        if len(ids) == 0:
            raise ValueError("OrtDecoder.eval needs at least one token id")
        n = len(ids)
        ortvalue = self._ort.OrtValue.ortvalue_from_numpy
        feeds = {"input_ids": ortvalue(np.asarray([ids], dtype=self.id_dtype)), **self._past}  # (1, T)
        if self.mask_dtype is not None:
            feeds["attention_mask"] = ortvalue(np.ones((1, self.n_past + n), dtype=self.mask_dtype))  # (1, past + T)
        if self.has_position_ids:
            positions = np.arange(self.n_past, self.n_past + n, dtype=np.int64)[None]  # (1, T)
            feeds["position_ids"] = ortvalue(positions)
        out = self.session.run_with_ort_values(self.output_names, feeds)
        self._past = dict(zip(self.past_names, out[1:]))  # (1, n_kv, past + T, hd) each
        self.n_past += n
        return out[0].numpy()[0]  # (T, V)

    def prefill(self, ids: list[int]) -> np.ndarray:
        """Start a new sequence with the prompt `ids`; (T, V) logits."""
        self.reset()
        return self.eval(ids)

    def step(self, token: int) -> np.ndarray:
        """Decode one token against the cache; (V,) logits for the token after it."""
        return self.eval([token])[-1]
