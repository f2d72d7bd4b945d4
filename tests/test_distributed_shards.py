"""Sharded method runs on a real local Ray cluster: the same records as a local run, parts
that resume per shard after a worker is killed, progress aggregated from every shard."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from forgekit.methods import generate
from tests.conftest import read_jsonl

pytestmark = pytest.mark.slow

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
    # One manifest for the run: every shard's spend added up, and each shard listed.
    manifest = json.loads(out.with_name("sharded.manifest.json").read_text())
    assert manifest["engine"] == "ray" and manifest["status"] == "completed"
    assert manifest["records_in_file"] == 2000 and manifest["totals"]["requests"] == 2000
    assert manifest["this_run"]["ok"] == 2000 and manifest["models"]
    assert [s["records"] for s in manifest["shards"]] == [1000, 1000]
    assert (
        manifest["job_key"]
        == json.loads((tmp_path / "sharded.jsonl.parts" / "shard-00000.manifest.json").read_text())[
            "job_key"
        ]
    )  # the shards ran the caller's job, not another one


def wait_until(condition, what: str, limit_s: float = 180.0) -> None:
    """Wait for a point of progress (the limit only keeps a broken run from hanging CI)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def complete_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


class HeldShardRun:
    """A sharded `generate` over 400 items in a thread, whose shard 2 (items 200-399) the
    stub answers up to item 249 and then holds: the scene of a worker lost mid-run."""

    def __init__(self, stub, model: str, folder: Path, name: str, **options) -> None:
        self.data = [{"n": i} for i in range(400)]
        self.call = {"user": "Number {{ n }}", "model": model, "cache": False, **QUIET}
        self.expected = [comparable(r) for r in generate(self.data, **self.call).to_dict("records")]
        stub.configure(hold_match=r"Number (2[5-9]\d|3\d\d)\b")
        self.call |= options
        self.out = folder / f"{name}.jsonl"
        self.parts = [folder / f"{name}.jsonl.parts" / f"shard-0000{k}.jsonl" for k in (0, 1)]
        self.box: dict = {}
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.box["df"] = generate(self.data, engine="ray", shards=2, out=self.out, **self.call)
        except BaseException as exc:
            self.box["error"] = exc

    def result(self):
        self.thread.join(timeout=300)
        assert not self.thread.is_alive() and "error" not in self.box, self.box.get("error")
        return self.box["df"]


def test_killed_shard_worker_loses_nothing_and_a_rerun_resumes_it(
    ray_cluster, stub, stub_model, tmp_path
):
    from forgekit.distributed.shards import shard_worker_pids

    # No relaunch: the lost shard waits for the user's re-run.
    held = HeldShardRun(stub, stub_model, tmp_path, "killed", shard_retries=0)
    data, expected, out, parts = held.data, held.expected, held.out, held.parts
    call = {k: v for k, v in held.call.items() if k != "shard_retries"}  # for the re-run
    wait_until(lambda: complete_lines(parts[1]) == 50, "shard 2 to write its 50 answers")
    os.kill(shard_worker_pids(out)[1], signal.SIGKILL)
    df = held.result()
    first = df.attrs["forgekit"]
    assert first["status"] == "failed" and "shard 2/2" in first["stop_reason"]
    assert [s["status"] for s in first["shards"]] == ["completed", "failed"]
    assert len(df) == 250  # shard 1's 200 and what shard 2 finished: nothing lost
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


def test_a_lost_shard_is_relaunched_and_the_same_call_completes(
    ray_cluster, stub, stub_model, tmp_path
):
    from forgekit.distributed.shards import shard_worker_pids

    held = HeldShardRun(stub, stub_model, tmp_path, "relaunched")  # 2 relaunches by default
    expected, out, parts = held.expected, held.out, held.parts
    wait_until(lambda: complete_lines(parts[0]) == 200, "shard 1 to finish")
    wait_until(lambda: complete_lines(parts[1]) == 50, "shard 2 to write its 50 answers")
    lost = shard_worker_pids(out)[1]
    os.kill(lost, signal.SIGKILL)
    wait_until(lambda: shard_worker_pids(out).get(1, lost) != lost, "shard 2's relaunch")
    stub.configure()  # release what the stub holds; counters start again at 0
    df = held.result()
    info = df.attrs["forgekit"]
    assert info["status"] == "completed"
    assert stub.stats()["ok"] == 150  # the relaunch resumed from the part: 250-399 only
    assert [comparable(r) for r in df.to_dict("records")] == expected
    assert [comparable(r) for r in read_jsonl(out)] == expected
    for part in parts:  # every record exactly once
        ids = [r["id"] for r in read_jsonl(part)]
        assert len(ids) == len(set(ids)) == 200
    shards = info["shards"]
    assert "relaunches" not in shards[0] and shards[1]["relaunches"]["count"] == 1
    assert "Worker" in shards[1]["relaunches"]["after"][0]  # why: the worker died
    assert [s["stats"]["skipped"] for s in shards] == [0, 50]
    manifest = json.loads(out.with_name("relaunched.manifest.json").read_text())
    assert manifest["shard_relaunches"] == 1 and manifest["status"] == "completed"


