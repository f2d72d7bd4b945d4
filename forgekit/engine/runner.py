"""The engine's entry points under their first module name.

The engine proper lives in `forgekit.engine.core` (with `types`, `requests`, `output` and
`progress`); its entry points (`arun`, `run`, `run_sync`, the wait hook) in
`forgekit.engine.bridge`.
This module keeps `from forgekit.engine.runner import ...` working.
"""

from __future__ import annotations

from forgekit.engine.bridge import arun, run, run_sync, set_wait_hook
from forgekit.engine.core import Engine
from forgekit.engine.requests import RunContext
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
