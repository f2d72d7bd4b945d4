"""Running many model requests well: one `Engine` per run.

A run is a stream of `Task`s. Each task has a stable id (its record's id) and an async
function that receives a `RunContext` and returns one record (or None when the method
filtered it out). The function talks to models only through `ctx.chat` / `ctx.complete`,
which add, in this order: the stop checks, the response cache, the budget, the rate
limiter, the request itself, and retries with backoff.

Workers pull tasks lazily, so a task stream may be endless (Magpie keeps generating until
`limit` records passed its filters). Finished records go to the store at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from forgekit import __version__
from forgekit.data.records import fingerprint
from forgekit.engine.cache import ResponseCache, request_key
from forgekit.engine.limits import Budget, RateLimiter, RetryPolicy
from forgekit.engine.store import JsonlStore
from forgekit.errors import (
    BudgetExceededError,
    ClientRequestError,
    RetryableModelError,
    StoreError,
    UnsupportedOperationError,
)
from forgekit.models import Message, Model, SamplingParams, get_model
from forgekit.models.base import Completion
from forgekit.secrets import scrub, secret_values

EventHandler = Callable[[str, dict[str, Any]], None]

# Statuses after which every further request would fail the same way: stop the run.
_FATAL_STATUS = {401, 403, 404}
# Stop a run whose first this-many tasks all failed (see Engine._fail).
_FAIL_FAST_AFTER = 20


@dataclass
class Task:
    id: str
    fn: Callable[[RunContext], Awaitable[dict[str, Any] | None]]
    info: dict[str, Any] = field(default_factory=dict)  # shown in error entries (e.g. index)


@dataclass
class RunConfig:
    """How to run: limits, retries, budgets, cache, progress. All optional."""

    concurrency: int | None = None  # default: the model's own (1 for local, 32 for HTTP)
    rpm: float | None = None
    tpm: float | None = None
    max_requests: int | None = None
    max_total_tokens: int | None = None  # budget: prompt + completion tokens over the run
    max_cost: float | None = None
    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 60.0
    cache: bool = True
    cache_path: str | None = None
    progress: bool = True
    description: str | None = None
    overwrite: bool = False  # start afresh: move an existing output aside (never delete it)
    checkpoint_every: int = 100
    on_event: list[EventHandler] = field(default_factory=list)
    cancel_event: threading.Event | None = None  # set from any thread to stop the run

    def public(self) -> dict[str, Any]:
        skip = ("on_event", "cancel_event")
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in skip}


@dataclass
class RunStats:
    ok: int = 0
    failed: int = 0
    filtered: int = 0
    skipped: int = 0  # already in the output from an earlier run
    requests: int = 0  # requests sent (attempts), not counting cache hits
    cached: int = 0
    retried: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    wall_s: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class RunResult:
    records: list[dict[str, Any]]
    stats: RunStats
    status: str  # completed | stopped | cancelled
    stop_reason: str | None = None
    out: Path | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)

    def to_dataframe(self):
        from forgekit.data.io import records_to_dataframe

        return records_to_dataframe(self.records)

    def summary(self) -> str:
        s = self.stats
        parts = [
            f"{self.status}: {s.ok} ok",
            f"{s.failed} failed",
            f"{s.filtered} filtered",
            f"{s.skipped} resumed",
            f"{s.requests} requests ({s.retried} retried, {s.cached} cached)",
            f"{s.tokens} tokens",
            f"${s.cost:.4f}",
            f"{s.wall_s:.1f}s",
        ]
        line = ", ".join(parts)
        if self.stop_reason:
            line += f" — {self.stop_reason}"
        if self.out:
            line += f" -> {self.out}"
        return line


class _Stop(Exception):
    """Raised inside a task when the run is stopping; the task is not recorded as failed."""


class RunContext:
    """What a task sees: model calls that go through the engine, and its own id."""

    def __init__(self, engine: Engine, task: Task) -> None:
        self.engine = engine
        self.task = task

    @property
    def model(self) -> Model:
        return self.engine.model

    def get_model(self, model: str | Model | None = None) -> Model:
        return self.engine.resolve_model(model)

    async def chat(
        self,
        messages: list[Message],
        *,
        model: str | Model | None = None,
        params: SamplingParams | dict[str, Any] | None = None,
        cache: bool | str = True,
        **sampling: Any,
    ) -> Completion:
        """A chat completion. `cache`: True (read and write the response cache), False
        (neither), or "refresh" (ask the model again and replace the cached answer)."""
        params = SamplingParams.coerce(params, **sampling)
        return await self.engine.request("chat", self.get_model(model), messages, params, cache)

    async def complete(
        self,
        prompt: str,
        *,
        model: str | Model | None = None,
        params: SamplingParams | dict[str, Any] | None = None,
        cache: bool | str = True,
        **sampling: Any,
    ) -> Completion:
        """A raw text completion; `cache` as for `chat`."""
        params = SamplingParams.coerce(params, **sampling)
        return await self.engine.request("complete", self.get_model(model), prompt, params, cache)


def _estimate_prompt_tokens(payload: Any) -> int:
    if isinstance(payload, str):
        return len(payload) // 4 + 1
    return sum(len(m.get("content") or "") for m in payload) // 4 + 4 * len(payload)


class Engine:
    def __init__(
        self,
        model: str | Model | None = None,
        config: RunConfig | None = None,
        out: str | Path | None = None,
        job: dict[str, Any] | None = None,
    ) -> None:
        self.config = config or RunConfig()
        self._models: dict[str, Model] = {}
        self._owned: list[Model] = []
        self.model = self.resolve_model(model)
        self.out = Path(out) if out else None
        self.job = dict(job or {})
        self.stats = RunStats()
        self.budget = Budget(
            self.config.max_requests, self.config.max_total_tokens, self.config.max_cost
        )
        self.limiter = RateLimiter(self.config.rpm, self.config.tpm)
        self.retry = RetryPolicy(
            self.config.max_attempts, self.config.base_delay, self.config.max_delay
        )
        self.cache: ResponseCache | None = None
        self.store: JsonlStore | None = None
        self.stop_reason: str | None = None
        self.fatal: BaseException | None = None
        self.status = "running"
        self._records: dict[str, dict[str, Any]] = {}
        self._errors: list[dict[str, Any]] = []
        self._secrets = secret_values()

    # -- models --------------------------------------------------------------------------
    def resolve_model(self, model: str | Model | None) -> Model:
        if model is None and getattr(self, "model", None) is not None:
            return self.model
        if model is not None and not isinstance(model, str):
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
        key = None
        if self.cache is not None and use_cache:
            key = request_key(model.identity, kind, payload, params)
            # "refresh": ask again and overwrite the entry (a method rejected the cached
            # answer, e.g. an empty or cut-off one, and wants a new one).
            hit = self.cache.get(key) if use_cache != "refresh" else None
            if hit is not None:
                self.stats.cached += 1
                return hit
        estimate = _estimate_prompt_tokens(payload) + (params.max_tokens or 256) * params.n
        attempt = 0
        while True:
            attempt += 1
            if self.stopping:
                raise _Stop()
            self.budget.reserve_request()
            await self.limiter.acquire(estimate)
            self.stats.requests += 1
            try:
                if kind == "chat":
                    completion = await model.chat(payload, params)
                else:
                    completion = await model.complete(payload, params)
            except RetryableModelError as exc:
                self.limiter.settle(estimate, 0)
                if attempt >= self.retry.max_attempts:
                    raise RetryableModelError(
                        f"{exc} (gave up after {attempt} attempts)", status=exc.status
                    ) from None
                if exc.status == 429 and exc.retry_after:
                    self.limiter.pause(exc.retry_after)
                delay = self.retry.delay(attempt, exc.retry_after)
                self.stats.retried += 1
                self.emit("retry", {"error": str(exc), "attempt": attempt, "delay": delay})
                await asyncio.sleep(delay)
                continue
            break
        self._account(model, completion, estimate)
        if key is not None:
            self.cache.put(key, completion)
        return completion

    def _account(self, model: Model, completion: Completion, estimate: int) -> None:
        usage = completion.usage
        price_in, price_out = model.unit_prices()
        cost = usage.prompt_tokens * price_in + usage.completion_tokens * price_out
        self.stats.prompt_tokens += usage.prompt_tokens
        self.stats.completion_tokens += usage.completion_tokens
        self.stats.cost += cost
        self.budget.spend(usage.total_tokens, cost)
        self.limiter.settle(estimate, usage.total_tokens)

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
        self._open()
        total = limit if limit is not None else _known_length(tasks)
        progress = _progress_bar(self.config, total)
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
        concurrency = self.config.concurrency or self.model.default_concurrency
        self.emit("start", {"total": total, "out": str(self.out) if self.out else None})
        watcher = asyncio.create_task(self._watch_cancel(changed))
        workers = [asyncio.create_task(worker()) for _ in range(max(1, concurrency))]
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

    async def _run_task(self, task: Task, progress: Any) -> None:
        current = asyncio.current_task()
        current._forgekit_task = True  # type: ignore[union-attr]
        try:
            record = await task.fn(RunContext(self, task))
        except _Stop:
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
            "time": _now(),
        }
        self._errors.append(entry)
        if self.store is not None:
            self.store.append_error(entry)
        self.emit("error", {"error": entry})

    # -- opening and closing -------------------------------------------------------------
    def _open(self) -> None:
        if self.config.cache:
            self.cache = ResponseCache(self.config.cache_path)
        if self.out is None:
            return
        store = JsonlStore(self.out, checkpoint_every=self.config.checkpoint_every)
        if self.config.overwrite:
            _move_aside(store)
        previous = store.read_manifest()
        job_key = fingerprint(self.job, 16)
        if (
            previous
            and previous.get("job_key") not in (None, job_key)
            and self.out.exists()
            and self.out.stat().st_size > 0
        ):
            raise StoreError(
                f"{self.out} holds records of a different job "
                f"({_describe_job(previous.get('job', {}))}); choose another output path, "
                f"or pass overwrite to move the old files aside"
            )
        self.store = store.open()
        if store.repaired:
            print(
                f"forgekit: {self.out} ended in a torn line (an interrupted write); "
                f"cut it off and kept it in {store.repaired}",
                file=sys.stderr,
            )
        self._runs = int((previous or {}).get("runs", 0)) + 1
        self._previous_totals = (previous or {}).get("totals") or {}
        self._started_at = _now()
        self._write_manifest("running")

    def _manifest(self, status: str) -> dict[str, Any]:
        return {
            "forgekit_version": __version__,
            "status": status,
            "stop_reason": self.stop_reason,
            "job": self.job,
            "job_key": fingerprint(self.job, 16),
            "models": sorted({m.identity for m in self._models.values()}),
            "run_config": self.config.public(),
            "runs": self._runs,
            "started_at": self._started_at,
            "finished_at": _now() if status != "running" else None,
            "records_in_file": len(self.store.done) if self.store else 0,
            "this_run": asdict(self.stats),
            "totals": self._totals(),
            "errors_file": str(self.store.errors_path.name) if self._errors else None,
        }

    def _totals(self) -> dict[str, Any]:
        """Spend over every run that wrote this file, so a resumed job's cost adds up."""
        keys = (
            "requests",
            "cached",
            "retried",
            "prompt_tokens",
            "completion_tokens",
            "cost",
            "wall_s",
        )
        now = asdict(self.stats)
        return {k: round(self._previous_totals.get(k, 0) + now[k], 6) for k in keys}

    def _write_manifest(self, status: str) -> None:
        if self.store is None:
            return
        import json

        text = scrub(json.dumps(self._manifest(status), default=str), self._secrets)
        self.store.write_manifest(json.loads(text))

    def _finish(self, started: float, order: list[str], progress: Any) -> RunResult:
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
        if self.cache is not None:
            self.cache.close()
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


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _describe_job(job: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in list(job.items())[:4]) or "unknown"