def test_a_relaunched_shard_gets_only_the_budget_its_lost_attempt_left(
    ray_cluster, stub, stub_model, tmp_path
):
    from forgekit.distributed.shards import shard_reports, shard_worker_pids

    # max_requests=400: 200 per shard, exactly what each slice needs; 2 requests at a time.
    held = HeldShardRun(
        stub, stub_model, tmp_path, "budget", max_requests=400, concurrency=4, adaptive=False
    )
    out, parts = held.out, held.parts
    wait_until(lambda: complete_lines(parts[0]) == 200, "shard 1 to finish")
    wait_until(lambda: complete_lines(parts[1]) == 50, "shard 2 to write its 50 answers")
    wait_until(lambda: stub.stats().get("held") == 2, "shard 2's two next requests held")
    # Shard 2 is frozen: 52 requests sent (50 answered, 2 held). Kill it once its report
    # to the board says so: the spend the driver takes off the relaunch's budget.
    wait_until(lambda: shard_reports(out).get(1, {}).get("requests") == 52, "shard 2's report")
    lost = shard_worker_pids(out)[1]
    os.kill(lost, signal.SIGKILL)
    stub._call("/_batch_config", {"hold_match": None})  # answer from now on, keep the counts
    df = held.result()
    # 200 + 52 + the relaunch's 148: never more than max_requests, across attempts.
    assert stub.stats()["requests"] == 400
    info = df.attrs["forgekit"]
    first, second = info["shards"]
    assert first["status"] == "completed" and first["stats"]["requests"] == 200
    assert second["relaunches"]["count"] == 1
    assert second["status"] == "stopped" and "max_requests=148" in second["stop_reason"]
    assert second["stats"]["requests"] == 200  # the lost attempt's 52 counted in
    assert info["status"] == "stopped" and info["stats"]["requests"] == 400
    manifest = json.loads(out.with_name("budget.manifest.json").read_text())
    assert manifest["this_run"]["requests"] == manifest["totals"]["requests"] == 400
    assert manifest["shards"][1]["stats"]["requests"] == 200
    ids = [r["id"] for r in read_jsonl(parts[1])]  # the relaunch resumed: nothing twice
    assert len(ids) == len(set(ids)) == 50 + second["stats"]["ok"]
    assert len(df) == 200 + len(ids) == len(read_jsonl(out))


def test_the_board_forgets_a_lost_attempt_and_ignores_its_late_reports():
    from forgekit.distributed.shard_board import ShardBoard

    board = ShardBoard()
    board.open("run", 2)
    board.started("run", 1, pid=101)
    board.report("run", 1, "running", {"requests": 52}, [], [], pid=101)
    assert board.reported("run") == {1: {"requests": 52}}
    # The driver took the 52 off the relaunch's budgets and counted them: a snapshot that
    # still held them would count them again if the relaunch were lost before it reported.
    board.lost("run", 1)
    assert board.reported("run") == {} and board.worker_pids("run") == {}
    board.report("run", 1, "running", {"requests": 53}, [], [], pid=101)  # already sent
    board.started("run", 1, pid=202)
    board.report("run", 1, "running", {"requests": 54}, [], [], pid=101)
    assert board.reported("run") == {}
    board.report("run", 1, "running", {"requests": 3}, [], [], pid=202)
    assert board.snapshot("run", 0)["stats"] == {1: {"requests": 3}}


def test_a_generating_method_splits_its_target_with_distinct_seeds(
    ray_cluster, stub, stub_model, tmp_path, monkeypatch
):
    from forgekit.methods import magpie

    questions = [f"Distinct question number {i}?" for i in range(40)]
    stub.configure(rules=[{"match": r"user\n$", "contents": questions}])
    monkeypatch.chdir(tmp_path)  # a relative out means the same file to the shards
    df = magpie(
        10,
        model=stub_model,
        template="chatml",
        engine="ray",
        shards=2,
        min_words=1,
        out="magpie.jsonl",
        **QUIET,
    )
    assert len(read_jsonl(tmp_path / "magpie.jsonl")) == 10
    assert sorted(p.name for p in (tmp_path / "magpie.jsonl.parts").glob("*.jsonl")) == [
        "shard-00000.jsonl",
        "shard-00001.jsonl",
    ]
    info = df.attrs["forgekit"]
    assert len(df) == 10 and df["id"].is_unique
    assert [s["options"] for s in info["shards"]] == [
        {"n": 5, "seed": 0},
        {"n": 5, "seed": 1_000_003},
    ]
    assert sorted({r["seed"] for r in df["lineage"]}) == [0, 1_000_003]
    assert set(df["input"]) <= set(questions)
    assert info["generations"] == 10  # the shards' counters add up


