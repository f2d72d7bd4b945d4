"""The work of each distributed MinHash stage on one block, as plain functions of numpy
batches: Ray Data runs them in its tasks (`forgekit.distributed.minhash` wires them up), and
they need nothing from Ray themselves.

A block's columns: `order` (int64 order key, see `shards`), `sig` (num_perm uint32
signature), `keys` (one uint64 key per band), `id` (the record's id field as JSON).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from forgekit.data.io import write_records
from forgekit.distributed.components import compact
from forgekit.distributed.file_shards import SHARD_BITS, Shard, read_shard
from forgekit.errors import ConfigError
from forgekit.evaluate.minhash.hashfunc import fmix64
from forgekit.evaluate.minhash.lsh import band_keys, lsh_dedup
from forgekit.evaluate.minhash.signatures import minhash_signatures
from forgekit.evaluate.text import _as_text

ROW_MASK = (1 << SHARD_BITS) - 1
_BAND_SALT = np.uint64(0x9E3779B97F4A7C15)


def shards_of(batch: dict[str, np.ndarray]) -> list[Shard]:
    """The shards of a batch of `Shard` rows (as `ray.data.from_items` holds them)."""
    return [
        Shard(int(i), str(p), str(k), int(s), int(e))
        for i, p, k, s, e in zip(
            batch["index"], batch["path"], batch["kind"], batch["start"], batch["stop"]
        )
    ]


def record_texts(records: list[dict[str, Any]], fields: Sequence[str], where: str) -> list[str]:
    """The compared text of each record, exactly as `forgekit.evaluate.text.column_texts`
    builds it from a DataFrame (one field, or several joined by a newline)."""
    for field in fields:
        if not any(field in r for r in records):
            keys = sorted({k for r in records[:100] for k in r})
            raise ConfigError(
                f"{where}: text field {field!r} is in none of these records; "
                f"available fields: {', '.join(keys) or '(none)'}"
            )
    if len(fields) == 1:
        return [_as_text(r.get(fields[0])) for r in records]
    return ["\n".join(_as_text(r.get(f)) for f in fields) for r in records]


def sign_shards(batch: dict[str, np.ndarray], **options: Any) -> Iterator[dict[str, np.ndarray]]:
    """Stage 1, streaming: read each shard and yield signatures and band keys per chunk."""
    for shard in shards_of(batch):
        row = 0
        for records in read_shard(shard, options["batch_rows"]):
            texts = record_texts(records, options["fields"], shard.path)
            sigs = minhash_signatures(
                texts,
                num_perm=options["num_perm"],
                ngram=options["ngram"],
                script=options["script"],
                seed=options["seed"],
                hash=options["hash"],
                n_jobs=1,
            )
            keys, _ = band_keys(sigs, *options["params"])
            id_field = options["id_field"]
            ids = [json.dumps(r.get(id_field) if id_field else None) for r in records]
            order = (shard.index << SHARD_BITS) + np.arange(row, row + len(records))
            row += len(records)
            yield {"order": order.astype(np.int64), "sig": sigs, "keys": keys.T, "id": ids}


def shard_row_counts(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rows seen per shard in this block (the largest row number + 1)."""
    order = np.sort(np.asarray(batch["order"], dtype=np.int64))
    if not len(order):
        return {"shard": np.zeros(0, np.int64), "rows": np.zeros(0, np.int64)}
    shard = order >> SHARD_BITS
    last = np.flatnonzero(np.r_[shard[1:] != shard[:-1], True])  # each shard's last row
    return {"shard": shard[last], "rows": (order[last] & ROW_MASK) + 1}


