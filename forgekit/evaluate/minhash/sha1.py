"""SHA1-32 (datasketch's default hash) of many byte spans at once, vectorized with numpy.

datasketch hashes each shingle with SHA-1, one hashlib call per shingle (~0.9 us). Here:

* `sha1_32_distinct_spans` computes SHA-1 once per *distinct* span of a chunk: real text
  repeats most of its shingles (in ~18k man pages only 1 shingle in 5 of a 1,024-document
  chunk is new; in web text boilerplate does the same), and equal bytes have equal hashes.
  Spans are grouped by a 64-bit polynomial fingerprint in a direct-address table (no sort),
  and every grouped span's bytes are then compared with its representative's, so the
  result is exact: a fingerprint collision only costs one more SHA-1. The grouping only
  runs when a sample of the chunk shows that spans repeat.
* `_sha1_32_spans` runs the SHA-1 compression function on all one-block spans at once (at
  most 55 bytes of message): 80 rounds of uint32 numpy operations over vectors of a few
  thousand spans, with the message words gathered straight from the chunk's bytes (no bytes
  object per shingle). Longer spans go through hashlib.

Tests check both against hashlib bit for bit.
"""

from __future__ import annotations

import hashlib
import threading

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


# --- memory ------------------------------------------------------------------------------
#
# Spans handled at a time wherever a step needs temporaries: a whole chunk's (MBs each) would
# come from fresh pages every time (glibc gives large blocks back), and page faults (~3 us
# each here) then cost more than the arithmetic.
_BLOCK = 32768
# The arrays that every chunk (or SHA-1 batch) needs, kept from one to the next in this
# thread for the same reason (release_buffers() lets them go).
_buffers = threading.local()


def _buffer(name: str, n: int, dtype: type) -> np.ndarray:
    """n items of a buffer kept for the next chunk (see _buffers)."""
    held = _buffers.__dict__.get(name)
    if held is None or len(held) < n:
        held = _buffers.__dict__[name] = np.empty(n + n // 4, dtype=dtype)  # room to grow
    return held[:n]


def release_buffers() -> None:
    """Let this thread's buffers go (they are reused while chunks are hashed)."""
    _buffers.__dict__.clear()


# --- the "sha1" hash: SHA-1 itself, vectorized over the shingles of a chunk -----------------
#
# Almost every shingle fits in a single 64-byte SHA-1 block (at most 55 bytes of message), so
# the compression function runs on all of them at once: 80 rounds of uint32 numpy operations
# over vectors of a few thousand shingles, with the message words gathered straight from the
# chunk's bytes (no bytes object per shingle). Longer shingles go through hashlib.
#
# ~1,400 numpy calls per batch, so their fixed cost matters: every operand is an array (a
# constant is a 0-d uint32 array; a Python int or numpy scalar costs 2-3x the call overhead)
# and the output is positional (~0.35 us a call instead of ~1 us). Words of the block that
# are zero (past the message and its padding byte) are skipped wherever they would be added
# or xored, and the last round's rotation (of a word that is not part of H0) is not done.

_SHA1_H = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0)
_SHA1_H0 = np.array(_SHA1_H[0], dtype=np.uint32)
_SHA1_K = tuple(
    np.array(k, dtype=np.uint32) for k in (0x5A827999, 0x6ED9EBA1, 0x8F1BBCDC, 0xCA62C1D6)
)
_S1, _S2, _S5, _S27, _S30, _S31 = (np.array(s, dtype=np.uint32) for s in (1, 2, 5, 27, 30, 31))
_SHA1_ONE_BLOCK = 55  # bytes of message that fit in one block with the padding and length
# Shingles per vector. Measured here (2-core EPYC, 1 MB L2 per core, best of 3, random
# 10-30 byte spans): 222 ns a span at 8192, 201 at 16384, 203 at 32768, 206 at 65536 (the
# code before these changes: 248 at 65536); on the man pages' distinct spans 32768 beat 16384.
_SHA1_BATCH = 32768

_xor, _and, _or, _add = np.bitwise_xor, np.bitwise_and, np.bitwise_or, np.add
_shl, _shr = np.left_shift, np.right_shift