def _move_aside(store: JsonlStore) -> None:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for path in (store.path, store.errors_path, store.manifest_path):
        if path.exists():
            path.rename(path.with_name(f"{path.name}.{stamp}.bak"))


def _known_length(tasks: Any) -> int | None:
    try:
        return len(tasks)
    except TypeError:
        return None


def _as_sync_iterator(tasks: Iterable[Task] | AsyncIterator[Task]) -> Iterator[Task]:
    if hasattr(tasks, "__aiter__"):
        raise TypeError("pass tasks as a (possibly endless) iterable, not an async iterator")
    return iter(tasks)  # type: ignore[arg-type]


def _progress_bar(config: RunConfig, total: int | None) -> Any:
    # tqdm.auto draws a widget in a kernel; with no front end (papermill, nbclient) that
    # widget is dead weight in the saved notebook, so FORGEKIT_NO_WIDGETS=1 asks for text.
    if os.environ.get("FORGEKIT_NO_WIDGETS"):
        from tqdm import tqdm
    else:
        from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=config.description or "forgekit",
        unit="rec",
        disable=not config.progress,
        dynamic_ncols=True,
        file=sys.stderr,
    )


async def arun(
    tasks: Iterable[Task],
    *,
    model: str | Model | None = None,
    out: str | Path | None = None,
    config: RunConfig | None = None,
    limit: int | None = None,
    job: dict[str, Any] | None = None,
) -> RunResult:
    """Run `tasks` (async API). See `run` for the synchronous one."""
    engine = Engine(model, config, out, job)
    try:
        return await engine.run(tasks, limit=limit)
    finally:
        await engine.aclose()


