"""The notebook widgets: `RunMonitor`, `DatasetViewer`, `PairReviewer`.

Each is an `anywidget.AnyWidget`: the front end is a plain ES module with its CSS in the
top-level `widgets/` folder (no build step). A wheel ships that folder as
`forgekit/_widgets`; a source checkout reads it from `../widgets`.

State the user changes in the browser (Cancel, the search box, review decisions) is a
synced traitlet, so it can be read and set from Python as well, and tests do exactly that.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from forgekit.errors import ConfigError

_PACKAGE = Path(__file__).resolve().parent.parent


def asset_dir() -> Path:
    """Where the widgets' .js/.css files are: inside the wheel, or in the source checkout."""
    for candidate in (_PACKAGE / "_widgets", _PACKAGE.parent / "widgets"):
        if (candidate / "run_monitor.js").is_file():
            return candidate
    raise FileNotFoundError(
        f"forgekit widget files not found in {_PACKAGE / '_widgets'} or "
        f"{_PACKAGE.parent / 'widgets'}; reinstall forgekit"
    )


def _asset(name: str) -> str:
    # The text, read once at import (anywidget would also take a Path, and then watch it).
    return (asset_dir() / name).read_text(encoding="utf-8")


def _clip(value: Any, width: int) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def _jsonable(value: Any) -> Any:
    """A value that survives JSON (numpy scalars and arrays, timestamps, NaN become plain)."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=_default))


def _default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _records(data: Any) -> list[dict[str, Any]]:
    """Records from a DataFrame, list of dicts or a file, with NaN cells dropped."""
    from forgekit.data.io import read_records

    records = read_records(data)
    out = []
    for record in records:
        clean = {}
        for key, value in record.items():
            if isinstance(value, float) and value != value:  # NaN from a DataFrame
                continue
            clean[key] = value
        out.append(_jsonable(clean))
    return out


class _Widget(anywidget.AnyWidget):
    """forgekit's widgets: the front end's messages are handled even while a cell runs
    (in a kernel subshell, where the kernel has them; see forgekit.jupyter.uipoll)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from forgekit.jupyter.uipoll import route_to_subshell

        self.live = route_to_subshell(self)


# --- RunMonitor ---------------------------------------------------------------------------