def _sha1_first_word(w: np.ndarray, n_words: int) -> np.ndarray:
    """The first word H0 of SHA-1 of one-block messages. w is the (16, n) block, consumed;
    its rows n_words..14 are zero."""
    n = w.shape[1]
    a, b, c, d, e, f, t1, t2 = (_buffer(f"sha1_{i}", n, np.uint32) for i in range(8))
    for word, h in zip((a, b, c, d, e), _SHA1_H, strict=True):
        word.fill(h)
    zero = [n_words <= i < 15 for i in range(16)]  # rows of the ring known to be zero
    for t in range(80):
        i = t & 15
        wt = w[i]
        if t >= 16:  # message schedule, in place over a ring of 16 words
            terms = [j for j in (i, (t - 3) & 15, (t - 8) & 15, (t - 14) & 15) if not zero[j]]
            if terms:  # else w[t] is zero too
                if terms[0] != i:  # w[t-16] is zero: start from the first other term
                    np.copyto(wt, w[terms[0]])
                for j in terms[1:]:
                    _xor(wt, w[j], wt)
                _shl(wt, _S1, t2)  # rotl 1
                _shr(wt, _S31, wt)
                _or(wt, t2, wt)
                zero[i] = False
        if t < 20:  # choose: d ^ (b & (c ^ d))
            _xor(c, d, f)
            _and(f, b, f)
            _xor(f, d, f)
        elif 40 <= t < 60:  # majority: (b & c) | (d & (b | c))
            _or(b, c, f)
            _and(f, d, f)
            _and(b, c, t2)
            _or(f, t2, f)
        else:  # parity
            _xor(b, c, f)
            _xor(f, d, f)
        # new a = rotl5(a) + f + e + K + w, built in e's buffer (e is not needed after)
        _add(e, f, e)
        if not zero[i]:
            _add(e, wt, e)
        _add(e, _SHA1_K[t // 20], e)
        _shl(a, _S5, t1)
        _shr(a, _S27, t2)
        _add(e, t1, e)
        _add(e, t2, e)  # rotl5(a) = (a << 5) | (a >> 27), and the two halves share no bits
        if t < 79:  # rotl30(b) becomes c; after the last round only a counts
            _shl(b, _S30, t2)
            _shr(b, _S2, b)
            _or(b, t2, b)
        a, b, c, d, e = e, a, b, c, d
    _add(a, _SHA1_H0, a)
    return a


# The last message word of a span, by how many of its bytes are message (r = length - 4j,
# clipped to -1..4, plus one): the bytes to keep, and the padding byte 0x80 after them.
_TAIL_MASK = np.array([0, 0, 0xFF000000, 0xFFFF0000, 0xFFFFFF00, 0xFFFFFFFF], dtype=np.uint32)
_TAIL_PAD = np.array([0, 0x80000000, 0x00800000, 0x00008000, 0x00000080, 0], dtype=np.uint32)


def _sha1_32_spans(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """sha1_hash32 of data[start:start+length] for each span (data: uint8, followed by at
    least 56 zero bytes so that a one-block window at any start stays inside it)."""
    out = np.empty(len(starts), dtype=np.uint32)
    long = lengths > _SHA1_ONE_BLOCK
    one_block = np.flatnonzero(~long)
    # Shortest first (a radix sort of small ints): a batch then has few message words, few
    # of them to cut off at the message's end, and rounds that skip the zero ones.
    one_block = one_block[np.argsort(lengths[one_block].astype(np.uint8), kind="stable")]
    for lo in range(0, len(one_block), _SHA1_BATCH):
        rows = one_block[lo : lo + _SHA1_BATCH]
        length = lengths[rows]
        n_words = (int(length[-1]) >> 2) + 1  # the words holding message bytes or padding
        # Each span's window of 4 * n_words bytes in one gather: as a single opaque item,
        # one copy per span (a 2-D gather copies byte by byte, ~3x slower).
        width = 4 * n_words
        windows = np.ndarray((len(data) - width + 1,), f"V{width}", buffer=data, strides=(1,))
        message = windows[starts[rows]]
        block = _buffer("sha1_block", 16 * len(rows), np.uint32).reshape(16, len(rows))
        block[:n_words] = message.view(">u4").reshape(len(rows), n_words).T  # big-endian words
        block[n_words:15] = 0
        for j in range(int(length[0]) >> 2, n_words):  # words where some message ends
            tail = np.clip(length - (4 * j - 1), 0, 5)
            _and(block[j], _TAIL_MASK[tail], block[j])
            _or(block[j], _TAIL_PAD[tail], block[j])
        block[15] = length * 8  # message length in bits
        out[rows] = _sha1_first_word(block, n_words)
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
# mix of the key (no sort: numpy's sort costs ~50 ns a key here): each slot keeps one span,
# the others in that slot that have the same bytes take its hash; a span whose slot went to
# different bytes (a table collision) tries again with another mix, and is hashed on its own
# after a few tries. Random gathers (~1 ns an element here) are most of the cost.
#
# Grouping costs about a third of a SHA-1 (~90 vs ~250 ns a span here), so it only pays
# when spans repeat: a sample of the chunk (its first sixteenth) decides. In 20k synthetic
# documents of Zipf words 1 % of a chunk's spans repeat (no grouping); in man pages ~80 %.

_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9))
_DISTINCT_MIN = 4096  # below this many spans grouping costs more than it saves
_SAMPLE = 16  # the sample is 1/_SAMPLE of the spans (at least _DISTINCT_MIN)
_REPEATED_MIN = 0.2  # group when at least this share of the sample repeats an earlier span
_ROUNDS = 3


def _words(data: np.ndarray) -> np.ndarray:
    """The 8 bytes starting at each byte of data, as little-endian words (unaligned reads)."""
    return np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))


