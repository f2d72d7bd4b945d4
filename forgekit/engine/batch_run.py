"""Batch mode's run: `arun_batch`, the batch-API twin of `forgekit.engine.arun`.

One `BatchEngine` per stage, on the ordinary engine loop (the store, resume, errors, progress
and events are the engine's own), so a method's parse and the store run unchanged and each
task runs once, as online. The tasks run in rounds of at most `batch_max_requests`: all of a
round's tasks start at once; a request without an answer makes its task wait
(forgekit.engine.batch_api). When every running task waits, the round's settler has the
`BatchBook` submit, poll and collect, and wakes them. With `limit` (an endless task stream,
e.g. Magpie) a round takes only as many new tasks as records are still missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Any

from forgekit.data.records import fingerprint
from forgekit.engine.batch_api import CURRENT_TASK, BatchBook, BatchGate, TaskRequests
from forgekit.engine.batch_ledger import BatchLedger
from forgekit.engine.core import Engine, _known_length
from forgekit.engine.progress import ProgressReporter
from forgekit.engine.requests import StopRun
from forgekit.engine.types import RunConfig, RunResult, Task
from forgekit.models import Model
from forgekit.models.openai_batch import batch_api_for


class BatchEngine(Engine):
    """An Engine whose requests go through provider batches, run round by round."""

    def __init__(
        self,
        model: str | Model | None = None,
        config: RunConfig | None = None,
        out: str | Path | None = None,
        job: dict[str, Any] | None = None,
        *,
        on_stored: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__(model, config, out, job, on_stored=on_stored)
        batch_api_for(self.model)  # the embedded model has no batch API: say so first
        self.gate = BatchGate(
            self.config, self.stats, stopping=lambda: self.stopping, emit=self.emit
        )
        job_key = fingerprint(self.job, 16)
        self.ledger = BatchLedger(self.out, job_key, self._secrets)
        self.book = BatchBook(self.ledger, self.config, self.stats, self.gate, self.emit, job_key)
        self.gate.book = self.book
        self._opened = False
        self._final = False
        self._shared: ProgressReporter | None = None
        self._started = self._active = 0

    # -- the Engine hooks, adapted to several rounds -------------------------------------
    def _open(self, concurrency: int = 1) -> None:
        if not self._opened:
            super()._open(concurrency)
            self.ledger.open()
            self._opened = True

    def _progress(self, total: int | None) -> ProgressReporter:
        if self._shared is None:
            self._shared = super()._progress(total)
        return self._shared

    def emit(self, event: str, data: dict[str, Any]) -> None:
        if event in ("start", "end") and not self._final:
            return  # one start and one end for the whole stage, not one per round
        if event == "batch" and self._shared is not None:
            self._shared.set_postfix(batch=_progress_text(data["batches"]), refresh=True)
        super().emit(event, data)

    def _finish(self, started: float, order: list[str], progress: ProgressReporter) -> RunResult:
        if self._final:
            if self.output is not None:
                self.output.extra["batch"] = self.book.summary()
            return super()._finish(started, order, progress)
        records = [self._records[i] for i in order if i in self._records]
        return RunResult(records=records, stats=self.stats, status=self.status)

    def _write_manifest(self, status: str) -> None:
        if self.output is not None:
            self.output.extra["batch"] = self.book.summary()
        super()._write_manifest(status)

    # -- rounds ------------------------------------------------------------------------------
    async def run_batch(self, tasks: Iterable[Task], limit: int | None = None) -> RunResult:
        started = time.monotonic()
        self._open(max(1, self.config.concurrency or self.model.default_concurrency))
        total = limit if limit is not None else _known_length(tasks)
        self._progress(total)
        self._final = True
        self.emit("start", {"total": total, "out": str(self.out) if self.out else None})
        self._final = False
        self.gate.online_slots = asyncio.Semaphore(
            self.config.concurrency or self.model.default_concurrency
        )
        iterator = iter(tasks)
        order: list[str] = []
        try:
            while self.status == "running":
                room = self.config.batch_max_requests
                if limit is not None:
                    room = min(room, limit - self.stats.ok - self.stats.skipped)
                new = list(islice(iterator, max(0, room)))
                if not new:
                    break
                order.extend(task.id for task in new)
                try:
                    await self._round(new)
                except Exception as exc:
                    if exc is not self.fatal:
                        raise
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                self.status, self.stop_reason = "cancelled", "interrupted"
            elif self.status == "running":
                self.status, self.stop_reason = "failed", f"{type(exc).__name__}: {exc}"
            self._close(started, order)
            raise
        result = self._close(started, order)
        if self.fatal is not None:
            raise self.fatal
        if self.book.problems:
            print(
                f"forgekit: batch run had {len(self.book.problems)} problem(s); see "
                f"df.attrs['forgekit']['batch']['problems'] and {self.ledger.path}",
                file=sys.stderr,
            )
        return result

    async def _round(self, tasks: list[Task]) -> None:
        """Run `tasks` all at once; settle whenever every running one waits for a batch."""
        done = self.store.done if self.store is not None else set()
        expected = len({task.id for task in tasks} - done)  # the engine skips stored ones
        self._started = self._active = 0
        self.book.changed = asyncio.Event()
        self.config = replace(self.config, concurrency=max(1, expected))
        self._round_over = False
        settler = asyncio.create_task(self._settle_when_all_wait(expected))
        try:
            await Engine.run(self, [self._wrap(task) for task in tasks])
        finally:
            # A flag, not cancel(): wait_for in Python 3.11 can swallow a cancellation.
            self._round_over = True
            self.book.changed.set()
            await asyncio.gather(settler, return_exceptions=True)
            self.book.release(StopRun())

    async def _settle_when_all_wait(self, expected: int) -> None:
        book = self.book
        while not self._round_over:
            # Woken by every start, end and wait; the timeout only notices a stopped run.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(book.changed.wait(), timeout=0.5)
            book.changed.clear()
            if self._round_over:
                return
            if self.stopping:
                book.release(StopRun())
                continue
            all_wait = self._started == expected and book.blocked == self._active > 0
            if not (all_wait and book.wants):
                continue
            try:
                await book.settle(lambda: self.stopping)
            except StopRun:
                book.release(StopRun())
            except Exception as exc:  # the batch API failed for good: stop the run, say why
                self.fatal = exc
                self._stop("failed", f"{type(exc).__name__}: {exc}")
                book.release(StopRun())

    def _close(self, started: float, order: list[str]) -> RunResult:
        self._final = True
        progress = self._shared or self._progress(None)
        try:
            result = Engine._finish(self, started, order, progress)
        finally:
            self.ledger.close()
        result.batch = self.book.summary()
        return result

    def _wrap(self, task: Task) -> Task:
        """The task, with its own request log (for custom ids) and counted in and out."""

        async def run(ctx: Any) -> dict[str, Any] | None:
            self._started += 1
            self._active += 1
            token = CURRENT_TASK.set(TaskRequests(task.id))
            try:
                return await task.fn(ctx)
            finally:
                CURRENT_TASK.reset(token)
                self._active -= 1
                self.book.changed.set()

        return Task(id=task.id, fn=run, info=task.info)


def _progress_text(overview: dict[str, Any]) -> str:
    states = ", ".join(f"{n} {s}" for s, n in sorted(overview["by_status"].items()))
    return f"{overview['completed']}/{overview['total']} done ({states})"


async def arun_batch(
    tasks: Iterable[Task],
    *,
    model: str | Model | None = None,
    out: str | Path | None = None,
    config: RunConfig | None = None,
    limit: int | None = None,
    job: dict[str, Any] | None = None,
    on_stored: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Run `tasks` through the provider's batch API (same arguments and result as `arun`)."""
    from forgekit.engine.bridge import with_display

    async def go() -> RunResult:
        engine = BatchEngine(model, config, out, job, on_stored=on_stored)
        try:
            return await engine.run_batch(tasks, limit=limit)
        finally:
            await engine.book.aclose()
            await engine.aclose()

    return await with_display(go)


def check_batch_models(models: Iterable[Model]) -> None:
    """Batch mode: every model of a run needs a batch API (the embedded model has none)."""
    for model in models:
        batch_api_for(model)


def merge_batch_summaries(results: Iterable[RunResult]) -> dict[str, Any] | None:
    """Batch mode: every stage's batches, counts and problems, in one summary."""
    stages = [r.batch for r in results if r.batch]
    if not stages:
        return None
    counts: dict[str, int] = {}
    for stage in stages:
        for key, value in stage["counts"].items():
            counts[key] = counts.get(key, 0) + value
    return {
        "ledger": stages[-1]["ledger"],
        "batches": {k: v for stage in stages for k, v in stage["batches"].items()},
        "counts": counts,
        "problems": [p for stage in stages for p in stage["problems"]],
    }
