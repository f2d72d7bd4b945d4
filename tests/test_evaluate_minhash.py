"""MinHash dedup: datasketch-identical signatures, planted near-duplicates (English, Chinese)."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
from datasketch import MinHash, MinHashLSH
from datasketch.hashfunc import sha1_hash32

from forgekit.errors import ConfigError
from forgekit.evaluate import minhash_dedup
from forgekit.evaluate.minhash import (
    fast_shingle_hash,
    lsh_dedup,
    lsh_params,
    minhash_signatures,
    shingles,
)
from forgekit.evaluate.minhash.hashfunc import _sha1_shingle_hashes
from forgekit.evaluate.minhash.sha1 import _sha1_32_spans, sha1_32_distinct_spans
from forgekit.evaluate.text import tokens

TEXTS = [
    "The quick brown fox jumps over the lazy dog",
    "",
    "hi",
    "hi there",
    "涂了甲硝唑后皮肤长的痘痘没有效果，我应该如何处理？",
    "Hello, World! hello world again and again",
]


@pytest.fixture(params=["c", "numpy"])
def kernel(request, monkeypatch):
    """Run the test with the C kernels and again with the numpy code: both must give
    datasketch's results."""
    monkeypatch.setenv("FORGEKIT_MINHASH_KERNEL", request.param)
    return request.param


def _english_corpus(n_base: int = 60, seed: int = 7):
    """Random 60-word documents plus, for every third one, a copy with one word replaced."""
    rng = random.Random(seed)
    vocab = [
        "".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(3, 8)))
        for _ in range(3000)
    ]
    docs, planted = [], {}
    for i in range(n_base):
        words = [rng.choice(vocab) for _ in range(60)]
        docs.append(" ".join(words))
        if i % 3 == 0:
            variant = list(words)
            variant[rng.randrange(60)] = "zzzplanted"
            planted[len(docs)] = len(docs) - 1
            docs.append(" ".join(variant))
    return docs, planted


def _chinese_corpus(seed: int = 3):
    rng = random.Random(seed)
    alphabet = "".join(chr(0x4E00 + i) for i in range(0, 4000, 7))  # common CJK block
    docs, planted = [], {}
    for i in range(30):
        text = "".join(rng.choice(alphabet) for _ in range(50))
        docs.append(text)
        if i % 3 == 0:
            pos = rng.randrange(50)
            planted[len(docs)] = len(docs) - 1
            docs.append(text[:pos] + "龘" + text[pos + 1 :])
    return docs, planted


@pytest.mark.parametrize("ngram", [1, 3, 5])
def test_sha1_signatures_equal_datasketch_per_token_updates(ngram, kernel):
    sigs = minhash_signatures(TEXTS, num_perm=64, ngram=ngram, hash="sha1")
    for text, sig in zip(TEXTS, sigs, strict=True):
        reference = MinHash(num_perm=64)
        for shingle in shingles(text, ngram):
            reference.update(shingle.encode("utf-8"))
        assert np.array_equal(reference.hashvalues, sig), text


def test_vectorized_sha1_equals_datasketch_sha1_hash32_at_every_length():
    # 0..55 bytes fit one SHA-1 block (vectorized); longer messages go through hashlib
    rng = np.random.default_rng(0)
    messages = [rng.bytes(length) for length in range(0, 130) for _ in range(3)]
    messages += [b"", b"\x00" * 55, b"\xff" * 56, "涂了甲硝唑".encode()]
    assert _hash_spans(_sha1_32_spans, messages) == [sha1_hash32(m) for m in messages]


def _hash_spans(hash_spans, messages: list[bytes]) -> list[int]:
    """`hash_spans` over the messages laid end to end (with the zero padding it expects)."""
    starts = np.cumsum([0] + [len(m) for m in messages[:-1]])
    lengths = np.array([len(m) for m in messages])
    padded = np.frombuffer(b"".join(messages) + bytes(64), dtype=np.uint8)
    return hash_spans(padded, starts, lengths).tolist()


def test_sha1_once_per_distinct_span_equals_hashlib_on_every_span():
    # Many repeated spans (the case it is for), spans that agree in their first and last 8
    # bytes and length but not in between, short and zero-length spans, spans past one block,
    # and more distinct spans than table slots so that slots collide.
    rng = np.random.default_rng(1)
    pool = [rng.bytes(int(n)) for n in rng.integers(0, 70, 3000)]
    pool += [b"prefix--" + bytes([65 + k]) * m + b"--suffix" for k in range(3) for m in (1, 9, 30)]
    pool += [b"", b"a", b"abcdefgh", b"abcdefgi"]
    # equal in length, first 24 bytes and last 8: they differ only in between
    pool += [b"m" * 24 + bytes([66 + k]) + b"m" * 20 for k in range(4)]
    picks = rng.integers(0, len(pool), 20_000)
    messages = [pool[i] for i in picks]
    data = b"".join(messages)
    starts = np.cumsum([0] + [len(m) for m in messages[:-1]])
    lengths = np.array([len(m) for m in messages])
    padded = np.frombuffer(data + bytes(64), dtype=np.uint8)
    got = sha1_32_distinct_spans(padded, starts, lengths)
    assert got.tolist() == [sha1_hash32(m) for m in messages]


