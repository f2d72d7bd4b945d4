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
    """(bands x n) 64-bit keys of each document's bands, and which documents share at least
    one band key with another document (only those can be or have LSH candidates).

    MinHashLSH keys a band by its bytes; a 64-bit hash of the band's r values only adds a
    2^-64 chance of a spurious candidate, which the Jaccard check would still have to accept.
    """
    n = len(sigs)
    keys = np.empty((bands, n), dtype=np.uint64)
    collides = np.zeros(n, dtype=bool)
    mul = np.uint64(NGRAM_MUL)
    with np.errstate(over="ignore"):
        for j in range(bands):
            h = np.full(n, NGRAM_SEED, dtype=np.uint64)
            for col in sigs[:, j * r : (j + 1) * r].T:
                h = fmix64(h * mul + col.astype(np.uint64))
            keys[j] = h
            _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
            collides |= counts[inverse] > 1
    return keys, collides


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
    keys, collides = band_keys(sigs, bands, r)
    # A document whose band keys are unique in every band never has a candidate and is never
    # one: it is kept without entering the loop. This is exact, and skips most documents.
    if storage_config is not None:
        return keep_first_in_index(
            sigs, threshold, (bands, r), storage_config, collides, duplicate_of, similarity
        )
    rows = np.flatnonzero(collides)
    row_keys = keys[:, rows].T.tolist()
    tables: list[dict[int, list[int]]] = [{} for _ in range(bands)]
    for i, doc_keys in zip(rows.tolist(), row_keys, strict=True):
        candidates: set[int] = set()
        for table, key in zip(tables, doc_keys, strict=True):
            hit = table.get(key)
            if hit:
                candidates.update(hit)
        if candidates:
            best, sim = best_match(sigs, i, list(candidates))
            if sim >= threshold:
                duplicate_of[i] = best
                similarity[i] = sim
                continue
        for table, key in zip(tables, doc_keys, strict=True):
            table.setdefault(key, []).append(i)
    return duplicate_of, similarity
