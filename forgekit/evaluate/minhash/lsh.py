"""LSH over MinHash signatures: datasketch's banding, and dedup by "keep the first".

The banding (b bands of r rows) is datasketch's own choice (`MinHashLSH(threshold,
num_perm)`). Documents are visited in order; a document whose LSH candidates include a kept
document with estimated Jaccard >= threshold is removed as a duplicate of the most similar
one (ties: the earliest); otherwise it is kept and indexed.

The default in-memory index keys bands by a 64-bit hash of the band values in plain dicts
and skips documents whose band keys are unique in every band (they can neither have nor be
a candidate). With a `storage_config` (e.g. Redis) a real `MinHashLSH` holds the index
(`forgekit.evaluate.minhash.storage`).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from forgekit.errors import ConfigError
from forgekit.evaluate.minhash.hashfunc import NGRAM_MUL, NGRAM_SEED, fmix64
from forgekit.evaluate.minhash.signatures import best_match
from forgekit.evaluate.minhash.storage import keep_first_in_index


@functools.lru_cache(maxsize=64)
def lsh_params(
    threshold: float, num_perm: int, weights: tuple[float, float] = (0.5, 0.5)
) -> tuple[int, int]:
    """(bands, rows per band) exactly as datasketch.MinHashLSH chooses them (its search
    integrates false positive/negative rates for every split: ~1 s, so it is cached)."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)
    return lsh.b, lsh.r


def band_keys(sigs: np.ndarray, bands: int, r: int) -> tuple[np.ndarray, np.ndarray]:
    """(bands x n) 64-bit keys of each document's bands, and (bands x n) whether each key is
    shared with another document (only shared keys can make LSH candidates).

    MinHashLSH keys a band by its bytes; a 64-bit hash of the band's r values only adds a
    2^-64 chance of a spurious candidate, which the Jaccard check would still have to accept.
    """
    n = len(sigs)
    keys = np.empty((bands, n), dtype=np.uint64)
    shared = np.zeros((bands, n), dtype=bool)
    mul = np.uint64(NGRAM_MUL)
    with np.errstate(over="ignore"):
        for j in range(bands):
            # the band's columns copied out once (a column of sigs is a strided gather)
            block = np.ascontiguousarray(sigs[:, j * r : (j + 1) * r].T)
            h = np.full(n, NGRAM_SEED, dtype=np.uint64)
            for col in block:
                h = fmix64(h * mul + col)  # uint32 col: widened inside the add
            keys[j] = h
            shared[j] = _repeated(h)
    return keys, shared


def _repeated(values: np.ndarray) -> np.ndarray:
    """Whether each value occurs more than once. The values are hashes (uniform bits): a value
    alone in its slot of a table ~4x their count is unique; only the crowded ones, a fifth
    of them, are compared exactly (np.unique over everything costs ~4x more)."""
    bits = min(max((4 * len(values)).bit_length(), 10), 22)
    slot = (values >> np.uint64(64 - bits)).astype(np.intp)
    maybe = np.flatnonzero(np.bincount(slot, minlength=1 << bits)[slot] > 1)
    out = np.zeros(len(values), dtype=bool)
    if len(maybe):
        _, inverse, counts = np.unique(values[maybe], return_inverse=True, return_counts=True)
        out[maybe] = counts[inverse] > 1
    return out


def _keep_first(
    sigs: np.ndarray,
    keys: np.ndarray,
    shared: np.ndarray,
    threshold: float,
    duplicate_of: np.ndarray,
    similarity: np.ndarray,
) -> None:
    """The keep-first loop over the documents with a shared band key, in order, with one dict
    of (band, key) -> kept rows. A key no other document has can neither find a candidate nor
    be found, so only shared keys are looked up and indexed: exact, and most of a colliding
    document's bands are skipped (a near-duplicate pair usually shares a few of them)."""
    bands = len(keys)
    rows = np.flatnonzero(shared.any(axis=0))
    mask = shared[:, rows].T  # (colliding rows x bands), row-major: entries in row order
    pos, band = np.nonzero(mask)
    # (band, key) as one Python int: the key in the high bits, the band in the low ones
    entry = (keys[band, rows[pos]].astype(object) << bands.bit_length()) | band.astype(object)
    entries = entry.tolist()
    ends = np.cumsum(np.count_nonzero(mask, axis=1)).tolist()
    table: dict[int, list[int]] = {}
    lo = 0
    for i, hi in zip(rows.tolist(), ends, strict=True):
        mine = entries[lo:hi]
        lo = hi
        candidates: set[int] = set()
        for k in mine:
            hit = table.get(k)
            if hit:
                candidates.update(hit)
        if candidates:
            best, sim = best_match(sigs, i, list(candidates))
            if sim >= threshold:
                duplicate_of[i] = best
                similarity[i] = sim
                continue
        for k in mine:
            table.setdefault(k, []).append(i)


def lsh_dedup(
    sigs: np.ndarray,
    threshold: float = 0.7,
    *,
    weights: tuple[float, float] = (0.5, 0.5),
    params: tuple[int, int] | None = None,
    storage_config: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Keep-first dedup over signatures. Returns (duplicate_of, estimated_jaccard): the row
    each document duplicates (-1 when kept) and the estimated Jaccard with it."""
    n, num_perm = sigs.shape
    duplicate_of = np.full(n, -1, dtype=np.int64)
    similarity = np.zeros(n, dtype=float)
    if n == 0:
        return duplicate_of, similarity
    if params is None:
        bands, r = lsh_params(threshold, num_perm, tuple(weights))
    else:
        bands, r = params
        if bands * r > num_perm or bands < 2:
            raise ConfigError(f"params={params}: need bands >= 2 and bands*rows <= {num_perm}")
    keys, shared = band_keys(sigs, bands, r)
    # A document whose band keys are unique in every band never has a candidate and is never
    # one: it is kept without entering the loop. This is exact, and skips most documents.
    if storage_config is not None:
        return keep_first_in_index(
            sigs,
            threshold,
            (bands, r),
            storage_config,
            shared.any(axis=0),
            duplicate_of,
            similarity,
        )
    _keep_first(sigs, keys, shared, threshold, duplicate_of, similarity)
    return duplicate_of, similarity
