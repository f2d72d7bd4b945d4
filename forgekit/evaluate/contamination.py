"""Decontamination: find records that share an n-gram with an evaluation set (a benchmark).

GPT-3 used 13-grams; datatrove flags any sample sharing an n-gram with a benchmark's prompt or
answer. Here the benchmark items' n-grams (prompt and answer fields joined, so n-grams that
span the two count too) are hashed into one sorted index (forgekit.evaluate.ngram_index), and
every record's n-grams are looked up in it, vectorized, a chunk of records at a time: the cost
grows with the size of the data plus the benchmarks, never with their product.

Text is normalized before it is cut into n-grams (NFKC, lowercase, punctuation and whitespace
dropped), so a copy with other case, punctuation or spacing still matches; n counts words in
space-delimited text and characters in Chinese, Japanese and Korean text.
"""

from __future__ import annotations

import html
import itertools
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forgekit.errors import ConfigError
from forgekit.evaluate.common import DataLike, load_frame
from forgekit.evaluate.ngram_index import MAX_BENCHMARKS, NgramIndex, ngram_hashes
from forgekit.evaluate.text import column_texts, is_cjk_char, text_fields, words

# The record fields searched when `text` is not given (those the data has).
RECORD_FIELDS = ("input", "history", "output", "target", "thinking", "chosen", "rejected")
# A benchmark's prompt and answer fields, by the names evaluation sets use.
PROMPT_FIELDS = ("prompt", "question", "input", "instruction", "problem", "query", "context")
ANSWER_FIELDS = ("choices", "answer", "answers", "output", "solution", "target", "completion")
CHUNK_RECORDS = 5000  # records hashed and looked up at once (bounds memory)
CHUNK_CHARS = 4_000_000  # ... and at most about this many characters of them


@dataclass
class Benchmark:
    """An evaluation set: `data` (a records file, a DataFrame, a list of dicts or a
    `datasets.Dataset`), its `name` (default: the file's stem) and the `fields` whose
    n-grams count (default: the prompt and answer fields it has, see PROMPT_FIELDS and
    ANSWER_FIELDS)."""

    data: Any
    name: str | None = None
    fields: str | Sequence[str] | None = None


@dataclass
class DecontaminationResult:
    """What decontamination found.

    * `report`: one row per flagged record: `row`, the record's key, `benchmark` (the first
      one matched), `benchmark_item` (that item's row in its benchmark), `matched_ngram`,
      `matched_ngrams` (how many of the record's n-grams occur in any benchmark) and
      `benchmarks` (every benchmark matched).
    * `kept`: the records to keep (original columns): all of them, or without the flagged
      ones when `remove=True`. Its `attrs['forgekit']['decontaminate']` is `summary()`.
    * `flagged`: the flagged records (original columns) with the report's columns.
    * `per_benchmark`: per benchmark, its items, indexed n-grams and records that hit it.
    """

    kept: pd.DataFrame
    flagged: pd.DataFrame
    report: pd.DataFrame
    per_benchmark: list[dict[str, Any]]
    n_input: int
    removed: bool
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_flagged(self) -> int:
        return len(self.flagged)

    @property
    def n_removed(self) -> int:
        return self.n_flagged if self.removed else 0

    @property
    def n_kept(self) -> int:
        return len(self.kept)

    def summary(self) -> dict[str, Any]:
        """Counts for a manifest or a dataset card ("decontaminated: N removed")."""
        return {
            "method": "decontaminate",
            "input": self.n_input,
            "flagged": self.n_flagged,
            "removed": self.n_removed,
            "kept": self.n_kept,
            "per_benchmark": self.per_benchmark,
            "params": self.params,
        }

    def __repr__(self) -> str:
        return (
            f"DecontaminationResult(input={self.n_input}, flagged={self.n_flagged}, "
            f"removed={self.n_removed}, benchmarks={len(self.per_benchmark)})"
        )

    def _repr_html_(self) -> str:
        head = html.escape(repr(self))
        table = pd.DataFrame(self.per_benchmark).to_html(index=False)
        flagged = self.report.head(20).to_html(index=False) if self.n_flagged else ""
        return f"<div><p><b>{head}</b></p>{table}{flagged}</div>"


