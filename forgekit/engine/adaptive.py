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
became slower for good stops looking overloaded. Latency is counted without the time
answers wait for our own event loop (`LoopLag`): a CPU-bound client is not an overloaded
server.
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
        loop_lag: Callable[[], float] | None = None,
    ) -> None:
        self.ceiling = max(1, int(ceiling))
        self.limit = float(self.ceiling)
        self.backoff = backoff
        self.latency_tolerance = latency_tolerance
        self.calm_windows = calm_windows
        self.on_change = on_change
        # Latency measured in a busy client includes the time answers wait for the event
        # loop; that part is ours, not the server's, and is taken out (see LoopLag).
        self.loop_lag = loop_lag
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
        server = mean  # the part of the latency the server is responsible for
        if mean is not None:
            if self.loop_lag is not None:
                # An answer waits for the loop several times (connection, read, resume):
                # count 4 loop lags as ours. The best latency stays the raw one.
                server = max(mean - 4 * self.loop_lag(), 0.0)
            if best is None or mean < best:
                self._best_latency = mean
            else:
                self._best_latency = best * 1.02  # drift up: a slower endpoint for good
                slow = server > self.latency_tolerance * best
        self._slow_windows = self._slow_windows + 1 if slow else 0
        if self._slow_windows >= 2 and server and best is not None:
            self._slow_windows = 0
            # In proportion to how far latency is over the tolerance (a gradient, as in
            # Netflix's concurrency-limits), between -10% and -50% per step.
            gradient = self.latency_tolerance * best / server
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


class LoopLag:
    """How late the event loop runs what is ready (a moving average, in seconds).

    A client whose CPU is saturated (many requests, a busy machine) sees every answer late;
    without this, rising client-side lag would look like a server queueing and lower the
    limit for nothing. A probe sleeps `interval` and measures how late it wakes.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.value = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._probe())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def __call__(self) -> float:
        return self.value

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(self.interval)
            late = max(0.0, loop.time() - asked - self.interval)
            self.value = 0.8 * self.value + 0.2 * late


class ConcurrencyControl:
    """The limits of one run, one per endpoint; `None` slots when adaptation is off."""

    def __init__(
        self, enabled: bool, ceiling: int, emit: Callable[[str, dict[str, Any]], None]
    ) -> None:
        self.enabled = enabled and ceiling > 1
        self.ceiling = ceiling
        self.emit = emit
        self.limits: dict[str, AdaptiveLimit] = {}
        self.lag = LoopLag()

    def start(self) -> None:
        """Start measuring the loop's lag (call from the run's event loop)."""
        if self.enabled:
            self.lag.start()

    def stop(self) -> None:
        self.lag.stop()

    def for_endpoint(self, endpoint: str) -> AdaptiveLimit | None:
        if not self.enabled:
            return None
        limit = self.limits.get(endpoint)
        if limit is None:

            def changed(state: LimitState, why: str, endpoint: str = endpoint) -> None:
                self.emit("concurrency", {"endpoint": endpoint, "why": why, **state.public()})

            limit = AdaptiveLimit(self.ceiling, on_change=changed, loop_lag=self.lag)
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
