"""The C MinHash kernels (forgekit/evaluate/minhash/_kernels.c): built at install, equal to
hashlib, numpy and datasketch bit for bit, checked before use, and never loaded stale."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from datasketch import MinHash
from datasketch.hashfunc import sha1_hash32

from forgekit.errors import ConfigError
from forgekit.evaluate.minhash import minhash_signatures, native, permutations, shingles


@pytest.fixture
def lib():
    lib = native.kernels()
    assert lib is not None, native.status()
    return lib


@pytest.mark.skipif(
    not shutil.which(os.environ.get("CC", "cc")), reason="no C compiler: numpy only"
)
def test_the_install_built_the_kernels_and_minhash_uses_them():
    # make test installs with a C compiler (llama.cpp needs one): the hook must have run
    status = native.status()
    assert status["kernels"] == "c", status
    assert status["isa"] in ("avx512f", "avx2", "x86-64", "generic")


def test_sha1_of_spans_equals_hashlib_at_every_length_and_offset(lib):
    # 0..55 bytes: one block, 16 spans at a time; longer ones block by block, up to 4 blocks;
    # a count that is not a multiple of 16 leaves a part-filled last group
    rng = np.random.default_rng(5)
    data = rng.integers(0, 256, 5000, dtype=np.uint8)
    lengths = np.array([n for n in range(0, 260) for _ in range(3)] + [55, 56, 64, 119, 120])
    starts = rng.integers(0, len(data) - 260, len(lengths))
    got = native.sha1_32_spans(lib, data, starts, lengths)
    want = [sha1_hash32(data[s : s + n].tobytes()) for s, n in zip(starts, lengths, strict=True)]
    assert got.tolist() == want
    assert native.sha1_32_spans(lib, data, starts[:0], lengths[:0]).tolist() == []


def test_spans_outside_the_data_are_refused_before_c_reads_them(lib):
    data = np.zeros(10, dtype=np.uint8)
    with pytest.raises(ValueError, match="outside"):
        native.sha1_32_spans(lib, data, np.array([5]), np.array([6]))
    with pytest.raises(ValueError, match="outside"):
        native.sha1_32_spans(lib, data, np.array([-1]), np.array([2]))
    with pytest.raises(ValueError, match="counts"):
        native.affine32_min(lib, np.zeros(3, np.uint32), np.array([2, 2]), [1], [0])


def test_affine_minima_equal_datasketch_including_empty_documents(lib):
    a, b = permutations(128, seed=9)
    rng = np.random.default_rng(6)
    counts = np.array([5, 0, 1, 300, 0, 17])
    hashes = rng.integers(0, 2**32, counts.sum(), dtype=np.uint64).astype(np.uint32)
    got = native.affine32_min(lib, hashes, counts, a, b)
    at = 0
    for d, n in enumerate(counts):
        m = MinHash(num_perm=128, seed=9, scheme="affine32", hashfunc=int)
        for h in hashes[at : at + n].tolist():
            m.update(h)
        at += n
        assert np.array_equal(got[d], m.hashvalues), d


def test_signatures_with_c_equal_numpy_and_datasketch_on_mixed_text(monkeypatch):
    rng = np.random.default_rng(8)
    words = ["alpha", "Beta", "γάμμα", "涂了甲硝唑后", "x" * 60, "naïve", "ok", "😀"]
    texts = ["", "hi", "涂了甲硝唑后皮肤长的痘痘没有效果"] + [
        " ".join(rng.choice(words, int(k))) for k in rng.integers(0, 40, 500)
    ]
    monkeypatch.setenv(native.ENV, "c")
    with_c = minhash_signatures(texts, num_perm=64, chunk_size=128)
    monkeypatch.setenv(native.ENV, "numpy")
    with_numpy = minhash_signatures(texts, num_perm=64, chunk_size=128)
    assert np.array_equal(with_c, with_numpy)
    encoded = [[s.encode("utf-8") for s in shingles(t, 3)] for t in texts]
    bulk = MinHash.bulk(encoded, num_perm=64)
    assert np.array_equal(with_c, np.array([m.hashvalues for m in bulk]))


def test_a_wrong_kernel_setting_is_one_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv(native.ENV, "fastest")
    with pytest.raises(ConfigError, match="FORGEKIT_MINHASH_KERNEL='fastest'.*auto, c, numpy"):
        minhash_signatures(["some text here"])


def test_a_stale_or_missing_library_is_never_loaded(monkeypatch, tmp_path):
    # the source changed since the install: its library has another name, so the old one is
    # not loaded; "auto" falls back to numpy with the same signatures, "c" says why not
    want = minhash_signatures(["one two three four", "five six seven"], num_perm=16)
    source = tmp_path / "_kernels.c"
    source.write_text(native.SOURCE.read_text() + "\n/* edited */\n")
    monkeypatch.setattr(native, "SOURCE", source)
    native._load.cache_clear()
    try:
        assert native.status()["kernels"] == "numpy"
        assert "was not built" in native.status()["why"]
        got = minhash_signatures(["one two three four", "five six seven"], num_perm=16)
        assert np.array_equal(got, want)
        monkeypatch.setenv(native.ENV, "c")
        with pytest.raises(ConfigError, match="FORGEKIT_MINHASH_KERNEL=c.*was not built"):
            minhash_signatures(["one two three four"])
    finally:
        native._load.cache_clear()


@pytest.mark.skipif(not shutil.which(os.environ.get("CC", "cc")), reason="needs a C compiler")
def test_a_library_that_computes_wrong_hashes_fails_its_check_and_is_not_used(
    monkeypatch, tmp_path
):
    # a build that is wrong (here: SHA-1 with a changed constant, compiled for real) must be
    # caught by the check before any signature is made with it
    source = tmp_path / "_kernels.c"
    source.write_text(native.SOURCE.read_text().replace("0x5A827999u", "0x5A827998u"))
    built = native.compile_library(tmp_path, source)
    assert built.name == native.library_name(source) and built.exists()
    assert not list(tmp_path.glob(".kernels-*"))  # no temporary file left behind
    monkeypatch.setattr(native, "SOURCE", source)
    native._load.cache_clear()
    try:
        status = native.status()
        assert status["kernels"] == "numpy"
        assert "fails its check: SHA1-32 of a 0-byte span" in status["why"]
        monkeypatch.setenv(native.ENV, "c")
        with pytest.raises(ConfigError, match="fails its check"):
            native.kernels()
    finally:
        native._load.cache_clear()


def test_forge_config_says_which_minhash_kernels_run(monkeypatch):
    import json
    import subprocess
    import sys

    def config() -> dict:
        run = subprocess.run(
            [sys.executable, "-m", "forgekit.cli", "config"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)["minhash"]

    assert config() == native.status()
    monkeypatch.setenv(native.ENV, "numpy")
    assert config() == {"kernels": "numpy", "why": "FORGEKIT_MINHASH_KERNEL=numpy"}
