"""MinHash near-duplicate removal with datasketch semantics, hashed in batches.

A signature is exactly what `datasketch.MinHash(num_perm, seed, scheme="affine32")` holds
after `update()` with every shingle: the same MurmurHash3 pre-mix and the same affine
permutations (taken from a datasketch MinHash object, not re-derived). Two shingle hashes:

* `hash="sha1"` (default): datasketch's default hash function (SHA1-32 of the shingle's UTF-8
  bytes). Signatures are bit-identical to a plain datasketch MinHash, so the kept set is the
  one datasketch would keep. SHA-1 itself runs vectorized over all shingles of a chunk
  (numpy uint32 rounds), not one hashlib call per shingle.
* `hash="fast"`: about twice as fast again. Tokens are hashed by tabulation hashing over their
  bytes and combined per shingle, vectorized over a whole chunk of documents (no Python code
  per token). `datasketch.MinHash(hashfunc=fast_shingle_hash)` fed with token tuples gives
  the same signatures; results differ from the SHA1 ones only by MinHash's own sampling noise
  (near the threshold), exactly as two datasketch runs with different seeds differ.

What changes against datasketch is how the work is done: no per-token `update` call and no
MinHash object per document; the permutations are applied to all shingles of a chunk at once,
one permutation at a time over a contiguous vector, reduced per document with
`np.minimum.reduceat` (a shingles x num_perm broadcast is slower: it thrashes the cache); and
chunks can be spread over several processes.

The LSH banding (b, r) is datasketch's own choice (`MinHashLSH(threshold, num_perm)`). The
default in-memory index keys bands by a 64-bit hash of the band values in plain dicts and
skips documents whose band keys are unique in every band (they can neither have nor be a
candidate); with `storage_config` (e.g. Redis) a real `MinHashLSH` holds the index.

Dedup is "keep the first": documents are visited in order; a document whose LSH candidates
include a kept document with estimated Jaccard >= threshold is removed as a duplicate of the
most similar one (ties: the earliest); otherwise it is kept and indexed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import uuid
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
from forgekit.evaluate.text import (
    _ASCII_NONWORD,
    check_script,
    column_texts,
    is_cjk,
    ngrams,
    tokens,
)

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


_SHA1_DIGEST = type(hashlib.sha1()).digest


def _sha1_hashes(items: list[bytes]) -> np.ndarray:
    """SHA1-32 of each item with hashlib, exactly datasketch.hashfunc.sha1_hash32 (the first 4
    digest bytes, little-endian). Only for shingles too long for one SHA-1 block."""
    if not items:
        return np.zeros(0, dtype=np.uint32)
    packed = b"".join(map(_SHA1_DIGEST, map(hashlib.sha1, items)))
    digests = np.frombuffer(packed, dtype=np.uint8).reshape(-1, 20)
    return np.ascontiguousarray(digests[:, :4]).view("<u4").ravel().astype(np.uint32)


# --- the "sha1" hash: SHA-1 itself, vectorized over the shingles of a chunk -----------------
#
# datasketch hashes each shingle with SHA-1, one hashlib call per shingle (~0.9 us). Almost
# every shingle fits in a single 64-byte SHA-1 block (at most 55 bytes of message), so the
# compression function is run here on all shingles of a chunk at once: 80 rounds of uint32
# numpy operations over vectors of a few thousand shingles, with the message words gathered
# straight from the chunk's bytes (no bytes object per shingle). Longer shingles go through
# hashlib. Tests check the result against hashlib bit for bit.

_SHA1_H = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0)
_SHA1_K = tuple(np.uint32(k) for k in (0x5A827999, 0x6ED9EBA1, 0x8F1BBCDC, 0xCA62C1D6))
_SHA1_ONE_BLOCK = 55  # bytes of message that fit in one block with the padding and length
# Shingles per vector: the ~24 live uint32 vectors stay in the L2 cache; larger vectors fall
# out of it and smaller ones pay numpy's per-call overhead on ~1400 calls.
_SHA1_BATCH = 16384


def _rotl_inplace(x: np.ndarray, bits: int, scratch: np.ndarray) -> None:
    np.left_shift(x, bits, out=scratch)
    np.right_shift(x, 32 - bits, out=x)
    x |= scratch


def _sha1_first_word(w: np.ndarray) -> np.ndarray:
    """The first word H0 of SHA-1 of one-block messages; w is the (16, n) block, consumed."""
    n = w.shape[1]
    a, b, c, d, e = (np.full(n, h, dtype=np.uint32) for h in _SHA1_H)
    f, t1, t2 = (np.empty(n, dtype=np.uint32) for _ in range(3))
    for t in range(80):
        wt = w[t & 15]
        if t >= 16:  # message schedule, in place over a ring of 16 words
            wt ^= w[(t - 3) & 15]
            wt ^= w[(t - 8) & 15]
            wt ^= w[(t - 14) & 15]
            _rotl_inplace(wt, 1, t2)
        if t < 20:  # choose: d ^ (b & (c ^ d))
            np.bitwise_xor(c, d, out=f)
            f &= b
            f ^= d
        elif 40 <= t < 60:  # majority: (b & c) | (d & (b | c))
            np.bitwise_or(b, c, out=f)
            f &= d
            np.bitwise_and(b, c, out=t2)
            f |= t2
        else:  # parity
            np.bitwise_xor(b, c, out=f)
            f ^= d
        # new a = rotl5(a) + f + e + K + w, built in e's buffer (e is not needed after)
        e += f
        e += wt
        e += _SHA1_K[t // 20]
        np.left_shift(a, 5, out=t1)
        np.right_shift(a, 27, out=t2)
        e += t1
        e += t2  # rotl5(a) = (a << 5) | (a >> 27), and the two halves share no bits
        _rotl_inplace(b, 30, t2)
        a, b, c, d, e = e, a, b, c, d
    a += np.uint32(_SHA1_H[0])
    return a


def _sha1_32_spans(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """sha1_hash32 of data[start:start+length] for each span (data: uint8, followed by at
    least 56 zero bytes so that a one-block window at any start stays inside it)."""
    out = np.empty(len(starts), dtype=np.uint32)
    long = lengths > _SHA1_ONE_BLOCK
    one_block = np.flatnonzero(~long)
    for lo in range(0, len(one_block), _SHA1_BATCH):
        rows = one_block[lo : lo + _SHA1_BATCH]
        length = lengths[rows]
        # only the words that hold message bytes or the padding byte: the rest stay zero
        n_words = (int(length.max()) >> 2) + 1
        windows = np.lib.stride_tricks.as_strided(
            data, shape=(len(data) - 4 * n_words + 1, 4 * n_words), strides=(1, 1)
        )
        message = windows[starts[rows]]  # one row per shingle: its bytes and what follows
        message *= np.arange(4 * n_words, dtype=np.uint8) < length[:, None].astype(np.uint8)
        message[np.arange(len(rows)), length] = 0x80  # the padding bit
        block = np.zeros((16, len(rows)), dtype=np.uint32)
        block[:n_words] = message.view(">u4").T  # big-endian words, one row per word
        block[15] = length * 8  # message length in bits
        out[rows] = _sha1_first_word(block)
    # datasketch reads the first 4 digest bytes little-endian: H0 byte-swapped
    out.byteswap(inplace=True)
    long_rows = np.flatnonzero(long)
    out[long_rows] = _sha1_hashes(
        [data[s : s + n].tobytes() for s, n in zip(starts[long_rows], lengths[long_rows])]
    )
    return out


def _sha1_shingle_hashes(
    texts: Sequence[str], ngram: int, script: str
) -> tuple[np.ndarray, np.ndarray]:
    """sha1_hash32 of every shingle of a chunk of documents, computed from the chunk's bytes:
    (flat uint32 hashes in document order, shingles per document)."""
    n = len(texts)
    bodies, char_docs = [], np.zeros(n, dtype=bool)
    for i, text in enumerate(texts):
        mode = ("chars" if is_cjk(text) else "words") if script == "auto" else script
        if mode == "chars":
            # characters back to back: a shingle is `ngram` consecutive code points
            bodies.append("".join(tokens(text, "chars")).encode("utf-8"))
            char_docs[i] = True
        else:
            bodies.append(_token_bytes(text, "words"))  # words separated by runs of spaces
    sizes = np.array([len(x) + 1 for x in bodies], dtype=np.int64)
    doc_start = np.cumsum(sizes) - sizes
    raw = np.frombuffer(b" ".join(bodies) + b" ", dtype=np.uint8)
    # One space between words, none elsewhere: then a word shingle is the contiguous bytes
    # from its first word to its last, exactly `" ".join(words)`.
    keep = raw != 32
    keep[1:] |= keep[:-1].copy()
    kept = np.add.reduceat(keep, doc_start, dtype=np.int64)  # (a cumsum over bytes is slow)
    doc_start = np.cumsum(kept) - kept
    data = raw[keep]
    token_byte = data != 32
    boundary = np.ones(len(data) + 1, dtype=bool)  # a non-token byte before/after each byte
    boundary[1:-1] = ~token_byte[:-1]
    token_start = token_byte & boundary[:-1]
    token_last = token_byte.copy()
    token_last[:-1] &= ~token_byte[1:]
    if char_docs.any():
        # in character documents every code point is a token: it starts at each byte that
        # is not a UTF-8 continuation byte
        in_chars = np.repeat(char_docs, sizes)[keep]
        char_start = in_chars & ((data & 0xC0) != 0x80)
        token_start |= token_byte & char_start
        token_last[:-1] |= token_byte[:-1] & char_start[1:]
    tok_begin = np.flatnonzero(token_start)
    tok_end = np.flatnonzero(token_last) + 1
    tok_counts = np.diff(np.searchsorted(tok_begin, np.append(doc_start, len(data))))
    # shingles: every run of `ngram` tokens; a document shorter than that is one shingle
    counts = np.where(tok_counts >= ngram, tok_counts - ngram + 1, np.minimum(tok_counts, 1))
    span = np.minimum(tok_counts, ngram)
    tok_first = np.cumsum(tok_counts) - tok_counts
    shingle_first = np.cumsum(counts) - counts
    total = int(counts.sum())
    first = np.repeat(tok_first - shingle_first, counts) + np.arange(total, dtype=np.int64)
    last = first + np.repeat(span, counts) - 1
    starts = tok_begin[first]
    padded = np.concatenate([data, np.zeros(64, dtype=np.uint8)])
    return _sha1_32_spans(padded, starts, tok_end[last] - starts), counts


# --- the "fast" hash: vectorized over the bytes of a whole chunk ----------------------------
#
# A token's hash is simple tabulation hashing of its UTF-8 bytes: a fixed random 64-bit table
# indexed by (byte position mod 64, byte value), summed mod 2^64, then finalized by fmix64.
# Tabulation hashing is 3-independent; unlike a polynomial hash mod 2^64 it has no structured
# collisions. The table is zero for the space byte, which never occurs inside a token, so the
# sum over "token + the spaces after it" is the token's sum: a whole chunk of documents is
# hashed with a dozen numpy passes over its bytes and no Python code per token.
# A shingle's hash is fmix64(seed + sum of its token hashes times per-position odd
# multipliers): one finalizer per shingle, computed for all windows with array slices.

_NGRAM_SEED = 0x9E3779B97F4A7C15
_NGRAM_MUL = 0x100000001B3
_FMIX64 = (33, 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53)
_M64 = (1 << 64) - 1
_TABLE_WIDTH = 64  # byte positions 0..63; longer tokens wrap around
_TABLE = np.random.RandomState(0x5EED).randint(0, 2**64, size=(_TABLE_WIDTH, 256), dtype=np.uint64)
_TABLE[:, 32] = 0
_TABLE_FLAT = _TABLE.ravel()
_TABLE_PY = _TABLE.tolist()


def token_hash(token: str) -> int:
    """The fast path's 64-bit hash of one token, in plain Python (the empty token is 0)."""
    data = token.encode("utf-8")
    if not data:
        return 0
    h = 0
    for k, byte in enumerate(data):
        h = (h + _TABLE_PY[k % _TABLE_WIDTH][byte]) & _M64
    return _fmix64_int(h)


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
    for tok, mul in zip(shingle, _ngram_multipliers(len(shingle)), strict=True):
        h = (h + token_hash(tok) * mul) & _M64
    return _fmix64_int(h) >> 32


