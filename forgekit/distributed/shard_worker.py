"""What runs inside a Ray worker for one shard of a method run, and how shards report.

A shard is forgekit's own runner and engine on a slice of the work items (or, for a method
that generates until it has `n` records, on its share of `n` with its own seed), writing its
own JSONL part with the usual resume guarantees. While it runs, a thread sends the shard's
counters, its latest records and its errors to the run's `ShardBoard` (a Ray actor) about
five times a second, and learns from the reply whether the driver asked to cancel.

The spec a shard receives holds option values and paths only: API keys reach the worker
as an object-store reference (forgekit.distributed.cluster.worker_secrets), never by value
in its arguments or its runtime_env.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from forgekit.engine import RunConfig, RunStats

REPORT_EVERY_S = 0.2
_LATEST = 5  # records a report carries for the live view
_CLIP = 200


@dataclass(frozen=True)
class ShardSpec:
    """One shard's work, as sent to its worker (everything picklable, nothing secret)."""

    index: int
    count: int
    method: type  # the Method class (importable ones travel by reference)
    kwargs: dict[str, Any]  # the method's options as the caller gave them
    model: Any  # a profile name (or a key-less Model object)
    config: RunConfig  # this shard's share of the limits, without live hooks
    part: str | None  # this shard's JSONL part (None: records come back in the result)
    lo: int | None = None  # the slice of the work items [lo, hi); None: the whole stream
    hi: int | None = None
    step: int = 1  # >1: positions lo, lo + step, ... of an endless stream (no hi)
    report_input_errors: bool = True  # one shard reports the inputs the method refused
    overrides: dict[str, Any] = field(default_factory=dict)  # option changes (n, seed)
    run: str = ""  # the run's key on the ShardBoard
    cwd: str | None = None  # the driver's working directory (relative paths mean the same)
    gate: Any = None  # this shard's GateOptions (its share of a target), or None


def clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _CLIP:
        return value[:_CLIP] + "…"
    return value


class Reporter:
    """Collects a shard's engine events and sends them to the board from its own thread."""

    def __init__(self, board: Any, run: str, shard: int) -> None:
        self.board = board
        self.run = run
        self.shard = shard
        self.cancel = threading.Event()
        self._lock = threading.Lock()
        self._ended = RunStats()  # the stages that have finished
        self._current: RunStats | None = None  # the stage that runs now (live object)
        self._latest: deque[dict[str, Any]] = deque(maxlen=_LATEST)
        self._errors: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="forgekit-shard-report")

    def handle_event(self, event: str, data: dict[str, Any]) -> None:
        with self._lock:
            if event == "start":
                self._current = data.get("stats")
            elif event == "record":
                record = data.get("record") or {}
                self._latest.append(
                    {k: clip(record.get(k)) for k in ("id", "input", "output") if k in record}
                )
            elif event == "error":
                self._errors.append(dict(data.get("error") or {}))
            elif event == "end":
                result = data.get("result")
                if result is not None:
                    self._ended = RunStats.total([_Stats(self._ended), result])
                self._current = None

    def stats(self) -> RunStats:
        with self._lock:
            parts = [_Stats(self._ended)] + ([_Stats(self._current)] if self._current else [])
            return RunStats.total(parts)

    def start(self) -> None:
        self.board.started.remote(self.run, self.shard, os.getpid())
        self._thread.start()

    def _send(self, status: str) -> bool:
        stats = asdict(self.stats())
        with self._lock:
            latest, errors = list(self._latest), self._errors
            self._latest.clear()
            self._errors = []
        import ray

        report = self.board.report.remote(
            self.run, self.shard, status, stats, latest, errors, os.getpid()
        )
        return ray.get(report)

    def _loop(self) -> None:
        while not self._stop.wait(REPORT_EVERY_S):
            try:
                if self._send("running"):
                    self.cancel.set()
            except Exception:  # the board is gone (the driver ended): keep running the shard
                return

    def finish(self, status: str) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            self._send(status)
        except Exception:
            pass


class BoardClaims:
    """A method's dedup claims (forgekit.methods.spec.SeenKeys), made on the run's board so
    that every shard sees every other shard's keys: one actor call per new key, awaited on
    the shard's event loop (a Ray ObjectRef is awaitable), small next to a model request."""

    def __init__(self, board: Any, run: str) -> None:
        self.board = board
        self.run = run

    async def claim(self, key: str) -> bool:
        from forgekit.distributed.shard_board import claim_digest

        return await self.board.claim.remote(self.run, claim_digest(key))


@dataclass
class _Stats:
    """Adapts a RunStats to what RunStats.total reads (`.stats`)."""

    stats: RunStats


def run_shard(
    spec: ShardSpec, records: list[Any], board: Any, secrets: dict[str, str]
) -> dict[str, Any]:
    """Run one shard to its end, with the driver's credentials in its environment; the ids
    of its main records in order, its counters and summary (and the records themselves
    when it has no part file). `records` and `secrets` arrive through the object store."""
    from forgekit.distributed.cluster import secret_env, working_directory

    with secret_env(secrets), working_directory(spec.cwd):
        return _run_shard(spec, records, board)


def _run_shard(spec: ShardSpec, records: list[Any], board: Any) -> dict[str, Any]:
    from forgekit.engine import run_sync
    from forgekit.methods.gate import Gate
    from forgekit.methods.runner import prepare_call
    from forgekit.methods.stages import Run

    reporter = Reporter(board, spec.run, spec.index)
    reporter.start()
    status = "failed"
    try:
        cls = spec.method
        kwargs = {**spec.kwargs, **spec.overrides}
        claims = BoardClaims(board, spec.run) if cls.dedups() else None
        target = spec.gate.target if spec.gate is not None else None
        method, models, items, job = prepare_call(
            cls, records, kwargs, spec.model, target, claims=claims
        )
        if spec.step != 1:  # every step-th item of an endless stream, from lo
            items = itertools.islice(items, spec.lo, None, spec.step)
        elif spec.lo is not None:
            items = list(items)[spec.lo : spec.hi]
        if not spec.report_input_errors:
            method.input_errors.clear()
        config = replace(
            spec.config, on_event=[reporter.handle_event], cancel_event=reporter.cancel
        )
        gate = Gate(spec.gate, method.score) if spec.gate is not None else None
        run = Run(method, models, spec.part, config, job, gate)
        # The shard's records keep the ids of a local run: the item positions it holds.
        run.offset, run.stride = spec.lo or 0, spec.step
        result = run_sync(lambda: run.execute(items))
        status = result.status
        gated = spec.gate is not None and spec.gate.active
        return {
            "gate": run.gate.summary(
                len(result.records), result.status, result.stop_reason, announce=False
            )
            if gated
            else None,
            "shard": spec.index,
            "status": result.status,
            "stop_reason": result.stop_reason,
            "ids": [record["id"] for record in result.records],
            "records": None if spec.part else result.records,
            "stats": asdict(result.stats),
            "errors": result.errors,
            "summary": method.summary(result.records),
            "job": job,
        }
    finally:
        reporter.finish(status)
