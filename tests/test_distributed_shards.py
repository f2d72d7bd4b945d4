"""Sharded method runs on a real local Ray cluster: the same records as a local run, parts
that resume per shard after a worker is killed, progress aggregated from every shard."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from forgekit.methods import generate
from tests.conftest import read_jsonl

QUIET = {"progress": False}


def comparable(record: dict) -> dict:
    """A record without the moment it was made."""
    lineage = {k: v for k, v in record["lineage"].items() if k != "created_at"}
    return {**record, "lineage": lineage}


def test_sharded_generate_equals_local_record_for_record(ray_cluster, stub, stub_model, tmp_path):
    data = [{"n": i} for i in range(2000)]
    local = generate(data, user="Number {{ n }}", model=stub_model, cache=False, **QUIET)
    sent_locally = stub.stats()["ok"]
    events = []
    out = tmp_path / "sharded.jsonl"
    sharded = generate(
        data,
        user="Number {{ n }}",
        model=stub_model,
        cache=False,
        engine="ray",
        shards=2,
        out=out,
        on_event=[lambda event, payload: events.append((event, payload["stats"].ok))],
        **QUIET,
    )
    assert stub.stats()["ok"] == sent_locally + 2000  # the shards really asked the stub
    local_records = [comparable(r) for r in local.to_dict("records")]
    assert [comparable(r) for r in sharded.to_dict("records")] == local_records
    assert [comparable(r) for r in read_jsonl(out)] == local_records
    info = sharded.attrs["forgekit"]
    assert info["status"] == "completed" and info["stats"]["ok"] == 2000
    assert [s["slice"] for s in info["shards"]] == [[0, 1000], [1000, 2000]]
    assert events[0][0] == "start" and events[-1] == ("end", 2000)


def wait_until(condition, what: str, limit_s: float = 180.0) -> None:
    """Wait for a point of progress (the limit only keeps a broken run from hanging CI)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def complete_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_killed_shard_worker_loses_nothing_and_a_rerun_resumes_it(
    ray_cluster, stub, stub_model, tmp_path
):
    import ray

    from forgekit.distributed.shard_board import board_name

    data = [{"n": i} for i in range(400)]
    call = {"user": "Number {{ n }}", "model": stub_model, "cache": False, **QUIET}
    expected = [comparable(r) for r in generate(data, **call).to_dict("records")]
    # Shard 2 of 2 holds items 200-399: the stub answers 200-249, then holds the rest.
    stub.configure(hold_match=r"Number (2[5-9]\d|3\d\d)\b")
    out = tmp_path / "killed.jsonl"
    parts = [tmp_path / "killed.jsonl.parts" / f"shard-0000{k}.jsonl" for k in (0, 1)]
    box: dict = {}

    def first_run() -> None:
        try:
            box["df"] = generate(data, engine="ray", shards=2, out=out, **call)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=first_run)
    thread.start()
    wait_until(lambda: complete_lines(parts[1]) == 50, "shard 2 to write its 50 answers")
    board = ray.get_actor(board_name(str(out.resolve())))
    os.kill(ray.get(board.worker_pids.remote())[1], signal.SIGKILL)
    thread.join(timeout=180)
    assert not thread.is_alive() and "error" not in box, box.get("error")
    first = box["df"].attrs["forgekit"]
    assert first["status"] == "failed" and "shard 2/2" in first["stop_reason"]
    assert [s["status"] for s in first["shards"]] == ["completed", "failed"]
    assert len(box["df"]) == 250  # shard 1's 200 and what shard 2 finished: nothing lost
    assert complete_lines(parts[0]) == 200 and complete_lines(parts[1]) == 50

    stub.configure()  # release the held requests; counters start again at 0
    again = generate(data, engine="ray", shards=2, out=out, **call)
    assert stub.stats()["ok"] == 150  # only shard 2's unfinished items were asked again
    info = again.attrs["forgekit"]
    assert info["status"] == "completed"
    assert [s["stats"]["skipped"] for s in info["shards"]] == [200, 50]
    assert [comparable(r) for r in again.to_dict("records")] == expected
    assert [comparable(r) for r in read_jsonl(out)] == expected
    for part in parts:  # nothing duplicated in any part
        ids = [r["id"] for r in read_jsonl(part)]
        assert len(ids) == len(set(ids)) == 200
