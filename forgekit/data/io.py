"""Readers and writers: JSONL, JSON, CSV, Parquet, pandas DataFrames and lists of dicts.

Every reader returns a list of plain dicts; every error names the file and, for line-based
formats, the line. Writers never clobber: they write to a temporary file and rename it into
place, and refuse to replace an existing file unless asked to.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    import pandas as pd

RecordSource = Union[str, os.PathLike, "pd.DataFrame", Iterable[Mapping[str, Any]]]

FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class RecordFormatError(ValueError):
    """Input that cannot be read as records; the message names the file (and line)."""


def detect_format(path: str | os.PathLike, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in set(FORMATS.values()):
            raise RecordFormatError(
                f"unknown format {fmt!r}; choose one of {sorted(set(FORMATS.values()))}"
            )
        return fmt
    suffix = Path(path).suffix.lower()
    try:
        return FORMATS[suffix]
    except KeyError:
        raise RecordFormatError(
            f"{path}: cannot tell the format from the extension {suffix!r}; "
            f"use one of {sorted(FORMATS)} or pass fmt="
        ) from None


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Yield one dict per non-blank line; a bad line raises naming file:line."""
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordFormatError(
                    f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})"
                ) from None
            if not isinstance(value, dict):
                raise RecordFormatError(
                    f"{path}:{lineno}: expected a JSON object, got {type(value).__name__}"
                )
            yield value


def _read_json(path: Path) -> list[dict[str, Any]]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RecordFormatError(
            f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})"
        ) from None
    if isinstance(value, dict):
        # {"data": [...]} / {"records": [...]} wrappers are common in public data sets.
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) == 1:
            value = lists[0]
        else:
            value = [value]
    if not isinstance(value, list):
        raise RecordFormatError(f"{path}: expected a JSON array of objects")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise RecordFormatError(
                f"{path}: item {index} is {type(item).__name__}, expected an object"
            )
    return value


def _clean_value(value: Any) -> Any:
    """pandas/pyarrow values -> plain JSON-able Python (NaN -> None, arrays -> lists)."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _clean_value(value.tolist())
    if isinstance(value, list):
        return [_clean_value(v) for v in value]
    if isinstance(value, tuple):
        return [_clean_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean_value(v) for k, v in value.items()}
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (ValueError, AttributeError):
            return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def dataframe_to_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    columns = [str(c) for c in df.columns]
    return [
        {col: _clean_value(val) for col, val in zip(columns, row)}
        for row in df.itertuples(index=False, name=None)
    ]


_JSON_COLUMNS = ("history", "metadata", "lineage", "chosen", "rejected")


def _read_csv(path: Path) -> list[dict[str, Any]]:
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.ParserError as exc:
        raise RecordFormatError(f"{path}: {exc}") from None
    # Line numbers in errors count the header as line 1.
    return _decode_json_columns(dataframe_to_records(df), path, first_line=2)


def _decode_json_columns(
    records: list[dict[str, Any]], path: Path, first_line: int
) -> list[dict[str, Any]]:
    """Lists and dicts were written as JSON text (CSV and Parquet have no such cells);
    decode a column when it is one of the record's structured fields, or when every
    non-empty value in it is a JSON array/object."""
    if not records:
        return records
    for key in records[0]:
        texts = [r.get(key) for r in records if isinstance(r.get(key), str) and r.get(key)]
        if not texts or not all(t[:1] in "[{" for t in texts):
            continue
        decoded = []
        for lineno, record in enumerate(records, start=first_line):
            text = record.get(key)
            if not isinstance(text, str) or not text:
                decoded.append(text)
                continue
            try:
                decoded.append(json.loads(text))
            except json.JSONDecodeError as exc:
                if key not in _JSON_COLUMNS:
                    break  # ordinary text that happens to start with a bracket
                raise RecordFormatError(
                    f"{path}: row {lineno}: column {key!r} holds invalid JSON ({exc.msg})"
                ) from None
        else:
            for record, value in zip(records, decoded):
                record[key] = value
    return records


def read_records(
    source: RecordSource,
    fmt: str | None = None,
    *,
    split: str | None = None,
    column_map: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Read records from a path (.jsonl/.json/.csv/.parquet/.arrow, a folder of them, a
    `save_to_disk` folder, `hf:org/name[:split]`), a DataFrame, a `datasets` Dataset or
    DatasetDict (`split=`), or dicts; `column_map` renames source columns to record fields
    (see forgekit.data.sources)."""
    from forgekit.data import sources

    if sources.handles(source) or split is not None or column_map:
        if not sources.handles(source):
            records = read_records(source, fmt)
            if split is not None:
                raise RecordFormatError(f"split={split!r}: only a DatasetDict or hf: has splits")
            return sources.apply_column_map(records, column_map or {}, sources.describe(source))
        return sources.read_source(source, split=split, column_map=column_map)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        kind = detect_format(path, fmt)
        if kind == "jsonl":
            return list(iter_jsonl(path))
        if kind == "json":
            return _read_json(path)
        if kind == "csv":
            return _read_csv(path)
        import pandas as pd

        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several unrelated types
            raise RecordFormatError(f"{path}: not a readable Parquet file ({exc})") from None
        return _decode_json_columns(dataframe_to_records(df), path, first_line=0)
    if hasattr(source, "itertuples") and hasattr(source, "columns"):
        return dataframe_to_records(source)  # type: ignore[arg-type]
    records = []
    for index, item in enumerate(source):  # type: ignore[union-attr]
        if isinstance(item, str):
            item = {"input": item}
        if not isinstance(item, Mapping):
            raise RecordFormatError(
                f"item {index} is {type(item).__name__}; expected a dict (or a string prompt)"
            )
        records.append(dict(item))
    return records


