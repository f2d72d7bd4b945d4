"""Inputs beyond single files: Hugging Face datasets (in memory, `save_to_disk` folders, the
Hub), Arrow files, folders of Parquet/Arrow/JSONL files, and column mapping.

`forgekit.data.io.read_records` hands these sources here, so every method and every evaluate
function reads them through the one input path:

* a `datasets.Dataset`, or a `DatasetDict` with `split=` (a dict with one split needs none);
* a folder written by `save_to_disk` (a Dataset, or a DatasetDict with `split=`) — read with
  pyarrow, so `datasets` need not be installed;
* a `.arrow` file (Arrow IPC, stream or file format);
* a folder of `.parquet` / `.arrow` / `.jsonl` files (read in name order, one kind per folder);
* `hf:org/name[/config][:split]` — the Hub, when online. Offline (HF_HUB_OFFLINE, or the Hub
  cannot be reached within a few seconds) it fails at once with one error naming the data set;
  with HF_HUB_OFFLINE set, a copy already in the local `datasets` cache is still used.

`column_map={"instruction": "input"}` renames source columns to record fields (the direction
of `datasets.rename_columns` and `DataFrame.rename`), all at once, so two columns can swap.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from forgekit.errors import ConfigError

HUB_PREFIX = "hf:"
HUB_TIMEOUT_S = 3.0  # reaching the Hub: long enough for a slow link, short enough not to hang
_FOLDER_KINDS = (".parquet", ".arrow", ".jsonl")


class HubOfflineError(ConfigError):
    """A `hf:` data set was asked for while the Hugging Face Hub cannot be used."""


@dataclass(frozen=True)
class Source:
    """An input plus how to read it: `split` of a DatasetDict / Hub data set, and a column map.
    `forgekit.data.source(ds, split="test", column_map={"question": "input"})` makes one; it
    can be passed wherever records are accepted (methods, evaluate, export)."""

    data: Any
    split: str | None = None
    column_map: Mapping[str, str] | None = field(default=None)


def source(
    data: Any, *, split: str | None = None, column_map: Mapping[str, str] | None = None
) -> Source:
    """Wrap `data` with a split and/or a column map, to pass to any forgekit function."""
    return Source(data, split=split, column_map=dict(column_map) if column_map else None)


def is_hub_name(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(HUB_PREFIX)


def is_dataset(value: Any) -> bool:
    """A `datasets.Dataset` / `DatasetDict` / `IterableDataset`, recognised without importing
    `datasets` (a user who has one has it imported already)."""
    return type(value).__module__.startswith("datasets.")


def handles(value: Any) -> bool:
    """Whether `read_source` (rather than the single-file readers) reads `value`."""
    if isinstance(value, Source) or is_dataset(value) or is_hub_name(value):
        return True
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        return path.is_dir() or path.suffix.lower() == ".arrow"
    return False


def read_source(
    value: Any, *, split: str | None = None, column_map: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Records from any supported source, with `column_map` applied."""
    if isinstance(value, Source):
        split = split or value.split
        column_map = column_map or value.column_map
        value = value.data
    if is_hub_name(value):
        records, where = _read_hub(value, split), value
    elif is_dataset(value):
        records, where = _dataset_records(value, split), type(value).__name__
    elif isinstance(value, (str, os.PathLike)) and Path(value).is_dir():
        records, where = _read_folder(Path(value), split), str(value)
    elif isinstance(value, (str, os.PathLike)) and Path(value).suffix.lower() == ".arrow":
        records, where = _arrow_file_records(Path(value)), str(value)
    else:
        from forgekit.data.io import read_records

        records, where = read_records(value), describe(value)
    return apply_column_map(records, column_map, where) if column_map else records


def describe(value: Any) -> str:
    return str(value) if isinstance(value, (str, os.PathLike)) else type(value).__name__


# -- column mapping ----------------------------------------------------------------------------
def apply_column_map(
    records: list[dict[str, Any]], column_map: Mapping[str, str], where: str = "input"
) -> list[dict[str, Any]]:
    """Rename columns (source -> record field) in every record. A source column that no
    record has is an error naming it and the columns there are; so is a rename onto a column
    that exists and is not itself renamed away (its data would be lost)."""
    if not column_map:
        return records
    available: dict[str, None] = {}
    for record in records:
        available.update(dict.fromkeys(record))
    missing = [name for name in column_map if name not in available]
    if missing:
        raise ConfigError(
            f"{where}: column map: no column {', '.join(map(repr, missing))}; "
            f"available columns: {', '.join(available) or '(none)'}"
        )
    targets = list(column_map.values())
    doubled = sorted({t for t in targets if targets.count(t) > 1})
    if doubled:
        raise ConfigError(f"{where}: column map: several columns map to {', '.join(doubled)}")
    clobbered = [t for t in targets if t in available and t not in column_map]
    if clobbered:
        raise ConfigError(
            f"{where}: column map: {', '.join(map(repr, clobbered))} already exists; map it "
            f"to another name too (e.g. {clobbered[0]}={clobbered[0]}_original) so no data "
            "is lost"
        )
    renamed = []
    for record in records:
        row = {k: v for k, v in record.items() if k not in column_map}
        row.update({new: record[old] for old, new in column_map.items() if old in record})
        renamed.append(row)
    return renamed


