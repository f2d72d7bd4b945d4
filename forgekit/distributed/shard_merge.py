"""The driver's side of a sharded run: the live view (engine events and a progress bar for the
whole run, from the shards' reports) and the merge of the shards' parts into one result, one
output file and one manifest."""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from forgekit import __version__
from forgekit.data.io import jsonl_line
from forgekit.data.records import fingerprint, record_id
from forgekit.engine import RunConfig, RunResult, RunStats
from forgekit.engine.bridge import environment_progress
from forgekit.engine.output import utc_now
from forgekit.engine.progress import SilentProgress, default_progress_factory, has_progress_default
from forgekit.engine.store import JsonlStore, sidecar, write_json_atomic
from forgekit.secrets import scrub


def read_plan(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "plan.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def move_aside(out: Path, folder: Path) -> None:
    """`overwrite`: keep the old output, its sidecars and its parts as .bak, never delete."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for path in (out, sidecar(out, "errors"), sidecar(out, "manifest"), folder):
        if path.exists():
            path.rename(path.with_name(f"{path.name}.{stamp}.bak"))


def _total_stats(stats: list[RunStats]) -> RunStats:
    total = RunStats()
    for one in stats:
        for name in RunStats.__dataclass_fields__:
            setattr(total, name, getattr(total, name) + getattr(one, name))
    return total


def _stats(data: dict[str, Any] | None) -> RunStats:
    known = RunStats.__dataclass_fields__
    return RunStats(**{k: v for k, v in (data or {}).items() if k in known})


class DriverView:
    """Engine events (`RunConfig.on_event`) and a progress bar for the whole sharded run."""

    def __init__(self, config: RunConfig, total: int | None, out: Path | None, name: str):
        self.config = config
        self.total = total
        self.out = out
        self.stats = RunStats()
        self.started_at = time.monotonic()
        if not config.progress:
            self.progress: Any = SilentProgress()
        else:
            factory = config.progress_factory or (
                default_progress_factory() if has_progress_default() else environment_progress
            )
            self.progress = factory(total, config.description or f"{name} (ray)")
        self._shown = 0
        self._last: tuple[int, ...] = ()

    def emit(self, event: str, data: dict[str, Any]) -> None:
        for handler in self.config.on_event:
            try:
                handler(event, {**data, "stats": self.stats})
            except Exception:  # a broken display must never break a run
                pass

    def start(self) -> None:
        self.emit("start", {"total": self.total, "out": str(self.out) if self.out else None})

    def update(self, snapshot: dict[str, Any]) -> None:
        self.stats = _total_stats([_stats(s) for s in snapshot["stats"].values()])
        self.stats.wall_s = time.monotonic() - self.started_at
        done = self.stats.ok + self.stats.skipped
        if done > self._shown:
            self.progress.update(done - self._shown)
            self._shown = done
        self.progress.set_postfix(
            ok=self.stats.ok, failed=self.stats.failed, retried=self.stats.retried, refresh=False
        )
        for record in snapshot["latest"]:
            self.emit("record", {"record": record})
        for error in snapshot["errors"]:
            self.emit("error", {"error": error})
        if not snapshot["latest"] and not snapshot["errors"] and self._changed():
            # Counters moved without a record to show (resumed items, filtered ones): the
            # displays still hear of it (they update from any event's stats).
            self.emit("progress", {})

    def _changed(self) -> bool:
        now = tuple(getattr(self.stats, k) for k in ("ok", "failed", "filtered", "skipped"))
        changed, self._last = now != self._last, now
        return changed

    def end(self, result: RunResult) -> None:
        self.stats = result.stats
        self.progress.close()
        self.emit("end", {"result": result})


def _first_stage_ids(prepared: Any, lo: int, hi: int) -> list[str]:
    """The ids a slice's first stage gives its items (the order of a shard that died)."""
    method, job_key = prepared.method, fingerprint(prepared.job, 16)
    items = list(prepared.items)[lo:hi]
    return [
        record_id(method.name, {"job": job_key, "item": fingerprint(method.key(item), 16)}, i)
        for i, item in enumerate(items, lo)
    ]


def _part_records(part: str, ids: list[str] | None) -> list[dict[str, Any]]:
    """A part's records: in the order of `ids` first, then any others in file order."""
    path = Path(part)
    if not path.exists():
        return []
    stored = JsonlStore(path).records()
    if ids is None:
        return stored
    by_id = {record["id"]: record for record in stored}
    ordered = [by_id.pop(i) for i in ids if i in by_id]
    return ordered + list(by_id.values())


def merge_summaries(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The shards' method summaries as one: numbers add up, mappings merge key by key,
    equally long lists of mappings merge element-wise (Evol's rounds), other lists join."""
    merged: dict[str, Any] = {}
    for summary in summaries:
        for key, value in summary.items():
            merged[key] = _merge_value(merged[key], value) if key in merged else value
    return merged


def _merge_value(a: Any, b: Any) -> Any:
    if isinstance(a, bool) or isinstance(b, bool):
        return a
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a + b
    if isinstance(a, dict) and isinstance(b, dict):
        return merge_summaries([a, b])
    if isinstance(a, list) and isinstance(b, list):
        if len(a) == len(b) and all(isinstance(x, dict) for x in a + b):
            return [_merge_value(x, y) for x, y in zip(a, b)]
        return a + b
    return a


def merge_shards(
    specs: list[Any],
    outcomes: dict[int, Any],
    snapshot: dict[str, Any],
    out: Path | None,
    prepared: Any,
    config: RunConfig,
    started_at: float,
    relaunches: dict[int, Any] | None = None,
) -> tuple[RunResult, dict[str, Any], BaseException | None]:
    """One result from the shards' outcomes (and their parts); writes `out` and its manifest.
    Returns the result, the method summary (with a `shards` entry) and the first error a
    shard raised (to raise after the merge), if any. `relaunches`: per shard that lost a
    worker and was relaunched (shard_drive.Relaunches): why, and what the lost attempts spent."""
    relaunches = relaunches or {}
    records: list[dict[str, Any]] = []
    stats: list[RunStats] = []
    errors: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    shards: list[dict[str, Any]] = []
    status, stop_reason, raised = "completed", None, None
    for spec in specs:
        k, outcome = spec.index, outcomes.get(spec.index)
        where = f"shard {k + 1}/{spec.count}"
        if isinstance(outcome, dict):
            mine = outcome["records"]
            if mine is None:
                mine = _part_records(spec.part, outcome["ids"])
            one = _stats(outcome["stats"])
            errors += [{**e, "shard": k} for e in outcome["errors"]]
            summaries.append(outcome["summary"])
            s_status, s_reason = outcome["status"], outcome["stop_reason"]
            gate = outcome.get("gate")
        else:
            sliced = spec.lo is not None and spec.hi is not None
            order = _first_stage_ids(prepared, spec.lo, spec.hi) if sliced else None
            mine = _part_records(spec.part, order) if spec.part else []
            one = _stats(snapshot["stats"].get(k))
            errors += [e for e in snapshot["errors"] if e.get("shard") == k]
            s_status = "failed" if outcome is not None else "cancelled"
            what = f"{type(outcome).__name__}: {outcome}" if outcome is not None else "interrupted"
            s_reason = what.splitlines()[0][:300]
            if spec.part:
                s_reason += "; a re-run resumes its unfinished items"
            if outcome is not None and not is_lost_worker(outcome) and raised is None:
                raised = outcome
            gate = None  # its counts went with the worker
        lost = relaunches.get(k)
        if lost is not None:  # what the lost attempts spent counts too
            one = _total_stats([one, lost.spent])
        records += mine
        stats.append(one)
        if s_status != "completed" and status == "completed":
            status, stop_reason = s_status, f"{where}: {s_reason}"
        shards.append(
            {
                "shard": k,
                "status": s_status,
                "stop_reason": s_reason,
                "part": spec.part,
                "records": len(mine),
                "slice": [spec.lo, spec.hi] if spec.lo is not None else None,
                **({"every": spec.step} if spec.step != 1 else {}),
                "options": spec.overrides,
                "stats": asdict(one),
                **({"relaunches": lost.public()} if lost is not None else {}),
                **({"gate": gate} if gate is not None else {}),
            }
        )
    total = _total_stats(stats)
    total.wall_s = time.monotonic() - started_at
    result = RunResult(records, total, status, stop_reason, out, errors)
    if out is not None:
        _write_merged(out, specs, records, result, prepared, config, shards)
    summary = {**merge_summaries(summaries), "shards": shards}
    return result, summary, raised


def is_lost_worker(error: BaseException) -> bool:
    """A worker or node that died (resumable), not an error the method raised."""
    return type(error).__module__.startswith("ray.")


def _write_atomic_lines(path: Path, lines: list[str]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.writelines(lines)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_merged(
    out: Path,
    specs: list[Any],
    records: list[dict[str, Any]],
    result: RunResult,
    prepared: Any,
    config: RunConfig,
    shards: list[dict[str, Any]],
) -> None:
    """`out` (every shard's records, in order), `<out>.errors.jsonl` (every part's errors)
    and `<out>.manifest.json` (the run as a whole, and each shard)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic_lines(out, [jsonl_line(r) for r in records])
    error_lines: list[str] = []
    manifests = []
    for spec in specs:
        store = JsonlStore(spec.part)
        if store.errors_path.exists():
            error_lines += store.errors_path.read_text(encoding="utf-8").splitlines(keepends=True)
        manifests.append(store.read_manifest() or {})
    errors_path = sidecar(out, "errors")
    if error_lines:
        _write_atomic_lines(errors_path, error_lines)
    manifest_path = sidecar(out, "manifest")
    previous = {}
    if manifest_path.exists():
        try:
            previous = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            previous = {}
    totals: dict[str, float] = {}
    for manifest in manifests:
        for key, value in (manifest.get("totals") or {}).items():
            totals[key] = round(totals.get(key, 0) + value, 6)
    models = sorted({m for manifest in manifests for m in manifest.get("models") or []})
    manifest = {
        "forgekit_version": __version__,
        "status": result.status,
        "stop_reason": result.stop_reason,
        "job": prepared.job,
        "job_key": fingerprint(prepared.job, 16),
        "models": models,
        "run_config": config.public(),
        "engine": "ray",
        "runs": int(previous.get("runs", 0)) + 1,
        "finished_at": utc_now(),
        "records_in_file": len(records),
        "this_run": asdict(result.stats),
        "totals": totals,
        "errors_file": errors_path.name if error_lines else None,
        "shard_relaunches": sum(s.get("relaunches", {}).get("count", 0) for s in shards),
        "shards": shards,
    }
    text = scrub(json.dumps(manifest, default=str))
    write_json_atomic(manifest_path, json.loads(text))
