"""MinHash near-duplicate removal on Ray Data: the same removed set as the local
`forgekit.evaluate.minhash.minhash_dedup`, for inputs larger than one machine's memory.

The local rule is greedy keep-first, not "one per connected component": documents are
visited in input order, and a document is removed when an LSH candidate that was *kept*
has estimated Jaccard >= threshold with it. With a chain A~B, B~C, A!~C the local run keeps
A and C (B is removed, so it cannot remove C); keeping only the first document of each
component would remove C too. So components are not the answer here, they are the unit of
work: a document's candidates all share a band key with it, hence lie in its component of
the "shares a band key" graph, and running the local keep-first over each component's
documents in input order gives exactly the local decisions.

Stages (each a Ray Data pass; where the work runs and what moves):

1. sign (streaming map over input shards, on the workers): read JSONL/Parquet, shingle,
   hash, MinHash signatures and band keys with forgekit's own hashing. Kept in the object
   store: order key, signature, band keys, id (~4*num_perm + 8*bands + 8 bytes per doc,
   spilled to disk by Ray when it does not fit).
2. buckets (hash shuffle of (bucket, order) rows, 16 bytes per document and band): each
   block links the members of each bucket to the bucket's first document and compacts its
   edges to one per document; the driver merges the compacted edges of the documents that
   collide at all (`components`: a few bytes per colliding document, not per document).
3. verify (shuffle of the colliding documents' signatures by component): the local
   keep-first over each block's components, in input order.
4. write (streaming map over the shards again): kept/ and removed/ folders, one part per
   shard, removed records with the same extra columns as the local `DedupResult.removed`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forgekit.distributed import stages
from forgekit.distributed.cluster import connect
from forgekit.distributed.components import components
from forgekit.distributed.file_shards import SHARD_BYTES, input_files, plan_shards
from forgekit.errors import ConfigError
from forgekit.evaluate.common import check_fraction
from forgekit.evaluate.minhash.hashfunc import HASHES
from forgekit.evaluate.minhash.lsh import lsh_params
from forgekit.evaluate.text import check_script, text_fields

OUTPUT_FORMATS = {"jsonl": ".jsonl", "parquet": ".parquet"}
_PARTITION_BYTES = 128 << 20


@dataclass
class DistributedDedupResult:
    """What a distributed run kept and removed. The records themselves are in files:
    `output/kept/` and `output/removed/` (one part per input shard, in input order).

    `removed` has one row per removed document: `row` (global input position), `id`,
    `duplicate_of_row`, `duplicate_of` (the kept document's id, or its row when it has
    none) and `estimated_jaccard`, sorted by row. `stats` has per-stage seconds, sizes and
    shuffle volume.

    Rows and decisions equal the local `DedupResult`'s. One naming difference: the local
    result names every record by its row when ids are missing or not unique anywhere;
    here that is decided per record (checking uniqueness would take one more pass).
    """

    n_input: int
    removed: pd.DataFrame
    output: Path
    params: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def n_removed(self) -> int:
        return len(self.removed)

    @property
    def n_kept(self) -> int:
        return self.n_input - self.n_removed

    @property
    def kept_dir(self) -> Path:
        return self.output / "kept"

    @property
    def removed_dir(self) -> Path:
        return self.output / "removed"

    def summary(self) -> dict[str, Any]:
        return {
            "method": "minhash",
            "engine": "ray",
            "input": self.n_input,
            "kept": self.n_kept,
            "removed": self.n_removed,
            "removed_fraction": round(self.n_removed / self.n_input, 6) if self.n_input else 0.0,
            "output": str(self.output),
            "params": self.params,
            "stats": self.stats,
        }

    def __repr__(self) -> str:
        return (
            f"DistributedDedupResult(input={self.n_input}, kept={self.n_kept}, "
            f"removed={self.n_removed}, output={str(self.output)!r})"
        )


def minhash_dedup(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    output: str | os.PathLike,
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
    id_field: str | None = "id",
    output_format: str = "jsonl",
    overwrite: bool = False,
    address: str | None = None,
    partitions: int | None = None,
    batch_rows: int = 2048,
    shard_bytes: int = SHARD_BYTES,
) -> DistributedDedupResult:
    """Remove near-duplicates by MinHash + LSH on Ray; the same removed set as the local
    `forgekit.evaluate.minhash.minhash_dedup(...)` with the same parameters on the same
    records in the same order.

    Args:
        source: a .jsonl/.parquet file, a folder of them (read in sorted name order,
            recursively) or a list of files and folders; read as a stream, shard by shard.
        output: a folder; gets kept/ and removed/ (one part file per input shard) and
            summary.json. Existing outputs there are replaced only with overwrite=True.
        text, threshold, num_perm, ngram, script, seed, hash, weights, params: as for the
            local `minhash_dedup`.
        id_field: field naming records (`duplicate_of` holds the kept record's value).
        output_format: "jsonl" or "parquet" (in Parquet, `duplicate_of` is text).
        address: a Ray cluster to attach to (e.g. "auto", "ray://head:10001"); None uses
            the Ray this process is attached to, or starts a local one.
        partitions: blocks per shuffle (default: one per CPU, more past ~128 MB each).
        batch_rows: documents hashed per batch in a task.
        shard_bytes: JSONL bytes per read task.
    """
    check_fraction("threshold", threshold)
    if hash not in HASHES:
        raise ConfigError(f"hash={hash!r}: choose one of {', '.join(HASHES)}")
    if ngram < 1 or num_perm < 2:
        raise ConfigError(f"ngram={ngram}, num_perm={num_perm}: need ngram >= 1, num_perm >= 2")
    if output_format not in OUTPUT_FORMATS:
        raise ConfigError(f"output_format={output_format!r}: choose jsonl or parquet")
    check_script(script)
    fields = text_fields(text)
    if params is None:
        params = lsh_params(threshold, num_perm, tuple(weights))
    elif params[0] * params[1] > num_perm or params[0] < 2:
        raise ConfigError(f"params={params}: need bands >= 2 and bands*rows <= {num_perm}")
    shards = plan_shards(input_files(source), shard_bytes)
    out = _prepare_output(Path(output), overwrite)
    options = {
        "fields": fields,
        "num_perm": num_perm,
        "ngram": ngram,
        "script": script,
        "seed": seed,
        "hash": hash,
        "params": tuple(params),
        "id_field": id_field,
        "batch_rows": batch_rows,
    }
    connect(address)
    with _hash_shuffle():
        n_input, removed, row_offsets, stats = _run(
            shards, out, options, threshold, partitions, OUTPUT_FORMATS[output_format]
        )
    result = DistributedDedupResult(
        n_input=n_input,
        removed=_removed_frame(removed, row_offsets),
        output=out,
        params={
            "text": text,
            "threshold": threshold,
            "num_perm": num_perm,
            "ngram": ngram,
            "script": script,
            "seed": seed,
            "hash": hash,
            "bands_rows": list(params),
        },
        stats=stats,
    )
    (out / "summary.json").write_text(json.dumps(result.summary(), indent=2, default=str))
    return result


def _run(
    shards: list[Any],
    out: Path,
    options: dict[str, Any],
    threshold: float,
    partitions: int | None,
    suffix: str,
) -> tuple[int, dict[str, np.ndarray], np.ndarray, dict[str, Any]]:
    """The four stages; returns (documents, removed columns sorted by order, each shard's
    first global row, stats)."""
    import ray

    params, num_perm = options["params"], options["num_perm"]
    clock, stats = time.perf_counter(), {"shards": len(shards)}

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stats[f"{stage}_seconds"] = round(now - clock, 3)
        clock = now

    shard_rows = [asdict(s) for s in shards]
    signed = (
        ray.data.from_items(shard_rows)
        .map_batches(stages.sign_shards, batch_size=1, fn_kwargs=options)
        .materialize()
    )
    n_input = signed.count()
    stats["signatures_bytes"] = signed.size_bytes()
    row_offsets = _row_offsets(signed, len(shards))
    lap("sign")
    # Shuffle partitions: one per CPU, more when a partition of bucket rows would pass
    # ~128 MB (each partition is one block, sorted in one task). Every partition costs a
    # shuffle actor, so fewer is faster on a small cluster.
    cpus = int(ray.cluster_resources().get("CPU", 1))
    parts = partitions or max(cpus, -(-n_input * params[0] * 16 // _PARTITION_BYTES))
    stats["partitions"] = parts

    bucketed = signed.select_columns(["order", "keys"]).map_batches(stages.bucket_rows)
    stats["bucket_shuffle_bytes"] = n_input * params[0] * 16  # uint64 bucket + int64 order
    edges = bucketed.repartition(parts, keys=["bucket"]).map_batches(
        stages.star_edges, batch_size=None
    )
    u, v = _collect(edges, ("u", "v"))
    stats["compacted_edges"] = len(u)
    nodes, labels = components(u, v)
    stats["colliding_documents"] = len(nodes)
    stats["components"] = len(np.unique(labels))
    lap("buckets")

    colliding = signed.map_batches(
        stages.colliding_rows, fn_kwargs={"nodes": nodes, "labels": labels}
    )
    stats["verify_shuffle_bytes"] = len(nodes) * (16 + 4 * num_perm)
    verdicts = colliding.repartition(parts, keys=["component"]).map_batches(
        stages.dedup_block,
        batch_size=None,
        fn_kwargs={"threshold": threshold, "params": params},
    )
    names = ("order", "dup_order", "similarity", "dup_id", "id")
    columns = _collect(verdicts, names)
    by = np.argsort(columns[0], kind="stable")
    removed = {name: column[by] for name, column in zip(names, columns, strict=True)}
    lap("verify")

    # each shard's task gets only its own removed rows (the driver has them all anyway)
    bounds = np.searchsorted(
        removed["order"], np.arange(len(shards) + 1, dtype=np.int64) << stages.SHARD_BITS
    )
    dup_rows = _global_rows(removed["dup_order"], row_offsets)
    items = [
        {
            **row,
            "first_row": int(row_offsets[row["index"]]),
            "removed": json.dumps(
                {
                    "rows": (removed["order"][lo:hi] & stages.ROW_MASK).tolist(),
                    "dup_rows": dup_rows[lo:hi].tolist(),
                    "dup_ids": removed["dup_id"][lo:hi].tolist(),
                    "similarity": removed["similarity"][lo:hi].tolist(),
                }
            ),
        }
        for row, lo, hi in zip(shard_rows, bounds[:-1], bounds[1:], strict=True)
    ]
    written = (
        ray.data.from_items(items)
        .map_batches(
            stages.write_shard_outputs,
            batch_size=1,
            fn_kwargs={"out_dir": str(out), "suffix": suffix, "batch_rows": options["batch_rows"]},
        )
        .take_all()
    )
    stats["written_removed"] = int(sum(w["removed"] for w in written))
    lap("write")
    return n_input, removed, row_offsets, stats


@contextlib.contextmanager
def _hash_shuffle() -> Iterator[None]:
    """Ray Data's hash shuffle while this run builds its datasets: `repartition(keys=...)`
    then puts every row of a key in one block (the sort-based strategies ignore `keys`)."""
    from ray.data import DataContext
    from ray.data.context import ShuffleStrategy

    context = DataContext.get_current()
    before = context.shuffle_strategy
    if before not in (ShuffleStrategy.HASH_SHUFFLE, ShuffleStrategy.SHUFFLE_V2):
        context.shuffle_strategy = ShuffleStrategy.HASH_SHUFFLE
    try:
        yield
    finally:
        context.shuffle_strategy = before


def _prepare_output(out: Path, overwrite: bool) -> Path:
    """The output folder, checked: earlier outputs there are replaced only on request."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: the output must be a folder (it gets kept/ and removed/)")
    previous = [out / "kept", out / "removed", out / "summary.json"]
    if any(p.exists() for p in previous):
        if not overwrite:
            raise FileExistsError(f"{out}: holds outputs of an earlier run; pass overwrite=True")
        for p in previous:
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _collect(ds: Any, columns: Sequence[str]) -> list[np.ndarray]:
    """Columns of a (small) dataset as numpy arrays on the driver, batch by batch."""
    parts: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    for batch in ds.iter_batches(batch_size=65536, batch_format="numpy"):
        for c in columns:
            parts[c].append(np.asarray(batch[c]))
    return [np.concatenate(parts[c]) if parts[c] else np.zeros(0, dtype=np.int64) for c in columns]


