"""Running many model requests well: one `Engine` per run.

A run is a stream of `Task`s. Each task has a stable id (its record's id) and an async
function that receives a `RunContext` and returns one record (or None when the method
filtered it out). The function talks to models only through `ctx.chat` / `ctx.complete`,
which add the stop checks, the response cache, the budget, the rate limiter and retries
(`forgekit.engine.requests`).

Workers pull tasks lazily, so a task stream may be endless (Magpie keeps generating until
`limit` records passed its filters). Finished records go to the store at once
(`forgekit.engine.output`). Progress goes to a reporter the caller chooses
(`forgekit.engine.progress`); `forgekit.engine.bridge` holds the entry points (`arun`,
`run`, `run_sync`) that run it from coroutines, scripts and notebook cells.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from forgekit.engine.output import RunOutput, utc_now
from forgekit.engine.progress import ProgressReporter, SilentProgress, default_progress_factory
from forgekit.engine.requests import RequestGate, RunContext, StopRun
from forgekit.engine.store import JsonlStore
from forgekit.engine.types import RunConfig, RunResult, RunStats, Task
from forgekit.errors import (
    BudgetExceededError,
    ClientRequestError,
    StoreError,
    UnsupportedOperationError,
)
from forgekit.models import Model, SamplingParams, get_model
from forgekit.models.base import Completion
from forgekit.secrets import scrub, secret_values

# Statuses after which every further request would fail the same way: stop the run.
_FATAL_STATUS = {401, 403, 404}
# Stop a run whose first this-many tasks all failed (see Engine._fail).
_FAIL_FAST_AFTER = 20


class Engine:
    """One run: pulls tasks, runs them with bounded concurrency, keeps their records."""

    def __init__(
        self,
        model: str | Model | None = None,
        config: RunConfig | None = None,
        out: str | Path | None = None,
        job: dict[str, Any] | None = None,
        *,
        on_stored: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.config = config or RunConfig()
        # Sees each record `out` already holds when the run opens it (a resumed run's).
        self.on_stored = on_stored
        self._models: dict[str, Model] = {}
        self._owned: list[Model] = []
        self.model = self.resolve_model(model)
        self.out = Path(out) if out else None
        self.job = dict(job or {})
        self.stats = RunStats()
        self.gate = RequestGate(
            self.config, self.stats, stopping=lambda: self.stopping, emit=self.emit
        )
        self.store: JsonlStore | None = None
        self.stop_reason: str | None = None
        self.fatal: BaseException | None = None
        self.status = "running"
        self._records: dict[str, dict[str, Any]] = {}
        self._errors: list[dict[str, Any]] = []
        self._secrets = secret_values()
        self.output = (
            RunOutput(self.out, self.job, self.config, self._secrets) if self.out else None
        )

    # -- models --------------------------------------------------------------------------
    def resolve_model(self, model: str | Model | None) -> Model:
        if model is None and getattr(self, "model", None) is not None:
            model = self.model
        if model is not None and not isinstance(model, str):
            # A model object the caller resolved: not ours to close, but the manifest lists it.
            self._models.setdefault(f"object:{id(model)}", model)
            return model
        key = model or ""
        if key not in self._models:
            resolved = get_model(model)
            self._models[key] = resolved
            self._owned.append(resolved)
        return self._models[key]

    # -- requests ------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        cancel = self.config.cancel_event
        if cancel is not None and cancel.is_set() and self.status == "running":
            self.status, self.stop_reason = "cancelled", "cancelled by the user"
        return self.status != "running"

    async def request(
        self,
        kind: str,
        model: Model,
        payload: Any,
        params: SamplingParams,
        use_cache: bool | str = True,
    ) -> Completion:
        """One model request through the run's cache, budget, limits and retries."""
        return await self.gate.request(kind, model, payload, params, use_cache)

    # -- events --------------------------------------------------------------------------
    def emit(self, event: str, data: dict[str, Any]) -> None:
        for handler in self.config.on_event:
            try:
                handler(event, {**data, "stats": self.stats})
            except Exception:  # a broken display must never break a run
                pass

    # -- running -------------------------------------------------------------------------
    async def run(
        self, tasks: Iterable[Task] | AsyncIterator[Task], limit: int | None = None
    ) -> RunResult:
        started = time.monotonic()
        concurrency = max(1, self.config.concurrency or self.model.default_concurrency)
        self._open(concurrency)
        total = limit if limit is not None else _known_length(tasks)
        progress = self._progress(total)
        order: list[str] = []
        in_flight: set[str] = set()
        changed = asyncio.Condition()
        iterator = _as_sync_iterator(tasks)
        exhausted = False

        def have() -> int:
            return self.stats.ok + self.stats.skipped

        def may_schedule() -> bool:
            return limit is None or have() + len(in_flight) < limit

        async def next_task() -> Task | None:
            nonlocal exhausted
            async with changed:
                await changed.wait_for(
                    lambda: (
                        self.stopping
                        or exhausted
                        or may_schedule()
                        or (limit is not None and have() >= limit)
                    )
                )
                while not self.stopping and not exhausted and may_schedule():
                    task = next(iterator, None)
                    if task is None:
                        exhausted = True
                        break
                    if task.id in in_flight or task.id in self._seen:
                        continue  # the same id twice in one stream: run it once
                    self._seen.add(task.id)
                    order.append(task.id)
                    if self.store is not None and task.id in self.store.done:
                        self.stats.skipped += 1
                        progress.update(1)
                        continue
                    in_flight.add(task.id)
                    return task
                return None

        async def worker() -> None:
            while True:
                task = await next_task()
                if task is None:
                    return
                try:
                    await self._run_task(task, progress)
                finally:
                    in_flight.discard(task.id)
                    async with changed:
                        changed.notify_all()

        self._seen: set[str] = set()
        self.emit("start", {"total": total, "out": str(self.out) if self.out else None})
        watcher = asyncio.create_task(self._watch_cancel(changed))
        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        try:
            await asyncio.gather(*workers)
        except asyncio.CancelledError:
            self.status, self.stop_reason = "cancelled", "interrupted"
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self._finish(started, order, progress)
            raise
        finally:
            watcher.cancel()
        result = self._finish(started, order, progress)
        if self.fatal is not None:
            raise self.fatal
        return result

    async def _watch_cancel(self, changed: asyncio.Condition) -> None:
        """Turn a threading.Event (a widget's Cancel button) into stopping the run now."""
        if self.config.cancel_event is None:
            return
        while not self.config.cancel_event.is_set():
            await asyncio.sleep(0.1)
        self.stopping  # noqa: B018 - sets status and reason
        async with changed:
            changed.notify_all()
        for task in asyncio.all_tasks():
            if getattr(task, "_forgekit_task", False):
                task.cancel()

    async def _run_task(self, task: Task, progress: ProgressReporter) -> None:
        current = asyncio.current_task()
        current._forgekit_task = True  # type: ignore[union-attr]
        try:
            record = await task.fn(RunContext(self, task))
        except StopRun:
            return
        except asyncio.CancelledError:
            if self.status == "cancelled" and self.config.cancel_event is not None:
                return  # cancelled by the Cancel button: keep going to a clean finish
            raise
        except BudgetExceededError as exc:
            self._stop("stopped", str(exc))
            return
        except (UnsupportedOperationError, ClientRequestError) as exc:
            if isinstance(exc, UnsupportedOperationError) or exc.status in _FATAL_STATUS:
                self.fatal = exc
                self._stop("failed", str(exc))
                return
            self._fail(task, exc)
        except Exception as exc:  # one record's failure, whatever raised it, is kept and counted
            self._fail(task, exc)
        else:
            if record is None:
                self.stats.filtered += 1
            else:
                record.setdefault("id", task.id)
                if record["id"] != task.id:
                    raise StoreError(f"task {task.id} returned a record with id {record['id']}")
                if self.store is not None:
                    self.store.append(record)
                self._records[task.id] = record
                self.stats.ok += 1
                progress.update(1)
                self.emit("record", {"record": record})
        finally:
            current._forgekit_task = False  # type: ignore[union-attr]
        progress.set_postfix(
            ok=self.stats.ok,
            failed=self.stats.failed,
            cached=self.stats.cached,
            retried=self.stats.retried,
            refresh=False,
        )

    def _stop(self, status: str, reason: str) -> None:
        if self.status == "running":
            self.status, self.stop_reason = status, reason

    def _fail(self, task: Task, exc: BaseException) -> None:
        self.stats.failed += 1
        if self.stats.failed >= _FAIL_FAST_AFTER and self.stats.ok == 0:
            # Nothing has worked yet: a broken prompt, parser or endpoint. Stop rather
            # than spend the whole run failing the same way.
            self._stop(
                "stopped",
                f"the first {self.stats.failed} tasks all failed; last error: "
                f"{type(exc).__name__}: {scrub(str(exc), self._secrets)}",
            )
        entry = {
            "id": task.id,
            **({"task": task.info} if task.info else {}),
            "error": type(exc).__name__,
            "message": scrub(str(exc), self._secrets),
            "time": utc_now(),
        }
        self._errors.append(entry)
        if self.store is not None:
            self.store.append_error(entry)
        self.emit("error", {"error": entry})

    # -- opening and closing -------------------------------------------------------------
    def _open(self, concurrency: int) -> None:
        self.gate.open(concurrency)
        if self.output is not None:
            self.store = self.output.open(self.on_stored)
            self._write_manifest("running")

    def _write_manifest(self, status: str) -> None:
        if self.output is None:
            return
        self.output.write_manifest(
            status,
            stop_reason=self.stop_reason,
            models=sorted({m.identity for m in self._models.values()}),
            stats=self.stats,
            has_errors=bool(self._errors),
            concurrency=self.gate.concurrency.public(),
        )

    def _progress(self, total: int | None) -> ProgressReporter:
        if not self.config.progress:
            return SilentProgress()
        factory = self.config.progress_factory or default_progress_factory()
        return factory(total, self.config.description or "forgekit")

    def _finish(self, started: float, order: list[str], progress: ProgressReporter) -> RunResult:
        self.stats.wall_s = time.monotonic() - started
        if self.status == "running":
            self.status = "completed"
        progress.close()
        wanted = set(order)
        if self.store is not None:
            self.store.checkpoint()
            self._write_manifest(self.status)
            stored = {r["id"]: r for r in self.store.records(wanted)}
            self.store.close()
        else:
            stored = self._records
        self.gate.close()
        records = [stored[i] for i in order if i in stored]
        result = RunResult(
            records=records,
            stats=self.stats,
            status=self.status,
            stop_reason=self.stop_reason,
            out=self.out,
            errors=self._errors,
        )
        self.emit("end", {"result": result})
        if self.status == "stopped" and self.stop_reason:
            print(f"forgekit: run stopped — {self.stop_reason}", file=sys.stderr)
        return result

    async def aclose(self) -> None:
        for model in self._owned:
            with contextlib.suppress(Exception):
                await model.aclose()


def _known_length(tasks: Any) -> int | None:
    try:
        return len(tasks)
    except TypeError:
        return None


def _as_sync_iterator(tasks: Iterable[Task] | AsyncIterator[Task]) -> Iterator[Task]:
    if hasattr(tasks, "__aiter__"):
        raise TypeError("pass tasks as a (possibly endless) iterable, not an async iterator")
    return iter(tasks)  # type: ignore[arg-type]


async def run_engine(
    tasks: Iterable[Task],
    *,
    model: str | Model | None = None,
    out: str | Path | None = None,
    config: RunConfig | None = None,
    limit: int | None = None,
    job: dict[str, Any] | None = None,
    on_stored: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Run `tasks` on a fresh Engine and close the models it opened. Progress goes where
    the config or the calling context says, else to text (`forgekit.engine.progress`);
    callers use `forgekit.engine.arun` / `run`, which choose the display first.
    `on_stored` sees each record `out` already holds, before the first task runs."""
    engine = Engine(model, config, out, job, on_stored=on_stored)
    try:
        return await engine.run(tasks, limit=limit)
    finally:
        await engine.aclose()