def decontaminate(
    data: DataLike,
    against: Any,
    *,
    n: int = 13,
    text: str | Sequence[str] | None = None,
    fields: str | Sequence[str] | None = None,
    remove: bool = False,
    id_field: str | None = "id",
) -> DecontaminationResult:
    """Flag (and with `remove=True` drop) records sharing an n-gram with an evaluation set.

    `against`: one benchmark or a list of them — records files (.jsonl/.json/.csv/.parquet),
    DataFrames, lists of dicts, `datasets.Dataset`s or `Benchmark(data, name, fields)` — or
    a dict {name: benchmark}. `fields`: the benchmark fields to match (default: the prompt and
    answer fields each has). `n`: n-gram length in words (characters for CJK text). `text`:
    the record fields searched (default: those of input, history, output, target, thinking,
    chosen, rejected the data has), several joined with '+'.
    """
    if int(n) < 1:
        raise ConfigError(f"n={n}: the n-gram length must be >= 1")
    df = _frame(data, "data")
    record_text = text if text is not None else _default_record_fields(df)
    column_texts(df.iloc[:0], record_text)  # a missing field fails before any work
    benchmarks = [_load_benchmark(b, fields) for b in _benchmark_list(against)]
    if len(benchmarks) > MAX_BENCHMARKS:
        raise ConfigError(
            f"{len(benchmarks)} benchmarks: at most {MAX_BENCHMARKS} per call; split them"
        )
    index, item_starts = _build_index(benchmarks, n)
    hits = _find(df, record_text, index, n)
    names = [b["name"] for b in benchmarks]
    report = _report(df, hits, names, item_starts, id_field, n)
    per_benchmark = [
        {
            "benchmark": b["name"],
            "fields": b["fields"],
            "items": b["items"],
            "ngrams": b["ngrams"],
            "too_short": b["too_short"],
            "records_hit": int(sum(b["name"] in found for found in report["benchmarks"])),
        }
        for b in benchmarks
    ]
    rows = report["row"].to_numpy(dtype=np.int64)
    flagged = df.iloc[rows].copy()
    for column in ("benchmark", "benchmark_item", "matched_ngram", "matched_ngrams"):
        flagged[column] = report[column].to_numpy()
    flagged["benchmarks"] = report["benchmarks"].to_list()
    keep = np.ones(len(df), dtype=bool)
    keep[rows] = not remove
    kept = df.iloc[np.flatnonzero(keep)] if remove else df  # by position: labels may repeat
    result = DecontaminationResult(
        kept=kept.copy(deep=False),
        flagged=flagged,
        report=report,
        per_benchmark=per_benchmark,
        n_input=len(df),
        removed=bool(remove),
        params={"n": int(n), "text": record_text, "fields": fields, "remove": bool(remove)},
    )
    previous = dict(df.attrs.get("forgekit") or {})
    result.kept.attrs = {**df.attrs, "forgekit": {**previous, "decontaminate": result.summary()}}
    return result


# -- inputs --------------------------------------------------------------------------------
def _frame(data: Any, what: str) -> pd.DataFrame:
    """A DataFrame from anything load_frame takes, or a datasets.Dataset / DatasetDict."""
    if isinstance(data, pd.DataFrame):
        return data
    if hasattr(data, "to_pandas"):
        return data.to_pandas()
    if isinstance(data, Mapping) and data and all(hasattr(v, "to_pandas") for v in data.values()):
        return pd.concat([split.to_pandas() for split in data.values()], ignore_index=True)
    return load_frame(data, what)


def _default_record_fields(df: pd.DataFrame) -> list[str]:
    present = [f for f in RECORD_FIELDS if f in df.columns]
    if not present:
        raise ConfigError(
            "no text field to search: pass text= (e.g. text='input+output'); the data has: "
            + (", ".join(map(str, df.columns)) or "(no fields)")
        )
    return present


