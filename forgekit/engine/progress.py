"""How a run shows its progress, without the engine knowing where it is shown.

The engine asks a `ProgressFactory` for one `ProgressReporter` per run and reports to it;
tqdm bars satisfy the protocol as they are. Which factory a run uses, in this order:
`RunConfig.progress_factory`, then the default of the calling context (`use_progress`),
then `text_progress`. The engine never looks at the environment: choosing a notebook widget
bar or plain text (a Jupyter front end, FORGEKIT_NO_WIDGETS) is the sync bridge's job
(`forgekit.engine.bridge`), which sets the context default for the runs it starts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol


class ProgressReporter(Protocol):
    """What the engine calls during a run (a subset of tqdm's interface)."""

    def update(self, n: int = 1) -> Any: ...

    def set_postfix(self, refresh: bool = True, **counters: Any) -> Any: ...

    def close(self) -> Any: ...


# (total records or None when unknown, description) -> a reporter for one run
ProgressFactory = Callable[[int | None, str], ProgressReporter]


def text_progress(total: int | None, description: str) -> ProgressReporter:
    """A plain-text tqdm bar on stderr (terminals, scripts, papermill)."""
    from tqdm.std import tqdm

    return tqdm(total=total, desc=description, unit="rec", dynamic_ncols=True, file=sys.stderr)


class SilentProgress:
    """Reports nowhere (`RunConfig(progress=False)`)."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, refresh: bool = True, **counters: Any) -> None:
        pass

    def close(self) -> None:
        pass


_default: ContextVar[ProgressFactory] = ContextVar("forgekit_progress_factory")


def default_progress_factory() -> ProgressFactory:
    """The factory runs started in this context use when their config names none."""
    return _default.get(text_progress)


def has_progress_default() -> bool:
    """Whether a caller chose a default in this context (`use_progress`)."""
    return _default.get(None) is not None


@contextmanager
def use_progress(factory: ProgressFactory) -> Iterator[None]:
    """Runs started inside this block (in this context) report to `factory` by default."""
    token = _default.set(factory)
    try:
        yield
    finally:
        _default.reset(token)


def set_progress_default(factory: ProgressFactory) -> None:
    """Set the default of the current context (for a context copied to run a coroutine)."""
    _default.set(factory)
