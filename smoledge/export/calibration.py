"""Calibration text for quantization: windows of token ids from the curated training split.

Static int8 (ONNX QDQ) needs activation ranges and llama.cpp's importance matrix needs
activation energies; both must come from the text the model will see, never from the
held-out split the evaluate stage scores. Windows take documents language by language in
turn, so every language of the corpus shapes the ranges, and the choice is deterministic.

    from smoledge.tokenizer.shards import Shard
    from smoledge.export.calibration import calibration_windows
    windows = calibration_windows(Shard.open("runs/quickstart/tokenizer/shards", "train"), 32, 256)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from smoledge.errors import SmoledgeError


def calibration_windows(shard: Any, n_windows: int, seq_len: int) -> list[list[int]]:
    """`n_windows` windows of `seq_len` ids, each cut from consecutive documents of one language,
    the languages taking turns (round robin in the shard's language order)."""
    if n_windows < 1 or seq_len < 2:
        raise ValueError(f"need n_windows >= 1 and seq_len >= 2, got {n_windows}, {seq_len}")
    if shard.num_docs == 0:
        raise SmoledgeError("the training split is empty, so there is no text to calibrate quantization on; "
                            "curate more documents or turn off export.onnx_int8_static and export.imatrix")
    # Per language, its documents' ids back to back (documents already end with EOS).
    streams = {}
    for lang in np.unique(shard.lang):
        docs = np.flatnonzero(shard.lang == lang)  # (n_docs_lang,)
        streams[int(lang)] = (docs, 0, 0)  # (doc indices, next doc, offset into it)
    windows: list[list[int]] = []
    langs = list(streams)
    while len(windows) < n_windows and langs:
        for lang in list(langs):
            window, (docs, d, off) = [], streams[lang]
            while len(window) < seq_len and d < len(docs):
                doc = shard.doc(int(docs[d]))
                take = doc[off: off + seq_len - len(window)]
                window.extend(int(t) for t in take)
                off += len(take)
                if off >= len(doc):
                    d, off = d + 1, 0
            streams[lang] = (docs, d, off)
            if len(window) == seq_len:
                windows.append(window)
            else:
                langs.remove(lang)  # this language's text is used up
            if len(windows) == n_windows:
                break
    if not windows:
        raise SmoledgeError(f"the training split holds no run of {seq_len} tokens in one language to calibrate "
                            f"on; lower export.calibration_seq_len")
    return windows
