"""evol: the elimination rules, failed items back to the pool, the evolution tree."""

import pytest

from forgekit.errors import ConfigError
from forgekit.methods import evol
from forgekit.methods.evol import (
    OPERATIONS,
    copies_template,
    elimination_reason,
    evolve_prompt,
    is_empty_response,
    is_sorry_response,
    judge_verdict,
)
from tests.conftest import read_jsonl

QUIET = {"progress": False}


def test_elimination_rules():
    assert copies_template("#Rewritten Prompt#: Name a fruit")
    assert copies_template("Rewrite the given prompt so that it is longer")
    assert not copies_template("Name a tropical fruit and where it grows.")
    assert is_sorry_response("Sorry, I cannot help with that.")
    assert not is_sorry_response("Sorry for the wait. " + "word " * 80)  # long: kept
    assert not is_sorry_response("Mangoes grow in India.")
    assert is_empty_response("... the, and of?!")
    assert is_empty_response("")
    assert not is_empty_response("The mango.")
    assert elimination_reason("   ") == "empty_instruction"
    assert elimination_reason("Name a fruit", "Sorry, no.") == "sorry_response"
    assert elimination_reason("Name a fruit", "Apple is a fruit.") is None
    assert judge_verdict("Not Equal") == "not_equal"
    assert judge_verdict("**Equal**.") == "equal"
    assert judge_verdict("Hmm, maybe?") == "unclear"


def test_templates_ask_for_10_to_20_words_and_forbid_template_words():
    for op in OPERATIONS:
        text = evolve_prompt(op, "Name a fruit.", "a,b\n1,2")
        assert "Name a fruit." in text
        assert 'Never write the words "given prompt"' in text
        if op != "breadth":
            assert "10 to 20 words" in text
    assert "#Data#:\na,b\n1,2" in evolve_prompt("complicate_input", "Sum it.", "a,b\n1,2")
    assert "rarer" in evolve_prompt("breadth", "Name a fruit.", None)


# Scripted behaviour: each seed instruction has a fate in round 1.
EVOLVE_RULES = [
    # The judge: the rewrite of "Name a colour." adds nothing; everything else is new.
    {"match": r"First instruction:.{0,6}Name a colour\.", "content": "Equal"},
    {"match": r"First instruction:", "content": "Not Equal"},
    # Evolutions (the rule matches the instruction inside the evolution prompt).
    {
        "match": r"Prompt#:.{0,6}Name a tropical fruit and say where it grows\.",
        "content": "Name a tropical fruit, where it grows, and its peak season.",
    },
    {
        "match": r"Prompt#:.{0,6}Name a fruit\.",
        "content": "Name a tropical fruit and say where it grows.",
    },
    {"match": r"Prompt#:.{0,6}Name a colour\.", "content": "Name one colour."},
    {"match": r"Prompt#:.{0,6}Name a city\.", "content": "#Rewritten Prompt#: Name a big city."},
    {"match": r"Prompt#:.{0,6}Name a river\.", "content": "Name the longest river in Asia."},
    {"match": r"Prompt#:.{0,6}Name a tool\.", "content": "Name a tool a carpenter uses daily."},
    # Responses to evolved instructions.
    {"match": r"longest river", "content": "Sorry, I am not sure."},
    {"match": r"carpenter", "content": "the, and... of!"},
]


def test_evol_rounds_elimination_and_lineage_on_stub(stub, stub_model):
    stub.configure(rules=EVOLVE_RULES)
    seeds = [
        {"id": f"s-{w}", "input": f"Name a {w}.", "tag": w}
        for w in ("fruit", "colour", "city", "river", "tool")
    ]
    df = evol(seeds, rounds=2, model=stub_model, concurrency=1, **QUIET)
    rounds = df.attrs["forgekit"]["rounds"]
    assert rounds[0] == {
        "round": 1,
        "attempted": 5,
        "evolved": 1,
        "status": "completed",
        "eliminated": {
            "no_new_information": 1,
            "copied_template": 1,
            "sorry_response": 1,
            "stopwords_response": 1,
        },
    }
    # Failed items went back to the pool: round 2 tries all five again (fruit from its child).
    assert rounds[1]["attempted"] == 5 and rounds[1]["evolved"] == 1
    assert df.attrs["forgekit"]["eliminated"]["copied_template"] == 2
    first, second = df.to_dict("records")
    assert first["input"] == "Name a tropical fruit and say where it grows."
    assert first["output"] == "echo: Name a tropical fruit and say where it grows."
    assert second["input"] == "Name a tropical fruit, where it grows, and its peak season."
    # The evolution tree: seed -> round 1 -> round 2.
    assert first["lineage"]["parent_id"] == "s-fruit" and first["lineage"]["root_id"] == "s-fruit"
    assert first["lineage"]["round"] == 1 and first["lineage"]["depth"] == 1
    assert second["lineage"]["parent_id"] == first["id"]
    assert second["lineage"]["root_id"] == "s-fruit"
    assert second["lineage"]["round"] == 2 and second["lineage"]["depth"] == 2
    assert first["lineage"]["operation"] in OPERATIONS
    assert first["metadata"]["parent_instruction"] == "Name a fruit."
    assert first["metadata"]["judge"] == "not_equal"
    assert second["tag"] == "fruit"  # seed fields are carried