def test_sha1_of_spans_that_do_not_repeat_equals_hashlib():
    # too few repeats in the sample for grouping to pay: every span hashed on its own
    rng = np.random.default_rng(3)
    messages = [rng.bytes(int(n)) for n in rng.integers(1, 70, 20_000)]
    assert _hash_spans(sha1_32_distinct_spans, messages) == [sha1_hash32(m) for m in messages]


def _datasketch_bulk(texts, ngram, num_perm=64):
    encoded = [[s.encode("utf-8") for s in shingles(t, ngram)] for t in texts]
    return np.array([m.hashvalues for m in MinHash.bulk(encoded, num_perm=num_perm)])


@pytest.mark.parametrize("repeats", [True, False])
def test_sha1_signatures_equal_datasketch_on_a_chunk_of_many_shingles(repeats, kernel):
    # One chunk of a few hundred documents, enough shingles for the per-chunk grouping of
    # repeated shingles (repeats=True: boilerplate everywhere) or for the sample to skip it
    # (False: every word new), with the edge cases among them: empty, shorter than ngram,
    # Chinese, one word repeated, words long enough for a shingle past one SHA-1 block.
    rng = random.Random(4)
    boiler = ["usage", "options", "the", "following", "flags", "are", "accepted", "by", "this"]
    docs = []
    for i in range(300):
        if repeats:
            words = boiler * 2 + [f"w{rng.randrange(50)}" for _ in range(20)]
        else:
            words = [f"u{i}x{j}y{rng.randrange(10**9)}" for j in range(40)]
        docs.append(" ".join(words))
    docs += [
        "",
        "hi",
        "hi there",
        "spam " * 300,
        "涂了甲硝唑后皮肤长的痘痘没有效果，我应该如何处理？" * 3,
    ]
    docs += [" ".join(["x" * 30] * 5), "Ünïcödé naïve café " * 20]
    texts_shingles = [shingles(t, 3) for t in docs]
    flat = [s for sh in texts_shingles for s in sh]
    sample = flat[: len(flat) // 16]
    repeated = 1 - len(set(sample)) / len(sample)
    assert len(flat) > 10_000
    assert (repeated > 0.4) if repeats else (repeated < 0.01)  # grouping needs 0.2
    sigs = minhash_signatures(docs, num_perm=64, ngram=3)
    assert np.array_equal(sigs, _datasketch_bulk(docs, 3))


def test_vectorized_sha1_across_several_batches():
    rng = np.random.default_rng(2)
    messages = [rng.bytes(int(n)) for n in rng.integers(0, 56, 70_000)]  # > one batch
    starts = np.cumsum([0] + [len(m) for m in messages[:-1]])
    lengths = np.array([len(m) for m in messages])
    padded = np.frombuffer(b"".join(messages) + bytes(64), dtype=np.uint8)
    assert _sha1_32_spans(padded, starts, lengths).tolist() == [sha1_hash32(m) for m in messages]


MIXED_WORDS = [
    "hello", "World", "café", "naïve", "涂了甲硝唑后皮肤", "長い", "x" * 70, "a-b", "  ", "\n",
    "!!", "Ünïcödé", "日本語テキスト", "한국어", "_", "1234", "\t", "😀", "ﬁ", "e\u0301",
]  # fmt: skip


@pytest.mark.parametrize("script", ["auto", "words", "chars"])
@pytest.mark.parametrize("ngram", [1, 3, 5])
def test_chunk_sha1_hashes_equal_datasketch_on_every_shingle(ngram, script, kernel):
    rng = random.Random(ngram)
    texts = ["", " ", "hi", "hi there", "!!!", "y" * 300]
    for _ in range(400):
        sep = "" if rng.random() < 0.5 else " "
        texts.append(sep.join(rng.choice(MIXED_WORDS) for _ in range(rng.randint(0, 25))))
    hashed, counts = _sha1_shingle_hashes(texts, ngram, script)
    expected = [shingles(t, ngram, script) for t in texts]
    assert counts.tolist() == [len(e) for e in expected]
    assert hashed.tolist() == [sha1_hash32(s.encode("utf-8")) for e in expected for s in e]


@pytest.mark.parametrize("ngram", [1, 3])
def test_fast_signatures_equal_datasketch_with_the_fast_hashfunc(ngram):
    sigs = minhash_signatures(TEXTS, num_perm=64, ngram=ngram, hash="fast")
    for text, sig in zip(TEXTS, sigs, strict=True):
        reference = MinHash(num_perm=64, hashfunc=fast_shingle_hash)
        toks = tokens(text)
        if 0 < len(toks) < ngram:
            toks += [""] * (ngram - len(toks))
        for i in range(len(toks) - ngram + 1):
            reference.update(tuple(toks[i : i + ngram]))
        assert np.array_equal(reference.hashvalues, sig), text


def test_cjk_text_is_shingled_by_characters_and_english_by_words():
    assert shingles("涂了甲硝唑", 3) == ["涂了甲", "了甲硝", "甲硝唑"]
    assert shingles("Hello, big World!", 2) == ["hello big", "big world"]
    assert shingles("Hello world", 2, script="chars")[:2] == ["he", "el"]


@pytest.mark.parametrize("hash_name", ["fast", "sha1"])
def test_planted_english_near_duplicates_are_found(hash_name, kernel):
    docs, planted = _english_corpus()
    df = pd.DataFrame({"id": [f"d{i}" for i in range(len(docs))], "input": docs})
    result = minhash_dedup(df, threshold=0.7, hash=hash_name)
    removed = dict(zip(result.removed["row"], result.removed["duplicate_of_row"], strict=True))
    assert removed == planted
    assert result.n_kept == len(docs) - len(planted)
    pairs = result.pairs
    assert set(pairs.columns) >= {"id", "duplicate_of", "estimated_jaccard"}
    assert (pairs["estimated_jaccard"] >= 0.7).all()
    assert pairs["duplicate_of"].tolist() == [f"d{planted[r]}" for r in pairs["row"]]
    # true Jaccard of the 3-gram sets: (58 - 3 shared lost) / (58 + 3) ~ 0.90
    assert 0.8 <= pairs["estimated_jaccard"].mean() <= 0.98


def test_planted_chinese_near_duplicates_are_found(kernel):
    docs, planted = _chinese_corpus()
    result = minhash_dedup([{"input": d} for d in docs], threshold=0.7)
    assert result.key == "row"
    removed = dict(zip(result.removed["row"], result.removed["duplicate_of"], strict=True))
    assert removed == planted
    assert (result.removed["estimated_jaccard"] >= 0.7).all()


def _datasketch_keep_first(sigs: np.ndarray, threshold: float) -> np.ndarray:
    """The reference: every document through a plain MinHashLSH, in order (no prefilter)."""
    lsh = MinHashLSH(threshold=threshold, num_perm=sigs.shape[1])
    duplicate_of = np.full(len(sigs), -1)
    for i, sig in enumerate(sigs):
        mh = MinHash(num_perm=sigs.shape[1], hashvalues=sig, scheme="affine32")
        scored = [((sigs[c] == sig).mean(), -c) for c in lsh.query(mh)]
        if scored and max(scored)[0] >= threshold:
            duplicate_of[i] = -max(scored)[1]
            continue
        lsh.insert(i, mh)
    return duplicate_of


def test_in_memory_index_agrees_with_datasketch_minhashlsh():
    docs, _ = _english_corpus(n_base=45, seed=11)
    sigs = minhash_signatures(docs, num_perm=128)
    fast = lsh_dedup(sigs, 0.6)
    assert np.array_equal(fast[0], _datasketch_keep_first(sigs, 0.6))
    assert (fast[0] >= 0).sum() >= 15
    reference = lsh_dedup(sigs, 0.6, storage_config={"type": "dict"})
    assert np.array_equal(fast[0], reference[0])
    assert np.allclose(fast[1], reference[1])
    # storage_config goes to a real MinHashLSH; a string basename (all JSON can say) works
    named = lsh_dedup(sigs, 0.6, storage_config={"type": "dict", "basename": "forge-test"})
    assert np.array_equal(named[0], fast[0])
    lsh = MinHashLSH(threshold=0.6, num_perm=128)
    assert lsh_params(0.6, 128) == (lsh.b, lsh.r)


def test_parallel_hashing_gives_the_same_signatures(kernel):
    docs, _ = _english_corpus(n_base=30)
    one = minhash_signatures(docs, n_jobs=1, chunk_size=8)
    two = minhash_signatures(docs, n_jobs=2, chunk_size=8)
    assert np.array_equal(one, two)


def test_jsonl_path_and_dataframe_give_the_same_result(tmp_path):
    docs, planted = _english_corpus(n_base=15)
    path = tmp_path / "docs.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": i, "input": d, "src": "a" if i % 2 else "b"}) + "\n"
            for i, d in enumerate(docs)
        ),
        encoding="utf-8",
    )
    from_file = minhash_dedup(path, source_field="src")
    from_df = minhash_dedup(pd.read_json(path, lines=True), source_field="src")
    assert from_file.removed["row"].tolist() == sorted(planted) == from_df.removed["row"].tolist()
    per_source = {s["source"]: s for s in from_file.summary()["per_source"]}
    assert sum(s["before"] for s in per_source.values()) == len(docs)
    assert sum(s["before"] - s["after"] for s in per_source.values()) == len(planted)


