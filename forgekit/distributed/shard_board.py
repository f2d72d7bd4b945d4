"""`ShardBoard`: the Ray actor where a sharded run's shards report and the driver looks.

Shards send their counters (a RunStats as a dict), their latest records and their errors;
the driver reads a snapshot about five times a second and turns it into the usual engine
events for the RunMonitor, the text bar and the magics. A cancel from the driver travels
back as the answer to the shards' next report. The board also knows each shard's worker pid
(`forgekit.distributed.shards.shard_worker_pids`: for operators, and for tests that kill a
worker on purpose). And it holds the run's dedup claims: a method that drops repeats
(Magpie's instructions) claims each key here, so the first shard to claim a key keeps it and
the others treat it as a repeat (`claim_digest`: keys travel and stay as 16-byte digests).
"""

from __future__ import annotations

import hashlib
from collections import deque
from typing import Any


def claim_digest(key: str) -> bytes:
    """What the board keeps of a dedup key (16 bytes, whatever the key's length)."""
    return hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest()


class RunBoard:
    """What one sharded run's shards have reported."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.pids: dict[int, int] = {}
        self.status: dict[int, str] = {}
        self.stats: dict[int, dict[str, Any]] = {}
        self.latest: deque[dict[str, Any]] = deque(maxlen=20)
        self.errors: list[dict[str, Any]] = []  # every error, each with its shard
        self.cancelled = False
        self.claimed: set[bytes] = set()  # dedup keys' digests (claim_digest)


class ShardBoard:
    """Plain class; forgekit.distributed.shards makes it one Ray actor per driver process
    (num_cpus=0), shared by that driver's sharded runs (an actor is a process: starting
    one per run would cost seconds). Runs are keyed by their output path (or job key)."""

    def __init__(self) -> None:
        self.runs: dict[str, RunBoard] = {}

    def open(self, run: str, count: int) -> None:
        self.runs[run] = RunBoard(count)

    def close(self, run: str) -> None:
        self.runs.pop(run, None)

    def started(self, run: str, shard: int, pid: int) -> None:
        if run in self.runs:
            self.runs[run].pids[shard] = pid
            self.runs[run].status[shard] = "running"

    def lost(self, run: str, shard: int) -> None:
        """The shard's worker died and the driver relaunches it: forget that attempt's
        counters (the driver has taken its spend from them), so the snapshot holds the new
        attempt's only, and ignore any report of the dead worker still on its way."""
        board = self.runs.get(run)
        if board is not None:
            board.pids.pop(shard, None)
            board.stats.pop(shard, None)

    def report(
        self,
        run: str,
        shard: int,
        status: str,
        stats: dict[str, Any],
        latest: list[dict[str, Any]],
        errors: list[dict[str, Any]],
        pid: int | None = None,
    ) -> bool:
        """A shard's news (from the worker `pid`); answers whether the run is being
        cancelled."""
        board = self.runs.get(run)
        if board is None:  # the driver has closed the run
            return True
        if pid is not None and board.pids.get(shard) != pid:  # a lost attempt's, too late
            return board.cancelled
        board.status[shard] = status
        board.stats[shard] = stats
        board.latest.extend(latest)
        board.errors.extend({**error, "shard": shard} for error in errors)
        return board.cancelled

    def claim(self, run: str, digest: bytes) -> bool:
        """True when this is the first claim of the key in the run (the claimant keeps it)."""
        board = self.runs.get(run)
        if board is None:  # the driver closed the run: its shard is orphaned
            return True
        if digest in board.claimed:
            return False
        board.claimed.add(digest)
        return True

    def seed_claims(self, run: str, digests: list[bytes]) -> int:
        """Keys the records already in the parts hold (a resumed run); how many are known."""
        board = self.runs[run]
        board.claimed.update(digests)
        return len(board.claimed)

    def cancel(self, run: str) -> None:
        if run in self.runs:
            self.runs[run].cancelled = True

    def worker_pids(self, run: str) -> dict[int, int]:
        return dict(self.runs[run].pids) if run in self.runs else {}

    def reported(self, run: str) -> dict[int, dict[str, Any]]:
        """Each shard's counters as it last reported them (what `snapshot` holds, read
        without taking the snapshot's records and errors from the driver)."""
        return dict(self.runs[run].stats) if run in self.runs else {}

    def snapshot(self, run: str, errors_seen: int) -> dict[str, Any]:
        """Counters and status per shard, records since the last snapshot, errors after the
        first `errors_seen`."""
        board = self.runs[run]
        latest = list(board.latest)
        board.latest.clear()
        return {
            "status": dict(board.status),
            "stats": dict(board.stats),
            "pids": dict(board.pids),
            "latest": latest,
            "errors": board.errors[errors_seen:],
        }