def _benchmark_list(against: Any) -> list[Benchmark]:
    if isinstance(against, Mapping):
        return [
            value if isinstance(value, Benchmark) else Benchmark(value, name=str(name))
            for name, value in against.items()
        ]
    if isinstance(against, (list, tuple)) and not _is_records(against):
        items = list(against)
    else:
        items = [against]
    if not items:
        raise ConfigError("against: give at least one benchmark (a file, DataFrame or Dataset)")
    return [b if isinstance(b, Benchmark) else Benchmark(b) for b in items]


def _is_records(value: Sequence[Any]) -> bool:
    return bool(value) and all(isinstance(v, Mapping) for v in value)


def _load_benchmark(bench: Benchmark, fields: Any) -> dict[str, Any]:
    path = bench.data if isinstance(bench.data, (str, os.PathLike)) else None
    hub = isinstance(path, str) and path.startswith("hf:")  # read by forgekit.data.io
    name = bench.name or (path[3:] if hub else Path(path).stem if path else None)
    where = f"benchmark {name or '(unnamed)'}" + (f" (file {path})" if path else "")
    if path is not None and not hub and not Path(path).exists():
        raise ConfigError(f"{where}: no such file")
    df = _frame(bench.data, where)
    wanted = bench.fields if bench.fields is not None else fields
    if wanted is None:
        chosen = [f for f in (*PROMPT_FIELDS, *ANSWER_FIELDS) if f in df.columns]
        if not chosen:
            raise ConfigError(
                f"{where}: none of the prompt/answer fields ({', '.join(PROMPT_FIELDS)}; "
                f"{', '.join(ANSWER_FIELDS)}) is in it; name them with fields=. It has: "
                + (", ".join(map(str, df.columns)) or "(no fields)")
            )
    else:
        chosen = text_fields(wanted)
        missing = [f for f in chosen if f not in df.columns]
        if missing:
            raise ConfigError(
                f"{where}: field {missing[0]!r} is not in it; it has: "
                + (", ".join(map(str, df.columns)) or "(no fields)")
            )
    return {"name": name, "fields": chosen, "texts": column_texts(df, chosen), "items": len(df)}


# -- index and lookup ----------------------------------------------------------------------
def _build_index(benchmarks: list[dict[str, Any]], n: int) -> tuple[NgramIndex, list[int]]:
    """One index over every benchmark; item numbers are global, `item_starts[b]` is the
    first of benchmark b's. Unnamed benchmarks are named benchmark_<k>."""
    all_hashes, all_items, bench_of_item, item_starts = [], [], [], []
    offset = 0
    for k, bench in enumerate(benchmarks):
        bench["name"] = bench["name"] or f"benchmark_{k}"
        hashes, counts = _hash_all(bench["texts"], n)
        bench["ngrams"] = len(hashes)
        bench["too_short"] = int(np.count_nonzero(counts == 0))
        all_hashes.append(hashes)
        all_items.append(np.repeat(np.arange(offset, offset + len(counts)), counts))
        bench_of_item.append(np.full(len(counts), k, dtype=np.int64))
        item_starts.append(offset)
        offset += len(counts)
        del bench["texts"]
    names = [b["name"] for b in benchmarks]
    if len(set(names)) != len(names):
        raise ConfigError(f"benchmark names must differ: {names}; pass a dict or Benchmark(name=)")
    index = NgramIndex(
        np.concatenate(all_hashes) if all_hashes else np.zeros(0, dtype=np.uint64),
        np.concatenate(all_items).astype(np.int64) if all_items else np.zeros(0, np.int64),
        np.concatenate(bench_of_item) if bench_of_item else np.zeros(0, np.int64),
    )
    return index, item_starts


def _chunks(df: pd.DataFrame, text: Any) -> Iterator[tuple[int, list[str]]]:
    """(first row, texts) of at most CHUNK_RECORDS records and about CHUNK_CHARS characters."""
    for start in range(0, len(df), CHUNK_RECORDS):
        texts = column_texts(df.iloc[start : start + CHUNK_RECORDS], text)
        for offset, piece in _pieces(texts):
            yield start + offset, piece


