"""MinHash near-duplicate removal with datasketch semantics, hashed in batches.

Signatures are bit-identical to `datasketch.MinHash(num_perm, seed, scheme="affine32")` fed
with `update(shingle.encode("utf-8"))` for every shingle (default SHA1-32 hash function): the
same hash, the same MurmurHash3 pre-mix and the same affine permutations (taken from a datasketch
MinHash object, not re-derived). What changes is how the work is done:

* each document's shingles are hashed in one list comprehension and turned into one numpy
  array (no per-token `update` calls, no per-document MinHash objects);
* the permutations are applied to all shingles of a chunk of documents at once, one
  permutation at a time over a contiguous vector, and reduced per document with
  `np.minimum.reduceat` (a (shingles x num_perm) broadcast is slower: it thrashes the cache);
* chunks can be spread over several processes.

The LSH index is datasketch's: its banding parameters (b, r) come from `MinHashLSH` itself.
With the default in-memory index, band buckets are plain dicts keyed by the same band bytes
(equivalent to `MinHashLSH` with dict storage, without a method call per band); with
`storage_config` (e.g. Redis) a real `MinHashLSH` holds the index.

Dedup is "keep the first": documents are visited in order; a document whose LSH candidates
include a kept document with estimated Jaccard >= threshold is removed as a duplicate of the
most similar one (ties: the earliest); otherwise it is kept and indexed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from forgekit.errors import ConfigError
from forgekit.evaluate.common import (
    DataLike,
    DedupResult,
    build_result,
    check_fraction,
    load_frame,
    per_source_counts,
)
from forgekit.evaluate.text import check_script, column_texts, is_cjk, ngrams, tokens

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


def shingles(text: str, ngram: int = 3, script: str = "auto") -> list[str]:
    """Word n-grams (joined by a space) or, for CJK, character n-grams (joined without one)."""
    if script == "auto":
        script = "chars" if is_cjk(text) else "words"
    toks = tokens(text, script)
    return ngrams(toks, ngram, sep="" if script == "chars" else " ")


def _hash_shingles(items: list[str]) -> np.ndarray:
    """SHA1-32 of each shingle, exactly datasketch.hashfunc.sha1_hash32 (little-endian)."""
    sha1 = hashlib.sha1
    packed = b"".join([sha1(s.encode("utf-8")).digest()[:4] for s in items])
    return np.frombuffer(packed, dtype="<u4").astype(np.uint32, copy=False)


# --- the "fast" hash: tokens hashed once (cached), n-grams combined in numpy ---------------

_TOKEN_CACHE: dict[str, int] = {}
_TOKEN_CACHE_MAX = 2_000_000
_NGRAM_SEED = 0x9E3779B97F4A7C15
_NGRAM_MUL = 0x100000001B3
_FMIX64 = (33, 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53)
_M64 = (1 << 64) - 1


def token_hash(token: str) -> int:
    """A stable 64-bit hash of one token (BLAKE2b-64 of its UTF-8 bytes)."""
    value = _TOKEN_CACHE.get(token)
    if value is None:
        if len(_TOKEN_CACHE) >= _TOKEN_CACHE_MAX:
            _TOKEN_CACHE.clear()
        digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
        value = _TOKEN_CACHE[token] = int.from_bytes(digest, "little")
    return value


def _fmix64_int(h: int) -> int:
    s, m1, m2 = _FMIX64
    h ^= h >> s
    h = (h * m1) & _M64
    h ^= h >> s
    h = (h * m2) & _M64
    return h ^ (h >> s)


def fast_shingle_hash(shingle: Sequence[str]) -> int:
    """The "fast" hash of one shingle given as its tokens, in plain Python.

    It is what the vectorized path computes, so `datasketch.MinHash(hashfunc=fast_shingle_hash,
    scheme="affine32")` updated with token tuples gives the same signatures. A shingle of a text
    shorter than `ngram` is its tokens padded with the empty token (hash 0) to `ngram`.
    """
    h = _NGRAM_SEED
    for tok in shingle:
        h = _fmix64_int((h * _NGRAM_MUL + (token_hash(tok) if tok else 0)) & _M64)
    return h >> 32


def _fmix64(h: np.ndarray) -> np.ndarray:
    s, m1, m2 = (np.uint64(v) for v in _FMIX64)
    h = h ^ (h >> s)
    h = h * m1
    h = h ^ (h >> s)
    h = h * m2
    return h ^ (h >> s)


def _fast_hash_docs(docs_tokens: list[list[str]], ngram: int) -> list[np.ndarray]:
    """Shingle hashes per document, all n-grams of a chunk combined at once in numpy."""
    lookup = _TOKEN_CACHE.get
    ids_per_doc = []
    for toks in docs_tokens:
        ids = [lookup(t) or token_hash(t) for t in toks]
        if 0 < len(ids) < ngram:
            ids += [0] * (ngram - len(ids))  # short text: one shingle, padded (see above)
        ids_per_doc.append(ids)
    lengths = np.array([len(ids) for ids in ids_per_doc], dtype=np.int64)
    counts = np.where(lengths > 0, lengths - ngram + 1, 0)
    flat = np.fromiter(
        (v for ids in ids_per_doc for v in ids), dtype=np.uint64, count=int(lengths.sum())
    )
    doc_start = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=doc_start[1:])
    shingle_doc_first = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=shingle_doc_first[1:])
    total = int(counts.sum())
    starts = np.repeat(doc_start - shingle_doc_first, counts) + np.arange(total, dtype=np.int64)
    mul = np.uint64(_NGRAM_MUL)
    with np.errstate(over="ignore"):
        h = np.full(total, _NGRAM_SEED, dtype=np.uint64)
        for j in range(ngram):
            h = _fmix64(h * mul + flat[starts + j])
    hashed = (h >> np.uint64(32)).astype(np.uint32)
    return np.split(hashed, np.cumsum(counts)[:-1])


HASHES = ("fast", "sha1")


def _sign_chunk(
    texts: Sequence[str],
    ngram: int,
    script: str,
    a: np.ndarray,
    b: np.ndarray,
    hash: str = "fast",
) -> np.ndarray:
    """Signatures (len(texts) x num_perm, uint32) for one chunk of documents."""
    num_perm = len(a)
    out = np.full((len(texts), num_perm), _MAX32, dtype=np.uint32)
    if hash == "sha1":
        hashed = [_hash_shingles(shingles(t, ngram, script)) for t in texts]
    else:
        hashed = _fast_hash_docs([_tokens_for(t, script) for t in texts], ngram)
    rows = np.array([i for i, h in enumerate(hashed) if len(h)], dtype=np.int64)
    if not len(rows):
        return out  # every document empty: datasketch's empty MinHash (all max values)
    lengths = np.array([len(hashed[i]) for i in rows], dtype=np.int64)
    offsets = np.zeros(len(rows), dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    mixed = _fmix32(np.concatenate([hashed[i] for i in rows]))
    tmp = np.empty_like(mixed)
    sig = np.empty((num_perm, len(rows)), dtype=np.uint32)
    with np.errstate(over="ignore"):
        for k in range(num_perm):
            # uint32 arithmetic wraps: this *is* datasketch's a*h+b mod 2^32.
            np.multiply(mixed, a[k], out=tmp)
            np.add(tmp, b[k], out=tmp)
            sig[k] = np.minimum.reduceat(tmp, offsets)
    out[rows] = sig.T
    return out


def _tokens_for(text: str, script: str) -> list[str]:
    if script == "auto":
        script = "chars" if is_cjk(text) else "words"
    return tokens(text, script)


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
    hash: str = "fast",
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
    a, b = permutations(num_perm, seed)
    texts = list(texts)
    jobs = resolve_jobs(n_jobs, len(texts))
    chunks = [texts[i : i + chunk_size] for i in range(0, len(texts), chunk_size)]
    if not chunks:
        return np.empty((0, num_perm), dtype=np.uint32)
    if jobs == 1 or len(chunks) == 1:
        parts = [_sign_chunk(c, ngram, script, a, b, hash) for c in chunks]
    else:
        with ProcessPoolExecutor(max_workers=min(jobs, len(chunks))) as pool:
            parts = list(
                pool.map(_sign_chunk_star, [(c, ngram, script, a, b, hash) for c in chunks])
            )
    return np.vstack(parts)


def lsh_params(
    threshold: float, num_perm: int, weights: tuple[float, float] = (0.5, 0.5)
) -> tuple[int, int]:
    """(bands, rows per band) exactly as datasketch.MinHashLSH chooses them."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)
    return lsh.b, lsh.r


