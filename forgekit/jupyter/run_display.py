"""How `%forge` runs and their results show in a notebook.

- `widgets_enabled`: widgets only in a Jupyter kernel, unless FORGEKIT_NO_WIDGETS is set.
- `TextProgress`: a tqdm bar on stderr fed by engine events, where no widget is drawn
  (papermill, terminals), or as the fallback when a RunMonitor is never rendered.
- `MonitorWaitHook`: keeps the RunMonitor current while the cell's thread waits on a run.
- `frame_bundle`: a forgekit result DataFrame displayed as a DatasetViewer.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

# How long a run waits for the monitor widget to be drawn before it falls back to text.
RENDER_GRACE_S = 1.5


def widgets_enabled(shell: Any) -> bool:
    """Widgets only in a Jupyter kernel, and not when FORGEKIT_NO_WIDGETS is set."""
    if os.environ.get("FORGEKIT_NO_WIDGETS", "").strip() not in ("", "0"):
        return False
    return getattr(shell, "kernel", None) is not None


class TextProgress:
    """A plain tqdm bar on stderr, fed by engine events (papermill, terminals, tests).

    `when`: a condition checked from RENDER_GRACE_S seconds after the start: the bar only
    appears while it holds (used to fall back to text when no front end draws the widget).
    """

    def __init__(self, title: str, when: Any = None) -> None:
        self.title = title
        self.when = when
        self.bar: Any = None
        self.total: int | None = None
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def handle_event(self, event: str, data: dict[str, Any]) -> None:
        stats = data.get("stats")
        with self._lock:
            if event == "start":
                self.total = data.get("total")
                self.started = time.monotonic()
            if self.bar is None and self._wanted():
                from tqdm.std import tqdm

                self.bar = tqdm(
                    total=self.total, desc=self.title, unit="rec", file=sys.stderr, leave=True
                )
            if self.bar is None:
                return
            if stats is not None:
                done = stats.ok + stats.skipped
                self.bar.update(done - self.bar.n)
                batch = data.get("batches")  # batch mode: the provider's batches
                extra = {"batch": _batch_text(batch)} if event == "batch" and batch else {}
                self.bar.set_postfix(
                    failed=stats.failed,
                    retried=stats.retried,
                    cached=stats.cached,
                    refresh=bool(extra),
                    **extra,
                )
            if event == "end":
                self.bar.close()

    def _wanted(self) -> bool:
        if self.when is None:
            return True
        return time.monotonic() - self.started >= RENDER_GRACE_S and bool(self.when())


def _batch_text(overview: dict[str, Any]) -> str:
    states = ", ".join(f"{n} {s}" for s, n in sorted(overview.get("by_status", {}).items()))
    return f"{overview.get('completed', 0)}/{overview.get('total', 0)} done ({states})"


class MonitorWaitHook:
    """While a run waits in the cell's thread, push progress to the monitor through the
    engine's wait hook (the monitor's Cancel click itself is handled in forgekit's widget
    subshell, see forgekit.jupyter.uipoll). With no monitor it does nothing."""

    def __init__(self, monitor: Any) -> None:
        self.monitor = monitor
        self.previous = None

    def __enter__(self) -> MonitorWaitHook:
        from forgekit.engine.runner import set_wait_hook

        if self.monitor is not None:
            self.previous = set_wait_hook(self.monitor.flush)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.monitor is None:
            return
        from forgekit.engine.runner import set_wait_hook

        set_wait_hook(self.previous)
        self.monitor.flush(force=True)


def frame_bundle(frame: Any) -> dict[str, Any] | None:
    """Display a forgekit result DataFrame as a DatasetViewer in Jupyter; the DataFrame's
    own text and HTML stay in the output for viewers without widgets. (A mimebundle
    formatter for pandas DataFrames, registered by `load_ipython_extension`.)"""
    from IPython import get_ipython

    if "forgekit" not in getattr(frame, "attrs", {}) or not widgets_enabled(get_ipython()):
        return None
    from forgekit.jupyter.widgets import DatasetViewer

    try:
        info = frame.attrs["forgekit"]
        viewer = DatasetViewer(frame, title=f"{len(frame)} records · {info.get('status', '')}")
        bundle = viewer._repr_mimebundle_()
    except Exception:  # a display must never fail the cell: the plain table still shows
        return None
    if isinstance(bundle, tuple):  # (data, metadata)
        bundle = bundle[0]
    bundle = dict(bundle or {})
    bundle.pop("text/plain", None)  # the DataFrame's own text and HTML fill the rest
    return bundle or None
