"""MinHash's two hot loops in C (`_kernels.c`), loaded with ctypes, with numpy as fallback.

The library is compiled when forgekit is installed (`hatch_build.py`, with the machine's C
compiler) and named after a digest of its source and flags, so a stale build is never loaded.
It computes exactly what the numpy code computes: datasketch's SHA1-32 of byte spans and its
affine32 permutation minima. Before first use it is checked against hashlib and numpy on a
few inputs; a library that is missing or fails the check is not used, and the numpy code
runs instead (same results, ~3x slower).

`FORGEKIT_MINHASH_KERNEL` chooses: "auto" (default: C when it loads and passes its check),
"c" (C or one error saying why not), "numpy" (never C).

This module imports only the standard library at the top: the build hook loads it by path to
name the library before forgekit (or numpy) is installed.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).with_name("_kernels.c")
# -O3 without -march: the baseline instruction set; the hot functions carry AVX2 and AVX-512
# clones that the CPU chooses between at load time (target_clones), so one build runs on
# every x86-64 machine, and the wheel can be copied to another.
CFLAGS = ("-O3", "-fPIC", "-shared", "-fno-strict-aliasing", "-std=gnu11")
ENV = "FORGEKIT_MINHASH_KERNEL"
CHOICES = ("auto", "c", "numpy")


def library_name(source: Path | None = None) -> str:
    """The file name of the library built from `source` (default SOURCE) with CFLAGS (the same
    in the build hook and here: a library built from other source or flags is never loaded)."""
    source = source or SOURCE
    digest = hashlib.sha256(source.read_bytes() + " ".join(CFLAGS).encode()).hexdigest()
    return f"_kernels-{digest[:12]}{'.dll' if sys.platform == 'win32' else '.so'}"


def compile_library(out_dir: Path, source: Path | None = None, compiler: str | None = None) -> Path:
    """Compile the kernels into out_dir/library_name(); raises OSError or CalledProcessError
    (with the compiler's message) when it cannot."""
    import subprocess
    import tempfile

    source = source or SOURCE
    cc = compiler or os.environ.get("CC") or "cc"
    out = out_dir / library_name(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    # written under a temporary name, then renamed: a half-written library is never loaded
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".kernels-", suffix=".so")
    os.close(fd)
    try:
        subprocess.run(
            [cc, *CFLAGS, "-o", tmp, str(source)], check=True, capture_output=True, text=True
        )
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def kernel_choice() -> str:
    """FORGEKIT_MINHASH_KERNEL, checked."""
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in CHOICES:
        from forgekit.errors import ConfigError

        raise ConfigError(f"{ENV}={value!r}: choose one of {', '.join(CHOICES)}")
    return value


@functools.lru_cache(maxsize=1)
def _load() -> tuple[Any, str]:
    """(the checked library or None, why it is not used)."""
    path = SOURCE.with_name(library_name())
    if not path.exists():
        return None, f"{path.name} was not built (no C compiler when forgekit was installed?)"
    P, I64 = ctypes.c_void_p, ctypes.c_int64
    try:
        lib = ctypes.CDLL(str(path))
        lib.fk_sha1_32_spans.argtypes = [P, P, P, I64, P]
        lib.fk_sha1_32_spans.restype = None
        lib.fk_affine32_min.argtypes = [P, P, I64, P, P, I64, P]
        lib.fk_affine32_min.restype = None
        lib.fk_kernels_isa.restype = ctypes.c_char_p
    except (OSError, AttributeError) as exc:
        return None, f"{path.name} does not load: {exc}"
    problem = _self_check(lib)
    if problem:
        return None, f"{path.name} fails its check: {problem}"
    return lib, ""


def _self_check(lib: Any) -> str:
    """Compare the library with hashlib and numpy on spans of every length 0..130 and a few
    documents; return what differs ("" when nothing)."""
    import numpy as np

    data = np.frombuffer(bytes(range(256)) * 2, dtype=np.uint8)
    lengths = np.arange(131, dtype=np.int64)
    starts = (lengths * 7) % 300
    got = _call_sha1(lib, data, starts, lengths)
    for s, n, h in zip(starts.tolist(), lengths.tolist(), got.tolist(), strict=True):
        want = int.from_bytes(hashlib.sha1(data[s : s + n].tobytes()).digest()[:4], "little")
        if h != want:
            return f"SHA1-32 of a {n}-byte span is {h:#x}, hashlib says {want:#x}"
    a = np.array([0x9E3779B1, 3, 0xFFFFFFFF], dtype=np.uint32)
    b = np.array([7, 0x80000000, 0xFFFFFFFF], dtype=np.uint32)
    counts = np.array([3, 0, 2], dtype=np.int64)
    hashes = got[:5].copy()
    sig = _call_affine(lib, hashes, counts, a, b)
    want = _affine_numpy(hashes, counts, a, b)
    if not np.array_equal(sig, want):
        return f"affine32 minima {sig.tolist()}, numpy says {want.tolist()}"
    return ""


def _affine_numpy(hashes: Any, counts: Any, a: Any, b: Any) -> Any:
    """The reference for the self-check: min over each document of a * fmix32(h) + b, with
    the numpy code's own pre-mix."""
    import numpy as np

    from forgekit.evaluate.minhash.signatures import _fmix32

    out = np.full((len(counts), len(a)), 0xFFFFFFFF, dtype=np.uint32)
    bounds = np.cumsum(counts).tolist()
    with np.errstate(over="ignore"):
        for d, (lo, hi) in enumerate(zip([0, *bounds[:-1]], bounds, strict=True)):
            if hi > lo:
                h = _fmix32(hashes[lo:hi].astype(np.uint32))
                out[d] = (h[:, None] * a[None, :] + b[None, :]).min(axis=0)
    return out


def _call_sha1(lib: Any, data: Any, starts: Any, lengths: Any) -> Any:
    import numpy as np

    out = np.empty(len(starts), dtype=np.uint32)
    if len(starts):
        lib.fk_sha1_32_spans(
            data.ctypes.data, starts.ctypes.data, lengths.ctypes.data, len(starts), out.ctypes.data
        )
    return out


def _call_affine(lib: Any, hashes: Any, counts: Any, a: Any, b: Any) -> Any:
    import numpy as np

    out = np.empty((len(counts), len(a)), dtype=np.uint32)
    lib.fk_affine32_min(
        hashes.ctypes.data,
        counts.ctypes.data,
        len(counts),
        a.ctypes.data,
        b.ctypes.data,
        len(a),
        out.ctypes.data,
    )
    return out


def kernels() -> Any:
    """The C library to use now, or None for numpy (FORGEKIT_MINHASH_KERNEL decides)."""
    choice = kernel_choice()
    if choice == "numpy":
        return None
    lib, why = _load()
    if lib is None and choice == "c":
        from forgekit.errors import ConfigError

        raise ConfigError(f"{ENV}=c: the C MinHash kernels cannot be used: {why}")
    return lib


def status() -> dict:
    """Which kernels MinHash uses here and why (for benchmarks and bug reports)."""
    if kernel_choice() == "numpy":
        return {"kernels": "numpy", "why": f"{ENV}=numpy"}
    lib, why = _load()
    if lib is None:
        return {"kernels": "numpy", "why": why}
    return {"kernels": "c", "isa": lib.fk_kernels_isa().decode()}


def sha1_32_spans(lib: Any, data: Any, starts: Any, lengths: Any) -> Any:
    """SHA1-32 of data[start:start+length] for each span, in C. Bounds are checked here: the C
    code trusts them."""
    import numpy as np

    data = np.ascontiguousarray(data, dtype=np.uint8)
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    lengths = np.ascontiguousarray(lengths, dtype=np.int64)
    if len(starts) != len(lengths):
        raise ValueError(f"{len(starts)} starts but {len(lengths)} lengths")
    if len(starts) and (
        int(starts.min()) < 0 or int(lengths.min()) < 0 or int((starts + lengths).max()) > len(data)
    ):
        raise ValueError("a span reaches outside the data")
    return _call_sha1(lib, data, starts, lengths)


def affine32_min(lib: Any, hashes: Any, counts: Any, a: Any, b: Any) -> Any:
    """Per document (counts[d] consecutive hashes each), the minimum of a[k] * fmix32(h) + b[k]
    mod 2^32 for every k: datasketch's affine32 signature. (n_docs x len(a), uint32)"""
    import numpy as np

    hashes = np.ascontiguousarray(hashes, dtype=np.uint32)
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    a = np.ascontiguousarray(a, dtype=np.uint32)
    b = np.ascontiguousarray(b, dtype=np.uint32)
    if len(a) != len(b):
        raise ValueError(f"{len(a)} multipliers but {len(b)} offsets")
    if len(counts) and (int(counts.min()) < 0 or int(counts.sum()) > len(hashes)):
        raise ValueError("the counts ask for more hashes than there are")
    return _call_affine(lib, hashes, counts, a, b)
