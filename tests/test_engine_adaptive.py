"""Adaptive concurrency: the control law on its own (no timing), and runs against a stub
whose capacity changes after a number of answers (429 beyond it, or queueing like vLLM)."""

import asyncio
import json

import pytest

from forgekit.engine import RunConfig, Task, run
from forgekit.engine.adaptive import AdaptiveLimit, is_overload
from forgekit.errors import ClientRequestError, ModelTimeoutError, RetryableModelError
from tests.conftest import read_jsonl, write_profile


def _drive(limit: AdaptiveLimit, n: int, latency: float | None, overload: bool = False):
    """Send `n` requests through `limit` (each released at once) from one event loop."""

    async def go():
        for _ in range(n):
            ticket = await limit.acquire()
            limit.release(ticket, latency, overload)

    asyncio.run(go())


def test_a_burst_of_429s_from_one_round_lowers_the_limit_once():
    limit = AdaptiveLimit(8)

    async def burst():
        tickets = [await limit.acquire() for _ in range(8)]  # 8 in flight
        for ticket in tickets:
            limit.release(ticket, None, overload=True)
        assert limit.current == 4 and limit.state.decreases == 1
        assert limit.state.overloads == 8
        # A request sent after the decrease that is refused again: a new signal.
        ticket = await limit.acquire()
        limit.release(ticket, None, overload=True)
        assert limit.current == 2 and limit.state.decreases == 2

    asyncio.run(burst())


def test_clean_windows_raise_the_limit_back_to_the_ceiling_never_beyond():
    limit = AdaptiveLimit(32)
    limit._set(2, "overload")  # as after a run of 429s
    _drive(limit, 2000, latency=0.1)
    assert limit.current == 32
    increases = [h for h in limit.state.history if h[2] == "calm"]
    # +1 per window at first, then faster: back at the ceiling in well under 2000 answers.
    assert increases and increases[-1][0] < 400
    assert limit.state.max == 32


def test_rising_latency_lowers_the_limit_in_proportion_without_any_429():
    limit = AdaptiveLimit(20)
    _drive(limit, 100, latency=0.1)  # five windows at the best latency
    assert limit.current == 20
    _drive(limit, 40, latency=1.0)  # ten times slower: two slow windows
    assert limit.current == 10  # the largest step, -50%
    assert limit.state.history[-1][2] == "latency"
    # Slightly slower than the tolerance allows: a gentle -10% step.
    gentle = AdaptiveLimit(20)
    _drive(gentle, 100, latency=0.1)
    _drive(gentle, 40, latency=0.21)
    assert gentle.current == 18


def test_latency_added_by_a_busy_client_loop_is_not_blamed_on_the_server():
    lag = [0.0]
    limit = AdaptiveLimit(20, loop_lag=lambda: lag[0])
    _drive(limit, 100, latency=0.1)
    lag[0] = 0.25  # our own event loop runs late: 4 waits of 0.25 s explain the rise
    _drive(limit, 60, latency=1.0)
    assert limit.current == 20 and limit.state.decreases == 0
    lag[0] = 0.0  # the same rise with a responsive loop: the server is slow
    _drive(limit, 60, latency=1.0)
    assert limit.state.decreases >= 1 and limit.state.min < 20
    assert {why for _, _, why in limit.state.history} >= {"latency"}


def test_the_limit_never_goes_below_one_and_waiters_resume():
    limit = AdaptiveLimit(4)
    _drive(limit, 10, latency=None, overload=True)
    assert limit.current == 1 and limit.state.min == 1

    async def queue():
        first = await limit.acquire()
        second = asyncio.ensure_future(limit.acquire())
        await asyncio.sleep(0)
        assert not second.done()  # the one place is taken
        limit.release(first, 0.1)
        assert await asyncio.wait_for(second, 1) == first + 1

    asyncio.run(queue())


def test_overload_signals():
    assert is_overload(RetryableModelError("x", status=429))
    assert is_overload(RetryableModelError("x", status=503))
    assert is_overload(ModelTimeoutError("timed out"))
    assert not is_overload(RetryableModelError("x", status=500))
    assert not is_overload(ClientRequestError("x", status=400))


def _tasks(n):
    async def make(ctx, i):
        c = await ctx.chat([{"role": "user", "content": f"q{i}"}], max_tokens=8)
        return {"id": ctx.task.id, "input": f"q{i}", "output": c.text}

    return [Task(id=f"q{i}", fn=lambda ctx, i=i: make(ctx, i)) for i in range(n)]


def _run_with_events(n, tmp_path, **config):
    events = []

    def on_event(event, data):
        if event == "concurrency":
            events.append((data["stats"].ok, data["current"], data["why"]))

    out = tmp_path / "a.jsonl"
    result = run(
        _tasks(n),
        model="stub",
        out=out,
        job={"adaptive": 1},
        config=RunConfig(progress=False, cache=False, on_event=[on_event], **config),
    )
    return result, events, out


