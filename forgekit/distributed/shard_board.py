"""`ShardBoard`: the Ray actor where a sharded run's shards report and the driver looks.

Shards send their counters (a RunStats as a dict), their latest records and their errors;
the driver reads a snapshot about five times a second and turns it into the usual engine
events for the RunMonitor, the text bar and the magics. A cancel from the driver travels
back as the answer to the shards' next report. The board also knows each shard's worker pid
(for operators, and for tests that kill a worker on purpose).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from forgekit.data.records import fingerprint


def board_name(key: str) -> str:
    """The actor name of the board of the run keyed `key` (its output path or job key)."""
    return f"forgekit-shards-{fingerprint(key, 16)}"


class ShardBoard:
    """Plain class; forgekit.distributed.shards makes it a Ray actor (num_cpus=0)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.pids: dict[int, int] = {}
        self.status: dict[int, str] = {}
        self.stats: dict[int, dict[str, Any]] = {}
        self.latest: deque[dict[str, Any]] = deque(maxlen=20)
        self.errors: list[dict[str, Any]] = []  # every error, each with its shard
        self.cancelled = False

    def started(self, shard: int, pid: int) -> None:
        self.pids[shard] = pid
        self.status[shard] = "running"

    def report(
        self,
        shard: int,
        status: str,
        stats: dict[str, Any],
        latest: list[dict[str, Any]],
        errors: list[dict[str, Any]],
    ) -> bool:
        """A shard's news; answers whether the run is being cancelled."""
        self.status[shard] = status
        self.stats[shard] = stats
        self.latest.extend(latest)
        self.errors.extend({**error, "shard": shard} for error in errors)
        return self.cancelled

    def cancel(self) -> None:
        self.cancelled = True

    def worker_pids(self) -> dict[int, int]:
        return dict(self.pids)

    def snapshot(self, errors_seen: int) -> dict[str, Any]:
        """Counters and status per shard, records since the last snapshot, errors after the
        first `errors_seen`."""
        latest = list(self.latest)
        self.latest.clear()
        return {
            "status": dict(self.status),
            "stats": dict(self.stats),
            "pids": dict(self.pids),
            "latest": latest,
            "errors": self.errors[errors_seen:],
        }