def test_judge_can_be_switched_off(stub, stub_model):
    stub.configure(rules=EVOLVE_RULES)
    df = evol([{"input": "Name a colour."}], rounds=1, model=stub_model, judge=False, **QUIET)
    assert list(df["input"]) == ["Name one colour."]  # the judge would have said "Equal"
    assert stub.stats()["requests"] == 2  # evolve + respond, no judge


def test_complicate_input_needs_data(stub, stub_model):
    with pytest.raises(ConfigError, match="complicate_input needs input data.*item 0"):
        evol(
            [{"input": "Sum the numbers."}],
            operations=["complicate_input"],
            model=stub_model,
            **QUIET,
        )
    with pytest.raises(ConfigError, match="field 'instruction' must hold"):
        evol([{"input": "x"}], field="instruction", model=stub_model, **QUIET)
    with pytest.raises(ConfigError, match="unknown"):
        evol([{"input": "x"}], operations=["shorten"], model=stub_model, **QUIET)
    assert stub.stats().get("requests", 0) == 0
    stub.configure(rules=[{"match": r"#Data#:.{0,6}3,4", "content": "Sum 3 and 4 from the table."}])
    df = evol(
        [{"input": "Sum the numbers.", "table": "3,4"}],
        operations=["complicate_input"],
        data_field="table",
        rounds=1,
        model=stub_model,
        judge=False,
        **QUIET,
    )
    assert list(df["input"]) == ["Sum 3 and 4 from the table."]
    assert df["lineage"].iloc[0]["operation"] == "complicate_input"


def test_evol_budget_stop_resume_and_cache(stub, stub_model, tmp_path):
    stub.configure(rules=EVOLVE_RULES)
    seeds = [{"id": "s1", "input": "Name a fruit."}, {"id": "s2", "input": "Name a tool."}]
    out = tmp_path / "evol.jsonl"
    stopped = evol(
        seeds, rounds=2, model=stub_model, out=out, max_requests=4, concurrency=1, **QUIET
    )
    assert stopped.attrs["forgekit"]["status"] == "stopped"
    assert len(stopped) == 1  # s1's round-1 evolution (3 requests), then the budget ran out
    done = evol(seeds, rounds=2, model=stub_model, out=out, concurrency=1, **QUIET)
    ids = [r["id"] for r in read_jsonl(out)]
    assert len(done) == 2 and ids == list(done["id"]) and len(set(ids)) == 2
    sent = stub.stats()["requests"]
    again = evol(seeds, rounds=2, model=stub_model, **QUIET)
    assert stub.stats()["requests"] == sent  # all from the cache
    assert list(again["id"]) == ids


@pytest.mark.model
def test_evol_on_the_embedded_model():
    # One seed, short outputs: the evolution prompt alone is ~200 tokens for SmolLM2.
    df = evol(
        [{"id": "k1", "input": "Give a tip for learning to cook."}],
        rounds=1,
        model="local",
        judge=False,
        evolve_params={"max_tokens": 32},
        response_params={"max_tokens": 24},
        **QUIET,
    )
    (summary,) = df.attrs["forgekit"]["rounds"]
    assert summary["attempted"] == 1
    assert summary["evolved"] + sum(summary["eliminated"].values()) == 1
    assert len(df) == summary["evolved"]
    for record in df.to_dict("records"):
        assert record["input"].strip() and not copies_template(record["input"])
        assert record["output"].strip()
        assert record["lineage"]["parent_id"] == "k1" and record["lineage"]["root_id"] == "k1"
        assert record["lineage"]["round"] == 1 and record["lineage"]["model"] == ["local"]
        assert record["lineage"]["params"]["evolve"]["max_tokens"] == 32