def _pieces(texts: list[str]) -> Iterator[tuple[int, list[str]]]:
    """(offset, texts) of about CHUNK_CHARS characters each: the hashing works on a piece's
    bytes at once (~40 bytes of arrays per character), so long documents make small pieces."""
    ends = np.cumsum([len(t) + 1 for t in texts])
    first = 0
    while first < len(texts):
        budget = (ends[first - 1] if first else 0) + CHUNK_CHARS
        last = max(first + 1, int(np.searchsorted(ends, budget, side="right")))
        yield first, texts[first:last]
        first = last


def _hash_all(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """ngram_hashes of many texts, piece by piece (bounded memory)."""
    parts = [ngram_hashes(piece, n) for _, piece in _pieces(texts)]
    if not parts:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@dataclass
class _Hits:
    rows: np.ndarray  # flagged record rows
    first_window: np.ndarray  # the record's first matching n-gram (window number)
    first_item: np.ndarray  # the global benchmark item holding it
    matches: np.ndarray  # matching n-grams per flagged record
    masks: np.ndarray  # benchmarks matched (bit mask)
    texts: list[str]  # the flagged records' texts


def _find(df: pd.DataFrame, text: Any, index: NgramIndex, n: int) -> _Hits:
    found: dict[str, list[Any]] = {k: [] for k in ("rows", "window", "item", "matches", "masks")}
    flagged_texts: list[str] = []
    for start, chunk in _chunks(df, text):
        hashes, counts = ngram_hashes(chunk, n)
        positions, rows = index.lookup(hashes)
        if len(positions) == 0:
            continue
        window_first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        doc = np.searchsorted(window_first, positions, side="right") - 1
        # positions are ascending, so each record's hits are one run and its first is first
        starts = np.flatnonzero(np.concatenate([[True], doc[1:] != doc[:-1]]))
        docs = doc[starts]
        found["rows"].append(docs + start)
        found["window"].append(positions[starts] - window_first[docs])
        found["item"].append(index.item_of[rows[starts]])
        found["matches"].append(np.diff(np.append(starts, len(doc))))
        found["masks"].append(np.bitwise_or.reduceat(index.benchmarks[rows], starts))
        flagged_texts += [chunk[d] for d in docs]
    join = {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in found.items()}
    return _Hits(
        join["rows"], join["window"], join["item"], join["matches"], join["masks"], flagged_texts
    )


def _report(
    df: pd.DataFrame,
    hits: _Hits,
    names: list[str],
    item_starts: list[int],
    id_field: str | None,
    n: int,
) -> pd.DataFrame:
    starts = np.asarray(item_starts, dtype=np.int64)
    bench = np.searchsorted(starts, hits.first_item, side="right") - 1
    frame = pd.DataFrame(
        {
            "row": hits.rows.astype(np.int64),
            "benchmark": [names[b] for b in bench],
            "benchmark_item": (hits.first_item - starts[bench]).astype(np.int64),
            "matched_ngram": [
                _ngram_text(t, int(w), n) for t, w in zip(hits.texts, hits.first_window)
            ],
            "matched_ngrams": hits.matches.astype(np.int64),
            "benchmarks": [
                [name for k, name in enumerate(names) if int(mask) >> k & 1] for mask in hits.masks
            ],
        }
    )
    if id_field and id_field in df.columns:
        frame.insert(1, id_field, df[id_field].iloc[frame["row"]].to_list())
    return frame


def _ngram_text(text: str, window: int, n: int) -> str:
    """The normalized n-gram at `window`: its tokens, with no space between CJK characters."""
    tokens = words(text)[window : window + n]
    out = tokens[:1]
    for before, token in itertools.pairwise(tokens):
        out.append(token if is_cjk_char(before[-1]) and is_cjk_char(token[0]) else " " + token)
    return "".join(out)
