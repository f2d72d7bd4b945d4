"""The incremental store: torn tails, foreign garbage, resume, manifests, job mismatches."""

import json

import pytest

from forgekit.engine import JsonlStore, RunConfig, Task, run
from forgekit.errors import StoreError
from tests.conftest import read_jsonl


def echo_tasks(n, prefix="t"):
    async def make(ctx, i):
        return {"id": ctx.task.id, "input": f"q{i}", "output": f"a{i}"}

    return [Task(id=f"{prefix}{i}", fn=lambda ctx, i=i: make(ctx, i)) for i in range(n)]


def quiet(**kw):
    return RunConfig(progress=False, cache=False, **kw)


def test_records_written_and_manifest(tmp_path):
    out = tmp_path / "run.jsonl"
    result = run(echo_tasks(5), model="local", out=out, config=quiet(), job={"method": "echo"})
    assert result.status == "completed"
    assert [r["id"] for r in result.records] == [f"t{i}" for i in range(5)]
    assert [r["id"] for r in read_jsonl(out)] == [f"t{i}" for i in range(5)]
    manifest = json.loads((tmp_path / "run.manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert manifest["records_in_file"] == 5
    assert manifest["this_run"]["ok"] == 5
    assert manifest["job"] == {"method": "echo"}
    assert manifest["forgekit_version"]


def test_resume_skips_done_ids(tmp_path):
    out = tmp_path / "run.jsonl"
    run(echo_tasks(3), model="local", out=out, config=quiet(), job={"method": "echo"})
    calls = []

    async def make(ctx, i):
        calls.append(i)
        return {"id": ctx.task.id, "input": f"q{i}"}

    tasks = [Task(id=f"t{i}", fn=lambda ctx, i=i: make(ctx, i)) for i in range(6)]
    result = run(tasks, model="local", out=out, config=quiet(), job={"method": "echo"})
    assert calls == [3, 4, 5]
    assert result.stats.skipped == 3 and result.stats.ok == 3
    manifest = json.loads((tmp_path / "run.manifest.json").read_text())
    assert manifest["runs"] == 2 and manifest["records_in_file"] == 6
    ids = [r["id"] for r in read_jsonl(out)]
    assert ids == [f"t{i}" for i in range(6)] and len(set(ids)) == 6
    assert [r["id"] for r in result.records] == ids  # resumed records come back too


def test_torn_tail_is_repaired_and_kept_aside(tmp_path, capsys):
    out = tmp_path / "run.jsonl"
    run(echo_tasks(3), model="local", out=out, config=quiet(), job={"method": "echo"})
    with open(out, "a") as handle:
        handle.write('{"id": "t3", "input": "q3", "out')  # a write cut short by a crash
    result = run(echo_tasks(5), model="local", out=out, config=quiet(), job={"method": "echo"})
    assert "torn line" in capsys.readouterr().err
    lines = out.read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # every line valid JSON
    assert [json.loads(line)["id"] for line in lines] == [f"t{i}" for i in range(5)]
    assert result.stats.ok == 2 and result.stats.skipped == 3
    torn = (tmp_path / "run.jsonl.torn").read_text()
    assert '"id": "t3", "input": "q3", "out' in torn  # nothing lost, nothing kept silently


def test_open_hands_over_the_whole_records_only_after_the_repair(tmp_path):
    out = tmp_path / "run.jsonl"
    # The last line is complete JSON, but without its newline it is a torn write.
    out.write_text('{"id": "a", "input": "x"}\n{"id": "b", "input": "y"}\n{"id": "c"}')
    seen = []
    store = JsonlStore(out).open(on_record=seen.append)
    store.close()
    assert seen == [{"id": "a", "input": "x"}, {"id": "b", "input": "y"}]
    assert store.done == {"a", "b"} and store.repaired is not None


def test_malformed_middle_line_is_not_touched(tmp_path):
    out = tmp_path / "data.jsonl"
    original = '{"id": "a"}\nnot json at all\n{"id": "b"}\n'
    out.write_text(original)
    with pytest.raises(StoreError, match=r"data.jsonl:2: not valid JSON"):
        JsonlStore(out).open()
    assert out.read_text() == original


def test_other_job_in_same_file_is_refused_and_overwrite_moves_aside(tmp_path):
    out = tmp_path / "run.jsonl"
    run(echo_tasks(2), model="local", out=out, config=quiet(), job={"method": "echo"})
    with pytest.raises(StoreError, match="different job"):
        run(echo_tasks(2, "u"), model="local", out=out, config=quiet(), job={"method": "other"})
    result = run(
        echo_tasks(2, "u"),
        model="local",
        out=out,
        config=quiet(overwrite=True),
        job={"method": "other"},
    )
    assert [r["id"] for r in read_jsonl(out)] == ["u0", "u1"]
    backups = sorted(p.name for p in tmp_path.glob("run.jsonl.*.bak"))
    assert len(backups) == 1
    assert [r["id"] for r in read_jsonl(tmp_path / backups[0])] == ["t0", "t1"]
    assert result.status == "completed"


def test_failures_are_kept_in_errors_file(tmp_path):
    out = tmp_path / "run.jsonl"

    async def make(ctx, i):
        if i % 2:
            raise ValueError(f"cannot parse item {i}")
        return {"id": ctx.task.id, "input": str(i)}

    tasks = [
        Task(id=f"t{i}", fn=lambda ctx, i=i: make(ctx, i), info={"index": i}) for i in range(4)
    ]
    result = run(tasks, model="local", out=out, config=quiet(), job={"method": "x"})
    assert result.stats.ok == 2 and result.stats.failed == 2
    errors = read_jsonl(tmp_path / "run.errors.jsonl")
    assert [(e["id"], e["error"], e["task"]["index"]) for e in errors] == [
        ("t1", "ValueError", 1),
        ("t3", "ValueError", 3),
    ]
    assert "cannot parse item 1" in errors[0]["message"]
    # A re-run retries the failed ids only.
    calls = []

    async def fixed(ctx, i):
        calls.append(i)
        return {"id": ctx.task.id, "input": str(i)}

    tasks = [Task(id=f"t{i}", fn=lambda ctx, i=i: fixed(ctx, i)) for i in range(4)]
    run(tasks, model="local", out=out, config=quiet(), job={"method": "x"})
    assert calls == [1, 3]


def test_limit_with_filtered_tasks_and_endless_stream(tmp_path):
    async def make(ctx, i):
        return None if i % 3 == 0 else {"id": ctx.task.id, "input": str(i)}

    def endless():
        i = 0
        while True:
            yield Task(id=f"t{i}", fn=lambda ctx, i=i: make(ctx, i))
            i += 1

    result = run(
        endless,
        model="local",
        out=tmp_path / "r.jsonl",
        config=quiet(concurrency=4),
        limit=10,
        job={"m": 1},
    )
    assert result.stats.ok == 10
    assert len(read_jsonl(tmp_path / "r.jsonl")) == 10
    assert result.stats.filtered >= 4
