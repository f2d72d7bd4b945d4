"""The engine's entry points under their first module name.

The engine proper lives in `forgekit.engine.core` (with `types`, `requests`, `output` and
`progress`); running it from synchronous code or a notebook cell in `forgekit.engine.sync`.
This module keeps `from forgekit.engine.runner import ...` working.
"""

from __future__ import annotations

from forgekit.engine.core import Engine, arun
from forgekit.engine.requests import RunContext
from forgekit.engine.sync import run, run_sync, set_wait_hook
from forgekit.engine.types import EventHandler, RunConfig, RunResult, RunStats, Task

__all__ = [
    "Engine",
    "EventHandler",
    "RunConfig",
    "RunContext",
    "RunResult",
    "RunStats",
    "Task",
    "arun",
    "run",
    "run_sync",
    "set_wait_hook",
]