def records_to_dataframe(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Records as a DataFrame. Text columns stay Python objects so a missing value is None,
    as in the JSONL (pandas 3's string dtype would turn it into NaN)."""
    import pandas as pd

    df = pd.DataFrame.from_records(list(records))
    for column in df.columns:
        if isinstance(df[column].dtype, pd.StringDtype):
            values = df[column].astype(object)
            df[column] = values.where(df[column].notna(), None)
    return df


def jsonl_line(record: Mapping[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, default=str) + "\n"


def write_records(
    records: RecordSource,
    path: str | os.PathLike,
    fmt: str | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write records to `path` atomically (temp file + rename). An existing file is kept
    unless overwrite=True: a user's data is never replaced by accident."""
    path = Path(path)
    kind = detect_format(path, fmt)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists; pass overwrite=True to replace it")
    rows = read_records(records) if not isinstance(records, list) else records
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if kind == "jsonl":
            with open(tmp, "w", encoding="utf-8") as handle:
                for row in rows:
                    handle.write(jsonl_line(row))
        elif kind == "json":
            tmp.write_text(json.dumps(rows, ensure_ascii=False, indent=2, default=str), "utf-8")
        else:
            df = records_to_dataframe(rows)
            if kind == "csv":
                for column in df.columns:
                    if (
                        column in _JSON_COLUMNS
                        or df[column].map(lambda v: isinstance(v, (list, dict))).any()
                    ):
                        df[column] = df[column].map(
                            lambda v: (
                                json.dumps(v, ensure_ascii=False, default=str)
                                if isinstance(v, (list, dict))
                                else v
                            )
                        )
                df.to_csv(tmp, index=False)
            else:
                _to_parquet(df, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _to_parquet(df: pd.DataFrame, path: Path) -> None:
    # Empty dicts (metadata={}) have no Parquet type; store nested mappings as JSON text.
    df = df.copy()
    for column in df.columns:
        if df[column].map(lambda v: isinstance(v, dict)).any():
            df[column] = df[column].map(
                lambda v: (
                    json.dumps(v, ensure_ascii=False, default=str) if isinstance(v, dict) else v
                )
            )
    df.to_parquet(path, index=False)
