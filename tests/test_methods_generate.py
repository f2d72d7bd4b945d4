"""generate: templates filled per item, parse hooks, missing variables, cache and resume."""

import pytest
from pydantic import BaseModel

from forgekit.data.schema import extract_json
from forgekit.errors import ConfigError
from forgekit.methods import generate
from tests.conftest import read_jsonl

QUIET = {"progress": False}


def test_regex_parse_success_and_failure_are_kept_and_counted(stub, stub_model):
    stub.configure(rules=[{"match": "apple", "content": "Answer: red\nbecause ripe"}])
    data = [
        {"id": "p1", "fruit": "apple", "tag": "t1"},
        {"id": "p2", "fruit": "kiwi", "tag": "t2"},
    ]
    df = generate(
        data,
        user="What colour is a ripe {{ fruit }}?",
        model=stub_model,
        parse=r"Answer: (?P<colour>\w+)",
        **QUIET,
    )
    first, second = df.to_dict("records")
    assert first["input"] == "What colour is a ripe apple?"
    assert first["output"] == "Answer: red\nbecause ripe"
    assert first["parsed"] == {"colour": "red"}
    assert first["metadata"]["parse"] == {"ok": True}
    assert first["tag"] == "t1"  # input fields are carried through
    # A failed parse keeps the raw text and says why.
    assert second["output"] == "echo: What colour is a ripe kiwi?"
    assert second["parsed"] is None
    assert second["metadata"]["parse"]["ok"] is False
    assert "did not match" in second["metadata"]["parse"]["error"]
    assert df.attrs["forgekit"]["parse"] == {"ok": 1, "failed": 1}
    lineage = first["lineage"]
    assert lineage["method"] == "generate" and lineage["model"] == "stub"
    assert lineage["parent_id"] == "p1" and lineage["seed"] == 0
    assert len(lineage["template_hash"]) == 12
    assert lineage["params"]["temperature"] == 0.7


class Person(BaseModel):
    name: str
    age: int


@pytest.mark.parametrize(
    "schema",
    [
        {
            "type": "object",
            "required": ["name", "age"],
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        },
        Person,
    ],
    ids=["jsonschema", "pydantic"],
)
def test_json_parse_with_schema_validation(stub, stub_model, schema):
    stub.configure(
        rules=[
            {"match": "Ann", "content": 'Sure!\n```json\n{"name": "Ann", "age": 31}\n```'},
            {"match": "Bob", "content": 'Here: {"name": "Bob"} done'},
            {"match": "Cy", "content": "no json at all"},
        ]
    )
    df = generate(
        [{"who": "Ann"}, {"who": "Bob"}, {"who": "Cy"}],
        user="Describe {{ who }} as JSON",
        model=stub_model,
        schema=schema,
        **QUIET,
    )
    assert df["parsed"].iloc[0] == {"name": "Ann", "age": 31}
    assert df["parsed"].iloc[1] is None
    assert "age" in df["metadata"].iloc[1]["parse"]["error"]
    assert "no JSON" in df["metadata"].iloc[2]["parse"]["error"]
    assert df["output"].iloc[2] == "no json at all"
    assert df.attrs["forgekit"]["parse"] == {"ok": 1, "failed": 2}


def test_callable_parser_and_its_exceptions(stub, stub_model):
    def word_count(text: str) -> int:
        if "boom" in text:
            raise ValueError("cannot count explosions")
        return len(text.split())

    df = generate(
        [{"w": "one two"}, {"w": "boom"}],
        user="{{ w }}",
        model=stub_model,
        parse=word_count,
        **QUIET,
    )
    assert df["parsed"].iloc[0] == 3  # "echo: one two"
    assert df["metadata"].iloc[1]["parse"]["error"] == "ValueError: cannot count explosions"


def test_extract_json_variants():
    assert extract_json("[1, 2]") == [1, 2]
    assert extract_json('prefix {"a": {"b": 1}} suffix {"c": 2}') == {"a": {"b": 1}}
    with pytest.raises(ValueError):
        extract_json("nothing here")


