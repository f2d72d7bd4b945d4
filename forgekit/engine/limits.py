"""Pacing and stopping: rate limits (RPM/TPM), budgets, and the retry policy."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from forgekit.errors import BudgetExceededError


class TokenBucket:
    """A bucket refilled at `per_minute / 60` units per second, holding up to `capacity`.

    A request may take more than the bucket holds (a long prompt under a small TPM): it goes
    when the bucket is full and leaves it in debt, so big requests are slowed, never stuck.
    """

    def __init__(self, per_minute: float, burst_seconds: float = 1.0) -> None:
        if per_minute <= 0:
            raise ValueError(f"a rate limit must be > 0 per minute, got {per_minute}")
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_seconds)
        self.level = self.capacity
        self.updated = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_time(self, amount: float) -> float:
        self._refill()
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= amount

    def give_back(self, amount: float) -> None:
        """Correct an estimate after the real usage is known (may be negative)."""
        self.level = min(self.capacity, self.level + amount)


class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits, plus a shared pause after a 429."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None) -> None:
        self.requests = TokenBucket(rpm) if rpm else None
        self.tokens = TokenBucket(tpm) if tpm else None
        self.paused_until = 0.0
        self._lock = asyncio.Lock()

    @property
    def active(self) -> bool:
        return bool(self.requests or self.tokens or self.paused_until)

    async def acquire(self, estimated_tokens: int) -> None:
        if not self.active:
            return
        # One waiter at a time keeps the order fair and the buckets consistent.
        async with self._lock:
            while True:
                delay = max(0.0, self.paused_until - time.monotonic())
                if self.requests:
                    delay = max(delay, self.requests.wait_time(1))
                if self.tokens:
                    delay = max(delay, self.tokens.wait_time(estimated_tokens))
                if delay <= 0:
                    break
                await asyncio.sleep(delay)
            if self.requests:
                self.requests.take(1)
            if self.tokens:
                self.tokens.take(estimated_tokens)

    def settle(self, estimated_tokens: int, actual_tokens: int) -> None:
        if self.tokens:
            self.tokens.give_back(estimated_tokens - actual_tokens)

    def pause(self, seconds: float) -> None:
        """The server said to slow down: hold every new request for `seconds`."""
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)


@dataclass
class Budget:
    """Caps on a run. Requests are reserved before sending, so `max_requests` is exact;
    tokens and cost are checked before each request against what has been spent, so
    requests already in flight can overshoot them by at most one request each."""

    max_requests: int | None = None
    max_total_tokens: int | None = None
    max_cost: float | None = None
    requests: int = 0
    tokens: int = 0
    cost: float = 0.0

    def reserve_request(self) -> None:
        if self.max_requests is not None and self.requests >= self.max_requests:
            raise BudgetExceededError(f"budget reached: max_requests={self.max_requests}")
        if self.max_total_tokens is not None and self.tokens >= self.max_total_tokens:
            raise BudgetExceededError(
                f"budget reached: max_total_tokens={self.max_total_tokens} (used {self.tokens})"
            )
        if self.max_cost is not None and self.cost >= self.max_cost:
            raise BudgetExceededError(
                f"budget reached: max_cost=${self.max_cost:g} (spent ${self.cost:.4f})"
            )
        self.requests += 1

    def release_request(self) -> None:
        """A reserved request was never answered (it will be retried)."""
        self.requests -= 1

    def spend(self, tokens: int, cost: float) -> None:
        self.tokens += tokens
        self.cost += cost


@dataclass
class RetryPolicy:
    """Exponential backoff with jitter; a server's Retry-After wins when it gives one."""

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt number `attempt + 1` (attempt counts from 1)."""
        if retry_after is not None:
            # Honour the server, plus a little jitter so waiting clients do not return at once.
            return min(retry_after, self.max_delay * 5) + random.uniform(0, 0.1)
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)
