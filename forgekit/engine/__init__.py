"""The run engine: bounded concurrency, rate limits, retries, cache, budgets, and an
incremental JSONL store that resumes.

Modules: `types` (Task, RunConfig, RunStats, RunResult), `core` (the Engine), `requests`
(what a task sees; cache, budget, limits and retries per request), `adaptive` (each
endpoint's concurrency, adapted to 429s, timeouts and latency), `output` (the output
file and its manifest), `store`, `cache`, `limits`, `progress` (where a run reports
progress) and `bridge` (the entry points: `arun`, `run`, `run_sync` from coroutines,
scripts and notebook cells, and the choice of progress display).
"""

from forgekit.engine.bridge import arun, environment_progress, run, run_sync
from forgekit.engine.cache import ResponseCache, default_cache_path
from forgekit.engine.core import Engine
from forgekit.engine.limits import Budget, RateLimiter, RetryPolicy
from forgekit.engine.progress import ProgressReporter, text_progress, use_progress
from forgekit.engine.requests import RunContext
from forgekit.engine.store import JsonlStore
from forgekit.engine.types import RunConfig, RunResult, RunStats, Task

__all__ = [
    "Budget",
    "Engine",
    "JsonlStore",
    "ProgressReporter",
    "RateLimiter",
    "ResponseCache",
    "RetryPolicy",
    "RunConfig",
    "RunContext",
    "RunResult",
    "RunStats",
    "Task",
    "arun",
    "default_cache_path",
    "environment_progress",
    "run",
    "run_sync",
    "text_progress",
    "use_progress",
]
