"""The child process of a background run: `python -m forgekit.background RUN_DIR`.

It runs the job in RUN_DIR/job.pkl exactly as a foreground run would, with one more engine
event handler that appends every event to RUN_DIR/events.jsonl, then a final `finished`
event. SIGTERM (the monitor's Cancel, `forge runs --cancel`) stops the run like the Cancel
button does: finished records are kept.
"""

from __future__ import annotations

import json
import pickle
import signal
import sys
import threading
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any


class EventLog:
    """An engine event handler that appends each event to events.jsonl as one line."""

    def __init__(self, path: Path) -> None:
        self.handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the run
        self.lock = threading.Lock()

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        line = json.dumps({"event": event, **_encode(event, data)}, default=str)
        with self.lock:
            self.handle.write(line + "\n")
            self.handle.flush()


def _encode(event: str, data: dict[str, Any]) -> dict[str, Any]:
    encoded: dict[str, Any] = {}
    for key, value in data.items():
        if key == "result" and value is not None:
            value = {"status": value.status, "stop_reason": value.stop_reason}
        elif key == "record" and isinstance(value, dict):
            value = {k: _clip(v) for k, v in value.items() if k in _SHOWN_FIELDS}
        elif is_dataclass(value) and not isinstance(value, type):
            value = asdict(value)
        encoded[key] = value
    return encoded


_SHOWN_FIELDS = ("id", "input", "output", "chosen", "text")


def _clip(value: Any, limit: int = 300) -> Any:
    return value[:limit] if isinstance(value, str) else value


def _child(folder: Path) -> int:
    """Run the job in `folder` (the body of `python -m forgekit.background`)."""
    # A shell's background job starts with SIGINT ignored; a run here stops on SIGINT too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    cancel = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: cancel.set())
    log = EventLog(folder / "events.jsonl")
    job = pickle.loads((folder / "job.pkl").read_bytes())
    hooks = {"on_event": [log], "cancel_event": cancel}
    finished: dict[str, Any] = {}
    try:
        df = _run_job(job, hooks)
        info = df.attrs.get("forgekit", {}) if hasattr(df, "attrs") else {}
        finished = {
            "status": info.get("status") or "completed",
            "summary": info.get("summary") or "",
            "records": len(df),
        }
    except KeyboardInterrupt:
        finished = {"status": "interrupted", "error": "interrupted (SIGINT)"}
    except Exception as exc:
        finished = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    log("finished", finished)
    return 0 if finished["status"] != "failed" else 1


def _run_job(job: dict[str, Any], hooks: dict[str, Any]) -> Any:
    from dataclasses import replace

    from forgekit.engine import RunConfig
    from forgekit.methods import registry
    from forgekit.methods.runner import call

    options = dict(job["options"])
    base = options.pop("config", None) or RunConfig()
    options["config"] = replace(base, progress=False, **hooks)
    registry.discover()
    return call(registry.get(job["method"]), job["data"], options)


if __name__ == "__main__":
    sys.exit(_child(Path(sys.argv[1])))
