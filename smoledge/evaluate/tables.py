"""The evaluate stage's tables: the quantization table and its reference, and report.md and the summary line
rendered from report.json (smoledge.evaluate.report draws report.html from the same dict).

    from smoledge.evaluate.tables import report_markdown
    print(report_markdown(json.load(open("runs/quickstart/evaluate/report.json"))))
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from smoledge.layout import ONNX_FP32, ExportFiles

HF_ARTIFACT = "hf"
# The fp32 reference each runtime's quantized artifacts are compared with.
GGUF_FP32 = ExportFiles(Path()).gguf("f32").name


def reference_of(name: str, files: dict[str, list[Path]]) -> str:
    """The artifact `name`'s perplexity change is measured against: the fp32 artifact of its runtime, or, when
    there is none (an imported GGUF), the largest artifact of that runtime present: the best one there is."""
    fp32 = GGUF_FP32 if name.endswith(".gguf") else ONNX_FP32
    if fp32 in files:
        return fp32
    same = [n for n in files if n.endswith(".gguf") == name.endswith(".gguf")]
    return max(same, key=lambda n: sum(p.stat().st_size for p in files[n]))


def reference_note(table: dict[str, Any], files: dict[str, list[Path]]) -> str:
    """The sentence the report gives for what Δ ppl is measured against (`files`: artifact name -> its files)."""
    refs = sorted({reference_of(n, files) for n in table})
    if all(r in (GGUF_FP32, ONNX_FP32) for r in refs):
        return "Δ ppl is against the fp32 artifact of the same runtime (model-f32.gguf, onnx)"
    return (f"no fp32 artifact (the model was imported quantized, with no PyTorch reference): Δ ppl is against "
            f"the best artifact present, {', '.join(refs)}")


def quant_table(overall: dict[str, Any], files: dict[str, list[Path]], params: int) -> dict[str, dict[str, float]]:
    """Per GGUF or ONNX artifact: bytes on disk, bits per weight (file bits / parameters: for a GGUF its
    metadata and tokenizer included, as a device stores them), overall perplexity and its change vs the
    fp32 artifact of the same runtime (model-f32.gguf for GGUF files, onnx/ for ONNX ones)."""
    table = {}
    for name, s in overall.items():
        if name not in files:
            continue
        ref = overall.get(reference_of(name, files))
        size = sum(p.stat().st_size for p in files[name])
        delta = 100 * (s.ppl / ref.ppl - 1) if ref is not None and ref.ppl > 0 else float("nan")
        table[name] = {"bytes": size, "bits_per_weight": 8 * size / max(params, 1), "ppl": s.ppl,
                       "ppl_delta_pct_vs_fp32": delta}
    return table


def quant_markdown(table: dict[str, dict[str, float]], note: str) -> str:
    if not table:
        return ""
    lines = ["# Quantization", "",
             note + ".", "",
             "| artifact | size | bits/weight | ppl | Δ ppl vs fp32 |", "|---|---:|---:|---:|---:|"]
    for name, row in table.items():
        lines.append(f"| {name} | {row['bytes'] / 1e6:.2f} MB | {row['bits_per_weight']:.2f} | {row['ppl']:.3f} | "
                     f"{row['ppl_delta_pct_vs_fp32']:+.2f}% |")
    return "\n".join(lines) + "\n"


def markdown_table(report: dict[str, dict[str, dict[str, float]]], title: str = "Held-out perplexity") -> str:
    """Rows: artifacts; columns: ppl / bpb per language."""
    langs = sorted({lang for per in report.values() for lang in per})
    head = "| artifact | " + " | ".join(f"{l} ppl | {l} bpb" for l in langs) + " |"
    sep = "|---|" + "---:|---:|" * len(langs)
    lines = [f"# {title}", "", head, sep]
    for name, per in report.items():
        cells = [f"{per[l]['ppl']:.2f} | {per[l]['bpb']:.3f}" if l in per else "- | -" for l in langs]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    first = next(iter(report.values()))
    tokens = ", ".join(f"{l} {first[l]['tokens']}" for l in langs if l in first)
    lines += ["", f"Tokens scored per language: {tokens}.", ""]
    return "\n".join(lines)


def passkey_markdown(passkey: dict[str, Any]) -> str:
    """Accuracy by context length (mean over depths), one row per artifact."""
    if not passkey:
        return ""
    lengths = sorted({int(n) for g in passkey.values() for n in g["by_length"]})
    lines = ["# Passkey retrieval", "", "Accuracy per context length (mean over needle depths).", "",
             "| artifact | " + " | ".join(str(n) for n in lengths) + " | falls off |",
             "|---|" + "---:|" * len(lengths) + "---|"]
    for label, g in passkey.items():
        cells = [f"{g['by_length'][str(n)]:.2f}" if str(n) in g["by_length"] else "-" for n in lengths]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {g['falloff_text']} |")
    return "\n".join(lines) + "\n"


def report_markdown(report: dict[str, Any]) -> str:
    parts = [markdown_table(report["perplexity"])]
    for name, per in report["eval_sets"].items():
        parts.append(markdown_table(per, f"Eval set: {name}"))
    parts.append(quant_markdown(report["quantization"], report.get("reference") or reference_note({}, {})))
    if report["devices"]:
        parts.append("# Devices\n\n| device | artifact | threads | context | why |\n|---|---|---:|---:|---|\n" + "".join(
            f"| {n} | {d['artifact'] or 'none suits'} | {d['threads']} | {d['n_ctx']} | {d['reason']} |\n"
            for n, d in report["devices"].items()))
    parts.append(passkey_markdown(report["passkey"]))
    for task, per in report["tasks"].items():
        parts.append(f"# Task: {task}\n\n| artifact | n | acc | ± stderr | acc_norm | acc_bytes | chance |\n"
                     "|---|---:|---:|---:|---:|---:|---:|\n" + "".join(
                         f"| {label} | {r['n']} | {r['acc']:.3f} | {r['acc_stderr']:.3f} | {r['acc_norm']:.3f} | "
                         f"{r['acc_bytes']:.3f} | {r['chance']:.3f} |\n" for label, r in per.items()))
    if report["gates"]:
        parts.append("# Gates\n\n| gate | device | artifact | measured | limit | result |\n|---|---|---|---:|---:|---|\n"
                     + "".join(f"| {g['gate']} | {g['device']} | {g['artifact']} | {g['measured']:.4g} | "
                               f"{g['limit']:.4g} | {'pass' if g['passed'] else 'FAIL'} |\n" for g in report["gates"]))
    return "\n".join(p for p in parts if p)


def summary_line(ppl: dict[str, dict[str, dict[str, float]]], overall: dict[str, Any],
                 table: dict[str, dict[str, float]] | None = None,
                 devices: dict[str, dict[str, Any]] | None = None) -> str:
    """e.g. 'ppl en 21.3 fr 24.0 (q8_0 8.5 bpw Δ +0.3%) laptop: q8_0': HF per language, drift, device picks."""
    # The PyTorch model, or for an imported GGUF (no weights to run) the best artifact present.
    ref_name = HF_ARTIFACT if HF_ARTIFACT in ppl else max(overall, key=lambda n: (table or {}).get(n, {}).get("bytes", 0))
    ref = ppl[ref_name]
    parts = ["ppl " + " ".join(f"{lang} {v['ppl']:.1f}" for lang, v in ref.items())]
    base = overall[ref_name].ppl
    drifts = []
    for name, s in overall.items():
        if name != ref_name and math.isfinite(base) and base > 0:
            label = name.removeprefix("model-").removesuffix(".gguf")
            bpw = f" {table[name]['bits_per_weight']:.1f} bpw" if table and name in table else ""
            drifts.append(f"{label}{bpw} \u0394 {100 * (s.ppl / base - 1):+.2f}%")
    if drifts:
        parts.append("(" + ", ".join(drifts) + ")")
    for name, d in (devices or {}).items():
        parts.append(f"{name}: {d['artifact']}")
    return " ".join(parts)