class RunMonitor(_Widget):
    """Live view of an engine run: progress, rates, tokens, cost, retries, errors, the
    latest records, and a Cancel button.

    Feed it engine events with `RunConfig(on_event=[monitor.handle_event],
    cancel_event=monitor.cancel_event)`. Events may arrive on the engine's thread; the
    widget itself is only touched by `flush()`, from the thread that calls it (in a
    notebook: the cell's own thread, via the run_sync wait hook).
    """

    _esm = _asset("run_monitor.js")
    _css = _asset("run_monitor.css")

    title = traitlets.Unicode("forgekit").tag(sync=True)
    status = traitlets.Unicode("starting").tag(sync=True)
    stop_reason = traitlets.Unicode("").tag(sync=True)
    total = traitlets.Int(0).tag(sync=True)  # 0: not known in advance
    done = traitlets.Int(0).tag(sync=True)  # ok + resumed
    ok = traitlets.Int(0).tag(sync=True)
    failed = traitlets.Int(0).tag(sync=True)
    filtered = traitlets.Int(0).tag(sync=True)
    skipped = traitlets.Int(0).tag(sync=True)
    requests = traitlets.Int(0).tag(sync=True)
    cached = traitlets.Int(0).tag(sync=True)
    retried = traitlets.Int(0).tag(sync=True)
    tokens = traitlets.Int(0).tag(sync=True)
    cost = traitlets.Float(0.0).tag(sync=True)
    elapsed = traitlets.Float(0.0).tag(sync=True)
    requests_per_s = traitlets.Float(0.0).tag(sync=True)
    out = traitlets.Unicode("").tag(sync=True)
    latest = traitlets.List([]).tag(sync=True)
    errors = traitlets.List([]).tag(sync=True)
    # Set by the front end (the Cancel button) or from Python; both stop the run.
    cancel_requested = traitlets.Bool(False).tag(sync=True)
    # Set by the front end once it has drawn the widget: a live front end is attached.
    rendered = traitlets.Bool(False).tag(sync=True)

    def __init__(self, title: str = "forgekit", *, keep: int = 5, **kwargs: Any) -> None:
        super().__init__(title=title, **kwargs)
        self.cancel_event = threading.Event()
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {}
        self._latest: deque[dict[str, Any]] = deque(maxlen=keep)
        self._errors: deque[dict[str, Any]] = deque(maxlen=keep)
        self._started = time.monotonic()
        self._dirty = False
        self._last_flush = 0.0
        self._owner = threading.get_ident()
        self.result: Any = None  # the RunResult, once the run has ended

    @traitlets.observe("cancel_requested")
    def _on_cancel(self, change: Mapping[str, Any]) -> None:
        if change["new"]:
            self.cancel_event.set()

    def cancel(self) -> None:
        """Stop the run as the Cancel button does (finished records are kept)."""
        self.cancel_requested = True

    # -- events from the engine (any thread) -----------------------------------------------
    def handle_event(self, event: str, data: dict[str, Any]) -> None:
        """An `RunConfig.on_event` handler."""
        stats = data.get("stats")
        with self._lock:
            if event == "start":
                self._started = time.monotonic()
                self._state["status"] = "running"
                self._state["total"] = int(data.get("total") or 0)
                self._state["out"] = data.get("out") or ""
            elif event == "record":
                record = data.get("record") or {}
                self._latest.appendleft(
                    {
                        "id": str(record.get("id", "")),
                        "input": _clip(record.get("input"), 200),
                        "output": _clip(
                            record.get("output", record.get("chosen", record.get("text"))), 200
                        ),
                    }
                )
            elif event == "error":
                error = data.get("error") or {}
                self._errors.appendleft(
                    {
                        "id": str(error.get("id", "")),
                        "error": str(error.get("error", "")),
                        "message": _clip(error.get("message"), 300),
                    }
                )
            elif event == "retry":
                self._errors.appendleft(
                    {
                        "id": "",
                        "error": f"retry {data.get('attempt', '')}",
                        "message": _clip(data.get("error"), 300),
                    }
                )
            elif event == "end":
                result = data.get("result")
                self.result = result
                self._state["status"] = getattr(result, "status", "completed")
                self._state["stop_reason"] = getattr(result, "stop_reason", None) or ""
            if stats is not None:
                self._state.update(_stats_state(stats, time.monotonic() - self._started))
            self._dirty = True
        if threading.get_ident() == self._owner:
            self.flush(force=event in ("start", "end"))

    def mark_interrupted(self) -> None:
        with self._lock:
            if self._state.get("status", self.status) in ("starting", "running"):
                self._state["status"] = "interrupted"
                self._state["stop_reason"] = "kernel interrupt"
            self._dirty = True
        self.flush(force=True)

    def flush(self, force: bool = False, min_interval: float = 0.1) -> None:
        """Push what happened since the last flush to the front end (at most 10 times a
        second unless forced)."""
        now = time.monotonic()
        if not self._dirty or (not force and now - self._last_flush < min_interval):
            return
        with self._lock:
            state = dict(self._state)
            state["latest"] = list(self._latest)
            state["errors"] = list(self._errors)
            if state.get("status", self.status) == "running":
                state["elapsed"] = round(now - self._started, 2)
            self._dirty = False
        self._last_flush = now
        with self.hold_sync():
            for name, value in state.items():
                setattr(self, name, value)


def _stats_state(stats: Any, elapsed: float) -> dict[str, Any]:
    wall = getattr(stats, "wall_s", 0.0) or elapsed
    return {
        "ok": stats.ok,
        "failed": stats.failed,
        "filtered": stats.filtered,
        "skipped": stats.skipped,
        "done": stats.ok + stats.skipped,
        "requests": stats.requests,
        "cached": stats.cached,
        "retried": stats.retried,
        "tokens": stats.prompt_tokens + stats.completion_tokens,
        "cost": round(float(stats.cost), 6),
        "elapsed": round(wall, 2),
        "requests_per_s": round(stats.requests / wall, 2) if wall > 0 else 0.0,
    }


# --- DatasetViewer ------------------------------------------------------------------------


