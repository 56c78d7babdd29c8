"""Language ID for curation: py3langid vs lingua, speed and accuracy on real prose, one run.

    .venv/bin/python benchmarks/langid_compare.py [--prose /work/shared/data/prose] [--per-class 200]

Chunks of real text in en/fr/es/de/it/pt (Leipzig Wikipedia and web sentences,
Gutenberg "Alice" without the English license and credits) are cut at two lengths:
`short` (1-3 sentences) and `paragraph` (consecutive sentences, 400-1200
characters, web-page paragraph size). Each detector runs in its own spawned
process, so load time and resident memory are its own. Reported per detector:
accuracy (top-1 language right), kept@0.65 (right AND confidence >= 0.65, what
the curate language filter keeps at its default threshold), documents per
second on one core, load time and memory. Detectors see the text as
smoledge.data.langid.identify does (whitespace flattened).

Note: lingua-leipzig-sentences.*.txt are lingua's own evaluation sentences, a
home advantage for lingua; the per-source table shows it.

Result (2 vCPU dev machine shared with other jobs, load average ~4, so speeds
are noisy; 200 chunks per language and length, mean 239 / 760 characters):

  detector        short acc  kept@.65  para acc  kept@.65  short/s  para/s  load s    MB
  py3langid           0.993     0.975     1.000     1.000     3993    1605     1.4    98
  lingua (high)       0.994     0.949     1.000     1.000      386     237    20.8  1327
  lingua (low)        0.986     0.982     1.000     1.000      550     200     1.0   138

  short-chunk accuracy  de     en     es     fr     it     pt
  py3langid             1.000  0.995  0.975  1.000  1.000  0.990
  lingua (high)         1.000  1.000  0.990  0.995  1.000  0.980

Choice: py3langid stays (smoledge.data.langid). On paragraph-size text, what
curation classifies (a page is one or more paragraphs), all three are perfect
and confident. On 1-3 sentences lingua's high-accuracy mode is right 0.1 point
more often but confident less often (its scores are relative over 75
languages, so kept@0.65 is lower), and it is ~10x slower, loads in ~20 s and
takes ~1.3 GB in every curate worker process. lingua's low-accuracy mode is
less accurate than py3langid and slower.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import re
import time
from collections import defaultdict
from pathlib import Path

LANGS = ("en", "fr", "es", "de", "it", "pt")
DETECTORS = ("py3langid", "lingua (high)", "lingua (low)")
THRESHOLD = 0.65
_CREDITS = re.compile(r"gutenberg|https?://|proofread|produced by|e-text|transcriber", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?»])\s+(?=[A-ZÀ-Ý¿¡«\"“])")


def _gutenberg_body(text: str) -> str:
    """The book between the *** START / *** END markers (the license around it is English)."""
    start, end = text.find("*** START OF"), text.find("*** END OF")
    return text[text.index("\n", start) + 1:end] if start >= 0 and end > start else text


def sentences_of(path: Path) -> list[str]:
    """Sentences in file order: one per line (Leipzig), or split out of the paragraphs (Gutenberg)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.name.startswith("gutenberg"):
        out = []
        for para in re.split(r"\n\s*\n", _gutenberg_body(text)):
            flat = " ".join(para.split())
            # Headings, verse fragments and chapter numbers are not prose; the transcribers'
            # credits inside the book are English whatever the book's language.
            if len(flat) > 30 and not _CREDITS.search(flat):
                out += [s for s in _SENTENCE_END.split(flat) if len(s) > 15]
        return out
    return [line.strip() for line in text.splitlines() if len(line.strip()) > 15]


def make_chunks(prose: Path, per_class: int, seed: int = 0) -> list[tuple[str, str, str, str]]:
    """(language, length class, source, text) chunks, `per_class` per language and length."""
    rng = random.Random(seed)
    chunks = []
    for lang in LANGS:
        by_source = {p.name.split(".")[0]: sentences_of(p) for p in sorted(prose.glob(f"*.{lang}.txt"))}
        for length in ("short", "paragraph"):
            for k in range(per_class):
                source = sorted(by_source)[k % len(by_source)]
                sents = by_source[source]
                i = rng.randrange(len(sents) - 40)
                if length == "short":
                    text = " ".join(sents[i:i + rng.randint(1, 3)])
                else:
                    parts: list[str] = []
                    while sum(len(s) + 1 for s in parts) < rng.randint(400, 1200):
                        parts.append(sents[i + len(parts)])
                    text = " ".join(parts)
                chunks.append((lang, length, source, text))
    return chunks


