"""Gopher repetition's n-gram statistics, datatrove's numbers computed faster, and the filter that uses them.

    from smoledge.data.repetition import fast_gopher_repetition_class
    step = fast_gopher_repetition_class()(language="en")   # a datatrove GopherRepetitionFilter
    step.filter(document)                                   # datatrove's decision and reason

tests/test_filter_speed.py checks every statistic against datatrove's own on random words (with
"".join collisions) and the filter's decisions on real pages, and pins the datatrove source the
filter copies.
"""

from __future__ import annotations

import operator
from collections import Counter
from functools import lru_cache
from typing import Any, Iterable, Iterator


def top_ngram_chars(words: list[str], n: int) -> int | None:
    """datatrove's find_top_duplicate(get_n_grams(words, n)), or None where there is no n-gram.

    The same n-grams (" "-joined) in the same order, counted by Counter in C, so
    most_common breaks ties the same way."""
    if len(words) < n:
        return None
    gram, count = Counter(map(" ".join, zip(*(words[k:] for k in range(n))))).most_common(1)[0]
    return len(gram) * count


def joined_ngrams(words: list[str], sizes: Iterable[int]) -> Iterator[tuple[int, list[str]]]:
    """(n, datatrove's "".join of every n consecutive words) for each n of `sizes`, built lazily in order.

    An n one more than the previous one appends one word to each of the previous grams, which
    costs about half of joining n words afresh (Gopher's sizes are 5, 6, ..., 10)."""
    last, grams = 0, []
    for n in sizes:
        if last and n == last + 1:
            grams = list(map(operator.add, grams, words[n - 1:]))
        else:
            grams = list(map("".join, zip(*(words[k:] for k in range(n)))))
        last = n
        yield n, grams


def repeated_ngram_chars(grams: list[str], n: int) -> int:
    """datatrove's find_all_duplicate(words, n), given the joined n-grams of the words: characters of the
    n-grams met again, left to right, skipping the n words of each repeat. A page with no repeated
    n-gram (most pages, for n >= 5) is settled by one set."""
    if len(set(grams)) == len(grams):
        return 0
    seen: set[str] = set()
    repeated, idx, end = 0, 0, len(grams)
    while idx < end:
        gram = grams[idx]
        if gram in seen:
            repeated += len(gram)
            idx += n
        else:
            seen.add(gram)
            idx += 1
    return repeated


@lru_cache(maxsize=None)
def fast_gopher_repetition_class() -> type:
    from datatrove.pipeline.filters import GopherRepetitionFilter
    from datatrove.pipeline.filters.gopher_repetition_filter import find_duplicates
    from datatrove.utils.text import split_into_words

    class FastGopherRepetitionFilter(GopherRepetitionFilter):
        """datatrove's GopherRepetitionFilter (0.9.0) with its n-gram statistics computed faster:
        `filter` is datatrove's line for line, with top_ngram_chars and joined_ngrams +
        repeated_ngram_chars for its get_n_grams/find_top_duplicate and find_all_duplicate
        (the same numbers, so the same decisions and reasons; tests/test_filter_speed.py
        compares them, and pins the datatrove source this copies). They were 60% of the
        filter's own time."""

        def filter(self, doc: Any) -> bool | tuple[bool, str]:
            text = doc.text

            paragraphs = self.paragraph_exp.split(text.strip())
            paragraphs_duplicates, char_duplicates = find_duplicates(paragraphs)
            if self.dup_para_frac and paragraphs_duplicates / len(paragraphs) > self.dup_para_frac:
                return False, "dup_para_frac"
            if self.dup_para_char_frac and char_duplicates / len(text) > self.dup_para_char_frac:
                return False, "dup_para_char_frac"

            lines = self._line_splitter.split(text)
            line_duplicates, char_duplicates = find_duplicates(lines)
            if self.dup_line_frac and line_duplicates / len(lines) > self.dup_line_frac:
                return False, "dup_line_frac"
            if self.dup_line_char_frac and char_duplicates / len(text) > self.dup_line_char_frac:
                return False, "dup_line_char_frac"

            words = split_into_words(text, self.language)

            for n, n_frac in self.top_n_grams:
                top_char_length = top_ngram_chars(words, n)
                if top_char_length is None:
                    continue
                if top_char_length / len(text) > n_frac:
                    return False, f"top_{n}_gram"

            sizes = [n for n, _ in self.dup_n_grams]
            for (n, n_frac), (_, grams) in zip(self.dup_n_grams, joined_ngrams(words, sizes)):
                n_duplicates_char = repeated_ngram_chars(grams, n)
                if n_duplicates_char / len(text) > n_frac:
                    return False, f"duplicated_{n}_n_grams"

            return True

    return FastGopherRepetitionFilter