def _row_offsets(signed: Any, n_shards: int) -> np.ndarray:
    """Global row number of each shard's first row (shards without rows count zero)."""
    shard, rows = _collect(signed.map_batches(stages.shard_row_counts), ("shard", "rows"))
    per_shard = np.zeros(n_shards, dtype=np.int64)
    np.maximum.at(per_shard, shard.astype(np.int64), rows.astype(np.int64))
    return np.concatenate([[0], np.cumsum(per_shard)])


def _global_rows(order: np.ndarray, row_offsets: np.ndarray) -> np.ndarray:
    order = order.astype(np.int64)
    return row_offsets[order >> stages.SHARD_BITS] + (order & stages.ROW_MASK)


def _removed_frame(removed: dict[str, np.ndarray], row_offsets: np.ndarray) -> pd.DataFrame:
    dup_rows = _global_rows(removed["dup_order"], row_offsets)
    dup_ids = [json.loads(x) for x in removed["dup_id"]]
    return pd.DataFrame(
        {
            "row": _global_rows(removed["order"], row_offsets),
            "id": [json.loads(x) for x in removed["id"]],
            "duplicate_of_row": dup_rows,
            "duplicate_of": [r if d is None else d for r, d in zip(dup_rows.tolist(), dup_ids)],
            "estimated_jaccard": np.round(removed["similarity"].astype(float), 6),
        }
    )
