"""Shared plumbing for the evaluate functions: loading data and the dedup result object."""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from forgekit.errors import ConfigError

# DataFrame | path (.jsonl/.json/.csv/.parquet/.arrow, a folder, hf:name) | datasets | dicts
DataLike = Any
EXTERNAL = -2  # duplicate_of marker: matched a text outside the data (e.g. a seed pool)


def load_frame(data: DataLike, what: str = "data") -> pd.DataFrame:
    """A DataFrame from a DataFrame, a records file or a list of dicts/strings.

    A DataFrame is used as given (never modified); its positional order is what "first
    occurrence" means everywhere in this package.
    """
    if isinstance(data, pd.DataFrame):
        return data
    from forgekit.data.io import read_records, records_to_dataframe
    from forgekit.data.sources import handles

    if isinstance(data, (str, os.PathLike)) or handles(data):  # files, folders, datasets, hf:
        return records_to_dataframe(read_records(data))
    if isinstance(data, Mapping):
        raise ConfigError(f"{what}: got one dict; pass a list of records, a DataFrame or a path")
    return records_to_dataframe(read_records(data))


def record_keys(df: pd.DataFrame, id_field: str | None = "id") -> tuple[list[Any], str]:
    """The key that names each row in results: the `id_field` values when they exist and are
    unique, else the row position. Returns (keys, name of what the keys are)."""
    if id_field and id_field in df.columns:
        ids = df[id_field].tolist()
        if all(v is not None and v == v for v in ids) and len(set(map(str, ids))) == len(ids):
            return ids, id_field
    return list(range(len(df))), "row"


@dataclass
class DedupResult:
    """What a dedup pass kept and removed, and why.

    * `kept`: the kept records (a DataFrame, original columns, original order).
    * `removed`: the removed records with `duplicate_of` (the key of the kept record each one
      duplicates), `duplicate_of_row`, `row`, and the similarity column named by `measure`
      (e.g. `estimated_jaccard`, `cosine_similarity`, `rouge_l_f1`).
    * `key`: what `duplicate_of` holds: the id field's name, or "row" (positional index).
    """

    method: str
    kept: pd.DataFrame
    removed: pd.DataFrame
    measure: str | None
    key: str
    params: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def n_input(self) -> int:
        return len(self.kept) + len(self.removed)

    @property
    def n_kept(self) -> int:
        return len(self.kept)

    @property
    def n_removed(self) -> int:
        return len(self.removed)

    @property
    def pairs(self) -> pd.DataFrame:
        """One row per removed record: its key, the kept key it duplicates, the similarity."""
        cols = ["row", "duplicate_of_row", "duplicate_of"]
        if self.key != "row" and self.key in self.removed.columns:
            cols.insert(0, self.key)
        if self.measure and self.measure in self.removed.columns:
            cols.append(self.measure)
        return self.removed[cols].reset_index(drop=True)

    def clusters(self, top: int | None = 10) -> pd.DataFrame:
        """Duplicate clusters (a kept record and everything removed as its duplicate),
        largest first: representative row/key, size (including the representative)."""
        if self.removed.empty:
            return pd.DataFrame(columns=["representative", "representative_row", "size"])
        internal = self.removed[self.removed["duplicate_of_row"] >= 0]
        if internal.empty:
            return pd.DataFrame(columns=["representative", "representative_row", "size"])
        counts = internal.groupby("duplicate_of_row").size().sort_values(ascending=False)
        rep_key = internal.drop_duplicates("duplicate_of_row").set_index("duplicate_of_row")
        frame = pd.DataFrame(
            {
                "representative": [rep_key.loc[r, "duplicate_of"] for r in counts.index],
                "representative_row": counts.index.astype(int),
                "size": counts.to_numpy() + 1,
            }
        )
        frame = frame.sort_values(["size", "representative_row"], ascending=[False, True])
        return frame.head(top).reset_index(drop=True) if top else frame.reset_index(drop=True)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "input": self.n_input,
            "kept": self.n_kept,
            "removed": self.n_removed,
            "removed_fraction": round(self.n_removed / self.n_input, 6) if self.n_input else 0.0,
            "params": self.params,
        }
        for key, value in self.details.items():
            if isinstance(value, (int, float, str, bool, type(None))) or key == "per_source":
                out[key] = value
        return out

    def __repr__(self) -> str:
        return (
            f"DedupResult(method={self.method!r}, input={self.n_input}, kept={self.n_kept}, "
            f"removed={self.n_removed})"
        )

    def _repr_html_(self) -> str:
        head = html.escape(repr(self))
        pairs = self.pairs.head(20).to_html(index=False) if self.n_removed else ""
        return f"<div><p><b>{head}</b></p>{pairs}</div>"


def build_result(
    method: str,
    df: pd.DataFrame,
    duplicate_of: np.ndarray,
    similarity: np.ndarray | None,
    measure: str | None,
    *,
    id_field: str | None,
    params: dict[str, Any],
    details: dict[str, Any] | None = None,
    external: dict[int, str] | None = None,
    source_field: str | None = None,
) -> DedupResult:
    """Assemble a DedupResult from `duplicate_of`: the row of the kept original, -1 when kept,
    or EXTERNAL when the row matched something outside the data (then `external[row]` is the
    label reported as `duplicate_of`, and `duplicate_of_row` is -1). With `source_field`,
    `details["per_source"]` holds before/after counts per source."""
    keys, key_name = record_keys(df, id_field)
    duplicate_of = np.asarray(duplicate_of, dtype=np.int64)
    removed_rows = np.flatnonzero(duplicate_of != -1)
    kept = df.iloc[np.flatnonzero(duplicate_of == -1)]
    removed = df.iloc[removed_rows].copy()
    removed["row"] = removed_rows
    dup_rows = duplicate_of[removed_rows]
    removed["duplicate_of_row"] = np.where(dup_rows == EXTERNAL, -1, dup_rows)
    removed["duplicate_of"] = [
        (external or {}).get(int(r), "external") if d == EXTERNAL else keys[d]
        for r, d in zip(removed_rows, dup_rows)
    ]
    if measure is not None and similarity is not None:
        removed[measure] = np.round(np.asarray(similarity, dtype=float)[removed_rows], 6)
    details = dict(details or {})
    per_source = per_source_counts(df, duplicate_of, source_field)
    if per_source is not None:
        details["per_source"] = per_source
    return DedupResult(
        method=method,
        kept=kept,
        removed=removed,
        measure=measure,
        key=key_name,
        params=params,
        details=details,
    )


def per_source_counts(
    df: pd.DataFrame, duplicate_of: np.ndarray, source_field: str | None
) -> list[dict[str, Any]] | None:
    """Before/after counts per value of `source_field` (e.g. the data set a record came from)."""
    if not source_field:
        return None
    if source_field not in df.columns:
        raise ConfigError(
            f"source_field={source_field!r} is not in the data; available: "
            + ", ".join(map(str, df.columns))
        )
    sources = df[source_field].map(lambda v: "(none)" if v is None or v != v else str(v))
    kept = np.asarray(duplicate_of) < 0
    table = (
        pd.DataFrame({"source": sources.to_numpy(), "kept": kept})
        .groupby("source", sort=True)["kept"]
        .agg(before="size", after="sum")
    )
    return [
        {"source": src, "before": int(row.before), "after": int(row.after)}
        for src, row in table.iterrows()
    ]


def check_fraction(name: str, value: float, low: float = 0.0, high: float = 1.0) -> float:
    if not (low <= float(value) <= high):
        raise ConfigError(f"{name}={value}: must be between {low} and {high}")
    return float(value)


def as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)
