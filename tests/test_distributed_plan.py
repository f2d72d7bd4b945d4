"""How a sharded run splits and is asked for, without a cluster: shard plans, limit shares,
the --ray/--shards options, YAML, and the CI reports of a batch."""

from __future__ import annotations

import pytest

from forgekit.cli.app import parse
from forgekit.cli.options import run_config_from_args
from forgekit.distributed.shard_merge import merge_summaries
from forgekit.distributed.shards import Prepared, plan_shards, share_config, split_int
from forgekit.engine import RunConfig
from forgekit.errors import ConfigError
from forgekit.methods.generate import Generate
from forgekit.methods.magpie import Magpie
from forgekit.methods.runner import prepare_call
from forgekit.models.scripted import ScriptedModel


def prepared(cls, records, gate=None, **options) -> Prepared:
    target = gate.target if gate is not None else None
    return Prepared(*prepare_call(cls, records, options, ScriptedModel(), target), gate=gate)


def test_items_split_in_contiguous_slices_and_n_is_shared():
    assert split_int(10, 3) == [4, 3, 3] and split_int(2, 4) == [1, 1, 0, 0]
    call = prepared(Generate, [{"n": i} for i in range(10)], user="{{ n }}")
    plan = plan_shards(Generate, call, 3)
    assert plan.slices == [(0, 4), (4, 7), (7, 10)] and plan.total == 10
    assert plan.overrides == [{}, {}, {}]
    few = plan_shards(Generate, prepared(Generate, [{"n": 1}, {"n": 2}], user="{{ n }}"), 8)
    assert few.count == 2  # never an empty shard


def test_a_generating_method_shares_n_with_distinct_seeds():
    call = prepared(Magpie, [], n=5, template="chatml", seed=7)
    plan = plan_shards(Magpie, call, 2)
    assert plan.slices is None and plan.total == 5
    assert plan.overrides == [{"n": 3, "seed": 7}, {"n": 2, "seed": 7 + 1_000_003}]


def test_each_shard_gets_a_share_of_every_limit():
    config = RunConfig(concurrency=10, rpm=90.0, max_requests=7, max_cost=0.3, overwrite=True)
    shares = share_config(config, 3, default_concurrency=32)
    assert [c.concurrency for c in shares] == [4, 3, 3]
    assert [c.max_requests for c in shares] == [3, 2, 2]
    assert [c.rpm for c in shares] == [30.0] * 3
    assert all(abs(c.max_cost - 0.1) < 1e-12 for c in shares)
    assert {(c.engine, c.shards, c.overwrite, c.progress) for c in shares} == {
        ("local", None, False, False)
    }
    # Without a concurrency: a share of the model's own default.
    assert [c.concurrency for c in share_config(RunConfig(), 2, 32)] == [16, 16]


def test_ray_and_shards_options_on_the_command_line():
    args = parse(["generate", "--input", "x.jsonl", "--user", "u", "--ray", "--shards", "3"])
    config = run_config_from_args(args)
    assert (config.engine, config.shards, config.ray_address) == ("ray", 3, None)
    args = parse(["generate", "--input", "x.jsonl", "--user", "u", "--ray=ray://head:10001"])
    assert run_config_from_args(args).ray_address == "ray://head:10001"
    local = run_config_from_args(parse(["generate", "--input", "x.jsonl", "--user", "u"]))
    assert local.engine == "local" and not local.distributed
    with pytest.raises(ConfigError, match="put --ray after the positional"):
        run_config_from_args(parse(["magpie", "--ray", "10"]))
    with pytest.raises(ConfigError, match="engine must be 'local' or 'ray'"):
        RunConfig(engine="spark")
    with pytest.raises(ConfigError, match="shards must be a whole number >= 1"):
        RunConfig(shards=0)


