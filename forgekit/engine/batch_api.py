"""Batch mode's requests: collected from the tasks, sent as provider batches, answered back.

A task in batch mode runs exactly as online, once: its function calls `ctx.chat` /
`ctx.complete` and parses the answer. The `BatchGate` answers a request from the batches
collected so far (or the response cache); a request with no answer yet is handed to the
`BatchBook` and the task waits for it. When every running task of a round waits
(forgekit.engine.batch_run), the book `settle`s: it submits the wanted requests (one batch
per model and endpoint, split at the provider's limits of 50,000 requests / 200 MB per
file), records the batch ids in the ledger (forgekit.engine.batch_ledger) before polling,
polls, downloads the output and error files, maps every line back by custom id and wakes
the tasks. A task of three dependent requests waits three times, so multi-stage methods go
stage by stage.

Nothing is silent: an item that failed or expired is submitted again in a new batch
(`batch_failed="resubmit"`, up to `batch_max_submits` times) or sent online
(`batch_failed="online"`); an item that came back in neither file, a result line that is not
valid JSON (named by file and line; the other lines are kept), and request counts that do
not add up are each a `problem`, warned about and kept in the manifest and the result.
"""

from __future__ import annotations

import asyncio
import json
import sys
import warnings
from collections import Counter
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from forgekit.engine.batch_ledger import BatchLedger, custom_id, request_fingerprint
from forgekit.engine.cache import request_key
from forgekit.engine.requests import RequestGate, StopRun
from forgekit.engine.types import RunConfig, RunStats
from forgekit.errors import BudgetExceededError, ModelError, RetryableModelError
from forgekit.models import Model, SamplingParams
from forgekit.models.base import Completion
from forgekit.models.openai_batch import TERMINAL, BatchAPI, batch_api_for


class BatchItemError(ModelError):
    """A request the batch API answered with an error that another batch cannot fix, or
    that failed every submission allowed."""


@dataclass
class Want:
    custom_id: str
    model: Model
    kind: str
    payload: Any
    params: SamplingParams
    cache_key: str | None