def bucket_rows(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stage 2a: one (bucket, order) row per document and band. A bucket is the band key mixed
    with the band number, so that one column names a (band, key) pair; two pairs sharing a
    bucket by accident (2^-64) only add a candidate that stage 3 checks like any other."""
    keys = np.asarray(batch["keys"], dtype=np.uint64)
    bands = keys.shape[1]
    salt = (np.arange(1, bands + 1, dtype=np.uint64) * _BAND_SALT)[None, :]
    with np.errstate(over="ignore"):
        bucket = fmix64(keys ^ salt).ravel()
    return {"bucket": bucket, "order": np.repeat(batch["order"].astype(np.int64), bands)}


def star_edges(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stage 2b, on a whole block after the hash shuffle by bucket (so every bucket is whole
    in one block): link each member of a bucket to the bucket's first document, then compact
    the block's edges to one per document (its component's first document in this block)."""
    bucket = np.asarray(batch["bucket"], dtype=np.uint64)
    order = np.asarray(batch["order"], dtype=np.int64)
    if not len(bucket):
        return {"u": np.zeros(0, np.int64), "v": np.zeros(0, np.int64)}
    by = np.lexsort((order, bucket))
    bucket, order = bucket[by], order[by]
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    sizes = np.diff(np.r_[starts, len(bucket)])
    first = np.repeat(order[starts], sizes)
    member = np.ones(len(order), dtype=bool)
    member[starts] = False  # every document but the first of its bucket
    node, root = compact(order[member], first[member])
    return {"u": node, "v": root}


def colliding_rows(
    batch: dict[str, np.ndarray], nodes: np.ndarray, labels: np.ndarray
) -> dict[str, Any]:
    """Stage 3a: the documents that share a bucket with another one, with their component."""
    order = np.asarray(batch["order"], dtype=np.int64)
    where = np.searchsorted(nodes, order)
    where[where == len(nodes)] = 0
    hit = nodes[where] == order if len(nodes) else np.zeros(len(order), dtype=bool)
    rows = np.flatnonzero(hit)
    return {
        "component": labels[where[rows]],
        "order": order[rows],
        "sig": np.asarray(batch["sig"])[rows],
        "id": np.asarray(batch["id"], dtype=object)[rows],
    }


def dedup_block(
    batch: dict[str, np.ndarray], threshold: float, params: tuple[int, int]
) -> dict[str, np.ndarray]:
    """Stage 3b, on a whole block after the shuffle by component: the local keep-first over
    the block's documents in input order.

    Exact: a document's LSH candidates are the documents it shares a bucket with, all in its
    own component, so its decision depends only on earlier documents of that component, which
    are all here, in the same order as in a local run. Documents of other components in the
    block share no bucket with it and change nothing.
    """
    order = np.asarray(batch["order"], dtype=np.int64)
    if not len(order):
        empty = np.zeros(0, dtype=np.int64)
        return {
            "order": empty,
            "dup_order": empty,
            "similarity": np.zeros(0),
            "dup_id": [],
            "id": [],
        }
    by = np.argsort(order, kind="stable")
    order = order[by]
    sigs = np.asarray(batch["sig"])[by]
    ids = np.asarray(batch["id"], dtype=object)[by]
    duplicate_of, similarity = lsh_dedup(sigs, threshold, params=params)
    removed = np.flatnonzero(duplicate_of >= 0)
    target = duplicate_of[removed]
    return {
        "order": order[removed],
        "dup_order": order[target],
        "similarity": similarity[removed],
        "dup_id": ids[target],
        "id": ids[removed],
    }


def _name(row: int, record_id: Any, suffix: str) -> Any:
    """`duplicate_of`: the kept record's id, or its row when it has none. In Parquet both are
    text, so that the column has one type in every part file."""
    name = row if record_id is None else record_id
    return str(name) if suffix == ".parquet" else name


def write_shard_outputs(
    batch: dict[str, np.ndarray], out_dir: str, suffix: str, batch_rows: int
) -> dict[str, np.ndarray]:
    """Stage 4: read each shard again and write its kept and removed records (removed ones
    with `row`, `duplicate_of_row`, `duplicate_of` and `estimated_jaccard`, as the local
    `DedupResult.removed` has them). Each shard row carries `first_row` (its global row) and
    `removed` (JSON: its removed rows, their originals' global rows, ids and similarity)."""
    shards, kept_counts, removed_counts = [], [], []
    for shard, first_row, removed_json in zip(
        shards_of(batch), batch["first_row"], batch["removed"], strict=True
    ):
        mine = json.loads(removed_json)
        at = {row: k for k, row in enumerate(mine["rows"])}
        kept_records: list[dict[str, Any]] = []
        removed_records: list[dict[str, Any]] = []
        row = 0
        for records in read_shard(shard, batch_rows):
            for record in records:
                k = at.get(row)
                if k is None:
                    kept_records.append(record)
                else:
                    dup_row = mine["dup_rows"][k]
                    dup_id = json.loads(mine["dup_ids"][k])
                    removed_records.append(
                        {
                            **record,
                            "row": int(first_row) + row,
                            "duplicate_of_row": dup_row,
                            "duplicate_of": _name(dup_row, dup_id, suffix),
                            "estimated_jaccard": round(float(mine["similarity"][k]), 6),
                        }
                    )
                row += 1
        name = f"part-{shard.index:05d}{suffix}"
        for folder, records in (("kept", kept_records), ("removed", removed_records)):
            if records:
                write_records(records, f"{out_dir}/{folder}/{name}", overwrite=True)
        shards.append(shard.index)
        kept_counts.append(len(kept_records))
        removed_counts.append(len(removed_records))
    return {
        "shard": np.array(shards, dtype=np.int64),
        "kept": np.array(kept_counts, dtype=np.int64),
        "removed": np.array(removed_counts, dtype=np.int64),
    }
