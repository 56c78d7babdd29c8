"""PyMuPDF vs pypdf on real PDFs: speed, failures and a text-quality proxy, in one run.

    .venv/bin/python benchmarks/pdf_extractors.py                # ../shared/data/pdf
    .venv/bin/python benchmarks/pdf_extractors.py some/dir --repeat 3

For every PDF under the folder, each configuration runs the code curation runs.
Columns:

  docs/s, pages/s  wall time of smoledge.data.pdf.pdf_text (open, extract every
                   page, clean, garbled check) over all PDFs, best of --repeat
  failed           PDFs that could not be opened (encrypted with a real
                   password, or unreadable)
  needs OCR        PDFs routed to OCR: no text layer, a scan, or garbled
  sane             PDFs whose text curation would keep (neither of the above)
  mean garbled     mean garbled fraction (smoledge.data.pdf.garbled_fraction)
                   over the PDFs that opened
  trunc sane       copies cut at 60% of their bytes (a truncated download)
                   that still give sane text

Rows: each extractor alone, then PyMuPDF with the pypdf second opinion that
curation uses by default.

The choice made from this (PyMuPDF by default) is explained in
smoledge/data/pdf.py.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from smoledge.data.pdf import DEFAULT_MAX_GARBLED, pdf_text  # noqa: E402

TRUNCATE_AT = 0.6
# (label, extractor, fallback): each one alone, then the default curation uses.
CONFIGS = [("pymupdf", "pymupdf", False), ("pypdf", "pypdf", False), ("pymupdf+pypdf fallback", "pymupdf", True)]


def measure(label: str, extractor: str, fallback: bool, blobs: dict[str, bytes], repeat: int) -> dict:
    def run(data: bytes):
        return pdf_text(data, extractor, DEFAULT_MAX_GARBLED, fallback)

    run(min(blobs.values(), key=len))  # warm-up: the first call imports the library
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        results = {key: run(data) for key, data in blobs.items()}
        best = min(best, time.perf_counter() - t)
    opened = [r for r in results.values() if r.reason not in ("encrypted", "corrupt")]
    cut = [run(d[: int(len(d) * TRUNCATE_AT)]) for d in blobs.values()]
    return {
        "label": label, "seconds": best, "docs_s": len(blobs) / best,
        "pages_s": sum(r.pages for r in opened) / best,
        "failed": len(blobs) - len(opened),
        "needs_ocr": sum(r.reason == "needs_ocr" for r in results.values()),
        "sane": sum(r.reason is None for r in results.values()),
        "garbled": statistics.mean(r.garbled for r in opened) if opened else 0.0,
        "trunc_ok": sum(r.reason is None for r in cut),
        "per_doc": {k: r.reason or f"{r.pages}p g={r.garbled:.3f} {r.extractor}" for k, r in results.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?", default=str(REPO.parent / "shared" / "data" / "pdf"))
    ap.add_argument("--repeat", type=int, default=1, help="timed passes per extractor (best is kept)")
    ap.add_argument("--per-doc", action="store_true", help="also print each PDF's outcome")
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # pypdf logs every repair; the table is the output

    paths = sorted(Path(args.folder).rglob("*.pdf"))
    if not paths:
        sys.exit(f"no .pdf files under {args.folder}")
    blobs = {str(p.relative_to(args.folder)): p.read_bytes() for p in paths}
    print(f"{len(blobs)} PDFs, {sum(map(len, blobs.values())) / 1e6:.1f} MB, from {args.folder}\n")
    rows = [measure(label, ex, fb, blobs, args.repeat) for label, ex, fb in CONFIGS]
    n = len(blobs)
    print(f"| extractor | docs/s | pages/s | total s | failed | needs OCR | sane | mean garbled "
          f"| trunc {TRUNCATE_AT:.0%} sane |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['label']} | {r['docs_s']:.1f} | {r['pages_s']:.0f} | {r['seconds']:.2f} | {r['failed']}/{n} "
              f"| {r['needs_ocr']}/{n} | {r['sane']}/{n} | {r['garbled']:.3f} | {r['trunc_ok']}/{n} |")
    if args.per_doc:
        print()
        for key in blobs:
            print(key)
            for r in rows:
                print(f"    {r['label']:24s} {r['per_doc'][key]}")


if __name__ == "__main__":
    main()