_ONE, _THREE = np.uint64(1), np.uint64(3)
_SHIFT = {bits: np.uint64(64 - bits) for bits in range(12, 25)}


def _same_middle(
    words: np.ndarray, starts: np.ndarray, lengths: np.ndarray, who: np.ndarray, whose: np.ndarray
) -> np.ndarray:
    """For pairs of spans (who, whose) already equal in their first and last 8 bytes and
    length: whether the bytes in between are equal too, compared 8 at a time (a span's last
    word covers its tail)."""
    same = np.ones(len(who), dtype=bool)
    for lo in range(0, len(who), _BLOCK):
        length = lengths[who[lo : lo + _BLOCK]]
        rows = np.flatnonzero(length > 16) + lo
        pa, pb, length = starts[who[rows]], starts[whose[rows]], length[rows - lo]
        offset = 8
        while len(rows):  # the spans still to compare, kept compact: no gathers through rows
            equal = words[pa + offset] == words[pb + offset]
            same[rows[~equal]] = False
            offset += 8
            more = equal & (length > offset + 8)
            rows, pa, pb, length = rows[more], pa[more], pb[more], length[more]
    return same


def _keys(words: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
    """(first word, last word, key) of each span, computed in blocks (see _BLOCK)."""
    n = len(starts)
    first, last, key = (_buffer(name, n, np.uint64) for name in ("first", "last", "key"))
    for lo in range(0, n, _BLOCK):
        start, length = starts[lo : lo + _BLOCK], lengths[lo : lo + _BLOCK]
        f, t, k = first[lo : lo + _BLOCK], last[lo : lo + _BLOCK], key[lo : lo + _BLOCK]
        f[...] = words[start]
        t[...] = words[start + np.maximum(length, 8) - 8]
        short = np.flatnonzero(length < 8)
        if len(short):  # a span under 8 bytes: only its own bytes count
            f[short] &= (_ONE << (length[short].astype(np.uint64) << _THREE)) - _ONE
            t[short] = 0
        np.multiply(f, _MIX[0], out=k)
        k += t * _MIX[1]
        k += length.astype(np.uint64)
    return first, last, key


def representatives(words: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """For each span, the index of a span with the same bytes (itself for one span of each
    group; exact: spans with different bytes never share one)."""
    n = len(starts)
    first, last, key = _keys(words, starts, lengths)
    bits = min(max(n.bit_length(), 12), 24)
    table = _buffer("table", 1 << bits, np.int32)
    slot, owner = _buffer("slot", n, np.intp), _buffer("owner", n, np.int32)
    match = _buffer("match", n, np.bool_)
    rep = np.arange(n, dtype=np.int32)
    pending = rep
    for mix in _MIX[:_ROUNDS]:
        m = len(pending)
        everyone = m == n  # the first round: no gathers of the pending spans
        for lo in range(0, m, _BLOCK):
            part = slice(lo, min(lo + _BLOCK, m))
            slot[part] = (key[part] if everyone else key[pending[part]]) * mix >> _SHIFT[bits]
        table[slot[:m]] = pending  # one span per slot wins; the others compare with it
        np.take(table, slot[:m], out=owner[:m])
        for lo in range(0, m, _BLOCK):  # same first and last word and length as the winner?
            part = slice(lo, min(lo + _BLOCK, m))
            who = owner[part]
            mine = part if everyone else pending[part]
            np.equal(first[who], first[mine], out=match[part])
            match[part] &= last[who] == last[mine]
            match[part] &= lengths[who] == lengths[mine]
        candidate = np.flatnonzero(match[:m] & (owner[:m] != pending))
        who, whose = pending[candidate], owner[candidate]
        equal = _same_middle(words, starts, lengths, who, whose)
        if everyone:
            rep = rep.copy()
        rep[who[equal]] = whose[equal]
        pending = pending[~match[:m]]  # left: spans whose slot went to different bytes
        if not len(pending):
            break
    return rep


def sha1_32_distinct_spans(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """sha1_hash32 of data[start:start+length] for each span, computing SHA-1 once per
    distinct span when spans repeat enough for that to pay (data: uint8 followed by at least
    56 zero bytes)."""
    n = len(starts)
    if n < _DISTINCT_MIN:
        return _sha1_32_spans(data, starts, lengths)
    words = _words(data)
    sample = max(_DISTINCT_MIN, n // _SAMPLE)
    if sample < n:
        rep = representatives(words, starts[:sample], lengths[:sample])
        if np.count_nonzero(rep != np.arange(sample)) < _REPEATED_MIN * sample:
            return _sha1_32_spans(data, starts, lengths)
    rep = representatives(words, starts, lengths)
    distinct = np.flatnonzero(rep == np.arange(n))
    out = np.empty(n, dtype=np.uint32)
    out[distinct] = _sha1_32_spans(data, starts[distinct], lengths[distinct])
    return out[rep]
