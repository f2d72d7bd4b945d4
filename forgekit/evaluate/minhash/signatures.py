"""MinHash signatures with datasketch semantics, computed in batches.

A signature is exactly what `datasketch.MinHash(num_perm, seed, scheme="affine32")` holds
after `update()` with every shingle: the same MurmurHash3 pre-mix and the same affine
permutations (taken from a datasketch MinHash object, not re-derived), over the shingle
hashes of `hashfunc`.

What changes against datasketch is how the work is done: no per-token `update` call and no
MinHash object per document. In C (`native`), one pass over a chunk's shingles keeps every
permutation's minimum. Without C, numpy applies the permutations to all shingles of a chunk
at once, one permutation at a time over a contiguous vector, reduced per document with
`np.minimum.reduceat` (a shingles x num_perm broadcast is slower: it thrashes the cache).
Either way, chunks can be spread over several processes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from forgekit.errors import ConfigError
from forgekit.evaluate.minhash.hashfunc import HASHES, shingle_hashes
from forgekit.evaluate.minhash.native import affine32_min, kernel_choice, kernels
from forgekit.evaluate.minhash.sha1 import release_buffers
from forgekit.evaluate.text import check_script

_FMIX = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35))
_MAX32 = np.uint32(0xFFFFFFFF)
# Below this many documents a process pool costs more than it saves.
PARALLEL_MIN_DOCS = 20_000


def permutations(num_perm: int = 128, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters (a odd, b), taken from datasketch itself."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return np.asarray(a, dtype=np.uint32), np.asarray(b, dtype=np.uint32)


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer (datasketch's pre-mix), on a uint32 array."""
    s1, m1, s2, m2 = _FMIX
    h = h ^ (h >> s1)
    h = h * m1
    h = h ^ (h >> s2)
    h = h * m2
    return h ^ (h >> s1)


def _sign_chunk(
    texts: Sequence[str],
    ngram: int,
    script: str,
    a: np.ndarray,
    b: np.ndarray,
    hash: str = "sha1",
) -> np.ndarray:
    """Signatures (len(texts) x num_perm, uint32) for one chunk of documents."""
    hashed, counts = shingle_hashes(texts, ngram, script, hash)
    lib = kernels()
    if lib is not None:
        return affine32_min(lib, hashed, counts, a, b)
    num_perm = len(a)
    out = np.full((len(texts), num_perm), _MAX32, dtype=np.uint32)
    rows = np.flatnonzero(counts)
    if not len(rows):
        return out  # every document empty: datasketch's empty MinHash (all max values)
    offsets = np.zeros(len(rows), dtype=np.int64)
    np.cumsum(counts[rows][:-1], out=offsets[1:])
    mixed = _fmix32(hashed)
    tmp = np.empty_like(mixed)
    sig = np.empty((num_perm, len(rows)), dtype=np.uint32)
    with np.errstate(over="ignore"):
        for k in range(num_perm):
            # uint32 arithmetic wraps: this *is* datasketch's a*h+b mod 2^32. (a[k:k+1], not
            # a numpy scalar a[k]: an array operand costs numpy less per call.)
            np.multiply(mixed, a[k : k + 1], tmp)
            np.add(tmp, b[k : k + 1], tmp)
            sig[k] = np.minimum.reduceat(tmp, offsets)
    out[rows] = sig.T
    return out


def _sign_chunk_star(args: tuple) -> np.ndarray:
    return _sign_chunk(*args)


def resolve_jobs(n_jobs: int | None, n_docs: int) -> int:
    """n_jobs=None: one process for small inputs, else all cores; -1: all cores."""
    cores = os.cpu_count() or 1
    if n_jobs is None:
        return 1 if n_docs < PARALLEL_MIN_DOCS else cores
    if n_jobs == -1:
        return cores
    if n_jobs < 1:
        raise ConfigError(f"n_jobs={n_jobs}: use a positive number, -1 (all cores) or None")
    return n_jobs


def minhash_signatures(
    texts: Sequence[str],
    *,
    num_perm: int = 128,
    ngram: int = 3,
    script: str = "auto",
    seed: int = 1,
    hash: str = "sha1",
    n_jobs: int | None = None,
    chunk_size: int = 1024,
) -> np.ndarray:
    """MinHash signatures (n x num_perm, uint32), equal to datasketch's `hashvalues` for
    `MinHash(num_perm, seed, scheme="affine32")` updated with every shingle: with
    hash="sha1", the shingle's UTF-8 bytes and datasketch's default SHA1-32 hash function;
    with hash="fast", the shingle's token tuple and `hashfunc=fast_shingle_hash`."""
    if hash not in HASHES:
        raise ConfigError(f"hash={hash!r}: choose one of {', '.join(HASHES)}")
    if ngram < 1:
        raise ConfigError(f"ngram={ngram}: must be at least 1")
    if num_perm < 2:
        raise ConfigError(f"num_perm={num_perm}: must be at least 2")
    check_script(script)
    kernel_choice()  # a wrong FORGEKIT_MINHASH_KERNEL fails here, not in a worker process
    a, b = permutations(num_perm, seed)
    texts = list(texts)
    jobs = resolve_jobs(n_jobs, len(texts))
    chunks = [texts[i : i + chunk_size] for i in range(0, len(texts), chunk_size)]
    if not chunks:
        return np.empty((0, num_perm), dtype=np.uint32)
    if jobs == 1 or len(chunks) == 1:
        try:
            parts = [_sign_chunk(c, ngram, script, a, b, hash) for c in chunks]
        finally:
            release_buffers()  # the grouping's buffers, kept from chunk to chunk
    else:
        with ProcessPoolExecutor(max_workers=min(jobs, len(chunks))) as pool:
            parts = list(
                pool.map(_sign_chunk_star, [(c, ngram, script, a, b, hash) for c in chunks])
            )
    return np.vstack(parts)


def best_match(sigs: np.ndarray, i: int, candidates: list[int]) -> tuple[int, float]:
    """The candidate row with the highest estimated Jaccard to row i, and that estimate."""
    cand = np.array(sorted(candidates), dtype=np.int64)
    # equal positions / num_perm: what .mean() gives, without its float pass (hot at scale)
    sims = (sigs[cand] == sigs[i]).sum(axis=1) / sigs.shape[1]
    best = int(np.argmax(sims))  # first maximum -> the earliest kept document on ties
    return int(cand[best]), float(sims[best])
