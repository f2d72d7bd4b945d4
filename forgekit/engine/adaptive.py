"""Adaptive concurrency: how many requests one endpoint gets at once, found while running.

A fixed `concurrency` is either too low (a fast endpoint idles) or too high (a busy one
answers 429, times out, or — vLLM, which never sends 429 — queues requests, so latency
rises while throughput does not). Each endpoint of a run gets an `AdaptiveLimit` between 1
and the configured ceiling (`RunConfig.concurrency`), which starts at the ceiling (a
healthy endpoint pays nothing) and moves at most once per round trip:

- overload (429, 503, a timeout): multiply by `backoff` (0.5) at once; overload answers to
  requests sent before that decrease are counted but do not decrease it again (a burst of
  429s from one round is one signal, as TCP treats the losses of one window);
- otherwise the limit moves once per *window* (as many answers as the limit allows in
  flight, about one round trip):
- latency rising (the window's mean above `latency_tolerance` x the best window's mean,
  two windows running): multiply by tolerance x best / mean, kept between 0.5 and 0.9 —
  a server that queues (vLLM) is brought back to about `latency_tolerance` x its best
  latency, while a batching server's latency may still grow with load it serves well;
- a clean window: add 1; after `calm_windows` clean windows in a row, grow by 25% per
  window instead, so a recovered endpoint is used again within a few round trips.

The best window's mean drifts up 2% per window it is not matched, so an endpoint that
became slower for good stops looking overloaded.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OVERLOAD_STATUS = {429, 503}


@dataclass
class LimitState:
    """What the monitor and the manifest show for one endpoint."""

    ceiling: int
    current: int
    min: int
    max: int
    decreases: int = 0
    increases: int = 0
    overloads: int = 0  # answers that signalled overload (429, 503, timeouts)
    history: list[tuple[int, int, str]] = field(default_factory=list)  # (answers, limit, why)

    def public(self) -> dict[str, Any]:
        return {
            "adaptive": True,
            "ceiling": self.ceiling,
            "current": self.current,
            "min": self.min,
            "max": self.max,
            "decreases": self.decreases,
            "increases": self.increases,
            "overloads": self.overloads,
        }


class AdaptiveLimit:
    """A concurrency limit for one endpoint that follows its overload and latency signals.

    `ticket = await acquire()` before a request, `release(ticket, latency, overload)` after
    it (latency None when the request failed without an answer worth timing).
    """

    def __init__(
        self,
        ceiling: int,
        *,
        backoff: float = 0.5,
        latency_tolerance: float = 2.0,
        calm_windows: int = 3,
        on_change: Callable[[LimitState, str], None] | None = None,
    ) -> None:
        self.ceiling = max(1, int(ceiling))
        self.limit = float(self.ceiling)
        self.backoff = backoff
        self.latency_tolerance = latency_tolerance
        self.calm_windows = calm_windows
        self.on_change = on_change
        self.in_flight = 0
        self.answers = 0
        self.sent = 0
        self._recovering_until = 0  # overloads of requests sent up to here are old news
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._window_answers = 0
        self._window_latency = 0.0
        self._window_timed = 0
        self._best_latency: float | None = None
        self._slow_windows = 0
        self._calm = 0
        self.state = LimitState(self.ceiling, self.ceiling, self.ceiling, self.ceiling)

    @property
    def current(self) -> int:
        return max(1, int(self.limit))

    async def acquire(self) -> int:
        if self.in_flight < self.current and not self._waiters:
            self.in_flight += 1
            self.sent += 1
            return self.sent
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release_slot()  # the slot was handed over just as we were cancelled
            else:
                self._waiters.remove(waiter)
            raise
        self.sent += 1
        return self.sent

    def release(self, ticket: int, latency: float | None, overload: bool = False) -> None:
        self._release_slot()
        self.answers += 1
        if overload:
            self.state.overloads += 1
            if ticket > self._recovering_until:
                self._recovering_until = self.sent
                self._reset_window()
                self._slow_windows = self._calm = 0
                self._set(self.limit * self.backoff, "overload")
            return
        self._window_answers += 1
        if latency is not None:
            self._window_latency += latency
            self._window_timed += 1
        if self._window_answers >= self.current:
            self._end_window()

    def _reset_window(self) -> None:
        self._window_answers = self._window_timed = 0
        self._window_latency = 0.0

    def _release_slot(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.current:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    # -- the control law -------------------------------------------------------------------
    def _end_window(self) -> None:
        mean = self._window_latency / self._window_timed if self._window_timed else None
        self._reset_window()
        slow = False
        best = self._best_latency
        if mean is not None:
            if best is None or mean < best:
                self._best_latency = mean
            else:
                self._best_latency = best * 1.02  # drift up: a slower endpoint for good
                slow = mean > self.latency_tolerance * best
        self._slow_windows = self._slow_windows + 1 if slow else 0
        if self._slow_windows >= 2 and mean is not None and best is not None:
            self._slow_windows = 0
            # In proportion to how far latency is over the tolerance (a gradient, as in
            # Netflix's concurrency-limits), between -10% and -50% per step.
            gradient = self.latency_tolerance * best / mean
            self._set(self.limit * min(0.9, max(0.5, gradient)), "latency")
        elif self.limit < self.ceiling:
            self._calm += 1
            step = self.limit * 0.25 if self._calm > self.calm_windows else 1.0
            self._set(self.limit + max(1.0, step), "calm")

    def _set(self, limit: float, why: str) -> None:
        before = self.current
        self.limit = min(float(self.ceiling), max(1.0, limit))
        if why != "calm":
            self._calm = 0
        after = self.current
        if after == before:
            return
        state = self.state
        state.current = after
        state.min = min(state.min, after)
        state.max = max(state.max, after)
        if after < before:
            state.decreases += 1
        else:
            state.increases += 1
        state.history.append((self.answers, after, why))
        self._wake()
        if self.on_change is not None:
            self.on_change(state, why)


class ConcurrencyControl:
    """The limits of one run, one per endpoint; `None` slots when adaptation is off."""

    def __init__(
        self, enabled: bool, ceiling: int, emit: Callable[[str, dict[str, Any]], None]
    ) -> None:
        self.enabled = enabled and ceiling > 1
        self.ceiling = ceiling
        self.emit = emit
        self.limits: dict[str, AdaptiveLimit] = {}

    def for_endpoint(self, endpoint: str) -> AdaptiveLimit | None:
        if not self.enabled:
            return None
        limit = self.limits.get(endpoint)
        if limit is None:

            def changed(state: LimitState, why: str, endpoint: str = endpoint) -> None:
                self.emit("concurrency", {"endpoint": endpoint, "why": why, **state.public()})

            limit = AdaptiveLimit(self.ceiling, on_change=changed)
            self.limits[endpoint] = limit
            changed(limit.state, "start")  # the monitor shows the limit from the first request
        return limit

    def public(self) -> dict[str, Any]:
        """For the manifest: per endpoint, the ceiling and where the limit went."""
        if not self.enabled:
            return {"adaptive": False, "ceiling": self.ceiling}
        return {
            "adaptive": True,
            "ceiling": self.ceiling,
            "endpoints": {name: limit.state.public() for name, limit in self.limits.items()},
        }


def is_overload(error: BaseException) -> bool:
    """429, 503 and timeouts say the endpoint has more than it can take."""
    from forgekit.errors import ModelTimeoutError

    return isinstance(error, ModelTimeoutError) or getattr(error, "status", None) in (
        OVERLOAD_STATUS
    )