def test_missing_variable_is_named_before_any_request(stub, stub_model):
    data = [{"fruit": "apple"}, {"id": "b-7", "colour": "green"}]
    with pytest.raises(ConfigError) as err:
        generate(data, user="Tell me about {{ fruit }}.", model=stub_model, **QUIET)
    message = str(err.value)
    assert "'fruit'" in message and "item 1 (id=b-7)" in message and "colour" in message
    assert stub.stats().get("requests", 0) == 0
    with pytest.raises(ConfigError, match="system template: variable 'tone'.*item 0"):
        generate(
            [{"fruit": "x"}], user="{{ fruit }}", system="Be {{ tone }}.", model=stub_model, **QUIET
        )
    with pytest.raises(ConfigError, match="syntax error on line 1"):
        generate([{"a": 1}], user="{{ a ", model=stub_model, **QUIET)
    with pytest.raises(ConfigError, match="no named group"):
        generate([{"a": 1}], user="{{ a }}", model=stub_model, parse=r"\d+", **QUIET)
    assert stub.stats().get("requests", 0) == 0


def test_prompt_kwargs_system_template_files_and_samples(stub, stub_model, tmp_path):
    user_file = tmp_path / "user.j2"
    user_file.write_text("Write about {{ topic }} for {{ audience }}.\n")
    stub.configure(
        rules=[{"match": '"role": "system", "content": "Be formal."', "content": "formal answer"}]
    )
    data = [
        {
            "user_prompt_kwargs": {"topic": "tides", "audience": "kids"},
            "system_prompt_kwargs": {"tone": "formal"},
        }
    ]
    df = generate(
        data, user=user_file, system="Be {{ tone }}.", model=stub_model, samples=2, **QUIET
    )
    assert len(df) == 2 and df["id"].is_unique
    assert list(df["input"]) == ["Write about tides for kids."] * 2
    assert list(df["system"]) == ["Be formal."] * 2
    assert list(df["output"]) == ["formal answer"] * 2
    assert [lin["seed"] for lin in df["lineage"]] == [0, 1]


def test_second_call_is_free_and_interrupted_run_resumes(stub, stub_model, tmp_path):
    data = [{"n": i} for i in range(5)]
    out = tmp_path / "gen.jsonl"
    first = generate(
        data,
        user="Number {{ n }}",
        model=stub_model,
        out=out,
        max_requests=2,
        concurrency=1,
        **QUIET,
    )
    assert first.attrs["forgekit"]["status"] == "stopped"
    assert len(first) == 2
    rest = generate(data, user="Number {{ n }}", model=stub_model, out=out, **QUIET)
    assert len(rest) == 5 and rest.attrs["forgekit"]["stats"]["skipped"] == 2
    ids = [r["id"] for r in read_jsonl(out)]
    assert len(ids) == 5 and len(set(ids)) == 5
    sent = stub.stats()["requests"]
    assert sent == 5
    again = generate(data, user="Number {{ n }}", model=stub_model, **QUIET)
    assert stub.stats()["requests"] == sent  # every answer came from the cache
    assert again.attrs["forgekit"]["stats"]["cached"] == 5
    assert list(again["id"]) == list(rest["id"])


@pytest.mark.model
def test_generate_on_the_embedded_model():
    df = generate(
        [{"id": "s1", "topic": "rain"}, {"id": "s2", "topic": "snow"}],
        user="Write one short sentence about {{ topic }}.",
        model="local",
        params={"max_tokens": 24},
        **QUIET,
    )
    assert len(df) == 2
    assert all(isinstance(t, str) and t.strip() for t in df["output"])
    assert list(df["input"]) == [
        "Write one short sentence about rain.",
        "Write one short sentence about snow.",
    ]
    for record, parent in zip(df.to_dict("records"), ["s1", "s2"]):
        assert record["lineage"]["model"] == "local"
        assert record["lineage"]["parent_id"] == parent
        assert record["lineage"]["params"]["max_tokens"] == 24