def _best_match(sigs: np.ndarray, i: int, candidates: list[int]) -> tuple[int, float]:
    cand = np.array(sorted(candidates), dtype=np.int64)
    sims = (sigs[cand] == sigs[i]).mean(axis=1)
    best = int(np.argmax(sims))  # first maximum -> the earliest kept document on ties
    return int(cand[best]), float(sims[best])


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
        bands, r = lsh_params(threshold, num_perm, weights)
    else:
        bands, r = params
        if bands * r > num_perm or bands < 2:
            raise ConfigError(f"params={params}: need bands >= 2 and bands*rows <= {num_perm}")
    if storage_config is not None:
        return _lsh_dedup_datasketch(
            sigs, threshold, (bands, r), storage_config, duplicate_of, similarity
        )
    # Band keys exactly as MinHashLSH._byteswap builds them (big-endian band bytes), for all
    # documents at once; then one dict per band.
    band_keys = []
    for j in range(bands):
        band = np.ascontiguousarray(sigs[:, j * r : (j + 1) * r].byteswap())
        band_keys.append(band.view(f"V{band.shape[1] * band.itemsize}").ravel().tolist())
    tables: list[dict[bytes, list[int]]] = [{} for _ in range(bands)]
    for i in range(n):
        candidates: set[int] = set()
        for j in range(bands):
            hit = tables[j].get(band_keys[j][i])
            if hit:
                candidates.update(hit)
        if candidates:
            best, sim = _best_match(sigs, i, list(candidates))
            if sim >= threshold:
                duplicate_of[i] = best
                similarity[i] = sim
                continue
        for j in range(bands):
            tables[j].setdefault(band_keys[j][i], []).append(i)
    return duplicate_of, similarity


