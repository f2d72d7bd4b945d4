"""What goes into a run and what comes out of it: `Task`, `RunConfig`, `RunStats`,
`RunResult`."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgekit.engine.progress import ProgressFactory
from forgekit.errors import ConfigError

if TYPE_CHECKING:
    from forgekit.engine.requests import RunContext

EventHandler = Callable[[str, dict[str, Any]], None]


@dataclass
class Task:
    id: str
    fn: Callable[[RunContext], Awaitable[dict[str, Any] | None]]
    info: dict[str, Any] = field(default_factory=dict)  # shown in error entries (e.g. index)


@dataclass
class RunConfig:
    """How to run: limits, retries, budgets, cache, progress. All optional."""

    concurrency: int | None = None  # default: the model's own (8 for local, 32 for HTTP)
    # Adapt each endpoint's concurrency (1..concurrency) to 429s, timeouts and rising
    # latency (forgekit.engine.adaptive); False: always `concurrency` in flight.
    adaptive: bool = True
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
    # Where progress is shown; None: the calling context's default (see engine.progress).
    progress_factory: ProgressFactory | None = None
    # Where the run executes: "local" (this process) or "ray" (`shards` parts of the work on a
    # Ray cluster: a local one started on demand, or the one at `ray_address`); the method
    # runner dispatches on these (forgekit.distributed.shards), the Engine never reads them.
    engine: str = "local"
    shards: int | None = None  # default with engine="ray": the cluster's CPU count
    ray_address: str | None = None
    # Relaunches of a shard whose worker process or node died (resumed from its part file);
    # an error the shard's own code raised is never retried.
    shard_retries: int = 2

    # Batch mode (forgekit.engine.batch_api): requests go through the provider's batch API.
    batch: bool = False
    batch_poll_s: float = 30.0  # seconds between polls of a running batch
    batch_failed: str = "resubmit"  # failed/expired items: "resubmit" in a new batch, or "online"
    batch_max_submits: int = 3  # submissions per request before it counts as failed
    batch_max_requests: int = 50_000  # per batch file (the provider's limit)
    batch_max_bytes: int = 200_000_000  # per batch file (the provider's limit: 200 MB)
    batch_discount: float | None = None  # batch price / online price; None: profile or 0.5

    def __post_init__(self) -> None:
        if self.batch_failed not in ("resubmit", "online"):
            raise ValueError(
                f"batch_failed={self.batch_failed!r}: use 'resubmit' (a new batch) or 'online'"
            )
        if self.engine not in ("local", "ray"):
            raise ConfigError(f"engine must be 'local' or 'ray', got {self.engine!r}")
        if self.shards is not None and (isinstance(self.shards, bool) or self.shards < 1):
            raise ConfigError(f"shards must be a whole number >= 1, got {self.shards!r}")
        if isinstance(self.shard_retries, bool) or self.shard_retries < 0:
            raise ConfigError(
                f"shard_retries must be a whole number >= 0, got {self.shard_retries!r}"
            )

    @property
    def distributed(self) -> bool:
        """Run on Ray: asked for by engine="ray", a shard count or a cluster address."""
        return self.engine == "ray" or self.shards is not None or self.ray_address is not None

    def public(self) -> dict[str, Any]:
        skip = ("on_event", "cancel_event", "progress_factory")
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

    @classmethod
    def total(cls, results: Iterable[RunResult]) -> RunStats:
        """The counters of several runs (a method's stages), added up."""
        total = cls()
        for result in results:
            for name in cls.__dataclass_fields__:
                setattr(total, name, getattr(total, name) + getattr(result.stats, name))
        return total


@dataclass
class RunResult:
    records: list[dict[str, Any]]
    stats: RunStats
    status: str  # completed | stopped | cancelled
    stop_reason: str | None = None
    out: Path | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    batch: dict[str, Any] | None = None  # batch mode: batches, counts, problems (gaps)

    def to_dataframe(self, **details: Any):
        """The records as a DataFrame that remembers how the run went: status, summary,
        stats, output file and errors — and `details` (e.g. a method's counts) — in
        `df.attrs['forgekit']`."""
        from forgekit.data.io import records_to_dataframe

        df = records_to_dataframe(self.records)
        df.attrs["forgekit"] = {
            "status": self.status,
            "stop_reason": self.stop_reason,
            "summary": self.summary(),
            "stats": asdict(self.stats),
            "out": str(self.out) if self.out else None,
            "errors": self.errors,
            **({"batch": self.batch} if self.batch else {}),
            **details,
        }
        return df

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
        if self.batch:
            batches = self.batch.get("batches") or {}
            problems = self.batch.get("problems") or []
            line += f", {len(batches)} batch(es), {len(problems)} batch problem(s)"
        if self.stop_reason:
            line += f" — {self.stop_reason}"
        if self.out:
            line += f" -> {self.out}"
        return line