def test_capacity_drop_and_rise_with_429s(stub, tmp_path, monkeypatch):
    write_profile(tmp_path, monkeypatch, stub.url, timeout=10.0)
    # 16 at once until 150 answers, then 3 until 450, then 16 again; 429 beyond.
    stub.configure(latency_ms=10, capacity=[[0, 16], [150, 3], [450, 16]], retry_after=0.02)
    result, events, out = _run_with_events(
        700, tmp_path, concurrency=16, base_delay=0.01, max_delay=0.05
    )
    stats = stub.stats()
    assert result.stats.failed == 0 and result.stats.ok == 700
    records = read_jsonl(out)
    assert sorted(r["id"] for r in records) == sorted(f"q{i}" for i in range(700))
    assert all(r["output"] == f"echo: {r['input']}" for r in records)
    assert stats["over_capacity"] > 0  # the drop was felt
    # No 429 is possible while the capacity equals the ceiling: every decrease came after
    # the drop (the engine's count of records lags the stub's answers by what is in flight).
    decreases = [e for e in events if e[2] == "overload"]
    assert decreases and decreases[0][0] >= 150 - 16
    lowest_in_drop = min(current for ok, current, _ in events if ok < 450)
    assert lowest_in_drop <= 4
    # After the capacity rose, the limit rose above anything it was at during the drop.
    after_rise = [current for ok, current, why in events if ok >= 450 and why == "calm"]
    assert after_rise and max(after_rise) > 6
    manifest = json.loads((tmp_path / "a.manifest.json").read_text())
    limits = manifest["concurrency"]
    assert limits["adaptive"] is True and limits["ceiling"] == 16
    (endpoint,) = limits["endpoints"].values()
    assert endpoint["min"] == min(e[1] for e in events) and endpoint["max"] == 16
    assert events[0] == (0, 16, "start")  # shown from the first request on
    assert endpoint["decreases"] == len([e for e in events if e[2] in ("overload", "latency")])
    assert endpoint["overloads"] == stats["over_capacity"]
    assert manifest["run_config"]["adaptive"] is True


def test_a_server_that_queues_instead_of_429_is_seen_through_latency(stub, tmp_path, monkeypatch):
    write_profile(tmp_path, monkeypatch, stub.url, timeout=10.0)
    # Like vLLM: never a 429; beyond 2 at once, requests wait (latency x8 at 16 in flight).
    stub.configure(latency_ms=20, capacity=[[0, 16], [80, 2]], overload="queue")
    result, events, _ = _run_with_events(300, tmp_path, concurrency=16)
    assert result.stats.failed == 0 and result.stats.retried == 0
    assert stub.stats()["queued"] > 0
    lowered = [e for e in events if e[2] == "latency"]
    assert lowered and min(e[1] for e in lowered) < 16


def test_fixed_concurrency_when_adaptive_is_off(stub, tmp_path, monkeypatch):
    write_profile(tmp_path, monkeypatch, stub.url, timeout=10.0)
    stub.configure(latency_ms=5, capacity=[[0, 2]], retry_after=0.01)
    result, events, _ = _run_with_events(
        40, tmp_path, concurrency=4, adaptive=False, max_attempts=20, base_delay=0.01
    )
    assert events == [] and result.stats.ok == 40
    manifest = json.loads((tmp_path / "a.manifest.json").read_text())
    assert manifest["concurrency"] == {"adaptive": False, "ceiling": 4}


@pytest.mark.parametrize("argv, expected", [([], True), (["--no-adaptive"], False)])
def test_adaptive_is_one_option_for_every_method(argv, expected):
    from forgekit.cli import build_parser
    from forgekit.cli.options import run_config_from_args
    from forgekit.methods.runner import RUN_OPTIONS

    assert "adaptive" in RUN_OPTIONS  # forgekit.methods.<any>(..., adaptive=False)
    for command in ("generate", "magpie", "evol"):
        args = build_parser().parse_args([command, *argv, *_required(command)])
        assert run_config_from_args(args).adaptive is expected


def _required(command):
    return {"generate": ["--user", "x"], "evol": ["-i", "x.jsonl"]}.get(command, [])


def test_run_monitor_shows_the_tightest_endpoint():
    from forgekit.jupyter.widgets.run_monitor import RunMonitor

    monitor = RunMonitor()
    monitor.handle_event("start", {"total": 10})
    for endpoint, current, decreases in (("a", 12, 1), ("b", 3, 2), ("a", 14, 1)):
        monitor.handle_event(
            "concurrency",
            {"endpoint": endpoint, "current": current, "ceiling": 16, "decreases": decreases},
        )
    monitor.flush(force=True)
    assert (monitor.concurrency, monitor.concurrency_ceiling) == (3, 16)
    assert monitor.concurrency_decreases == 3
