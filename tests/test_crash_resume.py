"""A run killed with SIGKILL at random points, then resumed, ends with exactly the records
of an uninterrupted run: same ids, no duplicates, every line valid JSON."""

import json
import os
import random
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
    return subprocess.Popen([sys.executable, "-c", JOB, str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def records(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]  # raises if any line is not valid JSON


def test_sigkill_at_random_points_then_resume(stub, stub_model, tmp_path):
    stub.configure(latency_ms=20)
    rng = random.Random(1234)
    env = {**os.environ}
    crashed = tmp_path / "crashed.jsonl"
    kills = 0
    for _ in range(4):
        proc = start(crashed, env)
        time.sleep(rng.uniform(0.8, 2.0))  # interpreter start + part of the run
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        if crashed.exists():
            ids = [r["id"] for r in records(crashed)]
            assert len(ids) == len(set(ids)), "a duplicate id after a crash"
    assert kills >= 2, "the job finished before it could be killed; slow the stub down"
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
    # Each run that got as far as opening the store counted itself (a kill during start-up
    # may come before that).
    assert 2 <= manifest["runs"] <= 5
