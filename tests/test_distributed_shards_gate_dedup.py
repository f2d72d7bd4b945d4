"""Sharded runs on a real local Ray cluster with the quality gate (each shard gates its own
records, a target split like n) and with Magpie's dedup shared across shards."""

from __future__ import annotations

import json

import pytest

from forgekit.methods import generate, judge, magpie
from tests.conftest import read_jsonl

pytestmark = pytest.mark.slow

QUIET = {"progress": False, "cache": False}


def comparable(record: dict) -> dict:
    """A record without the moment it was made."""
    lineage = {k: v for k, v in record["lineage"].items() if k != "created_at"}
    return {**record, "lineage": lineage}


def not_a_multiple_of_3(record: dict) -> bool:
    """The gate's `accept`: the stub echoes "Number <n>"; a third of the numbers fail."""
    return int(record["input"].split()[-1]) % 3 != 0


def add_up(shards: list[dict], key: str):
    return sum(s[key] for s in shards)


def test_a_gated_target_on_shards_accepts_what_a_local_run_accepts(
    ray_cluster, stub, stub_model, tmp_path
):
    data = [{"n": i} for i in range(30)]
    call = {"user": "Number {{ n }}", "model": stub_model, "target": 10, **QUIET}
    local = generate(data, accept=not_a_multiple_of_3, **call)
    out = tmp_path / "gated.jsonl"
    sharded = generate(data, accept=not_a_multiple_of_3, engine="ray", shards=2, out=out, **call)
    # generate's endless stream under a target is interleaved (shard k: items k, k+2, ...):
    # the same records, ids included, as the local run: the first 10 numbers that pass.
    assert len(sharded) == 10 and all(not_a_multiple_of_3(r) for r in read_jsonl(out))
    by_id = sorted(map(comparable, sharded.to_dict("records")), key=lambda r: r["id"])
    assert by_id == sorted(map(comparable, local.to_dict("records")), key=lambda r: r["id"])
    assert sorted(int(r["input"].split()[-1]) for r in by_id) == [1, 2, 4, 5, 7, 8, 10, 11, 13, 14]
    gate, mine = sharded.attrs["forgekit"]["gate"], local.attrs["forgekit"]["gate"]
    shards = gate["shards"]
    assert [s["target"] for s in shards] == [5, 5]
    assert [(s["passed"], s["attempts"]) for s in shards] == [(5, 8), (5, 7)]  # evens, odds
    assert gate["passed"] == add_up(shards, "passed") == 10 and gate["reached"] is True
    assert gate["attempts"] == add_up(shards, "attempts") == mine["attempts"] == 15
    assert gate["rejected"] == {"accept": 5} == mine["rejected"]
    assert [s["status"] for s in shards] == ["completed", "completed"]
    manifest = json.loads(out.with_name("gated.manifest.json").read_text())
    assert manifest["gate"]["passed"] == 10 and manifest["gate"]["rejected"] == {"accept": 5}
    assert [s["gate"]["attempts"] for s in manifest["shards"]] == [8, 7]


JUDGED = [  # the stub's judge: every number ending in 0 or 5 is very poor, the rest excellent
    {"match": r"question \d*[05]\b", "content": "Quality: very poor\nExplanation: no"},
    {"match": r"question \d+", "content": "Quality: excellent\nExplanation: ok"},
]


