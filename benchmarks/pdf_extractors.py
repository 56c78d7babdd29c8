"""pypdfium2, pdfminer.six, pypdf and PyMuPDF on real PDFs: speed, failures and text quality, in one run.

    .venv/bin/python benchmarks/pdf_extractors.py                # ../shared/data/pdf
    .venv/bin/python benchmarks/pdf_extractors.py some/dir --repeat 3
    .venv/bin/python benchmarks/pdf_extractors.py --per-doc      # each PDF's outcome too

PyMuPDF's rows need the opt-in AGPL extra (pip install 'smoledge[pdf-agpl]');
without it they are left out and the run says so.

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
  agree            text quality where no true text is known: agreement with the
                   majority. For each PDF that at least 3 single extractors read
                   as sane text, the majority text is the multiset of word bigrams
                   (words split at white space, each Chinese or Japanese character
                   a word; NFKC, lower-cased, typographic quotes and dashes
                   folded; consecutive pairs in reading order) that a strict
                   majority of those readings have, each as often as that
                   majority has it. Score: F1 of the bigrams of the text curation
                   would keep (none when the PDF is skipped or sent to OCR)
                   against it, averaged over those PDFs. 1.0 is the consensus
                   text; lost text, garbage, glued or hyphen-split words and
                   columns read across all lower it. The single rows form the
                   majority themselves, so it rewards agreeing, not being right.
  ref recall       against a known true text (REFERENCES: 3 PDFs): the fraction
                   of the reference's word bigrams found in the kept text, mean.

Rows: each extractor alone, then with other extractors' opinions, tried in turn
on the PDFs it cannot open or reads as garbage (pdf_text's `fallback`).

The choice made from this (pypdfium2, then pypdf, then pdfminer.six) is
explained in smoledge/data/pdf.py.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import datetime
import importlib
import importlib.util
import io
import logging
import os
import re
import statistics
import sys
import time
import unicodedata
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from smoledge.data.pdf import DEFAULT_EXTRACTOR, DEFAULT_MAX_GARBLED, FALLBACKS, pdf_text  # noqa: E402

TRUNCATE_AT = 0.6
SINGLES = ["pypdfium2", "pdfminer", "pypdf", "pymupdf"]
# (extractor, fallbacks): each one alone, then with other opinions, tried in turn.
CONFIGS = [(name, ()) for name in SINGLES] + [
    ("pypdfium2", ("pypdf",)), ("pypdfium2", ("pdfminer",)), ("pypdfium2", ("pypdf", "pdfminer")),
    ("pypdfium2", ("pdfminer", "pypdf")),
    ("pymupdf", ("pypdf",)),
]


def _zen() -> str:
    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints it
        import this
    return codecs.decode(this.s, "rot13").split("\n", 2)[2]  # without the title line


# Known true texts: simple5's is what pdfminer.six's own tests expect; the other two
# print the Zen of Python (the Google Doc under an "Example document" title).
REFERENCES = {
    "pdfminer.six/simple5.pdf": "Heading\nLink to heading that is working with vim-pandoc.\n"
    "Link to heading “that is” not working with vim-pandoc.\nSubheading\nSome “more text”\n1",
    "pdfminer.six/zen_of_python_corrupted.pdf": _zen(),
    "py-pdf-sample-files/011-google-doc-document__google-doc-document.pdf": "Example document\n" + _zen(),
}
_FOLD = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "−": "-", "–": "-", "—": "-"})
# Words: runs of non-space characters, except that Chinese and Japanese characters, written
# without spaces, are words of their own.
_CJK = "\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_WORD = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")


def bigrams(text: str) -> Counter:
    words = _WORD.findall(unicodedata.normalize("NFKC", text).translate(_FOLD).lower())
    return Counter(zip(words, words[1:]))


def f1(got: Counter, ref: Counter) -> float:
    common = sum((got & ref).values())
    return 2 * common / (sum(got.values()) + sum(ref.values())) if common else 0.0


def majority(bags: list[Counter]) -> Counter:
    """Each bigram as often as a strict majority of the bags have it."""
    need = len(bags) // 2 + 1
    out = Counter()
    for gram in set().union(*bags):
        counts = sorted((b[gram] for b in bags), reverse=True)
        if counts[need - 1]:
            out[gram] = counts[need - 1]
    return out


def label(extractor: str, fallbacks: tuple[str, ...]) -> str:
    return "+".join((extractor, *fallbacks)) + (" fallback" if fallbacks else "")


def measure(extractor: str, fallbacks: tuple[str, ...], blobs: dict[str, bytes], repeat: int) -> dict:
    def run(data: bytes):
        return pdf_text(data, extractor, DEFAULT_MAX_GARBLED, fallbacks)

    for name in (extractor, *fallbacks):  # warm-up: imports are not timed (each name is its module's)
        importlib.import_module(name)
    run(min(blobs.values(), key=len))
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        results = {key: run(data) for key, data in blobs.items()}
        best = min(best, time.perf_counter() - t)
    opened = [r for r in results.values() if r.reason not in ("encrypted", "corrupt")]
    cut = [run(d[: int(len(d) * TRUNCATE_AT)]) for d in blobs.values()]
    return {
        "label": label(extractor, fallbacks), "seconds": best, "docs_s": len(blobs) / best,
        "pages_s": sum(r.pages for r in opened) / best,
        "failed": len(blobs) - len(opened),
        "needs_ocr": sum(r.reason == "needs_ocr" for r in results.values()),
        "sane": sum(r.reason is None for r in results.values()),
        "garbled": statistics.mean(r.garbled for r in opened) if opened else 0.0,
        "trunc_ok": sum(r.reason is None for r in cut),
        "results": results,
    }


def score(rows: list[dict], keys: list[str]) -> int:
    """Adds 'agree', 'ref' and per-PDF scores to each row; returns how many PDFs had a majority."""
    singles = [r for r in rows if r["label"] in SINGLES]
    consensus = {}
    for key in keys:
        bags = [bigrams(r["results"][key].text) for r in singles if r["results"][key].reason is None]
        if len(bags) >= 3:
            consensus[key] = majority(bags)
    consensus = {k: v for k, v in consensus.items() if v}
    refs = {k: bigrams(t) for k, t in REFERENCES.items() if k in keys}
    for r in rows:
        kept = {k: bigrams(res.text) if res.reason is None else Counter() for k, res in r["results"].items()}
        r["agree_doc"] = {k: f1(kept[k], ref) for k, ref in consensus.items()}
        r["agree"] = statistics.mean(r["agree_doc"].values()) if consensus else float("nan")
        r["ref"] = (statistics.mean(sum((kept[k] & ref).values()) / sum(ref.values()) for k, ref in refs.items())
                    if refs else float("nan"))
    return len(consensus)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?", default=str(REPO.parent / "shared" / "data" / "pdf"))
    ap.add_argument("--repeat", type=int, default=1, help="timed passes per configuration (best is kept)")
    ap.add_argument("--per-doc", action="store_true", help="also print each PDF's outcome")
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # pypdf and pdfminer log every repair; the table is the output

    paths = sorted(Path(args.folder).rglob("*.pdf"))
    if not paths:
        sys.exit(f"no .pdf files under {args.folder}")
    missing = [name for name in SINGLES if importlib.util.find_spec(name) is None]
    configs = [c for c in CONFIGS if not {c[0], *c[1]} & set(missing)]
    blobs = {str(p.relative_to(args.folder)): p.read_bytes() for p in paths}
    load = os.getloadavg()
    print(f"{len(blobs)} PDFs, {sum(map(len, blobs.values())) / 1e6:.1f} MB, from {args.folder}")
    print(f"{datetime.date.today()}, {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"(1/5/15 min) at the start")
    if missing:
        print(f"not installed, rows left out: {', '.join(missing)}")
    rows = [measure(ex, fb, blobs, args.repeat) for ex, fb in configs]
    n_agree = score(rows, list(blobs))
    default = label(DEFAULT_EXTRACTOR, FALLBACKS[DEFAULT_EXTRACTOR])
    n = len(blobs)
    print(f"\n| extractor | docs/s | pages/s | total s | failed | needs OCR | sane | mean garbled "
          f"| trunc {TRUNCATE_AT:.0%} sane | agree ({n_agree} PDFs) | ref recall ({len(REFERENCES)} PDFs) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        name = f"**{r['label']} (default)**" if r["label"] == default else r["label"]
        print(f"| {name} | {r['docs_s']:.1f} | {r['pages_s']:.0f} | {r['seconds']:.2f} | {r['failed']}/{n} "
              f"| {r['needs_ocr']}/{n} | {r['sane']}/{n} | {r['garbled']:.3f} | {r['trunc_ok']}/{n} "
              f"| {r['agree']:.3f} | {r['ref']:.3f} |")
    load = os.getloadavg()
    print(f"\nload average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min) at the end")
    if args.per_doc:
        print()
        for key in blobs:
            print(key)
            for r in rows:
                res = r["results"][key]
                what = res.reason or f"{res.pages}p g={res.garbled:.3f} {res.extractor}"
                agree = r["agree_doc"].get(key)
                print(f"    {r['label']:28s} {what}" + (f"  agree={agree:.3f}" if agree is not None else ""))


if __name__ == "__main__":
    main()
