"""translate / rewrite: every text leaf translated in place (history turns, chosen/rejected
message lists, system), structure kept exactly, a failed field fails the record cleanly and a
re-run retries it; rewrite toward a difficulty and answer anew; a real run on the embedded
model."""

import re

import pytest

from forgekit.cli import main as cli_main
from forgekit.errors import ConfigError
from forgekit.methods import rewrite, translate
from forgekit.methods.translate import put, text_leaves
from tests.conftest import read_jsonl

RECORD = {
    "id": "r1",
    "system": "Be brief.",
    "input": "How are you?",
    "output": "Fine, thanks.",
    "history": [["Hello", "Hi there"], ["Good morning", ""]],
    "chosen": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"}],
    "rejected": "Go away",
    "tag": "greeting",
    "score": 3,
}
DICTIONARY = {
    "Be brief.": "简短。",
    "How are you?": "你好吗？",
    "Fine, thanks.": "很好，谢谢。",
    "Hello": "你好",
    "Hi there": "嗨，你好",
    "Good morning": "早上好",
    "Hi": "嗨",
    "Go away": "走开",
}


def _script(stub, broken=()):
    rules = []
    for source, target in DICTIONARY.items():
        if source in broken:
            target = ""  # the model answers nothing for this one
        # the text is the user message, last in the JSON of the messages
        rules.append({"match": f'"content": "{re.escape(source)}"}}]$', "content": target})
    stub.configure(rules=rules)


def test_leaves_and_put_keep_structure():
    leaves = text_leaves(RECORD["chosen"])
    assert leaves == [((0, "content"), "Hello"), ((1, "content"), "Hi")]
    changed = put(RECORD["history"], (1, 0), "X")
    assert changed == [["Hello", "Hi there"], ["X", ""]]
    assert RECORD["history"][1][0] == "Good morning"  # the input is never mutated


def test_translate_keeps_structure_exactly(stub, stub_model, tmp_path):
    _script(stub)
    out = tmp_path / "t.jsonl"
    df = translate([RECORD], language="Chinese", model=stub_model, out=out, progress=False)
    row = read_jsonl(out)[0]
    assert (
        row["system"] == "简短。" and row["input"] == "你好吗？" and row["output"] == "很好，谢谢。"
    )
    assert row["history"] == [["你好", "嗨，你好"], ["早上好", ""]]  # empty turn stays empty
    assert row["chosen"] == [
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "嗨"},
    ]
    assert row["rejected"] == "走开"
    assert row["tag"] == "greeting" and row["score"] == 3  # other fields untouched
    assert row["metadata"]["original"]["history"] == RECORD["history"]
    assert row["metadata"]["translate"]["language"] == "Chinese"
    assert row["lineage"]["parent_id"] == "r1"
    assert len(df) == 1
    # "Hello" appears twice (history and chosen): the cache answers the second one
    assert stub.stats()["requests"] == 8


def test_a_failed_field_fails_the_whole_record_and_a_rerun_retries(stub, stub_model, tmp_path):
    _script(stub, broken=("Good morning",))
    out = tmp_path / "t.jsonl"
    other = {"id": "r2", "input": "Hello"}
    df = translate([RECORD, other], language="Chinese", model=stub_model, out=out, progress=False)
    assert list(df["id"]) != [] and [r["input"] for r in read_jsonl(out)] == ["你好"]
    errors = df.attrs["forgekit"]["errors"]
    assert len(errors) == 1 and errors[0]["error"] == "FieldError"
    assert "history[1][0]: the model returned no text" in errors[0]["message"]
    assert (tmp_path / "t.errors.jsonl").exists()
    _script(stub)  # the model behaves now: a re-run completes the record
    again = translate(
        [RECORD, other], language="Chinese", model=stub_model, out=out, progress=False
    )
    assert len(again) == 2 and len(read_jsonl(out)) == 2


def test_rewrite_toward_difficulty_and_answers_again(stub, stub_model):
    stub.configure(
        rules=[
            {"match": "so that it is harder", "content": "Rewritten: How are you, in three words?"},
            {
                "match": '"content": "How are you, in three words\\?"}]$',
                "content": "Fine and well.",
            },
        ]
    )
    df = rewrite([RECORD], difficulty="harder", model=stub_model, progress=False)
    row = df.iloc[0]
    assert row["input"] == "How are you, in three words?"
    assert row["output"] == "Fine and well."
    assert row["history"] == RECORD["history"]  # not in `fields`: untouched
    assert row["metadata"]["original"] == {"input": "How are you?", "output": "Fine, thanks."}
    with pytest.raises(ConfigError, match="difficulty= .*and/or style="):
        rewrite([RECORD], model=stub_model)
    with pytest.raises(ConfigError, match="difficulty='brutal'"):
        rewrite([RECORD], difficulty="brutal", model=stub_model)
    with pytest.raises(ConfigError, match="fields=\\['title'\\]"):
        translate([RECORD], language="French", fields=["title"], model=stub_model)


def test_cli(stub, stub_model, tmp_path, capsys):
    assert cli_main(["translate", "--help"]) == 0
    assert cli_main(["rewrite", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--language", "--fields", "--difficulty", "--style", "--no-respond"):
        assert option in text
    _script(stub)
    src = tmp_path / "in.jsonl"
    src.write_text('{"input": "How are you?", "output": "Fine, thanks."}\n')
    out = tmp_path / "o.jsonl"
    assert (
        cli_main(
            [
                "translate",
                "-i",
                str(src),
                "-l",
                "Chinese",
                "-m",
                "stub",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert read_jsonl(out)[0]["output"] == "很好，谢谢。"


@pytest.mark.model
def test_translate_on_local_model():
    df = translate(
        [{"input": "Good morning, friend."}],
        language="French",
        model="local",
        params={"max_tokens": 32},
        progress=False,
    )
    # a weak model may run past max_tokens; then the record fails cleanly instead
    if len(df):
        assert df.iloc[0]["input"].strip() and df.iloc[0]["lineage"]["model"] == "local"
    else:
        assert "input" in df.attrs["forgekit"]["errors"][0]["message"]
