"""What the dataset card says about how the data was made, gathered from what forgekit
records as it goes:

* each record's `lineage` (method, model, template hash, params, seed, forgekit version) and
  its `parent_lineage` chain (a judged record keeps the lineage of the record it judged);
* the pipeline's stages, in order, given as any of: a method's result DataFrame (its
  `attrs['forgekit']`: stats, counts, output file), a run's output JSONL or its
  `.manifest.json` (written by the engine; `forge dedup --out` writes one too), a dedup or
  decontamination result (anything with `.summary()` giving input/kept/removed), or a dict
  {"step", "input", "kept", "removed", ...};
* the exported file's own manifest, when the export reads a run's JSONL.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Stage:
    """One step of the pipeline and its counts (None: not known)."""

    step: str
    kind: str  # method | dedup | decontaminate | step
    records_in: int | None = None
    records_out: int | None = None
    removed: int | None = None
    failed: int | None = None
    models: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodLineage:
    """What the records' lineage says about one method."""

    method: str
    depth: int  # 0: the method that made the exported records; higher: earlier steps
    records: int = 0
    models: set[str] = field(default_factory=set)
    template_hashes: set[str] = field(default_factory=set)
    seeds: set[Any] = field(default_factory=set)
    versions: set[str] = field(default_factory=set)
    params: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Provenance:
    stages: list[Stage]
    lineage: list[MethodLineage]  # earliest method first
    diversity: dict[str, Any] | None = None

    def models(self) -> list[str]:
        found = {m for item in self.lineage for m in item.models}
        found |= {m for stage in self.stages for m in stage.models}
        return sorted(found)


def stages_of_frame(df: Any) -> list[Any]:
    """The stages a DataFrame itself vouches for: the method run it is the output of (only
    when it still holds exactly that run's records: attrs survive filtering in pandas) and
    a decontamination it went through."""
    info = getattr(df, "attrs", {}).get("forgekit")
    if not isinstance(info, Mapping):
        return []
    found: list[Any] = []
    stats = info.get("stats") or {}
    if info.get("method") and len(df) == stats.get("ok", -1) + stats.get("skipped", 0):
        found.append(_from_run_frame(df, info))
    if isinstance(info.get("decontaminate"), Mapping):
        found.append(_from_summary(info["decontaminate"], "decontaminate"))
    return found


def collect(
    records: list[dict[str, Any]],
    stages: Iterable[Any] | None = None,
    source: Any = None,
    diversity: Mapping[str, Any] | None = None,
) -> Provenance:
    found = [s if isinstance(s, Stage) else stage_of(s) for s in (stages or [])]
    own = _manifest_beside(source) if isinstance(source, (str, os.PathLike)) else None
    if own is not None and not any(s.details.get("manifest") == own for s in found):
        found.append(stage_of(own))
    return Provenance(found, lineage_of(records), dict(diversity) if diversity else None)


# -- lineage -------------------------------------------------------------------------------
def lineage_of(records: list[dict[str, Any]]) -> list[MethodLineage]:
    by_key: dict[tuple[int, str], MethodLineage] = {}
    for record in records:
        lineage, depth = record.get("lineage"), 0
        if isinstance(lineage, str):  # Parquet/CSV exports keep it as JSON text
            try:
                lineage = json.loads(lineage)
            except json.JSONDecodeError:
                lineage = None
        while isinstance(lineage, Mapping) and lineage.get("method") and depth < 32:
            key = (depth, str(lineage["method"]))
            item = by_key.setdefault(key, MethodLineage(key[1], depth))
            item.records += 1
            models = lineage.get("model")
            for model in models if isinstance(models, list) else [models]:
                if model:
                    item.models.add(str(model))
            if lineage.get("template_hash"):
                item.template_hashes.add(str(lineage["template_hash"]))
            if lineage.get("seed") is not None:
                item.seeds.add(lineage["seed"])
            if lineage.get("forgekit_version"):
                item.versions.add(str(lineage["forgekit_version"]))
            params = lineage.get("params")
            if isinstance(params, Mapping) and params and params not in item.params:
                item.params.append(dict(params))
            lineage, depth = lineage.get("parent_lineage"), depth + 1
    return sorted(by_key.values(), key=lambda item: (-item.depth, item.method))