@functools.lru_cache(maxsize=32)
def _ngram_multipliers(n: int) -> tuple[int, ...]:
    """Odd 64-bit multipliers, one per position in a shingle: the shingle hash is
    fmix64(seed + sum(token_hash_j * m_j)), order-sensitive because the m_j differ."""
    return tuple(_fmix64_int(_NGRAM_MUL * (j + 1)) | 1 for j in range(n))


def _fmix64(h: np.ndarray) -> np.ndarray:
    s, m1, m2 = (np.uint64(v) for v in _FMIX64)
    h = h ^ (h >> s)
    h = h * m1
    h = h ^ (h >> s)
    h = h * m2
    return h ^ (h >> s)


def _token_bytes(text: str, script: str) -> bytes:
    """A document's tokens as UTF-8 bytes separated by single spaces."""
    if script == "auto":
        script = "chars" if is_cjk(text) else "words"
    if script == "words" and text.isascii():
        # the hot path: the same tokens as text.words(), without making a str per token
        return text.lower().encode("ascii").translate(_ASCII_NONWORD)
    return " ".join(tokens(text, script)).encode("utf-8")


def _fast_hashes(texts: Sequence[str], ngram: int, script: str) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes of a chunk of documents: (flat uint32 hashes, shingles per document)."""
    parts = [_token_bytes(t, script) for t in texts]
    n = len(parts)
    doc_start = np.zeros(n, dtype=np.int64)
    np.cumsum(np.array([len(p) + 1 for p in parts[:-1]], dtype=np.int64), out=doc_start[1:])
    data = np.frombuffer(b" ".join(parts), dtype=np.uint8)  # tokens never span documents
    word = data != 32
    is_start = word.copy()
    is_start[1:] &= ~word[:-1]
    starts = np.flatnonzero(is_start)
    # table index = (position in token mod 64) * 256 + byte, in int32 to halve memory traffic
    index = np.arange(len(data), dtype=np.int32)
    token_begin = np.where(is_start, index, 0)
    np.maximum.accumulate(token_begin, out=token_begin)
    index -= token_begin
    index &= _TABLE_WIDTH - 1
    index <<= 8
    index |= data
    with np.errstate(over="ignore"):
        summed = (
            np.add.reduceat(_TABLE_FLAT[index], starts)
            if len(starts)
            else np.zeros(0, dtype=np.uint64)
        )
        tok_hash = _fmix64(summed)
    tok_counts = np.bincount(
        np.searchsorted(doc_start, starts, side="right") - 1, minlength=n
    ).astype(np.int64)
    short = (tok_counts > 0) & (tok_counts < ngram)
    if short.any():
        # a text shorter than ngram is one shingle: its tokens padded with hash-0 tokens
        pad = np.where(short, ngram - tok_counts, 0)
        tok_hash = np.insert(tok_hash, np.repeat(np.cumsum(tok_counts), pad), np.uint64(0))
        tok_counts = tok_counts + pad
    counts = np.where(tok_counts > 0, tok_counts - ngram + 1, 0)
    tok_first = np.zeros(n, dtype=np.int64)
    np.cumsum(tok_counts[:-1], out=tok_first[1:])
    shingle_first = np.zeros(n, dtype=np.int64)
    np.cumsum(counts[:-1], out=shingle_first[1:])
    total = int(counts.sum())
    begin = np.repeat(tok_first - shingle_first, counts) + np.arange(total, dtype=np.int64)
    # Every window of `ngram` consecutive tokens, by slices (no gathers), then only the
    # windows that stay inside one document.
    width = len(tok_hash) - ngram + 1
    if width <= 0:
        return np.zeros(0, dtype=np.uint32), counts
    with np.errstate(over="ignore"):
        acc = np.full(width, _NGRAM_SEED, dtype=np.uint64)
        for j, mul in enumerate(_ngram_multipliers(ngram)):
            acc += tok_hash[j : j + width] * np.uint64(mul)
        h = _fmix64(acc[begin])
    return (h >> np.uint64(32)).astype(np.uint32), counts


HASHES = ("fast", "sha1")


def _sign_chunk(
    texts: Sequence[str],
    ngram: int,
    script: str,
    a: np.ndarray,
    b: np.ndarray,
    hash: str = "sha1",
) -> np.ndarray:
    """Signatures (len(texts) x num_perm, uint32) for one chunk of documents."""
    num_perm = len(a)
    out = np.full((len(texts), num_perm), _MAX32, dtype=np.uint32)
    if hash == "sha1":
        hashed, counts = _sha1_shingle_hashes(texts, ngram, script)
    else:
        hashed, counts = _fast_hashes(texts, ngram, script)
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
            # uint32 arithmetic wraps: this *is* datasketch's a*h+b mod 2^32.
            np.multiply(mixed, a[k], out=tmp)
            np.add(tmp, b[k], out=tmp)
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


@functools.lru_cache(maxsize=64)
def lsh_params(
    threshold: float, num_perm: int, weights: tuple[float, float] = (0.5, 0.5)
) -> tuple[int, int]:
    """(bands, rows per band) exactly as datasketch.MinHashLSH chooses them (its search
    integrates false positive/negative rates for every split: ~1 s, so it is cached)."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)
    return lsh.b, lsh.r


