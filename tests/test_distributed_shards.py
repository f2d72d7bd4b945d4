"""Sharded method runs on a real local Ray cluster: the same records as a local run, parts
that resume per shard after a worker is killed, progress aggregated from every shard."""

from __future__ import annotations

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