def test_each_shard_gates_its_slice_and_a_resumed_run_extends_the_target(
    ray_cluster, stub, stub_model, tmp_path
):
    stub.configure(rules=JUDGED)
    data = [{"input": f"question {i}", "output": "an answer"} for i in range(40)]
    call = {"aspects": ("quality",), "model": stub_model, "min_score": 4, **QUIET}
    out = tmp_path / "judged.jsonl"
    first = judge(data, target=6, engine="ray", shards=2, out=out, **call)
    # Slices [0, 20) and [20, 40), three passing records each.
    assert [r["input"] for r in first.to_dict("records")] == [
        f"question {i}" for i in (1, 2, 3, 21, 22, 23)
    ]
    stub.configure(rules=JUDGED)  # counters from 0
    again = judge(data, target=12, engine="ray", shards=2, out=out, **call)
    # Each shard resumed from its part: only the rejected and the new items were asked.
    assert stub.stats()["ok"] == 10
    expected = [f"question {i}" for i in (1, 2, 3, 4, 6, 7, 21, 22, 23, 24, 26, 27)]
    assert list(again["input"]) == expected and set(again["quality"]) == {"excellent"}
    assert [r["input"] for r in read_jsonl(out)] == expected
    # The same records a local gated run makes of each slice with its share of the target.
    for slice_ in (data[:20], data[20:]):
        local = judge(slice_, target=6, **call)
        mine = [r for r in again.to_dict("records") if r["input"] in set(local["input"])]
        assert [r["input"] for r in mine] == list(local["input"])
    gate = again.attrs["forgekit"]["gate"]
    shards = gate["shards"]
    assert gate["target"] == 12 and gate["passed"] == add_up(shards, "passed") == 12
    assert gate["attempts"] == add_up(shards, "attempts") == 10  # this run's attempts
    assert gate["rejected"] == {"min_score": 4}
    assert sum(s["rejected"]["min_score"] for s in shards) == 4
    assert "shortfall" not in gate and gate["reached"] is True
    manifest = json.loads(out.with_name("judged.manifest.json").read_text())
    assert manifest["gate"] == {**gate}


def test_a_shortfall_names_the_shard_that_ran_out(ray_cluster, stub, stub_model, capsys):
    stub.configure(rules=JUDGED)
    data = [{"input": f"question {i}", "output": "an answer"} for i in (0, 5, 10, 1, 2, 3)]
    call = {"aspects": ("quality",), "model": stub_model, "min_score": 4, **QUIET}
    df = judge(data, target=4, engine="ray", shards=2, **call)
    gate = df.attrs["forgekit"]["gate"]
    assert len(df) == 2 and gate["passed"] == 2 and gate["reached"] is False
    assert [s["passed"] for s in gate["shards"]] == [0, 2]
    assert gate["shortfall"].startswith("target 4 not reached: 2 records passed in 5 attempts")
    assert "shard 1/2: target 2 not reached" in gate["shortfall"]
    assert "target 4 not reached" in capsys.readouterr().err


# Ten instructions, chosen by the request's seed: shard 1 (seed 0) asks seeds 101 * i, which
# pick questions 0, 1, 2, ...; shard 2 (seed 1000003) picks 9, 0, 1, ...: without shared
# dedup both shards would keep questions 0 and 1.
QUESTIONS = [f"Which question is number {i}?" for i in range(10)]


def test_magpie_shards_drop_each_others_repeats_and_a_resume_keeps_them_apart(
    ray_cluster, stub, stub_model, tmp_path
):
    stub.configure(rules=[{"match": r"user\n$", "by_seed": QUESTIONS}])
    out = tmp_path / "magpie.jsonl"
    call = {"model": stub_model, "template": "chatml", "min_words": 1, **QUIET}
    first = magpie(6, engine="ray", shards=2, out=out, **call)
    assert len(first) == 6 and first["input"].is_unique
    assert len(read_jsonl(out)) == 6
    info = first.attrs["forgekit"]
    assert info["filtered"].get("duplicate", 0) >= 2  # the collisions really happened
    # A resumed run to n=10 needs every question once: the parts' instructions are claimed
    # before the shards start, so neither shard takes one the other already has.
    again = magpie(10, engine="ray", shards=2, out=out, **call)
    assert len(again) == 10 and sorted(again["input"]) == sorted(QUESTIONS)
    assert [s["stats"]["skipped"] for s in again.attrs["forgekit"]["shards"]] == [3, 3]
    stored = read_jsonl(out)
    assert len(stored) == 10 and len({r["input"] for r in stored}) == 10
