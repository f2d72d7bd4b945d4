"""64-bit hashes of word n-grams and a sorted index of them, for decontamination.

Tokens are forgekit's word tokens (forgekit.evaluate.text.words: NFKC, lowercase, punctuation
dropped, every CJK character a token of its own), so an n-gram is n words of English or n
characters of Chinese, and a mixed text gets both. Each token is hashed by the tabulation hash
MinHash's "fast" path uses (forgekit.evaluate.minhash.hashfunc), combined per window of n
tokens into a full 64-bit hash: with 10^7 benchmark n-grams and 10^8 record n-grams, the
expected number of false matches is about 10^-4.

The index holds the benchmarks' n-gram hashes sorted and unique, each with the first item
that has it and a bit mask of the benchmarks that have it. A lookup first tests a bitmap
(a few bits per indexed n-gram, one random memory access per query n-gram), and only the few
queries that pass it go through a binary search.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from forgekit.evaluate.minhash.hashfunc import (
    NGRAM_SEED,
    _ngram_multipliers,
    _token_bytes,
    fmix64,
    token_hashes,
)

MAX_BENCHMARKS = 64  # one bit each in a uint64 mask


def ngram_hashes(texts: Sequence[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(flat uint64 hashes of every window of n tokens, windows per text). A text with fewer
    than n tokens has no window: it cannot share an n-gram with anything."""
    parts = [_token_bytes(t, "words") for t in texts]
    count = len(parts)
    if count == 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    tok_hash, tok_counts = token_hashes(parts)
    counts = np.maximum(tok_counts - n + 1, 0)
    total = int(counts.sum())
    width = len(tok_hash) - n + 1
    if total == 0 or width <= 0:
        return np.zeros(0, dtype=np.uint64), counts
    tok_first = np.zeros(count, dtype=np.int64)
    np.cumsum(tok_counts[:-1], out=tok_first[1:])
    window_first = np.zeros(count, dtype=np.int64)
    np.cumsum(counts[:-1], out=window_first[1:])
    begin = np.repeat(tok_first - window_first, counts) + np.arange(total, dtype=np.int64)
    with np.errstate(over="ignore"):
        acc = np.full(width, NGRAM_SEED, dtype=np.uint64)
        for j, mul in enumerate(_ngram_multipliers(n)):
            acc += tok_hash[j : j + width] * np.uint64(mul)
        return fmix64(acc[begin]), counts


class NgramIndex:
    """The n-grams of benchmark items: `item_of[k]` (a global item number) is the first item
    holding unique hash k, `benchmarks[k]` the bit mask of benchmarks holding it."""

    def __init__(self, hashes: np.ndarray, items: np.ndarray, bench_of_item: np.ndarray):
        order = np.argsort(hashes)
        sorted_hashes = hashes[order]
        first = np.flatnonzero(np.r_[True, sorted_hashes[1:] != sorted_hashes[:-1]])
        first = first[: len(sorted_hashes)]  # no hashes: no first
        self.hashes = sorted_hashes[first]
        sorted_items = items[order]
        # the first item wins a shared hash
        self.item_of = np.minimum.reduceat(sorted_items, first) if len(first) else sorted_items[:0]
        bits = np.left_shift(np.uint64(1), bench_of_item[sorted_items].astype(np.uint64))
        self.benchmarks = (
            np.bitwise_or.reduceat(bits, first) if len(first) else np.zeros(0, dtype=np.uint64)
        )
        # ~16 bits per n-gram, a power of two, between 2^16 and 2^31 bits (256 MB)
        bits_log2 = int(min(31, max(16, np.ceil(np.log2(max(1, len(self.hashes)) * 16)))))
        self._shift = np.uint64(64 - bits_log2)
        slots = self.hashes >> self._shift
        self._bitmap = np.zeros(1 << (bits_log2 - 3), dtype=np.uint8)
        np.bitwise_or.at(
            self._bitmap, (slots >> np.uint64(3)).astype(np.int64), _bit(slots).astype(np.uint8)
        )

    def __len__(self) -> int:
        return len(self.hashes)

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions of the query hashes found, their rows in the index)."""
        slots = hashes >> self._shift
        maybe = (self._bitmap[(slots >> np.uint64(3)).astype(np.int64)] & _bit(slots)) != 0
        candidates = np.flatnonzero(maybe)
        if len(candidates) == 0 or len(self.hashes) == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        wanted = hashes[candidates]
        rows = np.searchsorted(self.hashes, wanted)
        rows = np.minimum(rows, len(self.hashes) - 1)
        found = self.hashes[rows] == wanted
        return candidates[found], rows[found]


def _bit(slots: np.ndarray) -> np.ndarray:
    return np.left_shift(1, (slots & np.uint64(7)).astype(np.uint8))
