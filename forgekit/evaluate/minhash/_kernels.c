/* MinHash's two hot loops in C, called through ctypes (forgekit/evaluate/minhash/native.py).
 *
 * A plain shared library with no Python API: it does not depend on the Python version, and
 * every function only reads and writes the buffers it is given, within the bounds the Python
 * side has checked. Both functions compute exactly what the numpy code computes (tests compare
 * them bit for bit with hashlib and datasketch):
 *
 *  - fk_sha1_32_spans: datasketch's sha1_hash32 (the first 4 bytes of the SHA-1 digest, read
 *    little-endian) of many byte spans of one buffer. Spans of at most 55 bytes (one SHA-1
 *    block) are hashed LANES at a time: the compression function is written on GCC/Clang
 *    vector types, so each operation works on every lane at once (AVX-512, AVX2 or SSE2,
 *    whichever the compiler picks for the clone the CPU runs). Longer spans go one by one.
 *  - fk_affine32_min: datasketch's affine32 MinHash: for each document, the minimum over its
 *    shingle hashes h of a[k] * fmix32(h) + b[k] (mod 2^32), for every permutation k.
 *
 * SHA-1 is written from FIPS 180-4; only H0 of the digest is kept.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && defined(__GLIBC__) && !defined(FK_NO_CLONES)
/* One copy of a function per instruction set, chosen once when the library loads. */
#define FK_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FK_CLONES
#endif

#define LANES 16
#pragma GCC diagnostic ignored "-Wpsabi" /* lanes_t never crosses a call: always inlined */
typedef uint32_t lanes_t __attribute__((vector_size(4 * LANES)));

#define ROTL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

static const uint32_t SHA1_H[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u,
                                   0xC3D2E1F0u};
static const uint32_t SHA1_K[4] = {0x5A827999u, 0x6ED9EBA1u, 0x8F1BBCDCu, 0xCA62C1D6u};

static inline uint32_t load_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* The SHA-1 compression of one block per lane; returns the first word of the new state. */
/* always inlined, so each clone has its own copy on its own instruction set */
static inline __attribute__((always_inline)) lanes_t sha1_h0_lanes(lanes_t w[16]) {
    lanes_t a = {0}, b = {0}, c = {0}, d = {0}, e = {0};
    a += SHA1_H[0];
    b += SHA1_H[1];
    c += SHA1_H[2];
    d += SHA1_H[3];
    e += SHA1_H[4];
    for (int t = 0; t < 80; t++) {
        lanes_t wt;
        if (t < 16) {
            wt = w[t];
        } else {
            wt = w[(t - 3) & 15] ^ w[(t - 8) & 15] ^ w[(t - 14) & 15] ^ w[t & 15];
            wt = ROTL(wt, 1);
            w[t & 15] = wt;
        }
        lanes_t f;
        uint32_t k;
        if (t < 20) {
            f = d ^ (b & (c ^ d));
            k = SHA1_K[0];
        } else if (t < 40) {
            f = b ^ c ^ d;
            k = SHA1_K[1];
        } else if (t < 60) {
            f = (b & c) | (d & (b | c));
            k = SHA1_K[2];
        } else {
            f = b ^ c ^ d;
            k = SHA1_K[3];
        }
        lanes_t next = ROTL(a, 5) + f + e + k + wt;
        e = d;
        d = c;
        c = ROTL(b, 30);
        b = a;
        a = next;
    }
    return a + SHA1_H[0];
}

