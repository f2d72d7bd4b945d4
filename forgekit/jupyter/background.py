"""Background runs in a notebook: `start_background(method, data, **options)` starts a run
in its own process (forgekit.background) and returns at once with a live RunMonitor;
`watch(run)` is the monitor of any background run, fed from its event log.

The run is another process: the monitor replays its events.jsonl from the start and tails
it in a daemon thread, so it can be attached at any time — also after a kernel restart.
Its Cancel button stops the run (SIGTERM to the run's process: finished records are kept).
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from forgekit.jupyter.widgets import RunMonitor


def start_background(method: str, data: Any = None, **options: Any) -> RunMonitor:
    """`forgekit.methods.<method>(data, **options)` in its own process; the kernel stays
    free. The monitor's `background_run` is the run (`.status()`, `.result()`, `.cancel()`).
    """
    from forgekit.background import start

    return watch(start(method, data, **options))


def watch(run: Any) -> RunMonitor:
    """A RunMonitor showing background run `run` live; it stops updating when it ends."""
    monitor = RunMonitor(title=f"{run.command} · background {run.id}")
    monitor.background_run = run

    def on_cancel(change: dict[str, Any]) -> None:
        if change["new"]:
            run.cancel()

    monitor.observe(on_cancel, "cancel_requested")
    thread = threading.Thread(target=_pump, args=(run, monitor), daemon=True)
    thread.name = f"forgekit-follow-{run.id}"
    thread.start()
    monitor.follower = thread
    return monitor


def _pump(run: Any, monitor: RunMonitor) -> None:
    for event, data in run.follow():
        if event == "finished":
            reason = data.get("error") or ""
            result = SimpleNamespace(status=data.get("status", "completed"), stop_reason=reason)
            monitor.handle_event("end", {"result": result})
        else:
            monitor.handle_event(event, data)
        # Events arrive on this thread, never the widget's owner: push them from here.
        monitor.flush(force=event in ("start", "end", "finished"))
    monitor.flush(force=True)