def _best_match(sigs: np.ndarray, i: int, candidates: list[int]) -> tuple[int, float]:
    cand = np.array(sorted(candidates), dtype=np.int64)
    sims = (sigs[cand] == sigs[i]).mean(axis=1)
    best = int(np.argmax(sims))  # first maximum -> the earliest kept document on ties
    return int(cand[best]), float(sims[best])


def _band_keys(sigs: np.ndarray, bands: int, r: int) -> tuple[np.ndarray, np.ndarray]:
    """(bands x n) 64-bit keys of each document's bands, and which documents share at least
    one band key with another document (only those can be or have LSH candidates).

    MinHashLSH keys a band by its bytes; a 64-bit hash of the band's r values only adds a
    2^-64 chance of a spurious candidate, which the Jaccard check would still have to accept.
    """
    n = len(sigs)
    keys = np.empty((bands, n), dtype=np.uint64)
    collides = np.zeros(n, dtype=bool)
    mul = np.uint64(_NGRAM_MUL)
    with np.errstate(over="ignore"):
        for j in range(bands):
            h = np.full(n, _NGRAM_SEED, dtype=np.uint64)
            for col in sigs[:, j * r : (j + 1) * r].T:
                h = _fmix64(h * mul + col.astype(np.uint64))
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
    keys, collides = _band_keys(sigs, bands, r)
    # A document whose band keys are unique in every band never has a candidate and is never
    # one: it is kept without entering the loop. This is exact, and skips most documents.
    if storage_config is not None:
        return _lsh_dedup_datasketch(
            sigs, threshold, (bands, r), storage_config, collides, duplicate_of, similarity
        )
    rows = np.flatnonzero(collides)
    row_keys = keys[:, rows].T.tolist()
    tables: list[dict[int, list[int]]] = [{} for _ in range(bands)]
    for i, band_keys in zip(rows.tolist(), row_keys, strict=True):
        candidates: set[int] = set()
        for table, key in zip(tables, band_keys, strict=True):
            hit = table.get(key)
            if hit:
                candidates.update(hit)
        if candidates:
            best, sim = _best_match(sigs, i, list(candidates))
            if sim >= threshold:
                duplicate_of[i] = best
                similarity[i] = sim
                continue
        for table, key in zip(tables, band_keys, strict=True):
            table.setdefault(key, []).append(i)
    return duplicate_of, similarity


