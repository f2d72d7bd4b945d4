"""The quality gate: --schema sent to the server (and the fallback when a server refuses it),
the embedded model constrained by a grammar, and `target=N` on a stub whose answers fail
validation half the time, bounded by budgets and by the attempt cap."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from forgekit.cli import main
from forgekit.errors import ConfigError
from forgekit.methods import generate, judge
from forgekit.models.scripted import ScriptedModel
from forgekit.runfile import load_plan, run_file
from tests.conftest import read_jsonl

QUIET = {"progress": False, "cache": False}
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "color": {"type": "string", "maxLength": 16},
        "sweet": {"type": "boolean"},
    },
    "required": ["name", "color", "sweet"],
    "additionalProperties": False,
}
VALID = '{"name": "plum", "color": "purple", "sweet": true}'
HALF_INVALID = [{"match": "fruit", "contents": [VALID, '{"name": "plum"}']}]


def test_target_reaches_n_valid_records_when_half_the_answers_fail(stub, stub_model):
    stub.configure(rules=HALF_INVALID)
    df = generate(
        None, user="A fruit as JSON.", schema=SCHEMA, target=10, model=stub_model, **QUIET
    )
    assert len(df) == 10
    assert all(r == json.loads(VALID) for r in df["parsed"])
    gate = df.attrs["forgekit"]["gate"]
    # every other answer misses required fields: the 10th valid one is the 19th or 20th
    assert gate["target"] == 10 and gate["reached"] is True
    assert gate["attempts"] in (19, 20)
    assert gate["rejected"] == {"parse": gate["attempts"] - 10}
    assert "shortfall" not in gate
    # the schema went with every request, as OpenAI's structured-output request
    stats = stub.stats()
    assert stats["response_format"] == stats["requests"] == gate["attempts"]
    sent = stub._call("/_stats")["response_format"]
    assert sent == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": SCHEMA, "strict": True},
    }
    # every attempt used a new seed: none is a repeat of another
    assert len({r["lineage"]["seed"] for r in df.to_dict("records")}) == 10


def test_a_budget_stops_the_target_early_with_a_clear_message(stub, stub_model, tmp_path, capsys):
    stub.configure(rules=HALF_INVALID)
    out = tmp_path / "fruit.jsonl"
    df = generate(
        None, user="A fruit as JSON.", schema=SCHEMA, target=10, max_requests=6, out=out,
        model=stub_model, concurrency=1, **QUIET,
    )  # fmt: skip
    gate = df.attrs["forgekit"]["gate"]
    assert len(df) == 3 and gate["attempts"] == 6 and gate["reached"] is False
    assert df.attrs["forgekit"]["status"] == "stopped"
    assert gate["shortfall"].startswith("target 10 not reached: 3 records passed in 6 attempts")
    assert "max_requests" in gate["shortfall"]
    assert "target 10 not reached" in capsys.readouterr().err
    manifest = json.loads((tmp_path / "fruit.manifest.json").read_text())
    assert manifest["gate"]["attempts"] == 6 and manifest["gate"]["passed"] == 3
    assert len(read_jsonl(out)) == 3


def test_the_attempt_cap_bounds_a_target_that_is_never_met(stub, stub_model):
    stub.configure(rules=[{"match": "fruit", "content": "no JSON here"}])
    df = generate(
        None, user="A fruit as JSON.", schema=SCHEMA, target=4, target_factor=2.5,
        model=stub_model, **QUIET,
    )  # fmt: skip
    gate = df.attrs["forgekit"]["gate"]
    assert len(df) == 0 and gate["attempts"] == gate["max_attempts"] == 10
    assert "attempt cap" in gate["shortfall"]
    assert stub.stats()["requests"] == 10


def test_a_server_that_refuses_response_format_is_asked_again_without_it(
    stub, stub_model, monkeypatch
):
    monkeypatch.setattr("forgekit.models.openai_compat._NO_RESPONSE_FORMAT", set())
    stub.configure(rules=[{"match": "fruit", "content": VALID}], response_format="reject")
    with pytest.warns(UserWarning, match="refused response_format"):
        df = generate(
            None, user="A fruit as JSON.", schema=SCHEMA, samples=3, model=stub_model,
            concurrency=1, **QUIET,
        )  # fmt: skip
    assert len(df) == 3 and df.attrs["forgekit"]["parse"] == {"ok": 3, "failed": 0}
    stats = stub.stats()
    # one refusal; then the endpoint is remembered and the schema is not sent again
    assert stats["400"] == 1 and stats["response_format"] == 1 and stats["ok"] == 3


def judged(text: str) -> str:
    """The judge's answer for 'question <k>': a fixed quality per question."""
    k = int(re.search(r"question (\d)", text).group(1))
    return f"Quality: {QUALITY_OF[k]}\nExplanation: ok"


