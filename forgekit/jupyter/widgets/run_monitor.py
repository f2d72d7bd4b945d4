"""`RunMonitor`: a live view of an engine run, with a Cancel button."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import traitlets

from forgekit.jupyter.widgets.base import ASSETS, ForgeWidget, clip


class RunMonitor(ForgeWidget):
    """Live view of an engine run: progress, rates, tokens, cost, retries, errors, the
    latest records, and a Cancel button.

    Feed it engine events with `RunConfig(on_event=[monitor.handle_event],
    cancel_event=monitor.cancel_event)`. Events may arrive on the engine's thread; the
    widget itself is only touched by `flush()`, from the thread that calls it (in a
    notebook: the cell's own thread, via the run_sync wait hook).
    """

    _esm = ASSETS / "run_monitor.js"
    _css = ASSETS / "run_monitor.css"

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
    # Adaptive concurrency (forgekit.engine.adaptive): the limit now, the ceiling, and how
    # often it was lowered; 0 ceiling: not adapting.
    concurrency = traitlets.Int(0).tag(sync=True)
    concurrency_ceiling = traitlets.Int(0).tag(sync=True)
    concurrency_decreases = traitlets.Int(0).tag(sync=True)
    out = traitlets.Unicode("").tag(sync=True)
    latest = traitlets.List([]).tag(sync=True)
    errors = traitlets.List([]).tag(sync=True)
    # Batch mode: batches by status and item counts (forgekit.engine.batch_api overview).
    batch = traitlets.Dict({}).tag(sync=True)
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
        self._limits: dict[str, dict[str, Any]] = {}
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
                        "input": clip(record.get("input"), 200),
                        "output": clip(
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
                        "message": clip(error.get("message"), 300),
                    }
                )
            elif event == "retry":
                self._errors.appendleft(
                    {
                        "id": "",
                        "error": f"retry {data.get('attempt', '')}",
                        "message": clip(data.get("error"), 300),
                    }
                )
            elif event == "concurrency":
                # One run may reach several endpoints: show the most constrained one.
                self._limits[str(data.get("endpoint", ""))] = data
                tightest = min(self._limits.values(), key=lambda d: d.get("current", 0))
                self._state["concurrency"] = int(tightest.get("current", 0))
                self._state["concurrency_ceiling"] = int(tightest.get("ceiling", 0))
                self._state["concurrency_decreases"] = sum(
                    int(d.get("decreases", 0)) for d in self._limits.values()
                )
            elif event == "batch":
                self._state["batch"] = dict(data.get("batches") or {})
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