def _lsh_dedup_datasketch(
    sigs: np.ndarray,
    threshold: float,
    params: tuple[int, int],
    storage_config: dict[str, Any],
    collides: np.ndarray,
    duplicate_of: np.ndarray,
    similarity: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The same loop over a real datasketch.MinHashLSH (Redis, Cassandra or dict storage),
    for the rows that share a band key (`collides`); every other row is kept.

    The index must start empty: its keys are this run's row numbers, and a document already
    indexed by another run has no signature here to check the Jaccard against. Without a
    `basename`, the index gets a fresh one and is deleted afterwards (nobody could find it
    again); with one, it is kept for the caller.
    """
    from datasketch import MinHash, MinHashLSH

    num_perm = sigs.shape[1]
    storage_config = dict(storage_config)
    named = storage_config.get("basename") is not None
    if not named:
        storage_config["basename"] = f"forgekit-dedup-{uuid.uuid4().hex[:12]}"
    if isinstance(storage_config["basename"], str):
        # datasketch wants bytes; JSON (the CLI's --storage-config) can only give a string
        storage_config["basename"] = storage_config["basename"].encode("utf-8")
    where = f"storage_config (type {storage_config.get('type')!r})"
    if storage_config.get("type") == "redis" and importlib.util.find_spec("redis") is None:
        raise ConfigError(f"{where}: needs the redis package: pip install 'forgekit[redis]'")
    try:
        lsh = MinHashLSH(
            threshold=threshold, num_perm=num_perm, params=params, storage_config=storage_config
        )
        indexed = lsh.keys.size()  # the first round trip: a wrong host or port fails here
    except Exception as exc:  # redis/cassandra connection and config errors vary by backend
        raise ConfigError(f"{where}: cannot open the index ({exc})") from exc
    if indexed:
        name = storage_config["basename"].decode("utf-8", "replace")
        raise ConfigError(
            f"{where}: the index {name!r} already holds {indexed} documents from another run; "
            "dedup needs an empty index: pass a new basename or delete the old one"
        )
    perms = MinHash(num_perm=num_perm, scheme="affine32").permutations

    def minhash(row: int) -> MinHash:
        return MinHash(hashvalues=sigs[row], permutations=perms, scheme="affine32")

    try:
        # Documents that share a band key with another one: the keep-first loop, querying
        # the index (one round trip per band for Redis) and inserting the kept ones. The
        # index started empty, so every candidate is an earlier row of this run.
        for i in np.flatnonzero(collides).tolist():
            mh = minhash(i)
            candidates = lsh.query(mh)
            if candidates:
                best, sim = _best_match(sigs, i, candidates)
                if sim >= threshold:
                    duplicate_of[i] = best
                    similarity[i] = sim
                    continue
            lsh.insert(i, mh, check_duplication=False)
        if named:
            # The rest share no band with anything: kept. A named index is the caller's, so
            # it gets them too, in pipelined batches (a scratch one is about to be deleted).
            with lsh.insertion_session(buffer_size=10_000) as session:
                for i in np.flatnonzero(~collides).tolist():
                    session.insert(i, minhash(i), check_duplication=False)
    finally:
        if not named:
            _drop_index(storage_config)
    return duplicate_of, similarity


def _drop_index(storage_config: dict[str, Any]) -> None:
    """Delete an index this module named (every key under its basename) from Redis."""
    if storage_config.get("type") != "redis":
        return  # dict storage goes with the process; other backends are left as they are
    import redis

    client = redis.Redis(**storage_config.get("redis", {}))
    pattern = storage_config["basename"] + b"*"
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            client.delete(*batch)
            batch = []
    if batch:
        client.delete(*batch)


def minhash_dedup(
    data: DataLike,
    text: str | Sequence[str] = "input",
    *,
    threshold: float = 0.7,
    num_perm: int = 128,
    ngram: int = 3,
    script: str = "auto",
    seed: int = 1,
    hash: str = "sha1",
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
        hash: "sha1" (datasketch's default hash function on each shingle's bytes:
            signatures identical to a plain `datasketch.MinHash`, so the same kept set) or
            "fast" (tabulation-hashed tokens combined per n-gram: about 2x faster, decisions
            differ from datasketch's only for pairs near the threshold). Both are then
            permuted and banded exactly as datasketch does.
        weights, params: datasketch MinHashLSH's false positive/negative weights or an
            explicit (bands, rows).
        storage_config: passed to datasketch.MinHashLSH, e.g.
            {"type": "redis", "redis": {"host": "localhost", "port": 6379}} to keep the index
            in Redis (`pip install 'forgekit[redis]'`). The index must start empty. Without a
            "basename" it gets a fresh one and is deleted after the run; with one it stays.
            None: an in-memory index.
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
