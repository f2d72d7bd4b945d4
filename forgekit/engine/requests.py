"""Every model request of a run, and what a task sees of the engine.

A task calls `ctx.chat` / `ctx.complete` (`RunContext`); the request goes through the run's
`RequestGate`, which adds, in this order: the stop check, the response cache, the budget,
the rate limiter, the request itself, and retries with backoff; then it books the tokens
and cost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from forgekit.engine.adaptive import ConcurrencyControl, is_overload
from forgekit.engine.cache import ResponseCache, request_key
from forgekit.engine.limits import Budget, RateLimiter, RetryPolicy
from forgekit.engine.types import RunConfig, RunStats, Task
from forgekit.errors import RetryableModelError
from forgekit.models import Message, Model, SamplingParams
from forgekit.models.base import Completion

if TYPE_CHECKING:
    from forgekit.engine.core import Engine


class StopRun(Exception):
    """Raised inside a task when the run is stopping; the task is not recorded as failed."""


class RunContext:
    """What a task sees: model calls that go through the engine, and its own id."""

    def __init__(self, engine: Engine, task: Task) -> None:
        self.engine = engine
        self.task = task

    @property
    def model(self) -> Model:
        return self.engine.model

    def get_model(self, model: str | Model | None = None) -> Model:
        return self.engine.resolve_model(model)

    async def chat(
        self,
        messages: list[Message],
        *,
        model: str | Model | None = None,
        params: SamplingParams | dict[str, Any] | None = None,
        cache: bool | str = True,
        **sampling: Any,
    ) -> Completion:
        """A chat completion. `cache`: True (read and write the response cache), False
        (neither), or "refresh" (ask the model again and replace the cached answer)."""
        params = SamplingParams.coerce(params, **sampling)
        return await self.engine.request("chat", self.get_model(model), messages, params, cache)

    async def complete(
        self,
        prompt: str,
        *,
        model: str | Model | None = None,
        params: SamplingParams | dict[str, Any] | None = None,
        cache: bool | str = True,
        **sampling: Any,
    ) -> Completion:
        """A raw text completion; `cache` as for `chat`."""
        params = SamplingParams.coerce(params, **sampling)
        return await self.engine.request("complete", self.get_model(model), prompt, params, cache)


class RequestGate:
    """Cache, budget, rate limits and retries around each request of one run.

    `stopping` is asked before every attempt; `emit` receives the retry events.
    """

    def __init__(
        self,
        config: RunConfig,
        stats: RunStats,
        *,
        stopping: Callable[[], bool],
        emit: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self.config = config
        self.stats = stats
        self.stopping = stopping
        self.emit = emit
        self.budget = Budget(config.max_requests, config.max_total_tokens, config.max_cost)
        self.limiter = RateLimiter(config.rpm, config.tpm)
        self.retry = RetryPolicy(config.max_attempts, config.base_delay, config.max_delay)
        self.cache: ResponseCache | None = None
        self.concurrency = ConcurrencyControl(False, 1, emit)

    def open(self, ceiling: int = 1) -> None:
        """`ceiling`: the run's concurrency, the most any endpoint gets at once."""
        self.concurrency = ConcurrencyControl(self.config.adaptive, ceiling, self.emit)
        self.concurrency.start()
        if self.config.cache:
            self.cache = ResponseCache(self.config.cache_path)

    def close(self) -> None:
        self.concurrency.stop()
        if self.cache is not None:
            self.cache.close()

    async def request(
        self,
        kind: str,
        model: Model,
        payload: Any,
        params: SamplingParams,
        use_cache: bool | str = True,
    ) -> Completion:
        key = None
        if self.cache is not None and use_cache:
            key = request_key(model.identity, kind, payload, params)
            # "refresh": ask again and overwrite the entry (a method rejected the cached
            # answer, e.g. an empty or cut-off one, and wants a new one).
            hit = self.cache.get(key) if use_cache != "refresh" else None
            if hit is not None:
                self.stats.cached += 1
                return hit
        estimate = _estimate_prompt_tokens(payload) + (params.max_tokens or 256) * params.n
        attempt = free_retries = 0
        while True:
            attempt += 1
            if self.stopping():
                raise StopRun()
            self.budget.reserve_request()
            await self.limiter.acquire(estimate)
            self.stats.requests += 1
            slot = self.concurrency.for_endpoint(_endpoint(model))
            ticket = await slot.acquire() if slot is not None else 0
            sent = time.monotonic()
            limit_when_sent = getattr(slot, "current", None)
            try:
                if kind == "chat":
                    completion = await model.chat(payload, params)
                else:
                    completion = await model.complete(payload, params)
            except RetryableModelError as exc:
                if slot is not None:
                    slot.release(ticket, None, overload=is_overload(exc))
                self.limiter.settle(estimate, 0)
                if (
                    is_overload(exc)
                    and limit_when_sent is not None
                    and slot.current < limit_when_sent
                    and free_retries < FREE_OVERLOAD_RETRIES
                ):
                    # Sent while adaptive concurrency was still above the server's capacity,
                    # which this answer has just lowered: the request was not at fault, so
                    # the retry does not use up one of its attempts (bounded, never endless).
                    free_retries += 1
                    attempt -= 1
                if attempt >= self.retry.max_attempts:
                    raise RetryableModelError(
                        f"{exc} (gave up after {attempt} attempts)", status=exc.status
                    ) from None
                if exc.status == 429 and exc.retry_after:
                    self.limiter.pause(exc.retry_after)
                delay = self.retry.delay(attempt, exc.retry_after)
                self.stats.retried += 1
                self.emit("retry", {"error": str(exc), "attempt": attempt, "delay": delay})
                await asyncio.sleep(delay)
                continue
            except BaseException:
                if slot is not None:
                    slot.release(ticket, None)
                raise
            if slot is not None:
                slot.release(ticket, time.monotonic() - sent)
            break
        self._account(model, completion, estimate)
        if key is not None:
            self.cache.put(key, completion)
        return completion

    def _account(self, model: Model, completion: Completion, estimate: int) -> None:
        usage = completion.usage
        price_in, price_out = model.unit_prices()
        cost = usage.prompt_tokens * price_in + usage.completion_tokens * price_out
        self.stats.prompt_tokens += usage.prompt_tokens
        self.stats.completion_tokens += usage.completion_tokens
        self.stats.cost += cost
        self.budget.spend(usage.total_tokens, cost)
        self.limiter.settle(estimate, usage.total_tokens)


# Overload retries that do not count as attempts while adaptive concurrency is coming down.
FREE_OVERLOAD_RETRIES = 10


def _endpoint(model: Model) -> str:
    """What shares one server's capacity: its URL (models of one server share it)."""
    return getattr(model, "endpoint", None) or model.identity


def _estimate_prompt_tokens(payload: Any) -> int:
    if isinstance(payload, str):
        return len(payload) // 4 + 1
    return sum(len(m.get("content") or "") for m in payload) // 4 + 4 * len(payload)
