"""The LSH index in datasketch storage (Redis, Cassandra, dict): its lifecycle and the
keep-first loop over it.

The index must start empty: its keys are this run's row numbers, and a document already
indexed by another run has no signature here to check the Jaccard against. Without a
`basename` the index gets a fresh one and is deleted after the run (nobody could find it
again); with one it is kept for the caller, with every kept document in it.
"""

from __future__ import annotations

import importlib.util
import uuid
from typing import Any

import numpy as np

from forgekit.errors import ConfigError
from forgekit.evaluate.minhash.signatures import best_match


def open_empty_index(
    storage_config: dict[str, Any], threshold: float, num_perm: int, params: tuple[int, int]
) -> tuple[Any, dict[str, Any], bool]:
    """Open a `MinHashLSH` in the configured storage and check that it is empty.

    Returns (index, the storage config as used, whether the caller named the index). An
    unnamed index gets a fresh basename; the caller must `drop_index` it when done.
    """
    from datasketch import MinHashLSH

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
    return lsh, storage_config, named


def keep_first_in_index(
    sigs: np.ndarray,
    threshold: float,
    params: tuple[int, int],
    storage_config: dict[str, Any],
    collides: np.ndarray,
    duplicate_of: np.ndarray,
    similarity: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The keep-first loop over a real datasketch.MinHashLSH (Redis, Cassandra or dict
    storage), for the rows that share a band key (`collides`); every other row is kept.
    Fills and returns (duplicate_of, similarity)."""
    from datasketch import MinHash

    num_perm = sigs.shape[1]
    lsh, storage_config, named = open_empty_index(storage_config, threshold, num_perm, params)
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
                best, sim = best_match(sigs, i, candidates)
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
            drop_index(storage_config)
    return duplicate_of, similarity


def drop_index(storage_config: dict[str, Any]) -> None:
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
