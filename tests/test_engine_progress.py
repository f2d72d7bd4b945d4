"""Where a run's progress goes: the engine reports to the factory it is given; the choice
between a widget bar and text is made by the sync bridge, not the engine."""

from __future__ import annotations

import asyncio

import pytest
import tqdm.auto
import tqdm.std

from forgekit.engine import RunConfig, Task, arun, environment_progress, run, use_progress
from forgekit.engine.core import run_engine
from forgekit.engine.progress import default_progress_factory, text_progress


class Recorder:
    """A progress factory that keeps what each run reported."""

    def __init__(self) -> None:
        self.runs: list[dict] = []

    def __call__(self, total, description):
        report = {"total": total, "description": description, "done": 0, "closed": 0}
        self.runs.append(report)

        class Reporter:
            def update(self, n=1):
                report["done"] += n

            def set_postfix(self, refresh=True, **counters):
                report["last"] = counters

            def close(self):
                report["closed"] += 1

        return Reporter()


def tasks(n, prefix="t"):
    async def make(ctx):
        return {"id": ctx.task.id, "input": ctx.task.id}

    return [Task(id=f"{prefix}{i}", fn=make) for i in range(n)]


def test_the_engine_reports_to_the_factory_in_its_config(tmp_path):
    recorder = Recorder()
    out = tmp_path / "p.jsonl"
    config = RunConfig(cache=False, progress_factory=recorder, description="demo")
    run(tasks(3), model="local", out=out, config=config)
    # A second run over the same file: resumed records count as progress too.
    run(tasks(5), model="local", out=out, config=config)
    first, second = recorder.runs
    assert first == {
        "total": 3,
        "description": "demo",
        "done": 3,
        "closed": 1,
        "last": {"ok": 3, "failed": 0, "cached": 0, "retried": 0},
    }
    assert second["total"] == 5 and second["done"] == 5 and second["closed"] == 1
    assert second["last"]["ok"] == 2


def test_no_progress_asks_no_factory():
    recorder = Recorder()
    run(
        tasks(2),
        model="local",
        config=RunConfig(cache=False, progress=False, progress_factory=recorder),
    )
    with use_progress(recorder):
        run(tasks(2), model="local", config=RunConfig(cache=False, progress=False))
    assert recorder.runs == []


def test_a_caller_choice_reaches_runs_with_and_without_a_running_loop():
    recorder = Recorder()
    with use_progress(recorder):
        run(tasks(2, "a"), model="local", config=RunConfig(cache=False))

        async def in_a_cell():  # a loop is running: the run goes to a worker thread
            return run(tasks(4, "b"), model="local", config=RunConfig(cache=False))

        asyncio.run(in_a_cell())
    assert [(r["total"], r["done"]) for r in recorder.runs] == [(2, 2), (4, 4)]
    assert default_progress_factory() is text_progress  # the choice ended with the block


def test_the_bridge_chooses_the_display_and_the_engine_alone_shows_text(monkeypatch):
    bridge, engine_default = Recorder(), Recorder()
    monkeypatch.setattr("forgekit.engine.bridge.environment_progress", bridge)
    monkeypatch.setattr("forgekit.engine.progress.text_progress", engine_default)
    run(tasks(2), model="local", config=RunConfig(cache=False))
    asyncio.run(arun(tasks(3), model="local", config=RunConfig(cache=False)))
    asyncio.run(run_engine(tasks(4), model="local", config=RunConfig(cache=False)))
    assert [r["total"] for r in bridge.runs] == [2, 3]
    assert [r["total"] for r in engine_default.runs] == [4]


@pytest.mark.parametrize(("value", "text"), [("1", True), ("yes", True), ("0", False), ("", False)])
def test_forgekit_no_widgets_chooses_text(monkeypatch, value, text):
    monkeypatch.setenv("FORGEKIT_NO_WIDGETS", value)
    bar = environment_progress(7, "x")
    try:
        assert bar.total == 7 and bar.desc == "x"
        # tqdm.auto's class draws a widget in a Jupyter kernel; the plain class never does.
        assert (type(bar) is tqdm.std.tqdm) == text
        assert isinstance(bar, tqdm.auto.tqdm) != text
    finally:
        bar.close()