class DatasetViewer(_Widget):
    """A paged, searchable table of records with a detail pane (history, chosen/rejected
    side by side, lineage). Paging and search run in Python, so only one page of a large
    data set travels to the browser."""

    _esm = _asset("dataset_viewer.js")
    _css = _asset("dataset_viewer.css")

    title = traitlets.Unicode("").tag(sync=True)
    columns = traitlets.List([]).tag(sync=True)
    rows = traitlets.List([]).tag(sync=True)  # the current page: {"index", cells...}
    count = traitlets.Int(0).tag(sync=True)  # all records
    matches = traitlets.Int(0).tag(sync=True)  # records matching `query`
    page = traitlets.Int(0).tag(sync=True)
    page_size = traitlets.Int(10).tag(sync=True)
    query = traitlets.Unicode("").tag(sync=True)
    selected = traitlets.Int(-1).tag(sync=True)  # index into the records; -1: none
    detail = traitlets.Dict({}).tag(sync=True)

    def __init__(
        self,
        data: Any,
        *,
        columns: Iterable[str] | None = None,
        page_size: int = 10,
        title: str = "",
        **kwargs: Any,
    ) -> None:
        self.records = _records(data)
        if columns is None:
            present = {k for r in self.records for k in r}
            preferred = ("id", "input", "output", "chosen", "rejected", "target", "text")
            columns = [c for c in preferred if c in present] or sorted(present)[:4]
        self._haystack = [
            json.dumps(r, ensure_ascii=False, default=str).lower() for r in self.records
        ]
        self._matching: list[int] = list(range(len(self.records)))
        super().__init__(
            columns=list(columns),
            count=len(self.records),
            page_size=max(1, page_size),
            title=title or f"{len(self.records)} records",
            **kwargs,
        )
        self._refresh()

    @traitlets.observe("query")
    def _on_query(self, change: Mapping[str, Any]) -> None:
        needle = change["new"].strip().lower()
        self._matching = [
            i for i, text in enumerate(self._haystack) if not needle or needle in text
        ]
        with self.hold_sync():
            self.page = 0
            self._refresh()

    @traitlets.observe("page", "page_size")
    def _on_page(self, change: Mapping[str, Any]) -> None:
        self._refresh()

    @traitlets.observe("selected")
    def _on_selected(self, change: Mapping[str, Any]) -> None:
        index = change["new"]
        self.detail = self.records[index] if 0 <= index < len(self.records) else {}

    def _refresh(self) -> None:
        pages = max(1, -(-len(self._matching) // self.page_size))
        page = min(max(self.page, 0), pages - 1)
        if page != self.page:
            self.page = page  # observed: refreshes again with the clamped page
            return
        start = page * self.page_size
        self.matches = len(self._matching)
        self.rows = [
            {"index": i, **{c: _clip(self.records[i].get(c), 160) for c in self.columns}}
            for i in self._matching[start : start + self.page_size]
        ]


# --- PairReviewer -------------------------------------------------------------------------

DECISIONS = ("accept", "swap", "reject")


class PairReviewer(_Widget):
    """Step through preference pairs (records with `chosen` and `rejected`) and accept,
    swap or reject each. Every decision is appended to a JSONL file next to the data
    (`<data>.review.jsonl`), which a new reviewer reloads; `reviewed()` applies them."""

    _esm = _asset("pair_reviewer.js")
    _css = _asset("pair_reviewer.css")

    index = traitlets.Int(0).tag(sync=True)
    total = traitlets.Int(0).tag(sync=True)
    pair = traitlets.Dict({}).tag(sync=True)
    # {record id: "accept" | "swap" | "reject"}: set by the buttons or from Python.
    decisions = traitlets.Dict({}).tag(sync=True)
    path = traitlets.Unicode("").tag(sync=True)

    def __init__(
        self, data: Any, *, decisions_path: str | Path | None = None, **kwargs: Any
    ) -> None:
        self.pairs = [r for r in _records(data) if r.get("chosen") and r.get("rejected")]
        if not self.pairs:
            raise ConfigError(
                "no preference pairs: the data has no records with both chosen and rejected"
            )
        for position, record in enumerate(self.pairs):
            record.setdefault("id", f"pair-{position}")
        self.decisions_path = Path(decisions_path or _decisions_path_for(data))
        saved = load_decisions(self.decisions_path)
        known = {r["id"] for r in self.pairs}
        super().__init__(
            total=len(self.pairs),
            decisions={k: v for k, v in saved.items() if k in known},
            path=str(self.decisions_path),
            **kwargs,
        )
        undecided = [i for i, r in enumerate(self.pairs) if r["id"] not in self.decisions]
        self.index = undecided[0] if undecided else 0
        self._show()

    @traitlets.validate("decisions")
    def _check(self, proposal: Mapping[str, Any]) -> dict[str, str]:
        value = dict(proposal["value"])
        bad = {k: v for k, v in value.items() if v not in DECISIONS}
        if bad:
            raise traitlets.TraitError(f"decisions must be one of {DECISIONS}, got {bad}")
        return value

    @traitlets.observe("decisions")
    def _on_decisions(self, change: Mapping[str, Any]) -> None:
        old, new = change["old"] or {}, change["new"] or {}
        changed = {k: v for k, v in new.items() if old.get(k) != v}
        if changed:
            _append_decisions(self.decisions_path, changed)
        self._show()

    @traitlets.observe("index")
    def _on_index(self, change: Mapping[str, Any]) -> None:
        clamped = min(max(change["new"], 0), len(self.pairs) - 1)
        if clamped != change["new"]:
            self.index = clamped
            return
        self._show()

    def _show(self) -> None:
        record = self.pairs[self.index]
        self.pair = {
            "id": record["id"],
            "input": record.get("input", ""),
            "system": record.get("system") or "",
            "history": record.get("history") or [],
            "chosen": record["chosen"],
            "rejected": record["rejected"],
            "decision": self.decisions.get(record["id"], ""),
        }

    def decide(self, decision: str, *, advance: bool = True) -> None:
        """Record a decision for the current pair (as a button click does)."""
        if decision not in DECISIONS:
            raise ConfigError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
        self.decisions = {**self.decisions, self.pairs[self.index]["id"]: decision}
        if advance and self.index < len(self.pairs) - 1:
            self.index += 1

    def reviewed(self):
        """The pairs with decisions applied: accepted as they are, swapped with chosen and
        rejected exchanged, rejected dropped, undecided left out. A DataFrame."""
        from forgekit.data.io import records_to_dataframe

        return records_to_dataframe(apply_decisions(self.pairs, self.decisions))


def _decisions_path_for(data: Any) -> Path:
    if isinstance(data, (str, Path)):
        source = Path(data)
    else:
        out = getattr(data, "attrs", {}).get("forgekit", {}).get("out")
        if not out:
            raise ConfigError(
                "PairReviewer: pass decisions_path= (the data is not a file, and the "
                "DataFrame does not come from a run with out=)"
            )
        source = Path(out)
    return source.with_name(source.stem + ".review.jsonl")


def load_decisions(path: str | Path) -> dict[str, str]:
    """The latest decision per record id in a review file (missing file: none)."""
    path = Path(path)
    if not path.exists():
        return {}
    decisions: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            decision = entry["decision"]
            ident = str(entry["id"])
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                f"{path}:{number}: not a review decision (want {{'id', 'decision'}})"
            ) from None
        if decision not in DECISIONS:
            raise ConfigError(f"{path}:{number}: unknown decision {decision!r}")
        decisions[ident] = decision
    return decisions


def _append_decisions(path: Path, decisions: Mapping[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with path.open("a", encoding="utf-8") as handle:
        for ident, decision in decisions.items():
            handle.write(json.dumps({"id": ident, "decision": decision, "time": stamp}) + "\n")
        handle.flush()


def apply_decisions(
    pairs: Iterable[Mapping[str, Any]], decisions: Mapping[str, str]
) -> list[dict[str, Any]]:
    out = []
    for record in pairs:
        decision = decisions.get(str(record.get("id")))
        if decision == "accept":
            out.append(dict(record))
        elif decision == "swap":
            out.append({**record, "chosen": record["rejected"], "rejected": record["chosen"]})
    return out
