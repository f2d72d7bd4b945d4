"""Background runs: a method run in its own process, so a notebook's kernel stays free.

`start(method, data, **options)` (Python; `forgekit.jupyter.start_background` adds a live
monitor), `forge <method> ... --background` and `%forge <method> ... --background` start
the run in a detached child process (`python -m forgekit.background RUN_DIR`, see
__main__.py) and return at once with a `BackgroundRun`. The child runs exactly what a
foreground run would (the same method call, the same JSONL store with its resume rules), so
the records are the same; it only adds an event log.

Each run has a folder under `runs_dir()` ($FORGEKIT_RUNS_DIR, else $FORGEKIT_CACHE_DIR/runs,
else ~/.cache/forgekit/runs):

    job.pkl       what to run: a method name, its input and its options
    info.json     id, command, pid, started, out — what `forge runs` lists
    events.jsonl  the engine's events (start, record, error, retry, end) as they happen, then
                  one `finished` event with the final status; a monitor replays and tails it,
                  so it can reattach after a kernel restart
    input.jsonl   the input records when they came from a notebook variable
    log.txt       the child's stdout and stderr

No secret is written there: the child takes API keys from the environment it inherits
(or .env), exactly as a foreground run does.
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from forgekit.errors import ConfigError

# How often a follower looks for new events when there were none (a file poll).
POLL_S = 0.2
FINAL = ("completed", "stopped", "cancelled", "interrupted", "failed", "died")
# Children started by this process, reaped when they end (else a zombie looks alive).
_CHILDREN: dict[int, subprocess.Popen] = {}


def runs_dir() -> Path:
    root = os.environ.get("FORGEKIT_RUNS_DIR")
    if root:
        return Path(root)
    cache = os.environ.get("FORGEKIT_CACHE_DIR") or Path.home() / ".cache" / "forgekit"
    return Path(cache) / "runs"


class BackgroundRun:
    """A run in its own process: its status, its events, Cancel, and its records.
    In Jupyter, `forgekit.jupyter.watch(run)` is its live monitor."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.dir = Path(folder)
        info_file = self.dir / "info.json"
        if not info_file.exists():
            raise ConfigError(f"no background run in {self.dir} (no info.json)")
        self.info: dict[str, Any] = json.loads(info_file.read_text(encoding="utf-8"))
        self.id: str = self.info["id"]
        self.command: str = self.info["command"]
        self.out = Path(self.info["out"]) if self.info.get("out") else None

    def __repr__(self) -> str:
        state = self.status()
        done = f"{state['done']}/{state['total'] or '?'} records"
        return f"<background run {self.id}: {state['status']}, {done} -> {self.out}>"

    # -- state ---------------------------------------------------------------------------
    def events(self) -> list[tuple[str, dict[str, Any]]]:
        """Every event logged so far (stats and results as attribute namespaces)."""
        return list(self.follow(wait=False))

    def status(self) -> dict[str, Any]:
        """`status` (running, or one of FINAL), `done`/`total`/`failed` records so far,
        the final `summary` and `error` once it has ended."""
        state: dict[str, Any] = {"status": "running", "done": 0, "total": 0, "failed": 0}
        state.update(summary="", error="")
        for event, data in self.follow(wait=False):
            stats = data.get("stats")
            if stats is not None:
                state["done"] = stats.ok + stats.skipped
                state["failed"] = stats.failed
            if event == "start" and data.get("total"):
                state["total"] = data["total"]
            if event == "finished":
                state.update(
                    status=data["status"],
                    summary=data.get("summary", ""),
                    error=data.get("error", ""),
                )
        return state

    def alive(self) -> bool:
        """Is the child process still running (not merely a zombie or a reused pid)?"""
        pid = int(self.info["pid"])
        child = _CHILDREN.get(pid)
        if child is not None:
            return child.poll() is None
        proc = Path(f"/proc/{pid}")
        if proc.exists():
            try:
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                return False
            return state != "Z" and str(self.dir) in cmdline
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True

    def follow(
        self, *, wait: bool = True, stop: threading.Event | None = None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield `(event, data)` from the start of the log; with `wait`, keep tailing
        until the run has finished (a `died` finish if the process ended without one) or
        `stop` is set."""
        path = self.dir / "events.jsonl"
        offset, pending = 0, b""
        while True:
            chunk = b""
            if path.exists():
                with open(path, "rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
                offset += len(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                event, data = _decode(json.loads(line))
                yield event, data
                if event == "finished":
                    return
            if chunk:
                continue
            if not self.alive():
                # Read once more: the last events may have landed after the read above.
                if path.exists() and path.stat().st_size > offset:
                    continue
                yield "finished", {"status": "died", "error": self._death_reason()}
                return
            if not wait or (stop is not None and stop.is_set()):
                return
            time.sleep(POLL_S)

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the run has finished; its final status."""
        stop = threading.Event()
        timer = threading.Timer(timeout, stop.set) if timeout is not None else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            for event, _ in self.follow(stop=stop):
                if event == "finished":
                    self._reap(stop)
                    return self.status()
        finally:
            if timer is not None:
                timer.cancel()
        raise TimeoutError(f"background run {self.id} still running after {timeout} s")

    def _reap(self, stop: threading.Event) -> None:
        """After its final event the process only has to exit: wait for that."""
        child = _CHILDREN.get(int(self.info["pid"]))
        if child is not None:
            child.wait()
            return
        while self.alive() and not stop.is_set():
            time.sleep(POLL_S / 4)

    # -- control -------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop the run as the monitor's Cancel button does: finished records are kept."""
        if self.alive():
            os.kill(int(self.info["pid"]), signal.SIGTERM)

    def result(self):
        """The records written so far, as a DataFrame (final once the run has finished)."""
        from forgekit.data.io import read_records, records_to_dataframe

        records = read_records(self.out) if self.out and self.out.exists() else []
        df = records_to_dataframe(records)
        df.attrs["forgekit"] = {"background_run": self.id, **self.status(), "out": str(self.out)}
        return df

    def _death_reason(self) -> str:
        pid = int(self.info["pid"])
        child = _CHILDREN.get(pid)
        code = child.poll() if child is not None else None
        if code is not None and code < 0:
            return f"the run's process (pid {pid}) was killed by {signal.Signals(-code).name}"
        tail = _tail(self.dir / "log.txt")
        return f"the run's process (pid {pid}) ended without finishing" + (
            f"; its log ends with: {tail}" if tail else ""
        )


# -- starting -------------------------------------------------------------------------------
def start(method: str, data: Any = None, **options: Any) -> BackgroundRun:
    """Run `forgekit.methods.<method>(data, **options)` in the background.

    Records go to `out=` (default: records.jsonl in the run's folder). Options must be
    picklable (a template, a path, numbers; not a lambda defined in the notebook).
    """
    from forgekit.methods import registry

    registry.discover()
    if registry.get(method) is None:
        known = ", ".join(sorted(registry.methods()))
        raise ConfigError(f"background: no method named {method!r} (methods: {known})")
    folder = _new_run_dir(method)
    if isinstance(data, str) and data.startswith("hf:"):
        pass  # a Hub name: the child reads it
    elif isinstance(data, (str, os.PathLike)):
        data = str(Path(data).resolve())
    elif isinstance(data, (list, tuple)) and data and isinstance(data[0], (str, os.PathLike)):
        data = [str(Path(p).resolve()) for p in data]  # a method over files (doc_qa)
    elif data is not None:
        # A notebook object (DataFrame, Dataset, list): saved as the records it reads as.
        reading = {k: options.pop(k) for k in ("split", "column_map") if k in options}
        data = _save_input(folder, data, reading)
    config = options.get("config")
    if config is not None and (config.on_event or config.cancel_event is not None):
        # Hooks of this process cannot reach the other one; the event log replaces them.
        options["config"] = replace(config, on_event=[], cancel_event=None)
    out = Path(options.pop("out", None) or folder / "records.jsonl").resolve()
    job = {"kind": "method", "method": method, "data": data, "options": {**options, "out": out}}
    return _launch(folder, job, command=method, out=out)


def _new_run_dir(command: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = runs_dir() / f"{stamp}-{command}-{secrets.token_hex(3)}"
    folder.mkdir(parents=True)
    return folder


def _save_input(folder: Path, data: Any, reading: dict[str, Any]) -> str:
    from forgekit.data.io import read_records, write_records

    path = folder / "input.jsonl"
    write_records(read_records(data, **reading), path)
    return str(path)


def _launch(folder: Path, job: dict[str, Any], command: str, out: Path) -> BackgroundRun:
    try:
        payload = pickle.dumps(job)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise ConfigError(
            f"background {command}: an option cannot be sent to another process ({exc}); "
            "pass templates and paths, not objects defined in the notebook"
        ) from None
    (folder / "job.pkl").write_bytes(payload)
    with open(folder / "log.txt", "wb") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "forgekit.background", str(folder)],
            cwd=os.getcwd(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the kernel's restart and its Ctrl-C
        )
    _CHILDREN[child.pid] = child
    info = {
        "id": folder.name,
        "command": command,
        "pid": child.pid,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "out": str(out),
        "cwd": os.getcwd(),
    }
    _write_json(folder / "info.json", info)
    return BackgroundRun(folder)


def list_runs(include_finished: bool = True):
    """Background runs on this machine, newest first: a DataFrame."""
    import pandas as pd

    rows = []
    root = runs_dir()
    folders = sorted(root.iterdir(), reverse=True) if root.exists() else []
    for folder in folders:
        if not (folder / "info.json").exists():
            continue
        run = BackgroundRun(folder)
        state = run.status()
        if not include_finished and state["status"] in FINAL:
            continue
        rows.append(
            {
                "id": run.id,
                "command": run.command,
                "status": state["status"],
                "done": state["done"],
                "total": state["total"] or None,
                "failed": state["failed"],
                "started": run.info.get("started"),
                "out": str(run.out),
                "error": state["error"],
            }
        )
    columns = ["id", "command", "status", "done", "total", "failed", "started", "out", "error"]
    return pd.DataFrame(rows, columns=columns)


def get(run_id: str) -> BackgroundRun:
    """A background run by id (or a unique prefix of it; "last" for the newest)."""
    root = runs_dir()
    folders = root.iterdir() if root.exists() else []
    ids = sorted(p.name for p in folders if (p / "info.json").exists())
    if run_id == "last" and ids:
        return BackgroundRun(root / ids[-1])
    matches = [i for i in ids if i == run_id] or [i for i in ids if i.startswith(run_id)]
    if len(matches) != 1:
        found = "several runs match" if matches else "no run matches"
        raise ConfigError(f"background run {run_id!r}: {found} (see `forge runs`)")
    return BackgroundRun(root / matches[0])


def _decode(line: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    event = line.pop("event")
    for key in ("stats", "result"):
        if isinstance(line.get(key), dict):
            line[key] = SimpleNamespace(**line[key])
    return event, line


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _tail(path: Path, limit: int = 300) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
    return " ".join(text[-limit:].split())