def run(
    tasks: Iterable[Task] | Callable[[], Iterable[Task]],
    **kwargs: Any,
) -> RunResult:
    """Run `tasks` to completion from synchronous code — a script, or a Jupyter cell whose
    event loop is already running. Ctrl-C / a kernel interrupt stops the run cleanly:
    finished records stay on disk, then KeyboardInterrupt is raised."""
    return run_sync(lambda: arun(tasks() if callable(tasks) else tasks, **kwargs))


_wait_hook: Callable[[], None] | None = None


def set_wait_hook(hook: Callable[[], None] | None) -> Callable[[], None] | None:
    """Install `hook`, called about every 0.1 s in the waiting thread while `run_sync` waits
    for a run inside a running event loop (a Jupyter cell); returns the previous hook.

    Engine events arrive on the run's own thread; forgekit.jupyter installs a hook that
    pushes them to the run monitor widget from the cell's thread, at most 10 times a
    second. The hook must return quickly; an exception in it is ignored (a display never
    breaks a run).
    """
    global _wait_hook
    previous, _wait_hook = _wait_hook, hook
    return previous


def run_sync(make_coro: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine to completion whether or not an event loop is running here.

    With no running loop this is `asyncio.run`. Inside Jupyter (a loop is running) the
    coroutine runs on a fresh loop in a worker thread — no nest_asyncio — while this thread
    waits in short slices so a KeyboardInterrupt reaches it and is forwarded as a cancel.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())  # type: ignore[arg-type]

    box: dict[str, Any] = {}
    ready = threading.Event()
    # Wait on an Event, not Thread.join: a join interrupted by KeyboardInterrupt can leave
    # the thread marked finished while it still runs (CPython before 3.13).
    done = threading.Event()

    def target() -> None:
        loop = asyncio.new_event_loop()
        box["loop"] = loop
        try:
            box["task"] = loop.create_task(make_coro())  # type: ignore[arg-type]
            ready.set()
            box["result"] = loop.run_until_complete(box["task"])
        except BaseException as exc:
            box["error"] = exc
        finally:
            ready.set()
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()
            finally:
                done.set()

    thread = threading.Thread(target=target, name="forgekit-run", daemon=True)
    thread.start()
    try:
        while not done.wait(0.1):
            hook = _wait_hook
            if hook is not None:
                try:
                    hook()
                except Exception:
                    pass
    except KeyboardInterrupt:
        ready.wait()
        if "task" in box:
            box["loop"].call_soon_threadsafe(box["task"].cancel)
        done.wait()
        raise
    if "error" in box:
        error = box["error"]
        if isinstance(error, asyncio.CancelledError):
            raise KeyboardInterrupt() from None
        raise error
    return box.get("result")