class TaskRequests:
    """The requests one task made so far in this replay (shared by its child coroutines)."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.seen: Counter[str] = Counter()
        self.waiting = 0  # its requests (of several child coroutines) awaiting a batch


CURRENT_TASK: ContextVar[TaskRequests] = ContextVar("forgekit_batch_task")


class BatchGate(RequestGate):
    """The request gate of batch mode (see the module doc); online requests (the
    `batch_failed="online"` fallback) go through the ordinary gate it extends, at most
    `online_slots` at a time (the round runs every task at once)."""

    book: BatchBook
    online_slots: asyncio.Semaphore

    async def request(
        self,
        kind: str,
        model: Model,
        payload: Any,
        params: SamplingParams,
        use_cache: bool | str = True,
    ) -> Completion:
        state = CURRENT_TASK.get(None)
        if state is None:  # not a batch task (cannot happen through the batch runner)
            return await super().request(kind, model, payload, params, use_cache)
        fingerprint = request_fingerprint(model.identity, kind, payload, params.to_dict())
        occurrence = state.seen[fingerprint]
        state.seen[fingerprint] += 1
        cid = custom_id(state.task_id, fingerprint, occurrence)
        outcome = self.book.lookup(cid)  # first: a collected batch answer is not a cache hit
        if isinstance(outcome, Completion):
            return outcome
        if isinstance(outcome, BaseException):
            raise outcome
        cache_key = None
        if self.cache is not None and use_cache:
            cache_key = request_key(model.identity, kind, payload, params)
            hit = self.cache.get(cache_key) if use_cache != "refresh" else None
            if hit is not None:
                self.stats.cached += 1
                return hit
        if outcome != "online":
            if self.stopping():
                raise StopRun()
            self.book.api(model)  # a model without a batch API fails the run here, clearly
            want = Want(cid, model, kind, payload, params, cache_key)
            outcome = await self.book.wait_for(want, state)
            if isinstance(outcome, Completion):
                return outcome
        async with self.online_slots:
            return await super().request(kind, model, payload, params, use_cache)


class BatchBook:
    """Submits, polls and collects the batches of one stage (see the module doc)."""

    def __init__(
        self,
        ledger: BatchLedger,
        config: RunConfig,
        stats: RunStats,
        gate: RequestGate,
        emit: Callable[[str, dict[str, Any]], None],
        job_key: str,
    ) -> None:
        self.ledger = ledger
        self.config = config
        self.stats = stats
        self.gate = gate
        self.emit = emit
        self.job_key = job_key
        self.wants: dict[str, Want] = {}
        self.online: set[str] = set()
        self.over_budget: set[str] = set()
        self.apis: dict[str, BatchAPI] = {}
        self.problems: list[str] = []
        self.counts: Counter[str] = Counter()
        self.state: dict[str, dict[str, Any]] = {}  # batch id -> last status and counts
        self.futures: dict[str, asyncio.Future] = {}  # custom id -> what its task awaits
        self.blocked = 0  # tasks with a request awaiting a batch answer now
        self.changed = asyncio.Event()  # set on every change the round's settler looks at

    # -- during a round --------------------------------------------------------------------
    def lookup(self, cid: str) -> Completion | BaseException | str | None:
        if cid in self.ledger.answers:
            return self.ledger.answers[cid]
        failure = self.ledger.failures.get(cid)
        if failure is not None:
            return BatchItemError(f"batch request failed: {failure['error']}: {failure['message']}")
        if cid in self.online:
            return "online"
        if cid in self.over_budget:
            return BudgetExceededError("budget reached before this request could be batched")
        return None

    async def wait_for(self, want: Want, task: TaskRequests) -> Completion | str:
        """Wait until the request is answered (a Completion), to be sent online ("online"),
        or failed for good (raises). A task counts as blocked while any of its requests
        waits (a method may gather several)."""
        future = self.futures.get(want.custom_id)
        if future is None:
            future = self.futures[want.custom_id] = asyncio.get_running_loop().create_future()
            self.wants[want.custom_id] = want
        task.waiting += 1
        self.blocked += task.waiting == 1
        self.changed.set()
        try:
            return await future
        finally:
            task.waiting -= 1
            self.blocked -= task.waiting == 0
            self.changed.set()

    def release(self, error: BaseException) -> None:
        """Wake every waiting task with `error` (the run stops; nothing more is sent)."""
        self.wants.clear()
        for future in self.futures.values():
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: a task already gone must not log it
        self.futures.clear()

    def api(self, model: Model) -> BatchAPI:
        if model.identity not in self.apis:
            self.apis[model.identity] = batch_api_for(model)
        return self.apis[model.identity]

    async def aclose(self) -> None:
        for api in self.apis.values():
            await api.aclose()

    # -- between rounds ----------------------------------------------------------------------
    async def settle(self, stopping: Callable[[], bool]) -> None:
        """Get every wanted request an answer, a final failure or the online fallback —
        resubmitting what failed or expired — then wake the tasks waiting for them."""
        unresolved, self.wants = self.wants, {}
        for want in unresolved.values():
            self.api(want.model)  # also the models of batches submitted by an earlier run
        while unresolved:
            waiting = self.ledger.batch_of()
            to_collect = {waiting[cid] for cid in unresolved if cid in waiting}
            if to_collect and not self.counts["batches"]:
                print(
                    f"forgekit: collecting {len(to_collect)} batch(es) submitted earlier",
                    file=sys.stderr,
                )
            fresh: list[Want] = []
            for cid, want in unresolved.items():
                if cid in waiting:
                    continue
                tries = self.ledger.attempts[cid]
                if tries >= self.config.batch_max_submits:
                    self.ledger.fail(cid, "gave_up", f"no answer after {tries} batch submissions")
                    self.counts["gave_up"] += 1
                elif tries and self.config.batch_failed == "online":
                    self.online.add(cid)
                    self.counts["sent_online"] += 1
                else:
                    self.counts["resubmitted" if tries else "submitted"] += 1
                    fresh.append(want)
            for group in self._groups(self._within_budget(fresh)):
                to_collect.add(await self._submit(group))
            await self._wait(to_collect, stopping)
            for cid in list(unresolved):
                outcome = self.lookup(cid)
                if outcome is None:
                    continue  # failed or expired in its batch: submitted again
                want = unresolved.pop(cid)
                future = self.futures.pop(cid, None)
                if isinstance(outcome, Completion) and want.cache_key and self.gate.cache:
                    self.gate.cache.put(want.cache_key, outcome)
                if future is None or future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
        self.ledger.checkpoint()

    def _within_budget(self, wants: list[Want]) -> list[Want]:
        budget = self.gate.budget
        left = len(wants)
        if budget.max_requests is not None:
            left = min(left, max(0, budget.max_requests - budget.requests))
        spent_out = (budget.max_cost is not None and budget.cost >= budget.max_cost) or (
            budget.max_total_tokens is not None and budget.tokens >= budget.max_total_tokens
        )
        if spent_out:
            left = 0
        self.over_budget.update(w.custom_id for w in wants[left:])
        return wants[:left]

    def _groups(self, wants: list[Want]) -> list[list[tuple[Want, bytes]]]:
        """One batch file per model and endpoint, split at the per-file limits."""
        by_target: dict[tuple[str, str], list[Want]] = {}
        for want in wants:
            by_target.setdefault((want.model.identity, want.kind), []).append(want)
        groups: list[list[tuple[Want, bytes]]] = []
        for items in by_target.values():
            current: list[tuple[Want, bytes]] = []
            size = 0
            for want in items:
                line = self.api(want.model).request_line(
                    want.custom_id, want.kind, want.payload, want.params
                )
                data = (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")
                full = len(current) >= self.config.batch_max_requests
                if current and (full or size + len(data) > self.config.batch_max_bytes):
                    groups.append(current)
                    current, size = [], 0
                current.append((want, data))
                size += len(data)
            if current:
                groups.append(current)
        return groups

    async def _submit(self, group: list[tuple[Want, bytes]]) -> str:
        first = group[0][0]
        api = self.api(first.model)
        content = b"".join(data for _, data in group)
        name = f"forgekit-{self.job_key}-{len(self.ledger.batches) + 1}.jsonl"
        file_id = await _with_retries(lambda: api.upload(content, name), self.config)
        batch = await _with_retries(
            lambda: api.create(file_id, first.kind, {"forgekit_job": self.job_key}), self.config
        )
        ids = [want.custom_id for want, _ in group]
        self.ledger.add_batch(
            batch.id,
            {
                "model": first.model.identity,
                "kind": first.kind,
                "input_file_id": file_id,
                "status": batch.status,
                "custom_ids": ids,
            },
        )
        self.stats.requests += len(ids)
        self.gate.budget.requests += len(ids)
        self.counts["batches"] += 1
        self._show(batch.id, batch.status, 0, 0, len(ids))
        return batch.id

    async def _wait(self, batch_ids: set[str], stopping: Callable[[], bool]) -> None:
        pending = set(batch_ids)
        failures = 0
        while pending:
            for bid in sorted(pending):
                entry = self.ledger.batches[bid]
                model = self._model_for(entry["model"])
                try:
                    batch = await self.api(model).retrieve(bid)
                    failures = 0
                except RetryableModelError:
                    failures += 1
                    if failures >= self.config.max_attempts:
                        raise
                    continue
                counts = getattr(batch, "request_counts", None)
                done = getattr(counts, "completed", 0) or 0
                failed = getattr(counts, "failed", 0) or 0
                self._show(bid, batch.status, done, failed, len(entry["custom_ids"]))
                if batch.status in TERMINAL:
                    await self._collect(bid, entry, batch)
                    pending.discard(bid)
            if pending:
                if stopping():
                    # Left running at the provider and recorded: a re-run collects them.
                    raise StopRun()
                await asyncio.sleep(self.config.batch_poll_s)

    def _model_for(self, identity: str) -> Model:
        api = self.apis.get(identity)
        if api is not None:
            return api.model
        raise ModelError(f"batch of model {identity} recorded, but no task of this run uses it")

    async def _collect(self, bid: str, entry: dict[str, Any], batch: Any) -> None:
        from forgekit.engine.batch_results import collect

        await collect(self, bid, entry, batch)

    def _account(self, api: BatchAPI, completion: Completion) -> None:
        price_in, price_out = api.unit_prices(self.config.batch_discount)
        usage = completion.usage
        cost = usage.prompt_tokens * price_in + usage.completion_tokens * price_out
        self.stats.prompt_tokens += usage.prompt_tokens
        self.stats.completion_tokens += usage.completion_tokens
        self.stats.cost += cost
        self.gate.budget.spend(usage.total_tokens, cost)

    def _problem(self, message: str) -> None:
        self.problems.append(message)
        warnings.warn(f"forgekit batch: {message}", stacklevel=2)
        self.emit("batch_problem", {"message": message})

    def _show(self, bid: str, status: str, done: int, failed: int, total: int) -> None:
        self.state[bid] = {
            "id": bid,
            "status": status,
            "completed": done,
            "failed": failed,
            "total": total,
        }
        self.emit("batch", {"batch": dict(self.state[bid]), "batches": self.overview()})

    def overview(self) -> dict[str, Any]:
        """What the monitor and the progress line show: batches by status, item counts."""
        states = list(self.state.values())
        return {
            "batches": len(states),
            "by_status": dict(Counter(s["status"] for s in states)),
            "completed": sum(s["completed"] for s in states),
            "failed": sum(s["failed"] for s in states),
            "total": sum(s["total"] for s in states),
        }

    def summary(self) -> dict[str, Any]:
        """For the manifest and `df.attrs['forgekit']['batch']`."""
        return {
            "ledger": str(self.ledger.path),
            "batches": {
                bid: {k: v for k, v in b.items() if k != "custom_ids"}
                for bid, b in self.ledger.batches.items()
            },
            "counts": dict(self.counts),
            "problems": list(self.problems),
        }


async def _with_retries(call: Callable[[], Any], config: RunConfig) -> Any:
    """An upload, create or download, retried on 429/5xx/connection errors."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except RetryableModelError:
            if attempt >= config.max_attempts:
                raise
            await asyncio.sleep(min(config.max_delay, config.base_delay * 2 ** (attempt - 1)))
