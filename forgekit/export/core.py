"""`forgekit.export(records, format=..., out=folder)`: write records in a trainer's format.

The folder gets the data file (`<split>.jsonl`, `<split>.parquet`, or a `<split>/`
save_to_disk folder), the dataset card `README.md`, for LLaMA-Factory formats an entry in
`dataset_info.json` (merged: other entries are kept), and `<data>.rejects.jsonl` with every
record the format cannot hold and why. Every file is written to a temporary name and renamed
into place; an existing file is replaced only with overwrite=True.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgekit import __version__
from forgekit.data.io import jsonl_line, read_records
from forgekit.errors import ConfigError
from forgekit.export import card as cards
from forgekit.export.convert import Thinking, Unrepresentable, has_context
from forgekit.export.formats import Format, get_format
from forgekit.export.llamafactory import dataset_info_entry, merged_dataset_info
from forgekit.export.provenance import collect, stages_of_frame


@dataclass
class ExportResult:
    """What an export wrote: paths, counts, rejects by reason, thinking traces handled."""

    format: str
    out: Path
    data_path: Path
    written: int
    rejected: dict[str, int]
    thinking: dict[str, int]
    card_path: Path | None = None
    dataset_info_path: Path | None = None
    rejects_path: Path | None = None
    name: str = ""
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "written": self.written,
            "rejected": sum(self.rejected.values()),
            "rejected_by_reason": dict(self.rejected),
            "thinking": dict(self.thinking),
            "data": str(self.data_path),
            "card": str(self.card_path) if self.card_path else None,
            "dataset_info": str(self.dataset_info_path) if self.dataset_info_path else None,
            "rejects": str(self.rejects_path) if self.rejects_path else None,
        }

    def push_to_hub(self, repo_id: str, *, private: bool = True) -> str:
        """Upload the export folder (data, card) to a Hub data set repo; token from HF_TOKEN."""
        from forgekit.export.hub import push_folder

        return push_folder(self.out, repo_id, private=private)

    def __repr__(self) -> str:
        rejected = sum(self.rejected.values())
        return (
            f"ExportResult(format={self.format!r}, written={self.written}, "
            f"rejected={rejected}, out={str(self.out)!r})"
        )


@dataclass
class _Context:
    """What a row builder may read besides the record (see forgekit.export.convert)."""

    thinking: Thinking
    conversational: bool
    split: str
    data_source: str
    ability: str
    ground_truth: str
    index: int = 0
    kept: list[bool] = field(default_factory=list)  # per record: written (not rejected)


def export(
    records: Any,
    format: str = "trl-messages",
    out: str | os.PathLike | None = None,
    *,
    name: str | None = None,
    split: str = "train",
    thinking: str | None = None,
    overwrite: bool = False,
    card: bool = True,
    stages: Iterable[Any] | None = None,
    diversity: Mapping[str, Any] | bool | None = None,
    license: str | None = None,
    language: list[str] | str | None = None,
    ground_truth: str = "target",
    ability: str = "general",
    data_source: str | None = None,
    column_map: Mapping[str, str] | None = None,
    input_split: str | None = None,
    push_to_hub: str | None = None,
    private: bool = True,
) -> ExportResult:
    """Write `records` (a DataFrame, records, a file/folder, a datasets Dataset, hf:name) to
    the folder `out` in `format` (see forgekit.export.FORMATS), with a dataset card.

    `thinking`: inline (as `<think>` before the answer) or drop; default per format.
    `stages`: the pipeline's steps for the card, in order (method result DataFrames, run
    JSONL/manifest paths, dedup/decontamination results, dicts); a run's DataFrame passed as
    `records` counts as its own stage. `ground_truth`/`ability`/`data_source`: VeRL fields.
    `diversity`: figures for the card (e.g. what `forge diversity` printed), or True to
    measure the Vendi score of the exported inputs (n-gram kernel, at most 2,000 records).
    `push_to_hub="org/name"` uploads the folder afterwards (token from HF_TOKEN)."""
    if out is None:
        raise ConfigError("export: out= (the folder to write) is required")
    fmt = get_format(format)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: out= is a folder (data file, README.md card, ...), not a file")
    if not split or "/" in split:
        raise ConfigError(f"split={split!r}: a plain name such as train or test")
    rows_in = read_records(records, split=input_split, column_map=column_map)
    if stages is None:
        stages = stages_of_frame(records)
    name = name or out.resolve().name
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"name={name!r}: a plain data set name (it names files)")
    ctx = _Context(
        thinking=Thinking(thinking or fmt.thinking),
        conversational=fmt.conversational == "always"
        or (fmt.conversational == "auto" and any(has_context(r) for r in rows_in)),
        split=split,
        data_source=data_source or name,
        ability=ability,
        ground_truth=ground_truth,
    )
    rows, rejects = convert_all(rows_in, fmt, ctx)
    paths = _Paths(out, fmt, split, name)
    paths.check(overwrite, with_card=card, with_rejects=bool(rejects))
    out.mkdir(parents=True, exist_ok=True)
    _write_data(rows, fmt, paths.data)
    result = ExportResult(
        format=fmt.name,
        out=out,
        data_path=paths.data,
        written=len(rows),
        rejected=dict(Counter(reason for reason, _, _ in rejects)),
        thinking={"inlined": ctx.thinking.inlined, "dropped": ctx.thinking.dropped},
        name=name,
    )
    if rejects:
        lines = [
            {"index": i, "id": r.get("id"), "reason": why, "record": r} for why, i, r in rejects
        ]
        write_text_atomic(paths.rejects, "".join(jsonl_line(line) for line in lines))
        result.rejects_path = paths.rejects
    elif overwrite and paths.rejects.exists():
        paths.rejects.unlink()  # an earlier export's, now out of date
    if fmt.llamafactory:
        entry = dataset_info_entry(fmt.llamafactory, paths.data.name, fmt.preference)
        info = merged_dataset_info(paths.dataset_info, name, entry, overwrite=overwrite)
        write_text_atomic(paths.dataset_info, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
        result.dataset_info_path = paths.dataset_info
    if card:
        if diversity is True:
            diversity = measure_diversity([r for r, kept in zip(rows_in, ctx.kept) if kept])
        provenance = collect(rows_in, stages, records, diversity or None)
        meta = cards.front_matter(
            name=name,
            n_records=len(rows),
            data_path=paths.card_data_files,
            split=split,
            tags=list(fmt.tags),
            language=[language]
            if isinstance(language, str)
            else language or cards.languages(rows_in),
            license=license,
            preference=fmt.preference,
        )
        text = cards.render(
            meta,
            provenance=provenance,
            format_name=fmt.name,
            format_description=fmt.description,
            load_snippet=_load_snippet(fmt, paths, name),
            written=len(rows),
            rejected=result.rejected,
            thinking=result.thinking,
            thinking_policy=ctx.thinking.policy,
            version=__version__,
            rejects_file=paths.rejects.name,
        )
        write_text_atomic(paths.card, text)
        result.card_path = paths.card
    if push_to_hub:
        result.notes.append(result.push_to_hub(push_to_hub, private=private))
    return result


def convert_all(
    records: list[dict[str, Any]], fmt: Format, ctx: _Context
) -> tuple[list[dict[str, Any]], list[tuple[str, int, dict[str, Any]]]]:
    """(rows, rejects as (reason, index, record)) — every record ends up in one of them."""
    if fmt.build is None:
        ctx.kept = [True] * len(records)
        return [dict(r) for r in records], []
    build: Callable[[Any, Any], dict[str, Any]] = fmt.build
    rows, rejects = [], []
    for index, record in enumerate(records):
        ctx.index = index
        try:
            rows.append(build(record, ctx))
            ctx.kept.append(True)
        except Unrepresentable as exc:
            rejects.append((str(exc), index, record))
            ctx.kept.append(False)
    return rows, rejects


def measure_diversity(records: list[dict[str, Any]], at_most: int = 2000) -> dict[str, Any]:
    """The Vendi score (n-gram kernel, q=1) of the records' inputs, on an even sample."""
    from forgekit.evaluate import vendi_score

    texts = [r for r in records if isinstance(r.get("input"), str) and r["input"].strip()]
    if len(texts) < 2:
        return {}
    step = max(1, len(texts) // at_most)
    sample = [{"input": r["input"]} for r in texts[::step][:at_most]]
    score = vendi_score(sample, "input", kernel="ngram", q=1)
    name = "vendi score of the inputs (n-gram kernel, q=1)"
    return {name: round(float(score), 4), "records measured": len(sample)}


class _Paths:
    """The files of an export. The data file is `<split>.<ext>`; for LLaMA-Factory formats
    it is `<name>.jsonl`, like the entries of LLaMA-Factory's own data folder, so several
    exports can share one folder and its dataset_info.json."""

    def __init__(self, out: Path, fmt: Format, split: str, name: str) -> None:
        suffix = {"jsonl": ".jsonl", "parquet": ".parquet", "disk": ""}[fmt.file]
        self.data = out / f"{name if fmt.llamafactory else split}{suffix}"
        self.card = out / "README.md"
        self.rejects = out / f"{self.data.name.removesuffix(suffix)}.rejects.jsonl"
        self.dataset_info = out / "dataset_info.json"
        self.card_data_files = f"{split}/data-*.arrow" if fmt.file == "disk" else self.data.name

    def check(self, overwrite: bool, *, with_card: bool, with_rejects: bool) -> None:
        """Refuse before writing anything if a file would be replaced without overwrite."""
        wanted = [self.data, *([self.card] if with_card else [])]
        wanted += [self.rejects] if with_rejects else []
        there = [str(p) for p in wanted if p.exists()]
        if there and not overwrite:
            raise FileExistsError(f"{', '.join(there)}: exists; pass overwrite to replace")


def write_text_atomic(path: Path, text: str) -> None:
    _atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _atomic(path: Path, write: Callable[[Path], Any]) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_data(rows: list[dict[str, Any]], fmt: Format, path: Path) -> None:
    if fmt.file == "jsonl":
        _atomic(path, lambda tmp: tmp.write_text("".join(map(jsonl_line, rows)), "utf-8"))
        return
    if fmt.file == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(rows if fmt.build else arrow_safe(rows))
        _atomic(path, lambda tmp: pq.write_table(table, tmp))
        return
    _save_to_disk(arrow_safe(rows), path)


def arrow_safe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Plain records for Arrow: a column holding dicts (metadata, lineage: free-form, often
    {}) or mixing text with lists becomes JSON text, as forgekit's Parquet writer does."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    encode = set()
    for column in columns:
        kinds = {type(row.get(column)) for row in rows if row.get(column) is not None}
        if dict in kinds or (str in kinds and len(kinds) > 1):
            encode.add(column)
    return [
        {
            k: json.dumps(v, ensure_ascii=False, default=str)
            if k in encode and v is not None and not isinstance(v, str)
            else v
            for k, v in ((c, row.get(c)) for c in columns)
        }
        for row in rows
    ]


def _save_to_disk(rows: list[dict[str, Any]], path: Path) -> None:
    try:
        import datasets
    except ImportError:
        raise ConfigError("format save_to_disk needs `pip install forgekit[hf]`") from None
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    quiet = not datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a notebook shows the export's result, not shard bars
    try:
        datasets.Dataset.from_list(rows).save_to_disk(str(tmp / "data"))
        if path.exists():
            shutil.rmtree(path)  # the caller checked overwrite
        os.replace(tmp / "data", path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not quiet:
            datasets.enable_progress_bars()


def _load_snippet(fmt: Format, paths: _Paths, name: str) -> str:
    if fmt.file == "disk":
        return f'from datasets import load_from_disk\nds = load_from_disk("{paths.data}")'
    builder = "json" if fmt.file == "jsonl" else "parquet"
    code = (
        "from datasets import load_dataset\n"
        f'ds = load_dataset("{builder}", data_files="{paths.data.name}", split="train")'
    )
    if fmt.llamafactory:
        code += (
            f"\n# LLaMA-Factory: dataset_dir: <this folder>, dataset: {name} "
            "(the entry in dataset_info.json)"
        )
    return code
