"""A run killed with SIGKILL at several points of progress, then resumed, ends with exactly the
records of an uninterrupted run: same ids, no duplicates, every line valid JSON."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

JOB = """
import sys
from forgekit.engine import RunConfig, Task, run

async def make(ctx, i):
    c = await ctx.chat([{"role": "user", "content": f"item {i}"}], max_tokens=8)
    return {"id": ctx.task.id, "input": f"item {i}", "output": c.text, "metadata": {"i": i}}

tasks = [Task(id=f"r{i:04d}", fn=lambda ctx, i=i: make(ctx, i)) for i in range(300)]
result = run(tasks, model="stub", out=sys.argv[1], job={"method": "crash-test"},
             config=RunConfig(concurrency=16, progress=False, checkpoint_every=25))
print(result.summary())
"""


def start(out: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", JOB, str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def records(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]  # raises if any line is not valid JSON


def complete_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def kill_when_file_holds(proc: subprocess.Popen, path: Path, lines: int) -> int:
    """SIGKILL `proc` as soon as `path` holds `lines` complete lines; returns the count seen.
    Tied to progress, not to the clock: the stub holds requests beyond the target's reach,
    so the job cannot finish first, however fast or slow the machine."""
    deadline = time.monotonic() + 600  # a hang guard only; a healthy run gets there long before
    while (seen := complete_lines(path)) < lines:
        assert proc.poll() is None, f"the job exited at {seen} lines: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"no progress past {seen} of {lines} lines"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return seen


# Kill points, as lines in the output file: right after the first record, then deeper into
# the run, each in a new process that resumes what the killed ones left.
KILL_AT = (1, 45, 120, 210)


def test_sigkill_at_points_of_progress_then_resume(stub, stub_model, tmp_path):
    env = {**os.environ}
    crashed = tmp_path / "crashed.jsonl"
    killed_at = []
    for target in KILL_AT:
        before = complete_lines(crashed)
        # Answer enough requests to pass the target (and keep writing while the kill lands),
        # never enough to finish the 300.
        stub.configure(latency_ms=2, hold_after=target - before + 24)
        proc = start(crashed, env)
        killed_at.append(kill_when_file_holds(proc, crashed, target))
        assert proc.returncode == -signal.SIGKILL
        ids = [r["id"] for r in records(crashed)]
        assert len(ids) == len(set(ids)), "a duplicate id after a crash"
        assert len(ids) >= target
    assert len(killed_at) == len(KILL_AT) and killed_at == sorted(killed_at)
    assert killed_at[-1] < 300, "the last kill came after the job had finished"
    print("killed at", killed_at, "lines")  # shown with -s: where the kills landed
    stub.configure()  # no hold: the resumed run finishes
    proc = start(crashed, env)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "completed" in stdout

    # The same job, never interrupted, with its own cache.
    clean = tmp_path / "clean.jsonl"
    env_clean = {**env, "FORGEKIT_CACHE_DIR": str(tmp_path / "clean-cache")}
    proc = start(clean, env_clean)
    proc.communicate(timeout=120)
    assert proc.returncode == 0

    got, want = records(crashed), records(clean)
    assert len(got) == len(want) == 300
    assert sorted(r["id"] for r in got) == sorted(r["id"] for r in want)

    def content(rs):
        return sorted((r["id"], r["input"], r["output"], r["metadata"]["i"]) for r in rs)

    assert content(got) == content(want)
    manifest = json.loads((tmp_path / "crashed.manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["records_in_file"] == 300
    # Every killed run had written records, so each opened the store and counted itself.
    assert manifest["runs"] == len(KILL_AT) + 1