def test_the_key_reaches_workers_by_environment_never_as_an_argument(
    ray_cluster, stub, tmp_path, monkeypatch
):
    import ray

    from tests.conftest import write_profile

    secret = "sk-shard-secret-4b1d9e77c0"
    monkeypatch.setenv("STUB_SECRET_KEY", secret)
    write_profile(tmp_path, monkeypatch, stub.url, name="keyed", api_key_env="STUB_SECRET_KEY")
    stub.configure(require_key=secret)  # 401 without the key
    out = tmp_path / "keyed.jsonl"
    df = generate(
        [{"n": i} for i in range(20)],
        user="Number {{ n }}",
        model="keyed",
        engine="ray",
        shards=2,
        out=out,
        **QUIET,
    )
    assert len(df) == 20 and stub.stats()["ok"] == 20 and "401" not in stub.stats()
    # Nothing Ray wrote (logs, spilled objects) and nothing forgekit wrote holds the key.
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    written = [*session.rglob("*"), *tmp_path.rglob("*")]
    leaks = [p for p in written if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaks == []


def test_a_model_object_holding_a_key_is_refused(ray_cluster):
    from forgekit.errors import ConfigError
    from forgekit.models.openai_compat import OpenAICompatibleModel

    model = OpenAICompatibleModel("m", "m", base_url="http://127.0.0.1:9/v1", api_key="sk-abc1234")
    with pytest.raises(ConfigError, match="pass model as a profile name"):
        generate([{"n": 1}], user="{{ n }}", model=model, engine="ray", **QUIET)


def test_the_magic_runs_shards_with_ray_and_shards_flags(ray_cluster, stub, stub_model):
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython() or get_ipython()
    shell.run_line_magic("load_ext", "forgekit")
    shell.user_ns["items"] = [{"n": i} for i in range(30)]
    result = shell.run_cell(
        '%forge generate --input items --model stub --user "N {{ n }}" --no-cache '
        "--ray --shards 3 -o sharded"
    )
    assert result.error_in_exec is None, result.error_in_exec
    df = shell.user_ns["sharded"]
    assert list(df["input"]) == [f"N {i}" for i in range(30)]
    assert [s["slice"] for s in df.attrs["forgekit"]["shards"]] == [[0, 10], [10, 20], [20, 30]]
    assert stub.stats()["ok"] == 30


def test_cancel_reaches_every_shard_and_a_rerun_finishes(ray_cluster, stub, stub_model, tmp_path):
    # Each shard answers its first 50 items, then waits on the stub for the rest.
    stub.configure(hold_match=r"Number ([5-9]\d|1[5-9]\d)\b")
    data = [{"n": i} for i in range(200)]
    call = {"user": "Number {{ n }}", "model": stub_model, "cache": False, **QUIET}
    out = tmp_path / "cancelled.jsonl"
    cancel = threading.Event()

    def cancel_at_100(event: str, payload: dict) -> None:
        if payload["stats"].ok >= 100:  # the driver's aggregate of both shards
            cancel.set()

    df = generate(
        data, engine="ray", shards=2, out=out, on_event=[cancel_at_100], cancel_event=cancel, **call
    )
    info = df.attrs["forgekit"]
    assert info["status"] == "cancelled" and len(df) == 100
    assert [s["status"] for s in info["shards"]] == ["cancelled", "cancelled"]
    stub.configure()
    again = generate(data, engine="ray", shards=2, out=out, **call)
    assert again.attrs["forgekit"]["status"] == "completed" and len(again) == 200
    assert stub.stats()["ok"] == 100 and again["id"].is_unique


def test_an_error_that_stops_a_shard_reaches_the_caller(ray_cluster, stub, stub_model, tmp_path):
    from forgekit.errors import ClientRequestError

    stub.configure(status=404)  # every request: the endpoint does not exist
    with pytest.raises(ClientRequestError, match="404"):
        generate(
            [{"n": i} for i in range(20)],
            user="Number {{ n }}",
            model=stub_model,
            engine="ray",
            shards=2,
            out=tmp_path / "broken.jsonl",
            **QUIET,
        )
    manifest = json.loads((tmp_path / "broken.manifest.json").read_text())
    assert manifest["status"] == "failed" and "shard 1/2" in manifest["stop_reason"]
