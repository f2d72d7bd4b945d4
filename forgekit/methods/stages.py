"""A call's stages on one event loop: `Run` holds what the whole call shares (its models,
output, budgets, job, quality gate), `Stages` is what a method's `run` sees and calls once per
stage (forgekit.methods.runner builds the Run; a shard worker builds one per shard)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgekit.data.records import fingerprint, record_id
from forgekit.engine import RunConfig, RunResult, RunStats, Task, arun
from forgekit.engine.batch_run import arun_batch, merge_batch_summaries
from forgekit.methods.gate import Gate, GateOptions
from forgekit.methods.spec import Method

if TYPE_CHECKING:
    from forgekit.methods.runner import Models


@dataclass
class StageResult:
    """One stage's run, and its record (or None) for each item it was given, in order."""

    result: RunResult
    outputs: list[dict[str, Any] | None]

    @property
    def completed(self) -> bool:
        return self.result.status == "completed"


class Run:
    """One call's stages on one event loop; `Stages` is the face a method sees."""

    def __init__(
        self,
        method: Method,
        models: Models,
        out: Any,
        config: RunConfig,
        job: dict[str, Any],
        gate: Gate | None = None,
        entry: Any = None,
    ) -> None:
        self.entry = entry  # what runs a stage (default: arun, or arun_batch in batch mode)
        self.method = method
        self.gate = gate or Gate(GateOptions(), method.score)
        # A shard's items are positions offset, offset + stride, ... of the call's items: its
        # records keep the ids a local run gives them (forgekit.distributed.shards).
        self.offset, self.stride = 0, 1
        self.models = models
        self.out = out
        self.config = config
        self.job = job
        self.job_key = fingerprint(job, 16)
        self.results: list[RunResult] = []
        self.kept: list[bool] = []  # per result: are its records part of the call's result
        self.opened: set[Path | None] = set()  # the output files the stages have written

    async def execute(self, items: Sequence[Any] | Iterable[Any]) -> RunResult:
        try:
            await self.method.run(Stages(self), items)
        finally:
            await self.models.aclose()
        return self.combined()

    def spent(self) -> RunStats:
        return RunStats.total(self.results)

    def stage_config(self, label: str | None, out: Path | None) -> RunConfig:
        """Budgets cover the whole call; only the first stage that writes a file may move an
        old one aside (a later one would move the earlier stages' records aside too)."""
        spent = self.spent()
        config = self.config
        return replace(
            config,
            max_requests=_left(config.max_requests, spent.requests),
            max_total_tokens=_left(config.max_total_tokens, spent.tokens),
            max_cost=_left(config.max_cost, spent.cost),
            overwrite=config.overwrite and out not in self.opened,
            description=label or config.description or self.method.name,
        )

    def combined(self) -> RunResult:
        """One result for the call: the records of its main stages; the status of the first
        stage that did not complete; record counts of the main stages, spend of all."""
        if not self.results:
            return RunResult(records=[], stats=RunStats(), status="completed")
        main = [r for r, kept in zip(self.results, self.kept) if kept]
        halted = next((r for r in self.results if r.status != "completed"), self.results[-1])
        stats, counts = self.spent(), RunStats.total(main)
        for name in ("ok", "failed", "filtered", "skipped"):
            setattr(stats, name, getattr(counts, name))
        return RunResult(
            records=[r for result in main for r in result.records],
            stats=stats,
            status=halted.status,
            stop_reason=halted.stop_reason,
            out=main[-1].out if main else None,
            errors=[e for result in self.results for e in result.errors],
            batch=merge_batch_summaries(self.results),
        )


def _left(limit: float | None, used: float) -> Any:
    return None if limit is None else max(type(limit)(0), limit - used)


class Stages:
    """Runs a method's work through the engine; a method calls `run` once per stage."""

    def __init__(self, run: Run) -> None:
        self._run = run

    async def run(
        self,
        items: Sequence[Any] | Iterable[Any],
        *,
        produce: Any = None,
        stage: Any = None,
        label: str | None = None,
        limit: int | None = None,
        start: int = 0,
        side: str | None = None,
    ) -> StageResult:
        """Run `produce(ctx, item)` (default: the method's) for every item; `stage` tells
        apart the ids of several stages over the same items (e.g. the round number).
        `start`: the position of the first item (a stage run in parts keeps its ids).
        `side`: an intermediate stage: its records go to `<out>.<side>.jsonl` beside `out`
        (so a re-run resumes them too), not into the call's result."""
        run = self._run
        method = run.method
        produce = produce or method.produce
        if side is None and run.gate.options.active:  # the call's records: through the gate
            produce = run.gate.wrap(produce)
            passed = sum(r.stats.ok + r.stats.skipped for r, k in zip(run.results, run.kept) if k)
            items, limit = run.gate.bound(items, limit, passed)
        out = side_file(run.out, side) if side else (Path(run.out) if run.out else None)
        ids: list[str] = []

        def tasks() -> Iterable[Task]:
            for position, item in enumerate(items, start):
                index = run.offset + position * run.stride
                inputs = {"job": run.job_key, "item": fingerprint(method.key(item), 16)}
                if stage is not None:
                    inputs["stage"] = stage
                task_id = record_id(method.name, inputs, index)
                ids.append(task_id)
                info = {"index": index, **({"stage": stage} if stage is not None else {})}
                yield Task(id=task_id, fn=lambda ctx, it=item: produce(ctx, it), info=info)
            if not run.results:  # the first stage reports the inputs the method refused
                yield from _input_error_tasks(method, run.job_key)

        # A list when the items are: the engine shows a total, and every item gets an id
        # (and an entry in `outputs`) even when a budget stops the stage early.
        stream = list(tasks()) if isinstance(items, Sequence) else tasks()
        config = run.stage_config(label, out)
        run.opened.add(out)
        start_run = run.entry or (arun_batch if config.batch else arun)
        result = await start_run(
            stream,
            model=run.models.main,
            out=out,
            config=config,
            limit=limit,
            job=run.job,
            on_stored=method.claim_stored if side is None and method.keeps_claims else None,
        )
        run.results.append(result)
        run.kept.append(side is None)
        by_id = {record["id"]: record for record in result.records}
        return StageResult(result, [by_id.get(task_id) for task_id in ids])


def side_file(out: Any, side: str) -> Path | None:
    """`<out>.<side>.jsonl` beside `out` (None without `out`)."""
    return Path(out).with_name(f"{Path(out).stem}.{side}.jsonl") if out else None


def _input_error_tasks(method: Method, job_key: str) -> Iterable[Task]:
    for where, error in method.input_errors:

        async def fail(ctx: Any, error: BaseException = error) -> None:
            raise error

        task_id = record_id(f"{method.name}/input", {"job": job_key, "where": where})
        yield Task(id=task_id, fn=fail, info=where)