# -- stages --------------------------------------------------------------------------------
def stage_of(item: Any) -> Stage:
    """A Stage from a result DataFrame, a run/manifest path, a result object or a dict."""
    attrs = getattr(item, "attrs", None)
    if isinstance(attrs, Mapping) and isinstance(attrs.get("forgekit"), Mapping):
        info = attrs["forgekit"]
        if isinstance(info.get("decontaminate"), Mapping):  # decontaminate(...).kept
            return _from_summary(info["decontaminate"], "decontaminate")
        return _from_run_frame(item, info)
    if isinstance(item, (str, os.PathLike)):
        manifest = _manifest_beside(item)
        if manifest is None:
            raise FileNotFoundError(f"{item}: no manifest (a run's .jsonl or .manifest.json)")
        return _from_manifest(manifest)
    if callable(getattr(item, "summary", None)):
        summary = item.summary()
        if isinstance(summary, Mapping):
            return _from_summary(summary, type(item).__name__)
    if isinstance(item, Mapping):
        return _from_summary(item, "step")
    raise TypeError(
        f"stages: cannot read a stage from {type(item).__name__}; pass a method's result "
        "DataFrame, a run's .jsonl/.manifest.json, a dedup/decontamination result or a dict"
    )


def _from_run_frame(df: Any, info: Mapping[str, Any]) -> Stage:
    stats = info.get("stats") or {}
    models: set[str] = set()
    if "lineage" in getattr(df, "columns", ()):
        for lineage in df["lineage"]:
            model = lineage.get("model") if isinstance(lineage, Mapping) else None
            models.update(map(str, model if isinstance(model, list) else [model] if model else []))
    method = str(info.get("method") or "run")
    details = {k: v for k, v in info.items() if k in ("counts", "filtered", "unparsable", "out")}
    if isinstance(info.get("generations"), int):  # attempts, counted by methods that filter
        details["generated"] = info["generations"]
    return Stage(
        step=method,
        kind="method",
        records_out=len(df),
        removed=stats.get("filtered"),
        failed=stats.get("failed"),
        models=sorted(models),
        details=details,
    )


def _manifest_beside(path: str | os.PathLike) -> Path | None:
    path = Path(path)
    if path.name.endswith(".manifest.json"):
        return path if path.exists() else None
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    beside = path.with_name(f"{stem}.manifest.json")
    return beside if beside.exists() else None


def _from_manifest(path: Path) -> Stage:
    data = json.loads(path.read_text(encoding="utf-8"))
    if "job" in data:  # a method run (forgekit.engine.output)
        job = data.get("job") or {}
        totals = data.get("this_run") or {}
        return Stage(
            step=str(job.get("method") or "run"),
            kind="method",
            records_out=data.get("records_in_file"),
            removed=totals.get("filtered"),
            failed=totals.get("failed"),
            models=list(data.get("models") or []),
            details={"manifest": path, "status": data.get("status")},
        )
    if len(data) == 1 and isinstance(next(iter(data.values())), Mapping):
        ((step, data),) = data.items()  # {"decontaminate": summary} (forge decontaminate)
        data = {"step": step, **data}
    stage = _from_summary(data, "step")
    stage.details["manifest"] = path
    return stage


def _from_summary(summary: Mapping[str, Any], fallback: str) -> Stage:
    """A dedup / decontamination summary (input, kept, removed, method) or a user's dict."""
    step, method = summary.get("step"), summary.get("method")
    words = f"{step} {method} {fallback}".lower()
    kind = "step"
    if "decontam" in words:
        kind = "decontaminate"
    elif "dedup" in words or method in ("exact", "minhash", "semantic", "rouge"):
        kind = "dedup"
    base = str(step or (kind if kind != "step" else None) or method or fallback)
    name = f"{base} ({method})" if method and str(method) != base else base
    records_in = _int(summary.get("input", summary.get("records_in")))
    kept = _int(summary.get("kept", summary.get("records_out")))
    removed = _int(summary.get("removed", summary.get("flagged")))
    if removed is None and records_in is not None and kept is not None:
        removed = records_in - kept
    known = ("step", "method", "input", "records_in", "kept", "records_out", "removed", "models")
    return Stage(
        step=name,
        kind=kind,
        records_in=records_in,
        records_out=kept,
        removed=removed,
        models=[str(m) for m in summary.get("models") or []],
        details={k: v for k, v in summary.items() if k not in known},
    )


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
