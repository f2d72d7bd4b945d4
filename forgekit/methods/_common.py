"""What every method shares: turning options into a RunConfig, running tasks through the
engine, and handing back a DataFrame that remembers how it was made (`df.attrs`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from forgekit.engine import RunConfig, RunResult, RunStats, Task, arun, run_sync
from forgekit.models import Model

# Options every method accepts and forwards to the engine (see RunConfig).
RUN_OPTIONS = tuple(name for name in RunConfig.__dataclass_fields__ if name not in ("description",))


def split_run_options(kwargs: dict[str, Any]) -> tuple[RunConfig, dict[str, Any]]:
    """Pull RunConfig fields (concurrency, rpm, max_cost, cache, ...) out of `kwargs`.
    A `config=RunConfig(...)` may be given instead; explicit keywords win over it."""
    base = kwargs.pop("config", None) or RunConfig()
    if not isinstance(base, RunConfig):
        raise TypeError(f"config must be a RunConfig, got {type(base).__name__}")
    overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in RUN_OPTIONS}
    if overrides:
        from dataclasses import replace

        base = replace(base, **overrides)
    return base, kwargs


def result_frame(result: RunResult, **details: Any):
    """The result as a DataFrame; the run summary and method details go to `df.attrs`."""
    df = result.to_dataframe()
    df.attrs["forgekit"] = {
        "status": result.status,
        "stop_reason": result.stop_reason,
        "summary": result.summary(),
        "stats": dict(result.stats.__dict__),
        "out": str(result.out) if result.out else None,
        "errors": result.errors,
        **details,
    }
    return df


async def arun_method(
    tasks: Iterable[Task],
    *,
    method: str,
    model: str | Model | None,
    out: str | Path | None,
    config: RunConfig,
    job: dict[str, Any],
    limit: int | None = None,
) -> RunResult:
    if config.description is None:
        from dataclasses import replace

        config = replace(config, description=method)
    return await arun(tasks, model=model, out=out, config=config, limit=limit, job=job)


def run_method(**kwargs: Any) -> RunResult:
    return run_sync(lambda: arun_method(**kwargs))


# -- methods that run the engine several times (stages, rounds) ----------------------------
def add_stats(total: RunStats, part: RunStats) -> RunStats:
    """Add `part`'s counters into `total` (in place) and return it."""
    for name in RunStats.__dataclass_fields__:
        setattr(total, name, getattr(total, name) + getattr(part, name))
    return total


def remaining_budget(config: RunConfig, spent: RunStats) -> RunConfig:
    """The config for the next stage: budgets cover the whole method call, not each stage."""
    return replace(
        config,
        max_requests=None
        if config.max_requests is None
        else max(0, config.max_requests - spent.requests),
        max_total_tokens=None
        if config.max_total_tokens is None
        else max(0, config.max_total_tokens - spent.tokens),
        max_cost=None if config.max_cost is None else max(0.0, config.max_cost - spent.cost),
    )


def budget_exhausted(config: RunConfig) -> bool:
    return any(
        limit is not None and limit <= 0
        for limit in (config.max_requests, config.max_total_tokens, config.max_cost)
    )