def _lsh_dedup_datasketch(
    sigs: np.ndarray,
    threshold: float,
    params: tuple[int, int],
    storage_config: dict[str, Any],
    duplicate_of: np.ndarray,
    similarity: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The same loop over a real datasketch.MinHashLSH (Redis, Cassandra or dict storage)."""
    from datasketch import MinHash, MinHashLSH

    n, num_perm = sigs.shape
    try:
        lsh = MinHashLSH(
            threshold=threshold, num_perm=num_perm, params=params, storage_config=storage_config
        )
    except Exception as exc:  # redis/cassandra connection and config errors vary by backend
        raise ConfigError(
            f"storage_config={storage_config!r}: cannot open the index ({exc})"
        ) from exc
    perms = MinHash(num_perm=num_perm, scheme="affine32").permutations
    for i in range(n):
        mh = MinHash(hashvalues=sigs[i], permutations=perms, scheme="affine32")
        candidates = [k for k in lsh.query(mh) if isinstance(k, (int, np.integer)) and k < i]
        if candidates:
            best, sim = _best_match(sigs, i, candidates)
            if sim >= threshold:
                duplicate_of[i] = best
                similarity[i] = sim
                continue
        lsh.insert(i, mh, check_duplication=False)
    return duplicate_of, similarity


def minhash_dedup(
    data: DataLike,
    text: str | Sequence[str] = "input",
    *,
    threshold: float = 0.7,
    num_perm: int = 128,
    ngram: int = 3,
    script: str = "auto",
    seed: int = 1,
    hash: str = "fast",
    weights: tuple[float, float] = (0.5, 0.5),
    params: tuple[int, int] | None = None,
    storage_config: dict[str, Any] | None = None,
    n_jobs: int | None = None,
    id_field: str | None = "id",
    source_field: str | None = None,
) -> DedupResult:
    """Remove near-duplicates by MinHash + LSH (Jaccard of shingle sets).

    Args:
        data: a DataFrame, a .jsonl/.json/.csv/.parquet path or a list of records.
        text: the field to compare, or several joined with '+' (e.g. "input+output").
        threshold: estimated Jaccard at or above which a document is a duplicate.
        num_perm: permutations per signature (more: a finer estimate, slower).
        ngram: shingle size, in words (space-delimited text) or characters (CJK).
        script: "auto" (per document: CJK -> characters, else words), "words" or "chars".
        seed: permutation seed (datasketch's `seed`).
        hash: "fast" (tokens hashed once and cached, n-grams combined in numpy) or "sha1"
            (datasketch's default hash function on each shingle's bytes: signatures identical
            to a plain `datasketch.MinHash`, about 2-3x slower). Both are then permuted and
            banded exactly as datasketch does.
        weights, params: datasketch MinHashLSH's false positive/negative weights or an
            explicit (bands, rows).
        storage_config: passed to datasketch.MinHashLSH, e.g.
            {"type": "redis", "redis": {"host": "localhost", "port": 6379}} to keep the index
            in Redis. None: an in-memory index.
        n_jobs: processes for hashing (None: automatic, -1: all cores).
        id_field: field naming records in the result (falls back to the row position).
        source_field: field naming each record's source, for per-source before/after counts.

    Returns:
        DedupResult; `.kept` is the DataFrame of kept records, `.removed` adds
        `duplicate_of` and `estimated_jaccard` for every removed record.
    """
    check_fraction("threshold", threshold)
    df = load_frame(data)
    texts = column_texts(df, text)
    sigs = minhash_signatures(
        texts, num_perm=num_perm, ngram=ngram, script=script, seed=seed, hash=hash, n_jobs=n_jobs
    )
    duplicate_of, similarity = lsh_dedup(
        sigs, threshold, weights=weights, params=params, storage_config=storage_config
    )
    details: dict[str, Any] = {}
    per_source = per_source_counts(df, duplicate_of, source_field)
    if per_source is not None:
        details["per_source"] = per_source
    return build_result(
        "minhash",
        df,
        duplicate_of,
        similarity,
        "estimated_jaccard",
        id_field=id_field,
        params={
            "text": text,
            "threshold": threshold,
            "num_perm": num_perm,
            "ngram": ngram,
            "script": script,
            "seed": seed,
            "hash": hash,
            "storage": (storage_config or {}).get("type", "memory"),
        },
        details=details,
    )
