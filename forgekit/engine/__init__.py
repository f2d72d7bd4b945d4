"""The run engine: bounded concurrency, rate limits, retries, cache, budgets, and an
incremental JSONL store that resumes."""

from forgekit.engine.cache import ResponseCache, default_cache_path
from forgekit.engine.limits import Budget, RateLimiter, RetryPolicy
from forgekit.engine.runner import (
    Engine,
    RunConfig,
    RunContext,
    RunResult,
    RunStats,
    Task,
    arun,
    run,
    run_sync,
)
from forgekit.engine.store import JsonlStore

__all__ = [
    "Budget",
    "Engine",
    "JsonlStore",
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
    "run",
    "run_sync",
]
