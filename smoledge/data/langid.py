"""Language identification with py3langid, as normalized probabilities.

    from smoledge.data.langid import identify
    identify("Der Zug fuhr um 7 Uhr ab.")   # ("de", 0.99...)

The model covers 97 languages; it is never restricted to the target ones,
otherwise a Dutch page would be forced into "de" or "en" with a confident
score instead of being recognised as foreign.

Why py3langid (benchmarks/langid_compare.py, real prose in the six languages):
on paragraph-size text it and lingua-language-detector are both 100% right
and confident; on 1-3 sentences py3langid is right 99.3% of the time against
lingua's 99.4% (high-accuracy mode), while lingua is ~10x slower, loads in
~20 s and holds ~1.3 GB in each curate worker (py3langid: ~1 s, ~0.1 GB).
Both ship their model inside the PyPI package, so both run offline.

py3langid counts a text's features by walking its bytes through an
Aho-Corasick automaton in a Python loop (~1 ms for a 5 kB page, a third of
identify). The state after any byte depends only on the last `depth` bytes
(the automaton's depth, 6 for this model), so here numpy walks every
window of `depth` bytes at once: the same counts in the same order, hence
the same scores bit for bit (tests/test_filter_speed.py), ~2x sooner.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

# Scoring is linear in length; the first characters decide as well as the
# whole of a very long page, so long pages are cut (cost stays bounded).
MAX_CHARS = 20_000

# Bumped when the cache's files change (2: classes.json records the automaton's depth).
CACHE_LAYOUT = "v2"

_IDENTIFIER: Any = None
log = logging.getLogger(__name__)


def automaton_depth(nextmove: Any, rowbase: Any) -> int:
    """The most bytes any state of the feature automaton stands for: its breadth-first depth from the start.

    `nextmove` is py3langid's transition table, `rowbase` each state's pre-shifted row offset."""
    import numpy as np

    table = np.frombuffer(nextmove, dtype=np.dtype(nextmove.typecode))
    rows = np.asarray(rowbase, dtype=np.int64)
    seen = np.zeros(len(rows), dtype=bool)
    seen[0] = True
    frontier, depth = np.zeros(1, dtype=np.int64), 0
    while True:
        reached = [np.unique(table[(rows[part][:, None] + np.arange(256)).ravel()])  # (len(part) * 256,)
                   for part in np.array_split(frontier, max(1, len(frontier) // 4096))]
        nxt = np.unique(np.concatenate(reached)).astype(np.int64)
        nxt = nxt[~seen[nxt]]
        if not len(nxt):
            return depth
        seen[nxt] = True
        frontier, depth = nxt, depth + 1


@functools.cache
def _identifier_class() -> type:
    import numpy as np
    from py3langid.langid import LanguageIdentifier

    class WindowedIdentifier(LanguageIdentifier):
        """py3langid's LanguageIdentifier with its feature counts computed by numpy over byte windows."""

        __slots__ = ("depth", "_table", "_rows", "_outputs")

        def __init__(self, *args: Any, depth: int | None = None, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.depth = automaton_depth(self.tk_nextmove, self._rowbase) if depth is None else depth
            self._table = np.frombuffer(self.tk_nextmove, dtype=np.dtype(self.tk_nextmove.typecode))
            self._rows = np.asarray(self._rowbase, dtype=np.int64)
            self._outputs = np.asarray(self.tk_output, dtype=np.int64)

        def visits(self, text: bytes) -> dict[int, int] | None:
            """py3langid's visit_counts: {feature: times met}, in the order first met; None when none."""
            depth, nextmove, rowbase = self.depth, self.tk_nextmove, self._rowbase
            head, state = [], 0
            for letter in text[:depth - 1]:  # the first bytes have fewer than `depth` before them
                state = nextmove[rowbase[state] + letter]
                head.append(self.tk_output[state])
            found = np.asarray(head, dtype=np.int64)
            if len(text) >= depth:
                data = np.frombuffer(text, dtype=np.uint8)
                windows = len(text) - depth + 1
                states = np.zeros(windows, dtype=np.int64)  # (windows,): every window walked at once
                for k in range(depth):
                    states = self._table[self._rows[states] + data[k:k + windows]]
                found = np.concatenate([found, self._outputs[states]])  # (len(text),)
            found = found[found >= 0]
            if not len(found):
                return None
            features, first, counts = np.unique(found, return_index=True, return_counts=True)
            order = np.argsort(first, kind="stable")
            return dict(zip(features[order].tolist(), counts[order].tolist()))

        def _raw_score(self, text: bytes) -> Any:
            visits = self.visits(text)
            if visits is None:  # py3langid's score of a featureless text
                return super()._raw_score(text)
            return self._sparse_score(visits, self.nb_ptc)

    return WindowedIdentifier


def identifier() -> Any:
    """The py3langid identifier with normalized probabilities (loaded once per process).

    Its feature-by-language table is held as float32 instead of the model's float16:
    scoring multiplied a float16 slice, which numpy first copied to float32 on every
    call (half of identify's time); the float32 values are the same, so are the
    scores, bit for bit (tests/test_filter_speed.py).

    The model ships LZMA-compressed (0.45 s to load in every curate worker), so the
    first load also writes it out uncompressed to $SMOLEDGE_CACHE/py3langid/ (else
    ~/.cache/smoledge; ~100 MB), and later loads read that instead (~0.05 s), with
    the float32 table memory-mapped: the workers of a run share one copy of it.
    """
    global _IDENTIFIER
    if _IDENTIFIER is None:
        model = _cached_model()
        if model is None:
            _IDENTIFIER = _load_model()
        else:
            ptc, pc, classes, nextmove, output, row, depth = model
            _IDENTIFIER = _identifier_class()(ptc, pc, classes, nextmove, output, norm_probs=True, tk_row=row,
                                              depth=depth)
    return _IDENTIFIER


def _model_cache_dir() -> Any:
    import hashlib
    from importlib import metadata

    from py3langid.langid import MODEL_DIR, MODEL_FILE

    from smoledge.pypi_assets import cache_root

    digest = hashlib.sha256((MODEL_DIR / MODEL_FILE).read_bytes()).hexdigest()[:16]
    return cache_root() / "py3langid" / f"{metadata.version('py3langid')}-{digest}-{CACHE_LAYOUT}"


def _load_model() -> Any:
    """The identifier from py3langid's packaged model, its table as float32; writes the cache."""
    import numpy as np
    from py3langid.langid import MODEL_FILE

    ident = _identifier_class().from_model_file(MODEL_FILE, norm_probs=True)
    if ident.nb_ptc.dtype == np.float16:
        ident.nb_ptc = ident.nb_ptc.astype(np.float32)
        ident._full_model = (ident.nb_ptc, *ident._full_model[1:])  # drops the float16 copy
    try:
        _write_cache(ident)
    except OSError as exc:  # a read-only home: the next worker decompresses again, that is all
        log.debug("py3langid model cache not written: %r", exc)
    return ident


def _write_cache(ident: Any) -> None:
    import json
    import os
    import shutil
    import tempfile

    import numpy as np

    final = _model_cache_dir()
    if final.is_dir():
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent)
    try:
        np.save(os.path.join(tmp, "ptc.npy"), np.ascontiguousarray(ident.nb_ptc, dtype=np.float32))
        np.save(os.path.join(tmp, "pc.npy"), np.asarray(ident.nb_pc))
        np.save(os.path.join(tmp, "nextmove.npy"), np.frombuffer(ident.tk_nextmove, dtype=ident.tk_nextmove.typecode))
        np.save(os.path.join(tmp, "row.npy"), np.frombuffer(ident.tk_row, dtype=ident.tk_row.typecode))
        np.save(os.path.join(tmp, "output.npy"), np.asarray(ident.tk_output, dtype=np.int64))
        with open(os.path.join(tmp, "classes.json"), "w", encoding="utf-8") as f:
            json.dump({"classes": list(ident.nb_classes), "nextmove": ident.tk_nextmove.typecode,
                       "row": ident.tk_row.typecode, "depth": ident.depth}, f)
        os.replace(tmp, final)  # whole or not at all; a worker that lost the race leaves its copy
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _cached_model() -> list[Any] | None:
    """[nb_ptc (memory-mapped), nb_pc, nb_classes, tk_nextmove, tk_output, tk_row, automaton depth] from the
    cache, or None."""
    import json
    from array import array

    import numpy as np

    try:
        d = _model_cache_dir()
        if not (d / "classes.json").is_file():
            return None
        meta = json.loads((d / "classes.json").read_text(encoding="utf-8"))
        ptc = np.load(d / "ptc.npy", mmap_mode="r", allow_pickle=False)
        nextmove, row = array(meta["nextmove"]), array(meta["row"])
        nextmove.frombytes(np.load(d / "nextmove.npy", allow_pickle=False).tobytes())
        row.frombytes(np.load(d / "row.npy", allow_pickle=False).tobytes())
        output = np.load(d / "output.npy", allow_pickle=False).tolist()
        if ptc.dtype != np.float32 or len(row) != len(output) or ptc.shape[1] != len(meta["classes"]):
            return None
        return [ptc, np.load(d / "pc.npy", allow_pickle=False), meta["classes"], nextmove, output, row,
                int(meta["depth"])]
    except Exception as exc:  # a damaged or partial cache: load the packaged model
        log.debug("py3langid model cache unusable: %r", exc)
        return None


def _flat(text: str) -> str:
    """What the model reads: the first MAX_CHARS characters, newlines as spaces (as FineWeb does)."""
    return " ".join(text[:MAX_CHARS].split())


def identify(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, probability in [0, 1]) of the most likely language."""
    flat = _flat(text)
    if not flat:
        return "und", 0.0
    lang, score = identifier().classify(flat)
    return str(lang), float(score)


def probability_of(text: str, languages: set[str]) -> float:
    """The probability that `text` is in one of `languages` (ISO 639-1), by the same model and
    normalisation as identify()."""
    flat = _flat(text)
    if not flat:
        return 1.0  # nothing to judge by: no evidence against any language
    return float(sum(p for lang, p in identifier().rank(flat) if lang in languages))