def _load(name: str):
    """A function text -> (iso 639-1 code, confidence) for detector `name`."""
    if name == "py3langid":
        from smoledge.data.langid import identifier, identify

        identifier()
        return identify
    from lingua import LanguageDetectorBuilder

    builder = LanguageDetectorBuilder.from_all_languages()
    if name == "lingua (low)":
        builder = builder.with_low_accuracy_mode()
    detector = builder.with_preloaded_language_models().build()

    def detect(text: str) -> tuple[str, float]:
        best = detector.compute_language_confidence_values(" ".join(text.split()))[0]
        return best.language.iso_code_639_1.name.lower(), best.value

    return detect


def _run_detector(name: str, texts: list[str], lengths: list[str]) -> dict:
    """In a fresh process: load, then classify every text; predictions, timings, memory."""
    import psutil

    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    t = time.perf_counter()
    detect = _load(name)
    load_s = time.perf_counter() - t
    rss = proc.memory_info().rss - rss0
    preds, seconds = [], defaultdict(float)
    for text, length in zip(texts, lengths):
        t = time.perf_counter()
        preds.append(detect(text))
        seconds[length] += time.perf_counter() - t
    return {"preds": preds, "seconds": dict(seconds), "load_s": load_s, "rss_mb": rss / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prose", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "prose")
    ap.add_argument("--per-class", type=int, default=200, help="chunks per language and length class")
    args = ap.parse_args()
    chunks = make_chunks(args.prose, args.per_class)
    texts, lengths = [c[3] for c in chunks], [c[1] for c in chunks]
    n_by_length = {k: lengths.count(k) for k in ("short", "paragraph")}
    print(f"{len(chunks)} chunks: {n_by_length} over {', '.join(LANGS)}; mean chars short "
          f"{sum(len(c[3]) for c in chunks if c[1] == 'short') / n_by_length['short']:.0f}, paragraph "
          f"{sum(len(c[3]) for c in chunks if c[1] == 'paragraph') / n_by_length['paragraph']:.0f}\n")

    results = {}
    ctx = mp.get_context("spawn")
    for name in DETECTORS:
        with ctx.Pool(1) as pool:
            results[name] = pool.apply(_run_detector, (name, texts, lengths))

    print(f"{'detector':<15} {'short acc':>9} {'kept@.65':>9} {'para acc':>9} {'kept@.65':>9} "
          f"{'short/s':>8} {'para/s':>7} {'load s':>7} {'MB':>5}")
    for name, res in results.items():
        row = [f"{name:<15}"]
        for length in ("short", "paragraph"):
            idx = [i for i, c in enumerate(chunks) if c[1] == length]
            right = [res["preds"][i][0] == chunks[i][0] for i in idx]
            kept = [r and res["preds"][i][1] >= THRESHOLD for r, i in zip(right, idx)]
            row += [f"{sum(right) / len(idx):>9.3f}", f"{sum(kept) / len(idx):>9.3f}"]
        row += [f"{n_by_length[k] / res['seconds'][k]:>{w}.0f}" for k, w in (("short", 8), ("paragraph", 7))]
        row += [f"{res['load_s']:>7.1f}", f"{res['rss_mb']:>5.0f}"]
        print(" ".join(row))

    for title, key in (("short-chunk accuracy per language", 0), ("short-chunk accuracy per source", 2)):
        groups = sorted({c[key] for c in chunks})
        print(f"\n{title}\n{'detector':<15} " + " ".join(f"{g[:24]:>24}" for g in groups))
        for name, res in results.items():
            cells = []
            for g in groups:
                idx = [i for i, c in enumerate(chunks) if c[1] == "short" and c[key] == g]
                cells.append(f"{sum(res['preds'][i][0] == chunks[i][0] for i in idx) / len(idx):>24.3f}")
            print(f"{name:<15} " + " ".join(cells))


if __name__ == "__main__":
    main()
