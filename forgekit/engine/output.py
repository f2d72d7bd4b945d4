"""A run's output file and its manifest: what `out=` adds to a run.

Opening: with `overwrite`, the old files are moved aside (never deleted); a file written by a
different job (another method or other settings: its `job_key` differs) is refused rather
than mixed; a torn last line from a killed process is cut off and reported. The manifest
beside the file says which job wrote it, with which config and models, how often it was
resumed, and what every run together spent.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from forgekit import __version__
from forgekit.data.records import fingerprint
from forgekit.engine.store import JsonlStore
from forgekit.engine.types import RunConfig, RunStats
from forgekit.errors import StoreError
from forgekit.secrets import scrub

# Spend counters summed over every run that wrote a file.
_TOTALS = ("requests", "cached", "retried", "prompt_tokens", "completion_tokens", "cost", "wall_s")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunOutput:
    """The JSONL store of one run plus its manifest bookkeeping."""

    def __init__(
        self, path: Path, job: dict[str, Any], config: RunConfig, secrets: list[str]
    ) -> None:
        self.path = path
        self.job = job
        self.job_key = fingerprint(job, 16)
        self.config = config
        self.secrets = secrets
        self.store: JsonlStore | None = None
        self.runs = 1
        self.previous_totals: dict[str, Any] = {}
        self.started_at = utc_now()
        self.extra: dict[str, Any] = {}  # more sections (batch mode: its batches and gaps)

    def open(self, on_stored: Callable[[dict[str, Any]], None] | None = None) -> JsonlStore:
        """Open the store for appending (moving old files aside, refusing another job's);
        `on_stored` sees each record the file already holds (see `JsonlStore.open`)."""
        store = JsonlStore(self.path, checkpoint_every=self.config.checkpoint_every)
        if self.config.overwrite:
            _move_aside(store)
        previous = store.read_manifest()
        if (
            previous
            and previous.get("job_key") not in (None, self.job_key)
            and self.path.exists()
            and self.path.stat().st_size > 0
        ):
            raise StoreError(
                f"{self.path} holds records of a different job "
                f"({_describe_job(previous.get('job', {}))}); choose another output path, "
                f"or pass overwrite to move the old files aside"
            )
        self.store = store.open(on_stored)
        if store.repaired:
            print(
                f"forgekit: {self.path} ended in a torn line (an interrupted write); "
                f"cut it off and kept it in {store.repaired}",
                file=sys.stderr,
            )
        self.runs = int((previous or {}).get("runs", 0)) + 1
        self.previous_totals = (previous or {}).get("totals") or {}
        self.started_at = utc_now()
        return self.store

    def write_manifest(
        self,
        status: str,
        *,
        stop_reason: str | None,
        models: list[str],
        stats: RunStats,
        has_errors: bool,
        concurrency: dict[str, Any] | None = None,
    ) -> None:
        """Write the manifest atomically, with every secret value scrubbed out."""
        if self.store is None:
            return
        manifest = {
            "forgekit_version": __version__,
            "status": status,
            "stop_reason": stop_reason,
            "job": self.job,
            "job_key": self.job_key,
            "models": models,
            "run_config": self.config.public(),
            "runs": self.runs,
            "started_at": self.started_at,
            "finished_at": utc_now() if status != "running" else None,
            "records_in_file": len(self.store.done),
            "this_run": asdict(stats),
            "totals": self._totals(stats),
            "errors_file": str(self.store.errors_path.name) if has_errors else None,
            # Per endpoint: the ceiling and where adaptive concurrency took the limit.
            "concurrency": concurrency,
            **self.extra,
        }
        text = scrub(json.dumps(manifest, default=str), self.secrets)
        self.store.write_manifest(json.loads(text))

    def _totals(self, stats: RunStats) -> dict[str, Any]:
        """Spend over every run that wrote this file, so a resumed job's cost adds up."""
        now = asdict(stats)
        return {k: round(self.previous_totals.get(k, 0) + now[k], 6) for k in _TOTALS}


def _describe_job(job: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in list(job.items())[:4]) or "unknown"


def _move_aside(store: JsonlStore) -> None:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for path in (store.path, store.errors_path, store.manifest_path):
        if path.exists():
            path.rename(path.with_name(f"{path.name}.{stamp}.bak"))