def test_yaml_run_section_takes_the_ray_options(tmp_path):
    from forgekit.runfile import load_plan

    (tmp_path / "data.jsonl").write_text('{"n": 1}\n')
    path = tmp_path / "run.yaml"
    path.write_text(
        "method: generate\nprompts: {user: '{{ n }}'}\ninput: data.jsonl\n"
        "run: {engine: ray, shards: 2}\n"
    )
    config = load_plan(path).kwargs["config"]
    assert (config.engine, config.shards) == ("ray", 2)
    path.write_text(path.read_text().replace("shards: 2", "shards: 2, shard_retries: 0"))
    assert load_plan(path).kwargs["config"].shard_retries == 0
    path.write_text(path.read_text().replace("engine: ray", "engine: spark"))
    with pytest.raises(ConfigError, match="engine"):
        load_plan(path)


def test_shard_summaries_add_up():
    merged = merge_summaries(
        [
            {"counts": {"a": 1}, "generations": 4, "rounds": [{"round": 1, "evolved": 2}]},
            {"counts": {"a": 2, "b": 1}, "generations": 6, "rounds": [{"round": 1, "evolved": 3}]},
        ]
    )
    assert merged["counts"] == {"a": 3, "b": 1} and merged["generations"] == 10
    assert merged["rounds"] == [{"round": 2, "evolved": 5}]


def test_a_gate_target_is_split_like_n():
    from forgekit.methods.gate import GateOptions
    from forgekit.methods.judge import Judge

    data = [{"input": f"q {i}", "output": "a"} for i in range(10)]
    gate = GateOptions(target=5, min_score=4)
    plan = plan_shards(Judge, prepared(Judge, data, gate), 3)
    assert plan.slices == [(0, 4), (4, 7), (7, 10)] and plan.total == 5
    assert [(g.target, g.min_score) for g in plan.gates] == [(2, 4), (2, 4), (1, 4)]
    few = plan_shards(Judge, prepared(Judge, data, GateOptions(target=2)), 8)
    assert few.count == 2 and [g.target for g in few.gates] == [1, 1]  # no shard without work
    # Without a target every shard applies the same checks to all its records.
    checks = plan_shards(Judge, prepared(Judge, data, GateOptions(min_score=3)), 2)
    assert checks.total == 10 and [g.target for g in checks.gates] == [None, None]
    # generate's endless stream under a target: interleaved, ids as in a local run.
    stream = plan_shards(
        Generate, prepared(Generate, [{"n": 1}], GateOptions(target=7), user="u"), 2
    )
    assert (stream.slices, stream.step, stream.total) == (None, 2, 7)
    assert [g.target for g in stream.gates] == [4, 3]
    # Magpie's n is the target (the runner sets it): shares of n and of the target agree.
    magpie = plan_shards(
        Magpie, prepared(Magpie, [], GateOptions(target=5), n=5, template="chatml"), 2
    )
    assert [o["n"] for o in magpie.overrides] == [g.target for g in magpie.gates] == [3, 2]


def test_shard_retries_option():
    args = parse(["generate", "--input", "x.jsonl", "--user", "u", "--ray", "--shard-retries", "0"])
    assert run_config_from_args(args).shard_retries == 0
    default = parse(["generate", "--input", "x.jsonl", "--user", "u", "--ray"])
    assert run_config_from_args(default).shard_retries == 2
    with pytest.raises(ConfigError, match="--shard-retries must be >= 0"):
        run_config_from_args(parse(["generate", "-i", "x", "--user", "u", "--shard-retries", "-1"]))
    with pytest.raises(ConfigError, match="shard_retries must be a whole number >= 0"):
        RunConfig(shard_retries=-1)


def test_a_resumed_magpie_claims_the_instructions_in_its_parts_torn_tail_aside(tmp_path):
    from forgekit.distributed.shard_board import claim_digest
    from forgekit.distributed.shards import _claimed_keys

    part = tmp_path / "shard-00000.jsonl"
    part.write_text(
        '{"id": "a", "input": "Name  a Fruit?", "history": [["First turn", "ok"]]}\n'
        '{"id": "b", "input": "Why?"}\n'
        '{"id": "c", "inp'  # a worker killed mid-line
    )
    method = prepared(Magpie, [], n=2, template="chatml").method
    keys = _claimed_keys(method, [part, tmp_path / "shard-00001.jsonl"])
    assert keys == [claim_digest(k) for k in ("first turn", "name a fruit?", "why?")]
