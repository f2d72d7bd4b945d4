"""Finding, starting and stopping the embedded model's worker processes
(forgekit/models/local_worker.py): one per model file and settings, per user and machine.

Discovery: a state file `<worker dir>/<key>.json` (pid, port, token), written by the worker
once its model is loaded and serving. A file lock `<key>.lock` makes "look, and start one if
there is none" atomic across processes: two `forge` runs starting together get one worker.
The worker dir is `$FORGEKIT_WORKER_DIR`, else `~/.cache/forgekit/workers` (XDG_CACHE_HOME
honoured): a fact about the machine, not about a run, so it is not under a run's
FORGEKIT_CACHE_DIR. `FORGEKIT_WORKER_IDLE` (seconds, default 600) is how long an idle worker
stays; `FORGEKIT_WORKER_SLOTS` (default 8) how many sequences it decodes together.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgekit.errors import ConfigError, ModelUnavailableError

try:
    import fcntl
except ImportError:  # Windows: no flock; two processes starting at once may get two workers
    fcntl = None  # type: ignore[assignment]

PROTOCOL = 1  # bump when local_worker's requests or replies change: old workers are not reused
DEFAULT_IDLE_S = 600.0
DEFAULT_SLOTS = 8
_START_TIMEOUT_S = 300.0  # loading a big GGUF from a slow disk, not a hang detector
_CHILDREN: dict[int, subprocess.Popen] = {}  # workers this process started: exit statuses
# A forked process (forge batch --jobs) cannot wait for its parent's children: it asks the OS.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_CHILDREN.clear)


@dataclass(frozen=True)
class WorkerSpec:
    """What makes a worker: the model file and the settings it was loaded with."""

    model_path: str
    n_ctx: int = 2048
    n_threads: int | None = None
    slots: int = field(default_factory=lambda: configured_slots())
    weights: str = field(default_factory=lambda: weights_mode())

    @property
    def threads(self) -> int:
        return self.n_threads or max(1, os.cpu_count() or 1)

    @property
    def key(self) -> str:
        """The model file (path, size, mtime), the llama.cpp library and the settings: a
        rebuilt library or a replaced file gets a new worker, not the old one."""
        import importlib.metadata

        stat = Path(self.model_path).stat()
        try:
            version = importlib.metadata.version("llama-cpp-python")
        except importlib.metadata.PackageNotFoundError:
            version = "none"
        parts = [
            PROTOCOL,
            os.path.realpath(self.model_path),
            stat.st_size,
            stat.st_mtime_ns,
            version,
            sys.executable,
            self.n_ctx,
            self.slots,
            self.threads,
            self.weights,
        ]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Worker:
    pid: int
    port: int
    token: str
    state: Path


def worker_dir() -> Path:
    explicit = os.environ.get("FORGEKIT_WORKER_DIR")
    if explicit:
        return Path(explicit)
    root = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(root) / "forgekit" / "workers"


def configured_slots() -> int:
    try:
        return max(1, int(os.environ.get("FORGEKIT_WORKER_SLOTS") or DEFAULT_SLOTS))
    except ValueError:
        return DEFAULT_SLOTS


WEIGHT_MODES = ("auto", "original")


def weights_mode() -> str:
    """`FORGEKIT_WORKER_WEIGHTS`: "auto" (the default: a GGUF in a format without batched
    kernels is converted once to Q8_0, forgekit/models/batch_weights.py) or "original"."""
    mode = (os.environ.get("FORGEKIT_WORKER_WEIGHTS") or "auto").strip().lower()
    if mode not in WEIGHT_MODES:
        raise ConfigError(
            f"FORGEKIT_WORKER_WEIGHTS={mode!r}: choose one of {', '.join(WEIGHT_MODES)}"
        )
    return mode


def idle_seconds() -> float:
    try:
        return float(os.environ.get("FORGEKIT_WORKER_IDLE") or DEFAULT_IDLE_S)
    except ValueError:
        return DEFAULT_IDLE_S


@contextlib.contextmanager
def _locked(state: Path, blocking: bool = True) -> Iterator[bool]:
    state.parent.mkdir(parents=True, exist_ok=True)
    with open(state.with_suffix(".lock"), "a+") as handle:
        if fcntl is None:
            yield True
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def try_lock(state: Path) -> contextlib.AbstractContextManager[bool]:
    """The discovery lock without waiting (the worker uses it before exiting when idle)."""
    return _locked(state, blocking=False)


def _read_state(state: Path) -> Worker | None:
    try:
        data = json.loads(state.read_text(encoding="utf-8"))
        return Worker(int(data["pid"]), int(data["port"]), str(data["token"]), state)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def call(worker: Worker, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """One blocking request (status, shutdown): for discovery and tests, not generation."""
    import socket

    with socket.create_connection(("127.0.0.1", worker.port), timeout=timeout) as sock:
        sock.sendall(json.dumps({**request, "token": worker.token}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the worker closed the connection")
            data += chunk
    return json.loads(data)


def ensure_worker(spec: WorkerSpec) -> Worker:
    """The running worker for `spec`, started (and waited for) if there is none."""
    state = worker_dir() / f"{spec.key}.json"
    with _locked(state):
        found = _read_state(state)
        if found is not None and _alive(found.pid):
            try:
                if call(found, {"op": "status"}).get("ok"):
                    return found
            except (OSError, ValueError):
                pass  # alive but not answering: replace it
            _terminate(found.pid)
        with contextlib.suppress(OSError):
            state.unlink()
        return _start(spec, state)


def _start(spec: WorkerSpec, state: Path) -> Worker:
    log_path = state.with_suffix(".log")
    command = [
        sys.executable, "-m", "forgekit.models.local_worker", "--model", spec.model_path,
        "--state", str(state), "--n-ctx", str(spec.n_ctx), "--slots", str(spec.slots),
        "--weights", spec.weights,
        "--threads", str(spec.threads), "--idle", str(idle_seconds()),
    ]  # fmt: skip
    with open(log_path, "ab") as log:
        # Its own session: Ctrl-C in a terminal and a kernel interrupt (sent to the kernel's
        # process group) stop the caller's run, never the worker that others share.
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        found = _read_state(state)
        if found is not None and found.pid == proc.pid:
            return found
        if proc.poll() is not None:
            raise ModelUnavailableError(
                f"the embedded model worker (pid {proc.pid}) {exit_cause(proc.returncode)} "
                f"while loading {Path(spec.model_path).name}{_log_tail(log_path)}"
            )
        time.sleep(0.05)
    _terminate(proc.pid)
    raise ModelUnavailableError(
        f"the embedded model worker did not start within {_START_TIMEOUT_S:.0f} s "
        f"(loading {Path(spec.model_path).name}){_log_tail(log_path)}"
    )


def exit_cause(returncode: int | None) -> str:
    if returncode is None:
        return "is gone"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _log_tail(log_path: Path) -> str:
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return f"; its log ({log_path}) ends: {lines[-1][:300]}" if lines else ""


def death_notice(worker: Worker) -> str | None:
    """Why `worker` stopped answering, or None if it is still running. Waits a moment for a
    process that is going down (its sockets close just before it is reaped)."""
    deadline = time.monotonic() + 5.0
    while _alive(worker.pid):
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)
    # Not popped: the run's other requests to this worker ask too, and get the same answer.
    child = _CHILDREN.get(worker.pid)
    cause = exit_cause(child.returncode) if child is not None else "is gone"
    with _locked(worker.state):
        found = _read_state(worker.state)
        if found is not None and found.pid == worker.pid:
            worker.state.unlink(missing_ok=True)
    return (
        f"the embedded model worker (pid {worker.pid}) died: it {cause}"
        f"{_log_tail(worker.state.with_suffix('.log'))}. Records finished so far are kept; "
        f"the next run starts a fresh worker"
    )


def _terminate(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def running_workers() -> list[tuple[Worker, dict[str, Any]]]:
    """Every live worker in the worker dir, with its status."""
    found = []
    for state in sorted(worker_dir().glob("*.json")):
        worker = _read_state(state)
        if worker is None or not _alive(worker.pid):
            continue
        try:
            found.append((worker, call(worker, {"op": "status"})))
        except (OSError, ValueError):
            continue
    return found


def stop_workers(timeout: float = 30.0) -> list[int]:
    """Ask every worker in the worker dir to exit, and wait; returns their pids."""
    pids = []
    for state in sorted(worker_dir().glob("*.json")):
        worker = _read_state(state)
        if worker is None:
            continue
        pids.append(worker.pid)
        try:
            call(worker, {"op": "shutdown"}, timeout=5.0)
        except (OSError, ValueError):
            _terminate(worker.pid)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            _terminate(pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        _CHILDREN.pop(pid, None)
    return pids
