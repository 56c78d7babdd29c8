"""Near-duplicate detection quality of curate's MinHash LSH on planted pairs of known Jaccard similarity.

    .venv/bin/python benchmarks/dedup_quality.py                       # 14 bands x 8 rows, 5-gram shingles
    .venv/bin/python benchmarks/dedup_quality.py --bases 3000 --bands 20 --rows 5

Base documents are the clean pages of the built-in sample (smoledge.data.sample,
six languages). Each base gets --variants copies edited to a target Jaccard
similarity J of word 5-gram shingles drawn uniformly from [0.3, 1.0]: words are
replaced by, or inserted from, the same language's vocabulary, at the rate that
makes a shingle survive with probability 2J/(1+J). The *actual* J of every pair
is then measured on the exact shingle sets (smoledge.data.dedup.shingles), and
the pair's bucket is the measured J, not the target.

A pair counts as detected when curate's own dedup code (Signer signatures,
then cluster() over the base and the variant) drops the variant as a near
duplicate of its base: the LSH step judged pair by pair, so chains through
other variants cannot inflate the numbers. Exact-duplicate removal is off, so
the J = 1.0 bucket (case/spacing changes only) tests the LSH too.

Printed: a table by J bucket (pairs, detected, rate, and the LSH S-curve
1 - (1 - J^rows)^bands at the bucket's mean J), recall at J >= 0.85
(target >= 0.95), false-positive rate at J <= 0.5 (target <= 0.01), and how
many pairs of *different* bases share an LSH bucket.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from smoledge.data.dedup import Signer, band_leaders, cluster, normalize, shingles  # noqa: E402
from smoledge.data.sample import generate  # noqa: E402

BUCKETS = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.85), (0.85, 0.9), (0.9, 0.95),
           (0.95, 1.0), (1.0, 1.0)]
EXACT_SHARE = 0.05  # variants with no word edits (case and spacing only): the J = 1.0 bucket


def jaccard(a: str, b: str, n: int) -> float:
    sa, sb = set(shingles(normalize(a), n)), set(shingles(normalize(b), n))
    return len(sa & sb) / len(sa | sb)


def variant(text: str, target_j: float, vocab: list[str], rng: random.Random, n: int) -> str:
    """Edit words so a shingle survives with probability s = 2J/(1+J) (then J(shingles) ~ target_j)."""
    words = text.split()
    if target_j >= 1.0:
        return " ".join(w.upper() if rng.random() < 0.1 else w for w in words) + " "
    survive = 2 * target_j / (1 + target_j)
    p = 1 - survive ** (1 / n)  # per-word edit rate: a shingle of n words survives with (1-p)^n
    out: list[str] = []
    for w in words:
        if rng.random() < p:
            if rng.random() < 0.7:  # replace the word
                out.append(rng.choice(vocab))
            else:  # insert a word before it
                out += [rng.choice(vocab), w]
        else:
            out.append(w)
    return " ".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bases", type=int, default=2000, help="base documents")
    ap.add_argument("--variants", type=int, default=2, help="edited copies per base")
    ap.add_argument("--bands", type=int, default=14)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--ngram", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    t0 = time.time()

    # Clean pages only: the sample's own planted duplicates would be bases that copy each other.
    bases: list[tuple[str, str]] = []
    for rec in generate(int(args.bases / 0.7) + 200, seed=args.seed):
        if rec["meta"]["kind"] in ("clean", "passkey"):
            bases.append((rec["meta"]["lang"], rec["text"]))
        if len(bases) == args.bases:
            break
    vocab: dict[str, list[str]] = defaultdict(list)
    for lang, text in bases:
        vocab[lang] += text.split()

    pairs: list[tuple[int, str, float]] = []  # (base index, variant text, measured J)
    for b, (lang, text) in enumerate(bases):
        for _ in range(args.variants):
            target = 1.0 if rng.random() < EXACT_SHARE else rng.uniform(0.3, 1.0)
            v = variant(text, target, vocab[lang], rng, args.ngram)
            pairs.append((b, v, jaccard(text, v, args.ngram)))

    signer = Signer(args.bands * args.rows, args.ngram)
    base_signed = [signer(text) for _, text in bases]
    detected: list[bool] = []
    for b, v, _ in pairs:
        vk, vs = signer(v)
        sigs = np.stack([base_signed[b][1], vs])  # (2, num_perm)
        res = cluster([base_signed[b][0], vk], sigs, args.bands, args.rows, exact=False)
        detected.append(not res.keep[1])

    print(f"{len(bases)} base pages, {len(pairs)} planted pairs, LSH {args.bands} bands x {args.rows} rows "
          f"({args.bands * args.rows} permutations), word {args.ngram}-gram shingles, seed {args.seed}")
    print()
    print(f"{'J bucket':<14}{'pairs':>7}{'detected':>10}{'rate':>9}{'S-curve':>10}")
    for lo, hi in BUCKETS:
        # Half-open buckets; J = 1.0 exactly has its own row.
        idx = [k for k, (_, _, j) in enumerate(pairs) if (j == 1.0 if lo == hi else lo <= j < hi)]
        name = "1.0" if lo == hi else f"[{lo:.2f}, {hi:.2f})"
        if not idx:
            print(f"{name:<14}{0:>7}")
            continue
        hits = sum(detected[k] for k in idx)
        mean_j = float(np.mean([pairs[k][2] for k in idx]))
        theory = 1 - (1 - mean_j ** args.rows) ** args.bands
        print(f"{name:<14}{len(idx):>7}{hits:>10}{hits / len(idx):>9.3f}{theory:>10.3f}")

    hi_idx = [k for k, (_, _, j) in enumerate(pairs) if j >= 0.85]
    lo_idx = [k for k, (_, _, j) in enumerate(pairs) if j <= 0.5]
    recall = sum(detected[k] for k in hi_idx) / max(len(hi_idx), 1)
    fpr = sum(detected[k] for k in lo_idx) / max(len(lo_idx), 1)
    print()
    print(f"recall at J >= 0.85:            {recall:.4f}  ({sum(detected[k] for k in hi_idx)}/{len(hi_idx)} pairs; "
          f"target >= 0.95: {'met' if recall >= 0.95 else 'NOT met'})")
    print(f"false-positive rate at J <= 0.5: {fpr:.4f}  ({sum(detected[k] for k in lo_idx)}/{len(lo_idx)} pairs; "
          f"target <= 0.01: {'met' if fpr <= 0.01 else 'NOT met'})")

    # Different bases: every pair that shares a bucket in some band, and how alike they really are.
    sigs = np.stack([s for _, s in base_signed])  # (n_bases, num_perm)
    candidates: set[tuple[int, int]] = set()
    for leader in band_leaders(sigs, args.bands, args.rows):
        for a in np.flatnonzero(leader != np.arange(len(bases))):
            candidates.add((int(leader[a]), int(a)))
    low = sum(jaccard(bases[a][1], bases[b][1], args.ngram) <= 0.5 for a, b in candidates)
    total = len(bases) * (len(bases) - 1) // 2
    print(f"different-base pairs sharing an LSH bucket: {len(candidates)} of {total} "
          f"({low} of them with J <= 0.5)")
    print(f"({time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
