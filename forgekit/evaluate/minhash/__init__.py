"""MinHash near-duplicate removal with datasketch semantics, hashed in batches.

Split the way datasketch splits it:

* `hashfunc`: shingles and their 32-bit hashes ("sha1": datasketch's default hash, bit for
  bit, in C (`native`) or else vectorized in numpy (`sha1`, once per distinct shingle of a
  chunk); "fast": tabulation-hashed tokens);
* `signatures`: MinHash signatures equal to datasketch's `hashvalues`, over chunks and
  processes, and the Jaccard estimate between them;
* `lsh`: datasketch's banding and the keep-first dedup over an in-memory index;
* `storage`: the same over a `MinHashLSH` in Redis (or other datasketch storage), and that
  index's lifecycle.

`minhash_dedup` puts them together for records; `forgekit.distributed.minhash_dedup` gives
the same removed set on Ray, for files larger than one machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from forgekit.evaluate.common import (
    DataLike,
    DedupResult,
    build_result,
    check_fraction,
    load_frame,
)
from forgekit.evaluate.minhash.hashfunc import HASHES, fast_shingle_hash, shingles, token_hash
from forgekit.evaluate.minhash.lsh import lsh_dedup, lsh_params
from forgekit.evaluate.minhash.signatures import (
    PARALLEL_MIN_DOCS,
    minhash_signatures,
    permutations,
    resolve_jobs,
)
from forgekit.evaluate.text import column_texts

__all__ = [
    "HASHES",
    "PARALLEL_MIN_DOCS",
    "fast_shingle_hash",
    "lsh_dedup",
    "lsh_params",
    "minhash_dedup",
    "minhash_signatures",
    "permutations",
    "resolve_jobs",
    "shingles",
    "token_hash",
]


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
            "fast" (tabulation-hashed tokens combined per n-gram, in numpy: ~2x faster than
            "sha1" only where the C kernels are not built, slower where they are; decisions
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
        source_field=source_field,
    )
