"""The engine's entry points for callers: `arun` (async), `run` and `run_sync` (sync).

`run` / `run_sync` finish a run whether or not an event loop is already running here. With
none (a script, the CLI) it is `asyncio.run`. In Jupyter a loop is running in the cell's
thread, so the run goes to a fresh loop in a worker thread (no nest_asyncio) while the cell's
thread waits in short slices: a kernel interrupt reaches it and is forwarded to the run as
a cancel, and a wait hook (`set_wait_hook`) lets the notebook layer update its widgets
from the cell's own thread meanwhile.

This is also where a run's progress display is chosen (the engine only reports to what it
is given): tqdm's automatic choice (a widget bar in a Jupyter kernel, text elsewhere),
unless FORGEKIT_NO_WIDGETS asks for text, e.g. in a kernel with no front end to draw the
widget (papermill, nbclient), where it would only be dead weight in the saved notebook.
A caller's own choice (`RunConfig.progress_factory`, `forgekit.engine.progress.use_progress`)
wins.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from forgekit.engine.core import run_engine
from forgekit.engine.progress import (
    ProgressReporter,
    default_progress_factory,
    has_progress_default,
    set_progress_default,
    text_progress,
    use_progress,
)
from forgekit.engine.types import RunConfig, RunResult, Task
from forgekit.models import Model

NO_WIDGETS_ENV = "FORGEKIT_NO_WIDGETS"


def widgets_disabled() -> bool:
    """FORGEKIT_NO_WIDGETS is set to something other than "" or "0"."""
    return os.environ.get(NO_WIDGETS_ENV, "").strip() not in ("", "0")


def environment_progress(total: int | None, description: str) -> ProgressReporter:
    """A widget bar where tqdm finds a Jupyter kernel, else text; text whenever
    FORGEKIT_NO_WIDGETS is set."""
    if widgets_disabled():
        return text_progress(total, description)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="rec", dynamic_ncols=True, file=sys.stderr)


async def arun(
    tasks: Iterable[Task],
    *,
    model: str | Model | None = None,
    out: str | Path | None = None,
    config: RunConfig | None = None,
    limit: int | None = None,
    job: dict[str, Any] | None = None,
    on_stored: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Run `tasks` (async API: await it in a coroutine or a notebook cell). See `run` for
    the synchronous one. `on_stored` sees each record `out` already holds (a resumed run's),
    before the first task runs."""
    kwargs = {"model": model, "out": out, "config": config, "limit": limit, "job": job}
    return await with_display(lambda: run_engine(tasks, **kwargs, on_stored=on_stored))


async def with_display(make: Callable[[], Awaitable[RunResult]]) -> RunResult:
    """Await `make()` with progress shown where the calling context chose, else where the
    environment suggests (`environment_progress`): shared by `arun` and batch mode."""
    if has_progress_default():
        return await make()
    with use_progress(environment_progress):
        return await make()


def run(
    tasks: Iterable[Task] | Callable[[], Iterable[Task]],
    **kwargs: Any,
) -> RunResult:
    """Run `tasks` to completion from synchronous code — a script, or a Jupyter cell whose
    event loop is already running. Ctrl-C / a kernel interrupt stops the run cleanly:
    finished records stay on disk, then KeyboardInterrupt is raised. Keywords as for
    `forgekit.engine.arun`."""
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
    A progress display the caller chose (`use_progress`) applies in the worker thread too.
    """
    chosen = default_progress_factory() if has_progress_default() else None
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
        if chosen is not None:
            set_progress_default(chosen)  # this thread's own context, copied into its tasks
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