def test_combined_text_fields():
    records = [
        {"input": "same question", "output": "answer one is about cats and dogs and birds"},
        {"input": "same question", "output": "a completely different reply on rockets and fuel"},
    ]
    assert minhash_dedup(records, "input").n_removed == 1
    assert minhash_dedup(records, "input+output").n_removed == 0


def test_errors_name_the_problem():
    with pytest.raises(ConfigError, match="'output' is not in the data; available fields: input"):
        minhash_dedup([{"input": "x"}], text="output")
    with pytest.raises(ConfigError, match="threshold=1.5"):
        minhash_dedup([{"input": "x"}], threshold=1.5)
    with pytest.raises(ConfigError, match="script='latin'"):
        minhash_dedup([{"input": "x"}], script="latin")
    with pytest.raises(ConfigError, match="hash='md5'"):
        minhash_dedup([{"input": "x"}], hash="md5")
    with pytest.raises(ConfigError, match="storage_config"):
        minhash_dedup([{"input": "x"}], storage_config={"type": "nosuchstore"})


# --- the LSH index in a real Redis --------------------------------------------------------

REDIS_SERVER = "/usr/bin/redis-server"


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory):
    """A throwaway redis-server (Debian's; `make system-deps` installs it) on a free port."""
    if not os.path.exists(REDIS_SERVER):
        pytest.fail(f"{REDIS_SERVER} is missing: run `make system-deps` (apt-get install it)")
    import redis

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            REDIS_SERVER,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.redis
def test_lsh_index_in_redis_gives_the_in_memory_result(redis_port):
    import redis

    client = redis.Redis(port=redis_port)
    docs, planted = _english_corpus(n_base=45, seed=5)
    in_memory = minhash_dedup([{"input": d} for d in docs], threshold=0.7)
    config = {"type": "redis", "redis": {"host": "127.0.0.1", "port": redis_port}}
    # a named index stays in Redis, holding every kept document
    named = minhash_dedup(
        [{"input": d} for d in docs], threshold=0.7, storage_config={**config, "basename": "kept"}
    )
    assert named.removed["row"].tolist() == in_memory.removed["row"].tolist() == sorted(planted)
    assert named.removed["duplicate_of_row"].tolist() == [planted[r] for r in sorted(planted)]
    assert named.removed["estimated_jaccard"].tolist() == pytest.approx(
        in_memory.removed["estimated_jaccard"].tolist()
    )
    assert client.hlen(b"kept_keys") == len(docs) - len(planted)
    # reusing it would mix two runs' row numbers: refused, and the index is left as it was
    kept = len(docs) - len(planted)
    with pytest.raises(ConfigError, match=f"'kept' already holds {kept} documents"):
        minhash_dedup(docs, threshold=0.7, storage_config={**config, "basename": "kept"})
    assert client.hlen(b"kept_keys") == len(docs) - len(planted)
    # an unnamed index is a scratch one: deleted after the run
    before = set(client.scan_iter())
    scratch = minhash_dedup([{"input": d} for d in docs], threshold=0.7, storage_config=config)
    assert scratch.removed["row"].tolist() == sorted(planted)
    assert set(client.scan_iter()) == before


@pytest.mark.redis
def test_unreachable_redis_is_a_clear_error(redis_port):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]  # nothing listens once the socket is closed
    with pytest.raises(ConfigError, match=r"storage_config \(type 'redis'\): cannot open"):
        minhash_dedup(
            ["a b c d", "a b c d"],
            storage_config={"type": "redis", "redis": {"port": closed_port}},
        )


@pytest.mark.parametrize("n", [0, 1, 5, 3000, 200_000])
def test_shared_band_keys_are_found_exactly(n):
    # a value alone in its table slot is unique; crowded slots are compared exactly: the
    # answer must be np.unique's, with planted repeats, many near-equal values (the same top
    # bits, so the same slot) and a value repeated many times
    from forgekit.evaluate.minhash.lsh import _repeated

    rng = np.random.default_rng(n)
    values = rng.integers(0, 2**64, n, dtype=np.uint64)
    if n > 10:
        values[rng.integers(0, n, n // 10)] = values[rng.integers(0, n, n // 10)]
        values[: n // 20] = values[: n // 20] & np.uint64(0xFFFF) | np.uint64(7 << 60)
        values[-5:] = values[0]
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    assert np.array_equal(_repeated(values), counts[inverse] > 1)
