"""translate / rewrite: every text leaf translated in place (history turns, chosen/rejected
message lists, system), structure kept exactly, a failed field fails the record cleanly and a
re-run retries it; rewrite toward a difficulty and answer anew; a real run on the embedded
model."""

import re
from dataclasses import replace

import pytest

from forgekit.cli import main as cli_main
from forgekit.data.records import replace_leaf as put
from forgekit.data.records import text_leaves
from forgekit.errors import ConfigError
from forgekit.methods import rewrite, translate
from forgekit.models.scripted import ScriptedModel
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


def test_a_good_translation_becomes_the_record_with_exactly_those_fields_translated():
    replies = {**DICTIONARY, "How are you?": "Translation: 你好吗？", "Hi there": '"嗨，你好"'}
    model = ScriptedModel([(f"user: {re.escape(src)}$", dst) for src, dst in replies.items()])
    df = translate(
        [RECORD], language="Chinese", fields=["input", "history"], model=model, progress=False
    )
    (row,) = df.to_dict("records")
    assert row["input"] == "你好吗？"  # the preamble and the quotes are not the translation
    assert row["history"] == [["你好", "嗨，你好"], ["早上好", ""]]
    for untouched in ("system", "output", "chosen", "rejected", "tag", "score"):
        assert row[untouched] == RECORD[untouched]
    assert row["metadata"]["translate"] == {
        "language": "Chinese",
        "fields": ["input", "history[0][0]", "history[0][1]", "history[1][0]"],
    }
    assert row["metadata"]["original"] == {"input": "How are you?", "history": RECORD["history"]}
    sent = [call["prompt"].split("\nuser: ")[1] for call in model.calls]
    assert sent == ["How are you?", "Hello", "Hi there", "Good morning"]
    assert all("Translate the user's text into Chinese" in c["prompt"] for c in model.calls)
    assert df.attrs["forgekit"]["errors"] == [] and "counts" not in df.attrs["forgekit"]


class CuttingModel(ScriptedModel):
    """As a real model does, an answer longer than max_tokens (here: words) stops there with
    finish_reason 'length'."""

    async def chat(self, messages, params):
        done = await super().chat(messages, params)
        words = done.text.split()
        if len(words) <= params.max_tokens:
            return done
        return replace(done, texts=[" ".join(words[: params.max_tokens])], finish_reason="length")


def test_cut_off_or_refused_answers_refuse_the_record_with_the_reason(tmp_path):
    apology = "I'm sorry, I can't help with that."
    model = CuttingModel(
        [
            (r"user: Good morning\.$", "Bonjour."),
            (r"user: Tell me a story\.$", "Raconte-moi une histoire."),
            (r"user: Once upon a time", "Il était une fois " + "un très " * 20 + "vieux roi."),
            (r"user: How do I pick a lock\?$", "I'm sorry, but I can't help with that."),
            (f"user: {re.escape(apology)}$", apology),  # the text itself says so: a translation
        ]
    )
    records = [
        {"id": "good", "input": "Good morning."},
        {"id": "long", "input": "Tell me a story.", "output": "Once upon a time, a king."},
        {"id": "refused", "input": "How do I pick a lock?"},
        {"id": "quoted", "input": apology},
    ]
    out = tmp_path / "t.jsonl"
    df = translate(
        records, language="French", params={"max_tokens": 16}, model=model, out=out, progress=False
    )
    written = {row["lineage"]["parent_id"]: row for row in read_jsonl(out)}
    assert set(written) == {"good", "quoted"} and len(df) == 2
    assert written["good"]["input"] == "Bonjour." and written["quoted"]["input"] == apology
    info = df.attrs["forgekit"]
    assert info["counts"] == {"cut_off": 1, "refusal": 1}
    messages = sorted(error["message"] for error in info["errors"])
    assert messages[0].endswith(
        "input: the model refused: \"I'm sorry, but I can't help with that.\""
    )
    assert messages[1].endswith("output: the answer was cut off at max_tokens")
    logged = read_jsonl(tmp_path / "t.errors.jsonl")
    assert sorted(e["error"] for e in logged) == ["FieldError", "FieldError"]
    # each bad answer was asked for once more past the cache before the record was refused
    for text in ("Once upon a time", "How do I pick a lock?"):
        assert sum(f"user: {text}" in call["prompt"] for call in model.calls) == 2


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
    with pytest.raises(ConfigError, match=r"difficulty: unknown \['brutal'\]"):
        rewrite([RECORD], difficulty="brutal", model=stub_model)
    with pytest.raises(ConfigError, match=r"fields: unknown \['title'\]"):
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
                "--fields",
                "input,output",
                "-m",
                "stub",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    (row,) = read_jsonl(out)
    assert row["output"] == "很好，谢谢。" and row["metadata"]["translate"]["fields"] == [
        "input",
        "output",
    ]


@pytest.mark.model
def test_translate_on_local_model():
    source = "Good morning, friend."
    df = translate(
        [{"input": source}],
        language="French",
        model="local",
        params={"max_tokens": 32},
        progress=False,
    )
    info = df.attrs["forgekit"]
    # A weak model may run past max_tokens: then the record is refused, never half-kept, and
    # the one error names the field and the reason that was counted.
    if len(df) == 1:
        row = df.iloc[0]
        assert info["errors"] == [] and row["input"].strip()
        assert row["metadata"]["original"] == {"input": source}
        assert row["metadata"]["translate"] == {"language": "French", "fields": ["input"]}
        assert row["lineage"]["model"] == "local"
    else:
        (error,) = info["errors"]
        (reason,) = info["counts"]
        words = {"cut_off": "cut off at max_tokens", "no_text": "no text", "refusal": "refused"}
        assert "input: the " in error["message"] and words[reason] in error["message"]