# -- in-memory datasets --------------------------------------------------------------------
def _dataset_records(value: Any, split: str | None) -> list[dict[str, Any]]:
    if isinstance(value, Mapping):  # a DatasetDict / IterableDatasetDict
        value = value[_pick_split(list(value), split, type(value).__name__)]
    elif (
        split is not None
        and getattr(value, "split", None) not in (None, "")
        and (str(value.split) != split)
    ):
        raise ConfigError(f"split={split!r}: this Dataset is the {str(value.split)!r} split")
    if hasattr(value, "to_list"):
        return value.to_list()
    return [dict(row) for row in value]  # an IterableDataset


def _pick_split(splits: list[str], split: str | None, where: str) -> str:
    if split is None:
        if len(splits) == 1:
            return splits[0]
        raise ConfigError(f"{where} has splits {', '.join(splits)}: choose one with split=")
    if split not in splits:
        raise ConfigError(f"{where}: no split {split!r}; splits: {', '.join(splits)}")
    return split


# -- files and folders -----------------------------------------------------------------------
def _read_folder(folder: Path, split: str | None) -> list[dict[str, Any]]:
    if (folder / "dataset_dict.json").exists():  # DatasetDict.save_to_disk
        splits = json.loads((folder / "dataset_dict.json").read_text("utf-8")).get("splits", [])
        return _read_folder(folder / _pick_split(list(splits), split, str(folder)), None)
    if (folder / "state.json").exists():  # Dataset.save_to_disk
        state = json.loads((folder / "state.json").read_text("utf-8"))
        files = [folder / entry["filename"] for entry in state.get("_data_files", [])]
        return [row for path in files for row in _arrow_file_records(path)]
    if split is not None and (folder / split).is_dir():
        return _read_folder(folder / split, None)
    by_kind = {
        kind: sorted(p for p in folder.iterdir() if p.suffix.lower() == kind and p.is_file())
        for kind in _FOLDER_KINDS
    }
    kinds = [kind for kind, files in by_kind.items() if files]
    if not kinds:
        raise ConfigError(
            f"{folder}: a folder with no .parquet, .arrow or .jsonl files and not a "
            "save_to_disk folder (no state.json / dataset_dict.json)"
        )
    if len(kinds) > 1:
        raise ConfigError(
            f"{folder}: holds {' and '.join(kinds)} files; keep one kind per folder or name a file"
        )
    from forgekit.data.io import read_records

    records: list[dict[str, Any]] = []
    for path in by_kind[kinds[0]]:
        records.extend(_arrow_file_records(path) if kinds[0] == ".arrow" else read_records(path))
    return records


def _arrow_file_records(path: Path) -> list[dict[str, Any]]:
    import pyarrow as pa

    from forgekit.data.io import RecordFormatError

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with pa.memory_map(str(path)) as stream:
            try:
                table = pa.ipc.open_stream(stream).read_all()
            except pa.ArrowInvalid:
                stream.seek(0)
                table = pa.ipc.open_file(stream).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise RecordFormatError(f"{path}: not a readable Arrow file ({exc})") from None
    return table.to_pylist()


# -- the Hub -------------------------------------------------------------------------------
def parse_hub_name(value: str) -> tuple[str, str | None, str | None]:
    """`hf:org/name[/config][:split]` -> (repo id, config, split)."""
    body = value[len(HUB_PREFIX) :]
    body, _, split = body.partition(":")
    parts = [p for p in body.split("/") if p]
    if not parts or len(parts) > 3:
        raise ConfigError(f"{value}: use hf:org/name, hf:org/name:split or hf:org/name/config")
    config = parts[2] if len(parts) == 3 else None
    return "/".join(parts[:2]), config, split or None


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT") or "https://huggingface.co"


def env_offline() -> bool:
    return any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> str | None:
    """None when a TCP connection to the Hub opens within `timeout`, else why not."""
    url = urlparse(hub_endpoint())
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{host}:{port} unreachable ({exc.strerror or type(exc).__name__})"


def require_online(what: str) -> None:
    """Raise HubOfflineError naming `what` unless the Hub can be reached now."""
    if env_offline():
        raise HubOfflineError(f"{what}: the Hugging Face Hub is offline (HF_HUB_OFFLINE is set)")
    problem = hub_reachable()
    if problem:
        raise HubOfflineError(f"{what}: the Hugging Face Hub is offline: {problem}")


def _read_hub(value: str, split: str | None) -> list[dict[str, Any]]:
    repo, config, named_split = parse_hub_name(value)
    split = split or named_split
    hint = (
        "; while online, run datasets.load_dataset(...).save_to_disk(folder) and pass the "
        "folder instead"
    )
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"{value}: reading the Hub needs `pip install forgekit[hf]`") from None
    if env_offline():
        if not datasets.config.HF_HUB_OFFLINE:  # imported before the variable was set
            raise HubOfflineError(
                f"{value}: the Hugging Face Hub is offline (HF_HUB_OFFLINE is set){hint}"
            )
        try:  # datasets itself is offline: only its local cache is consulted, never the net
            loaded = datasets.load_dataset(repo, config, split=split)
        except Exception as exc:
            raise HubOfflineError(
                f"{value}: the Hugging Face Hub is offline (HF_HUB_OFFLINE is set) and the "
                f"data set is not in the local cache ({type(exc).__name__}){hint}"
            ) from None
        return _dataset_records(loaded, None)
    try:
        require_online(value)
    except HubOfflineError as exc:
        raise HubOfflineError(f"{exc}{hint}") from None
    try:
        loaded = datasets.load_dataset(repo, config, split=split)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"{value}: {exc}") from None
    return _dataset_records(loaded, None)
