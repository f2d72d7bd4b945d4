"""The driver's loop of a sharded run: launch every shard as a Ray task, follow the board
until every shard has ended, pass a cancel on, and relaunch a shard whose worker process or
node died (up to `RunConfig.shard_retries` times): the new task resumes from the shard's
part file, with what the lost attempt spent taken off its budgets. An error the shard's own
code raised is its outcome, never retried (it would only fail again).

What a lost attempt spent is what it last reported to the board (every REPORT_EVERY_S):
what it sent after that report is not known, so a relaunched shard can overshoot its
budgets by what the lost worker spent in the moment between its last report and its end."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from forgekit.distributed.cluster import worker_env, worker_secrets
from forgekit.distributed.shard_merge import is_lost_worker
from forgekit.distributed.shard_worker import REPORT_EVERY_S, ShardSpec, run_shard
from forgekit.engine import RunStats
from forgekit.engine.store import JsonlStore

# What an attempt spent: the counters a lost attempt adds to its shard's total.
SPEND = ("requests", "cached", "retried", "prompt_tokens", "completion_tokens", "cost")


@dataclass
class Relaunches:
    """A shard's lost attempts: why each ended, and what they spent together."""

    reasons: list[str] = field(default_factory=list)
    spent: RunStats = field(default_factory=RunStats)

    def public(self) -> dict[str, Any]:
        return {"count": len(self.reasons), "after": self.reasons}


@dataclass
class Driven:
    outcomes: dict[int, Any]  # per shard: the worker's answer, or the exception that ended it
    relaunches: dict[int, Relaunches]  # per shard that lost a worker and was relaunched
    interrupted: bool  # the user pressed Ctrl-C (the shards were cancelled cleanly)


def drive(ray: Any, specs: list[ShardSpec], records: Any, board: Any, view: Any) -> Driven:
    """Launch the shards and follow them until every one has ended (see the module doc)."""
    task = ray.remote(run_shard)
    env = worker_env()
    records_ref = ray.put(records)
    secrets_ref = ray.put(worker_secrets())  # by reference: never in a log or a task spec
    retries = view.config.shard_retries
    run = specs[0].run

    def launch(spec: ShardSpec) -> Any:
        return task.options(
            name=f"forgekit {spec.method.name} shard {spec.index + 1}/{spec.count}",
            num_cpus=1,
            max_retries=0,  # relaunched here (below), resuming from the part, with its budget
            runtime_env={"env_vars": env},
        ).remote(spec, records_ref, board, secrets_ref)

    refs = {launch(s): s for s in specs}
    outcomes: dict[int, Any] = {}
    relaunches: dict[int, Relaunches] = {}
    pending = list(refs)
    seen_errors = 0
    interrupted = cancel_sent = False
    view.start()
    while pending:
        try:
            done, pending = ray.wait(pending, num_returns=len(pending), timeout=REPORT_EVERY_S)
            # Before looking at ended shards: a lost worker's last report is still its own.
            snapshot = ray.get(board.snapshot.remote(run, seen_errors))
            for ref in done:
                spec = refs.pop(ref)
                outcome = _outcome(ray, ref)
                lost = relaunches.setdefault(spec.index, Relaunches())
                if _relaunchable(outcome) and len(lost.reasons) < retries and not cancel_sent:
                    spent = _spent(snapshot["stats"].get(spec.index))
                    lost.reasons.append(_describe(outcome))
                    lost.spent = RunStats.total([_Wrap(lost.spent), _Wrap(spent)])
                    spec = _after_loss(spec, spent)
                    _add_to_part_totals(spec.part, spent)
                    # Before the new attempt reports: its counters start from zero.
                    ray.get(board.lost.remote(run, spec.index))
                    ref = launch(spec)
                    refs[ref] = spec
                    pending.append(ref)
                else:
                    outcomes[spec.index] = outcome
            seen_errors += len(snapshot["errors"])
            view.update(snapshot)
            cancel = view.config.cancel_event
            if cancel is not None and cancel.is_set() and not cancel_sent:
                board.cancel.remote(run)
                cancel_sent = True
        except KeyboardInterrupt:
            # Stop the shards cleanly (their finished records stay in the parts), then merge.
            interrupted = True
            if not cancel_sent:
                board.cancel.remote(run)
                cancel_sent = True
    relaunched = {k: lost for k, lost in relaunches.items() if lost.reasons}
    return Driven(outcomes, relaunched, interrupted)


def _outcome(ray: Any, ref: Any) -> Any:
    """The shard's answer, or the exception that ended it (a worker that died, or the
    error the shard raised)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        return cause if isinstance(cause, BaseException) else exc
    except ray.exceptions.RayError as exc:  # the worker process or its node died
        return exc


def _relaunchable(outcome: Any) -> bool:
    return isinstance(outcome, BaseException) and is_lost_worker(outcome)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".splitlines()[0][:300]


def _spent(stats: dict[str, Any] | None) -> RunStats:
    """What an attempt spent, from its last report to the board."""
    return RunStats(**{k: v for k, v in (stats or {}).items() if k in SPEND})


def _after_loss(spec: ShardSpec, spent: RunStats) -> ShardSpec:
    """The spec of a relaunch: the shard's budgets less what the lost attempt spent."""

    def left(limit: Any, used: float) -> Any:
        return None if limit is None else max(type(limit)(0), limit - type(limit)(used))

    c = spec.config
    config = replace(
        c,
        max_requests=left(c.max_requests, spent.requests),
        max_total_tokens=left(c.max_total_tokens, spent.tokens),
        max_cost=left(c.max_cost, spent.cost),
    )
    return replace(spec, config=config)


def _add_to_part_totals(part: str | None, spent: RunStats) -> None:
    """Count a lost attempt's spend in its part's manifest `totals` (spend over every run
    that wrote the file), which the dead worker could not update: the relaunch carries them
    on, and the run's manifest adds up the parts' totals, this run's and later re-runs'."""
    store = JsonlStore(part) if part is not None else None
    manifest = store.read_manifest() if store is not None else None
    if store is None or (manifest is None and not any(getattr(spent, k) for k in SPEND)):
        return
    manifest = manifest or {}  # {}: the worker died before it opened its part
    totals = manifest.get("totals") or {}
    for key in SPEND:
        totals[key] = round(totals.get(key, 0) + getattr(spent, key), 6)
    store.write_manifest({**manifest, "totals": totals})


@dataclass
class _Wrap:
    """Adapts a RunStats to what RunStats.total reads (`.stats`)."""

    stats: RunStats
