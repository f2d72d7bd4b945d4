"""Input files cut into shards that Ray tasks read in parallel, each row with its place in the
input order.

Keep-first dedup needs every document's position in the input (files in the order given, a
folder's files sorted by name, rows in file order). `ray.data.read_json` / `read_parquet`
stream well but do not say where a row came from, so the files are cut here instead: a JSONL
file into byte ranges that start on a line boundary, a Parquet file into runs of row groups.
A row's order key is `shard index << 32 | row within the shard`: sortable like the input,
known without reading any other shard; the global row number follows once every shard's row
count is known.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgekit.data.io import RecordFormatError, dataframe_to_records
from forgekit.errors import ConfigError

SHARD_BITS = 32  # rows per shard < 2^32; order key = shard index << 32 | row in shard
SUFFIXES = {".jsonl": "jsonl", ".parquet": "parquet"}
# Bytes of JSONL per shard (and so per Ray read task): big enough that a task's set-up is
# small next to its work, small enough that a 2-core machine still gets several shards.
SHARD_BYTES = 64 << 20
SHARD_ROWS = 500_000  # the same for Parquet, counted in rows (row groups are not split)


@dataclass(frozen=True)
class Shard:
    """Part of one input file: a byte range of a JSONL file (a line belongs to the shard its
    first byte is in) or a run of row groups [start, stop) of a Parquet file."""

    index: int
    path: str
    kind: str
    start: int
    stop: int


def input_files(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """The files to read, in input order: a file, a folder (its .jsonl/.parquet files sorted
    by name, recursively) or a list of files and folders."""
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    files: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
            )
            if not found:
                raise ConfigError(f"{path}: no .jsonl or .parquet files in this folder")
            files.extend(str(p) for p in found)
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise ConfigError(
                    f"{path}: distributed dedup reads .jsonl and .parquet files, "
                    f"not {path.suffix or 'files without an extension'}"
                )
            files.append(str(path))
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    if not files:
        raise ConfigError("no input files given")
    return files


def plan_shards(
    files: Sequence[str], shard_bytes: int = SHARD_BYTES, shard_rows: int = SHARD_ROWS
) -> list[Shard]:
    """Cut the files into shards, in input order."""
    shards: list[Shard] = []
    for path in files:
        kind = SUFFIXES[Path(path).suffix.lower()]
        if kind == "jsonl":
            size = os.path.getsize(path)
            for start in range(0, max(size, 1), shard_bytes):
                shards.append(Shard(len(shards), path, kind, start, min(start + shard_bytes, size)))
        else:
            import pyarrow.parquet as pq

            try:
                meta = pq.ParquetFile(path).metadata
            except Exception as exc:  # pyarrow raises several unrelated types
                raise RecordFormatError(f"{path}: not a readable Parquet file ({exc})") from None
            first, rows = 0, 0
            for group in range(meta.num_row_groups):
                rows += meta.row_group(group).num_rows
                if rows >= shard_rows:
                    shards.append(Shard(len(shards), path, kind, first, group + 1))
                    first, rows = group + 1, 0
            if first < meta.num_row_groups or meta.num_row_groups == 0:
                shards.append(Shard(len(shards), path, kind, first, meta.num_row_groups))
    return shards


def read_shard(shard: Shard, batch_rows: int = 2048) -> Iterator[list[dict[str, Any]]]:
    """The shard's records in file order, in lists of up to `batch_rows`. Blank JSONL lines
    are skipped, as `forgekit.data.io.read_records` does; a bad line raises naming file:line."""
    if shard.kind == "parquet":
        yield from _read_parquet_shard(shard, batch_rows)
        return
    batch: list[dict[str, Any]] = []
    with open(shard.path, "rb") as handle:
        if shard.start > 0:
            handle.seek(shard.start - 1)
            if handle.read(1) != b"\n":
                handle.readline()  # the line that began before this shard is the previous one's
        while handle.tell() < shard.stop:
            offset = handle.tell()
            line = handle.readline()
            if not line:
                break
            if not line.strip():
                continue
            batch.append(_parse_line(shard.path, line, offset))
            if len(batch) >= batch_rows:
                yield batch
                batch = []
    if batch:
        yield batch


def _parse_line(path: str, line: bytes, offset: int) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise RecordFormatError(
            f"{path}:{_line_number(path, offset)}: invalid JSON ({reason})"
        ) from None
    if not isinstance(value, dict):
        raise RecordFormatError(
            f"{path}:{_line_number(path, offset)}: expected a JSON object, "
            f"got {type(value).__name__}"
        )
    return value


def _line_number(path: str, offset: int) -> int:
    """1-based number of the line starting at byte `offset` (only computed for an error)."""
    with open(path, "rb") as handle:
        return handle.read(offset).count(b"\n") + 1


def _read_parquet_shard(shard: Shard, batch_rows: int) -> Iterator[list[dict[str, Any]]]:
    import pyarrow.parquet as pq

    reader = pq.ParquetFile(shard.path)
    groups = list(range(shard.start, shard.stop))
    if not groups:
        return
    for table in reader.iter_batches(batch_size=batch_rows, row_groups=groups):
        yield dataframe_to_records(table.to_pandas())