QUALITY_OF = ["excellent", "good", "poor", "good", "very poor", "average"]


def test_accept_and_min_score_filter_a_map_method_and_report_the_shortfall():
    model = ScriptedModel([(r"Judge", judged)])
    data = [{"input": f"question {i}", "output": "answer"} for i in range(6)]
    run = {"aspects": ("quality",), "model": model, "concurrency": 1, **QUIET}
    df = judge(data, target=3, min_score=4, **run)
    assert list(df["quality"]) == ["excellent", "good", "good"]  # question 2 is poor
    assert df.attrs["forgekit"]["gate"]["attempts"] == 4
    # with a callable too, and more than the input can give
    short = judge(data, target=5, min_score=4, accept=lambda r: r["input"] != "question 0", **run)
    gate = short.attrs["forgekit"]["gate"]
    assert list(short["input"]) == ["question 1", "question 3"]
    assert gate["rejected"] == {"accept": 1, "min_score": 3} and gate["attempts"] == 6
    assert gate["shortfall"].endswith("the input ran out")
    with pytest.raises(ConfigError, match="min_score needs a method that scores"):
        generate(None, user="x", min_score=3, model=model, **QUIET)
    with pytest.raises(ConfigError, match="target must be a whole number >= 1"):
        generate(None, user="x", target=0, model=model, **QUIET)


def test_forge_generate_target_and_schema_on_the_command_line(stub, stub_model, tmp_path, capsys):
    stub.configure(rules=HALF_INVALID)
    schema = tmp_path / "fruit.schema.json"
    schema.write_text(json.dumps(SCHEMA))
    out = tmp_path / "out.jsonl"
    code = main(
        ["generate", "--user", "A fruit as JSON.", "--schema", str(schema), "--target", "4",
         "--model", stub_model, "--out", str(out), "--no-progress", "--no-cache"]
    )  # fmt: skip
    assert code == 0
    assert [json.loads(VALID)] * 4 == [r["parsed"] for r in read_jsonl(out)]
    printed = capsys.readouterr().out
    assert re.search(r"target 4: 4 passed in [78] attempts \(rejected: parse [34]\)", printed)
    assert json.loads(out.with_name("out.manifest.json").read_text())["gate"]["passed"] == 4


@pytest.mark.model
def test_schema_on_the_embedded_model_gives_valid_json_every_time():
    # Small on purpose: llama-cpp-python checks the grammar against the whole vocabulary at
    # every token, so each constrained token costs far more than a free one.
    schema = {
        "type": "object",
        "properties": {"fruit": {"type": "string", "maxLength": 12}, "sweet": {"type": "boolean"}},
        "required": ["fruit", "sweet"],
        "additionalProperties": False,
    }
    df = generate(
        None,
        user="Name a fruit and say whether it is sweet, as JSON.",
        schema=schema,
        samples=8,
        model="local",
        params={"temperature": 1.0, "max_tokens": 48},
        **QUIET,
    )
    assert len(df) == 8
    assert df.attrs["forgekit"]["parse"] == {"ok": 8, "failed": 0}
    assert all(set(p) == {"fruit", "sweet"} and isinstance(p["sweet"], bool) for p in df["parsed"])
    assert len({json.dumps(p) for p in df["parsed"]}) > 1  # sampled, not one answer repeated
    assert df["lineage"].iloc[0]["params"]["json_schema"] == schema


def test_forge_run_yaml_takes_the_gate_under_params(stub, stub_model, tmp_path):
    stub.configure(rules=HALF_INVALID)
    (tmp_path / "fruit.schema.json").write_text(json.dumps(SCHEMA))
    config = {
        "method": "generate",
        "model": stub_model,
        "prompts": {"user": "A fruit as JSON."},
        "params": {"schema": "fruit.schema.json", "target": 3, "target_factor": 4},
        "run": {"progress": False, "cache": False},
    }
    path = tmp_path / "gate.yaml"
    path.write_text(yaml.safe_dump(config))
    df = run_file(path)
    assert len(df) == 3 and df.attrs["forgekit"]["gate"]["max_attempts"] == 12
    config["params"]["min_score"] = 4
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="has no option 'min_score'"):
        load_plan(path)
