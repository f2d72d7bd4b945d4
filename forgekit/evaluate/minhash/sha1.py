"""SHA1-32 (datasketch's default hash) of many byte spans at once, vectorized with numpy.

datasketch hashes each shingle with SHA-1, one hashlib call per shingle (~0.9 us). Here:

* `sha1_32_distinct_spans` computes SHA-1 once per *distinct* span of a chunk: real text
  repeats most of its shingles (in ~18k man pages only 1 shingle in 5 of a 1,024-document
  chunk is new; in web text boilerplate does the same), and equal bytes have equal hashes.
  Spans are grouped by a 64-bit polynomial fingerprint in a direct-address table (no sort),
  and every grouped span's bytes are then compared with its representative's, so the
  result is exact: a fingerprint collision only costs one more SHA-1.
* `_sha1_32_spans` runs the SHA-1 compression function on all one-block spans at once (at
  most 55 bytes of message): 80 rounds of uint32 numpy operations over vectors of a few
  thousand spans, with the message words gathered straight from the chunk's bytes (no bytes
  object per shingle). Longer spans go through hashlib.

Tests check both against hashlib bit for bit.
"""

from __future__ import annotations

import hashlib

import numpy as np

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
# Shingles per vector: each batch costs ~1400 numpy calls, so their fixed overhead wants big
# vectors, while the ~24 live uint32 vectors want to stay in cache. Measured on a 2 MB L2 /
# 32 MB L3 Xeon (median of 6): 260 ns per shingle at 16384, 249 at 32768, 222 at 65536.
_SHA1_BATCH = 65536


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


# --- one SHA-1 per distinct span ----------------------------------------------------------
#
# A span's key is (its first 8 bytes, its last 8 bytes, its length), read as two unaligned
# little-endian words: exact for spans of up to 16 bytes, and for longer ones the bytes in
# between are compared too. Spans are grouped through a direct-address table indexed by a
# mix of the key (no sort): each slot keeps one span, the others in that slot that have the
# same bytes take its hash; a span whose slot went to different bytes (a table collision)
# tries again with another mix, and is hashed on its own after a few tries.

_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9))
_DISTINCT_MIN = 4096  # below this many spans grouping costs more than it saves
_ROUNDS = 3


def _words(data: np.ndarray) -> np.ndarray:
    """The 8 bytes starting at each byte of data, as little-endian words (unaligned reads)."""
    return np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))


def _same_middle(
    words: np.ndarray, a: np.ndarray, b: np.ndarray, lengths: np.ndarray
) -> np.ndarray:
    """For spans already equal in their first and last 8 bytes and length: whether the bytes
    in between are equal too, compared 8 at a time (a span's last word covers its tail)."""
    same = np.ones(len(a), dtype=bool)
    rows = np.flatnonzero(lengths > 16)
    offset = 8
    while len(rows):
        same[rows] = words[a[rows] + offset] == words[b[rows] + offset]
        offset += 8
        rows = rows[(lengths[rows] > offset + 8) & same[rows]]
    return same


def sha1_32_distinct_spans(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """sha1_hash32 of data[start:start+length] for each span, computing SHA-1 once per
    distinct span (data: uint8 followed by at least 56 zero bytes)."""
    n = len(starts)
    if n < _DISTINCT_MIN:
        return _sha1_32_spans(data, starts, lengths)
    words = _words(data)
    first = words[starts]
    last = words[starts + np.maximum(lengths, 8) - 8]
    short = lengths < 8
    if short.any():  # a span under 8 bytes: only its own bytes count
        keep = (np.uint64(1) << (lengths[short].astype(np.uint64) * np.uint64(8))) - np.uint64(1)
        first[short] &= keep
        last[short] = 0
    key = first * _MIX[0] + last * _MIX[1] + lengths.astype(np.uint64)
    bits = min(max(n.bit_length(), 12), 24)
    table = np.empty(1 << bits, dtype=np.int32)
    rep = np.arange(n, dtype=np.int32)
    pending = rep
    for mix in _MIX[:_ROUNDS]:
        everyone = len(pending) == n  # the first round: no gathers of the pending spans
        key_p = key if everyone else key[pending]
        slot = ((key_p * mix) >> np.uint64(64 - bits)).astype(np.intp)
        table[slot] = pending  # one span per slot wins; the others compare with it
        owner = table[slot]
        first_p, last_p, length_p = (
            (first, last, lengths)
            if everyone
            else (first[pending], last[pending], lengths[pending])
        )
        match = (first[owner] == first_p) & (last[owner] == last_p) & (lengths[owner] == length_p)
        candidate = np.flatnonzero(match & (owner != pending))
        who, whose = pending[candidate], owner[candidate]
        equal = _same_middle(words, starts[who], starts[whose], lengths[who])
        if everyone:
            rep = rep.copy()
        rep[who[equal]] = whose[equal]
        pending = pending[~match]  # left: spans whose slot went to different bytes
        if not len(pending):
            break
    distinct = np.flatnonzero(rep == np.arange(n))
    out = np.empty(n, dtype=np.uint32)
    out[distinct] = _sha1_32_spans(data, starts[distinct], lengths[distinct])
    return out[rep]