/* H0 of SHA-1 of any message, one block at a time (for spans longer than one block). */
static uint32_t sha1_h0_scalar(const uint8_t *msg, size_t len) {
    uint32_t h[5];
    memcpy(h, SHA1_H, sizeof h);
    uint8_t tail[128];
    size_t full = len / 64, rest = len % 64;
    size_t tail_blocks = rest < 56 ? 1 : 2;
    memset(tail, 0, sizeof tail);
    memcpy(tail, msg + full * 64, rest);
    tail[rest] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) tail[tail_blocks * 64 - 1 - i] = (uint8_t)(bits >> (8 * i));
    for (size_t blk = 0; blk < full + tail_blocks; blk++) {
        const uint8_t *p = blk < full ? msg + blk * 64 : tail + (blk - full) * 64;
        uint32_t w[80];
        for (int t = 0; t < 16; t++) w[t] = load_be32(p + 4 * t);
        for (int t = 16; t < 80; t++) w[t] = ROTL(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int t = 0; t < 80; t++) {
            uint32_t f;
            if (t < 20) f = d ^ (b & (c ^ d));
            else if (t < 40 || t >= 60) f = b ^ c ^ d;
            else f = (b & c) | (d & (b | c));
            uint32_t next = ROTL(a, 5) + f + e + SHA1_K[t / 20] + w[t];
            e = d;
            d = c;
            c = ROTL(b, 30);
            b = a;
            a = next;
        }
        h[0] += a;
        h[1] += b;
        h[2] += c;
        h[3] += d;
        h[4] += e;
    }
    return h[0];
}

/* sha1_hash32 of data[starts[i] : starts[i] + lengths[i]] for i < n, into out[i]. The caller
 * guarantees 0 <= starts[i] and starts[i] + lengths[i] <= the size of data. */
FK_CLONES
void fk_sha1_32_spans(const uint8_t *data, const int64_t *starts, const int64_t *lengths,
                      int64_t n, uint32_t *out) {
    int64_t lane_span[LANES];
    int filled = 0;
    lanes_t w[16];
    uint8_t block[64];
    for (int64_t i = 0; i <= n; i++) {
        if (i < n) {
            size_t len = (size_t)lengths[i];
            const uint8_t *msg = data + starts[i];
            if (len > 55) {
                out[i] = __builtin_bswap32(sha1_h0_scalar(msg, len));
                continue;
            }
            memset(block, 0, sizeof block);
            memcpy(block, msg, len);
            block[len] = 0x80;
            block[62] = (uint8_t)((len * 8) >> 8);
            block[63] = (uint8_t)(len * 8);
            for (int j = 0; j < 16; j++) w[j][filled] = load_be32(block + 4 * j);
            lane_span[filled++] = i;
            if (filled < LANES) continue;
        } else if (filled == 0) {
            break;
        }
        for (int l = filled; l < LANES; l++)  /* unused lanes of the last group */
            for (int j = 0; j < 16; j++) w[j][l] = 0;
        lanes_t h0 = sha1_h0_lanes(w);
        for (int l = 0; l < filled; l++) out[lane_span[l]] = __builtin_bswap32(h0[l]);
        filled = 0;
    }
}

static inline uint32_t fmix32(uint32_t h) {
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    return h ^ (h >> 16);
}

/* For each of n_docs documents (counts[d] consecutive hashes each): out[d * num_perm + k] =
 * min over the document's hashes h of a[k] * fmix32(h) + b[k] (mod 2^32); 0xFFFFFFFF for a
 * document without hashes (datasketch's empty MinHash). */
FK_CLONES
void fk_affine32_min(const uint32_t *hashes, const int64_t *counts, int64_t n_docs,
                     const uint32_t *a, const uint32_t *b, int64_t num_perm, uint32_t *out) {
    const uint32_t *h = hashes;
    for (int64_t d = 0; d < n_docs; d++) {
        uint32_t *row = out + d * num_perm;
        for (int64_t k = 0; k < num_perm; k++) row[k] = 0xFFFFFFFFu;
        for (int64_t s = 0; s < counts[d]; s++) {
            uint32_t m = fmix32(h[s]);
            for (int64_t k = 0; k < num_perm; k++) {
                uint32_t v = a[k] * m + b[k];
                row[k] = v < row[k] ? v : row[k];
            }
        }
        h += counts[d];
    }
}

/* Which clone runs here, for status and benchmarks. */
const char *fk_kernels_isa(void) {
#if defined(__x86_64__) && defined(__GNUC__) && defined(__GLIBC__) && !defined(FK_NO_CLONES)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return "avx512f";
    if (__builtin_cpu_supports("avx2")) return "avx2";
    return "x86-64";
#else
    return "generic";
#endif
}
