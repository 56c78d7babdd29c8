"""What each exported model computes on this machine, to compare one machine with another. Torch-free: it runs
in the arm64 root with only smoledge[serve] installed, and on the x86 host the same way.

    python -m smoledge.arm64.fingerprint runs/arm64-check/export --tokenizer runs/arm64-check/bundle/tokenizer \
        --artifact model-q8_0.gguf --artifact onnx-int8-arm64 --out x86.npz

For every artifact (a GGUF through llama.cpp, an ONNX directory through onnxruntime) and every prompt (the
first PROMPT_TOKENS tokens of smoledge's built-in held-out text in each of its six languages):
  ids      the prompt's token ids from the bundle's tokenizer.json (tokenizers, Rust: compared too)
  logits   (T, V) float32, teacher-forced over the prompt: what top-1 agreement and |Δlogit| are taken on
  greedy   GREEDY_TOKENS ids decoded greedily after the prompt, against each runtime's own KV cache
The GGUF runs with an F32 KV cache (llama.cpp's F16 cache rounds K and V by ~1e-2 in logits, which would
mix a rounding choice into what is a kernel comparison), on N_THREADS threads on both machines.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from smoledge.errors import SmoledgeError
from smoledge.evaluate.builtin_text import builtin_documents
from smoledge.io import atomic_path

PROMPT_TOKENS = 48
GREEDY_TOKENS = 24
N_THREADS = 2


class Runtime(Protocol):
    def prefill(self, ids: list[int]) -> np.ndarray:
        """A new sequence; (T, V) logits."""

    def step(self, token: int) -> np.ndarray:
        """One more token; (V,) logits."""


class LlamaRuntime:
    def __init__(self, path: Path, n_ctx: int):
        from smoledge.export.parity import load_llama

        self.llm = load_llama(path, n_ctx=n_ctx, n_threads=N_THREADS)

    def prefill(self, ids: list[int]) -> np.ndarray:
        self.llm.reset()
        self.llm.eval(ids)
        return np.array(self.llm.scores[: len(ids)], dtype=np.float32)  # (T, V)

    def step(self, token: int) -> np.ndarray:
        self.llm.eval([token])
        return np.array(self.llm.scores[self.llm.n_tokens - 1], dtype=np.float32)  # (V,)


def open_runtime(path: Path, n_ctx: int) -> Runtime:
    if path.suffix == ".gguf":
        return LlamaRuntime(path, n_ctx)
    from smoledge.serve.ort_decoder import OrtDecoder

    return OrtDecoder(path, n_threads=N_THREADS)


def prompts(tokenizer_json: Path) -> dict[str, list[int]]:
    """Language -> the first PROMPT_TOKENS ids of its first built-in held-out document."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    return {lang: tok.encode(docs[0], add_special_tokens=False).ids[:PROMPT_TOKENS]
            for lang, docs in sorted(builtin_documents().items())}


def fingerprint(path: Path, ids_by_lang: dict[str, list[int]]) -> dict[str, np.ndarray]:
    """'<lang>/logits' (T, V) and '<lang>/greedy' (GREEDY_TOKENS,) for one artifact."""
    rt = open_runtime(path, n_ctx=PROMPT_TOKENS + GREEDY_TOKENS + 8)
    out: dict[str, np.ndarray] = {}
    for lang, ids in ids_by_lang.items():
        logits = rt.prefill(ids)                                                  # (T, V)
        greedy = [int(logits[-1].argmax())]
        for _ in range(GREEDY_TOKENS - 1):
            greedy.append(int(rt.step(greedy[-1]).argmax()))
        out[f"{lang}/logits"] = logits
        out[f"{lang}/greedy"] = np.asarray(greedy, dtype=np.int32)
    return out


def write(export_dir: Path, tokenizer_json: Path, artifacts: list[str], out: Path,
          log: Callable[[str], None] = print) -> Path:
    """One .npz: every artifact's fingerprint ('<artifact>/<lang>/...') and the prompt ids ('ids/<lang>')."""
    missing = [n for n in artifacts if not (export_dir / n).exists()]
    if missing:
        raise SmoledgeError(f"{export_dir} has no {', '.join(missing)}: name GGUF files or ONNX directories the "
                            "export wrote (`ls` it), or rebuild the export")
    if not tokenizer_json.is_file():
        raise SmoledgeError(f"{tokenizer_json} does not exist: give the bundle's tokenizer directory (--tokenizer)")
    ids = prompts(tokenizer_json)
    arrays = {f"ids/{lang}": np.asarray(v, dtype=np.int32) for lang, v in ids.items()}
    for name in artifacts:
        log(f"fingerprint {name}")
        arrays.update({f"{name}/{k}": v for k, v in fingerprint(export_dir / name, ids).items()})
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return out


@dataclass
class Agreement:
    """One artifact, this machine against the reference machine, over every prompt."""
    artifact: str
    ids_identical: bool
    greedy_identical: int
    """Prompts whose GREEDY_TOKENS greedy ids are the same on both."""
    prompts: int
    top1_agreement: float
    """Teacher-forced positions whose argmax is the same on both."""
    max_abs_logit_diff: float
    logit_scale: float
    """max |logit| on the reference: what the difference is measured against."""
    first_divergence: dict[str, int]
    """Language -> the first greedy position that differs (only where one does)."""


def compare(reference: Path, other: Path, artifacts: list[str]) -> list[Agreement]:
    ref, got = np.load(reference, allow_pickle=False), np.load(other, allow_pickle=False)
    langs = sorted(k.split("/", 1)[1] for k in ref.files if k.startswith("ids/"))
    keys = {f"ids/{lang}" for lang in langs} | {f"{name}/{lang}/{what}" for name in artifacts for lang in langs
                                                for what in ("logits", "greedy")}
    for path, data in ((reference, ref), (other, got)):
        missing = sorted(keys - set(data.files))
        if missing:
            raise SmoledgeError(f"{path} has no {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}: "
                                "fingerprint the same artifacts on both machines (`--artifact` for each)")
    ids_same = all(np.array_equal(ref[f"ids/{lang}"], got[f"ids/{lang}"]) for lang in langs)
    rows = []
    for name in artifacts:
        same, agree, n, diff, scale, diverge = 0, 0, 0, 0.0, 0.0, {}
        for lang in langs:
            a, b = ref[f"{name}/{lang}/logits"], got[f"{name}/{lang}/logits"]           # (T, V) each
            n += a.shape[0]
            scale = max(scale, float(np.abs(a).max()))
            if a.shape != b.shape:  # other prompt ids or another vocabulary: nothing agrees
                diff = float("inf")
            else:
                agree += int((a.argmax(-1) == b.argmax(-1)).sum())
                diff = max(diff, float(np.abs(a.astype(np.float64) - b).max()))
            ga, gb = ref[f"{name}/{lang}/greedy"], got[f"{name}/{lang}/greedy"]
            if np.array_equal(ga, gb):
                same += 1
            else:
                diverge[lang] = int(np.argmax(ga != gb))
        rows.append(Agreement(name, ids_same, same, len(langs), agree / n, diff, scale, diverge))
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("export_dir", type=Path)
    p.add_argument("--tokenizer", type=Path, required=True, help="the bundle's tokenizer directory")
    p.add_argument("--artifact", action="append", required=True, help="a GGUF file or ONNX directory in export_dir")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    write(a.export_dir, a.tokenizer / "tokenizer.json", a.artifact, a.out)


if __name__ == "__main__":
    main()
