"""Shingles and their 32-bit hashes, vectorized over a chunk of documents.

Two hash functions, both computed for all shingles of a chunk at once with numpy:

* "sha1" (default): datasketch's default hash function, SHA1-32 of the shingle's UTF-8 bytes
  (`datasketch.hashfunc.sha1_hash32`), bit for bit. SHA-1 itself runs over many shingles at
  once, in C (`native`) or, without it, vectorized with numpy (`sha1`), never one hashlib call
  per shingle.
* "fast": twice as fast as "sha1" in numpy, but slower than "sha1" in C. Tokens are hashed
  by tabulation hashing over their bytes and combined per shingle, with no Python code per
  token. `fast_shingle_hash` is the same function on one shingle in plain Python:
  `datasketch.MinHash(hashfunc=fast_shingle_hash)` fed token tuples gives the same
  signatures. Results differ from the SHA-1 ones only by
  MinHash's own sampling noise (near the threshold), as two datasketch seeds differ.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from forgekit.evaluate.minhash.native import kernels, sha1_32_spans
from forgekit.evaluate.minhash.sha1 import sha1_32_distinct_spans
from forgekit.evaluate.text import _ASCII_NONWORD, char_string, is_cjk, ngrams, tokens

HASHES = ("fast", "sha1")
# ASCII bytes to text.words()'s tokens in one translate: punctuation and spaces to a space,
# A-Z to a-z (what str.lower() does to ASCII, without a lowered copy of the text).
_ASCII_LOWER_NONWORD = bytes(c + 32 if 65 <= c <= 90 else _ASCII_NONWORD[c] for c in range(256))


def shingle_hashes(
    texts: Sequence[str], ngram: int, script: str, hash: str = "sha1"
) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every shingle of a chunk of documents with `hash` ("sha1" or
    "fast"): (flat uint32 hashes in document order, shingles per document)."""
    if hash == "sha1":
        return _sha1_shingle_hashes(texts, ngram, script)
    return _fast_hashes(texts, ngram, script)


def shingles(text: str, ngram: int = 3, script: str = "auto") -> list[str]:
    """Word n-grams (joined by a space) or, for CJK, character n-grams (joined without one)."""
    if script == "auto":
        script = "chars" if is_cjk(text) else "words"
    toks = tokens(text, script)
    return ngrams(toks, ngram, sep="" if script == "chars" else " ")


def _sha1_shingle_hashes(
    texts: Sequence[str], ngram: int, script: str
) -> tuple[np.ndarray, np.ndarray]:
    """sha1_hash32 of every shingle of a chunk of documents, computed from the chunk's bytes:
    (flat uint32 hashes in document order, shingles per document)."""
    n = len(texts)
    bodies, char_docs = [], np.zeros(n, dtype=bool)
    for i, text in enumerate(texts):
        if script != "chars" and text.isascii():  # the hot path: ASCII text is never CJK
            bodies.append(text.encode("ascii").translate(_ASCII_LOWER_NONWORD))
            continue
        mode = ("chars" if is_cjk(text) else "words") if script == "auto" else script
        if mode == "chars":
            # characters back to back: a shingle is `ngram` consecutive code points
            bodies.append(char_string(text).encode("utf-8"))
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
    # bytes kept per document: count_nonzero per slice is ~4x faster than a reduceat (which
    # casts every byte to int64) and, unlike the positions of the dropped bytes, allocates
    # nothing (fresh pages cost here: page faults are ~20 % of the time)
    bounds = map(slice, doc_start.tolist(), (doc_start + sizes).tolist())
    kept = np.fromiter(map(np.count_nonzero, map(keep.__getitem__, bounds)), np.int64, n)
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
    lengths = tok_end[last] - starts
    lib = kernels()
    if lib is not None:  # C: ~50 ns a span, no need to find the repeated ones first
        return sha1_32_spans(lib, data, starts, lengths), counts
    padded = np.concatenate([data, np.zeros(64, dtype=np.uint8)])
    return sha1_32_distinct_spans(padded, starts, lengths), counts


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

NGRAM_SEED = 0x9E3779B97F4A7C15
NGRAM_MUL = 0x100000001B3
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
    h = NGRAM_SEED
    for tok, mul in zip(shingle, _ngram_multipliers(len(shingle)), strict=True):
        h = (h + token_hash(tok) * mul) & _M64
    return _fmix64_int(h) >> 32


@functools.lru_cache(maxsize=32)
def _ngram_multipliers(n: int) -> tuple[int, ...]:
    """Odd 64-bit multipliers, one per position in a shingle: the shingle hash is
    fmix64(seed + sum(token_hash_j * m_j)), order-sensitive because the m_j differ."""
    return tuple(_fmix64_int(NGRAM_MUL * (j + 1)) | 1 for j in range(n))


def fmix64(h: np.ndarray) -> np.ndarray:
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
        return text.encode("ascii").translate(_ASCII_LOWER_NONWORD)
    return " ".join(tokens(text, script)).encode("utf-8")


def token_hashes(parts: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(uint64 tabulation hash of every token, tokens per document) for documents given as
    space-separated token bytes (`_token_bytes`); shared by MinHash's fast shingles and the
    n-gram index of decontamination."""
    n = len(parts)
    doc_start = np.zeros(n, dtype=np.int64)
    if n > 1:
        lengths = np.array([len(p) + 1 for p in parts[:-1]], dtype=np.int64)
        np.cumsum(lengths, out=doc_start[1:])
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
        tok_hash = fmix64(summed)
    tok_counts = np.bincount(
        np.searchsorted(doc_start, starts, side="right") - 1, minlength=n
    ).astype(np.int64)
    return tok_hash, tok_counts


def _fast_hashes(texts: Sequence[str], ngram: int, script: str) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes of a chunk of documents: (flat uint32 hashes, shingles per document)."""
    tok_hash, tok_counts = token_hashes([_token_bytes(t, script) for t in texts])
    n = len(tok_counts)
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
        acc = np.full(width, NGRAM_SEED, dtype=np.uint64)
        for j, mul in enumerate(_ngram_multipliers(ngram)):
            acc += tok_hash[j : j + width] * np.uint64(mul)
        h = fmix64(acc[begin])
    return (h >> np.uint64(32)).astype(np.uint32), counts
