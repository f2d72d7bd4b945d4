"""reasoning: <think> parsing (closed, unclosed, template-opened), final-answer parsing,
reference and majority checks on a scripted stub, and a real run on the embedded model."""

import pytest

from forgekit.cli import main as cli_main
from forgekit.errors import ConfigError
from forgekit.methods import reasoning
from forgekit.methods.reasoning import answers_match, parse_reasoning, split_thinking
from tests.conftest import read_jsonl


@pytest.mark.parametrize(
    ("text", "thinking", "answer", "tags"),
    [
        ("<think>2+2 is 4.</think>\nThe answer is 4.", "2+2 is 4.", "The answer is 4.", "closed"),
        ("<think>add them\n</think>\n\nFinal answer: 4", "add them", "4", "closed"),
        ("<think>still thinking about", "still thinking about", None, "unclosed"),
        ("the template opened it</think>4", "the template opened it", "4", "no_open_tag"),
        ("Step 1: 6*7.\nStep 2: 42.\nFinal answer: 42", "Step 1: 6*7.\nStep 2: 42.", "42", "none"),
        ("So x = 3.\n#### 3", "So x = 3.", "3", "none"),
        (
            "We get $\\boxed{\\frac{1}{2}}$.",
            "We get $\\boxed{\\frac{1}{2}}$.",
            "\\frac{1}{2}",
            "none",
        ),
        ("推理：3+5=8。\n答案：8", "推理：3+5=8。", "8", "none"),
        ("I think it is probably 7", "I think it is probably 7", None, "none"),
    ],
)
def test_parse_reasoning(text, thinking, answer, tags):
    parsed = parse_reasoning(text)
    assert (parsed["thinking"], parsed["answer"], parsed["think_tags"]) == (thinking, answer, tags)


def test_split_thinking_keeps_text_after_the_tag():
    assert split_thinking("<think>a</think>b") == ("a", "b", "closed")
    assert split_thinking("plain") == (None, "plain", "none")


def test_answer_comparison():
    assert answers_match("1,000", "1000")
    assert answers_match("$42.00", "42")
    assert answers_match("0.3333333", "0.33333334", rel_tol=1e-6)
    assert not answers_match("0.33", "0.34")
    assert answers_match("The answer is Paris.", "paris")
    assert not answers_match("Lyon", "Paris")
    assert answers_match("\\boxed{7}", "7")


PROBLEMS = [
    {"id": "p1", "input": "What is 6 times 7?", "target": "42"},
    {"id": "p2", "input": "What is 10 minus 3?", "target": "7"},
    {"id": "p3", "input": "Name the capital of France.", "target": "Paris"},
]


def _script(stub):
    stub.configure(
        rules=[
            {"match": "6 times 7", "content": "<think>6*7 = 42</think>\nFinal answer: 42"},
            {"match": "10 minus 3", "content": "10 - 3 = 6.\nFinal answer: 6"},  # wrong
            {"match": "capital of France", "content": "<think>It is Paris"},  # cut off
        ]
    )


def test_reference_check_records_results(stub, stub_model, tmp_path):
    _script(stub)
    out = tmp_path / "r.jsonl"
    df = reasoning(PROBLEMS, model=stub_model, check="reference", out=out, progress=False)
    assert list(df["output"]) == ["42", "6", ""]
    assert list(df["thinking"]) == ["6*7 = 42", "10 - 3 = 6.", "It is Paris"]
    assert list(df["correct"]) == [True, False, None]  # no answer: unknown, not "wrong"
    meta = list(df["metadata"])
    assert meta[0]["think_tags"] == "closed" and meta[2]["think_tags"] == "unclosed"
    assert meta[1]["check"] == {"method": "reference", "reference": "7", "correct": False}
    assert df.attrs["forgekit"]["counts"] == {"no_answer": 1, "unclosed_think": 1}
    assert df.iloc[0]["lineage"]["parent_id"] == "p1"
    assert len(read_jsonl(out)) == 3
    before = stub.stats()["requests"]
    kept = reasoning(PROBLEMS, model=stub_model, check="reference", keep="correct", progress=False)
    assert list(kept["input"]) == ["What is 6 times 7?"]
    assert stub.stats()["requests"] == before  # same prompts: all from the cache


def test_majority_over_samples(stub, stub_model):
    stub.configure(
        rules=[
            {
                "match": "6 times 7",
                "contents": [
                    "Final answer: 42",
                    "It is 41.\nFinal answer: 41",
                    "Final answer: 42.0",
                ],
            }
        ]
    )
    df = reasoning(
        PROBLEMS[:1], model=stub_model, check="majority", samples=3, progress=False, concurrency=1
    )
    check = df.iloc[0]["metadata"]["check"]
    assert check["answers"] == ["42", "41", "42.0"]
    assert check["agreement"] == pytest.approx(2 / 3, abs=1e-4) and not check["tie"]  # 4 places
    assert df.iloc[0]["output"] == "42" and bool(df.iloc[0]["correct"]) is True
    assert stub.stats()["requests"] == 3  # three samples, distinct seeds
    with pytest.raises(ConfigError, match="temperature > 0"):
        reasoning(PROBLEMS, model=stub_model, check="majority", params={"temperature": 0})


def test_bad_input_names_the_record(stub_model):
    with pytest.raises(ConfigError, match="record 1 has no 'target' field"):
        reasoning(
            [{"input": "a", "target": "1"}, {"input": "b"}], model=stub_model, check="reference"
        )


def test_cli(stub, stub_model, tmp_path, capsys):
    assert cli_main(["reasoning", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--mode", "--check", "--reference", "--samples", "--keep", "--max-tokens"):
        assert option in text
    _script(stub)
    src = tmp_path / "p.jsonl"
    src.write_text('{"input": "What is 6 times 7?", "target": "42"}\n')
    out = tmp_path / "o.jsonl"
    assert (
        cli_main(
            [
                "reasoning",
                "-i",
                str(src),
                "-m",
                "stub",
                "--check",
                "reference",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert read_jsonl(out)[0]["correct"] is True


@pytest.mark.model
def test_reasoning_on_local_model():
    df = reasoning(
        [{"input": "What is 2 + 3?", "target": "5"}],
        model="local",
        check="reference",
        params={"max_tokens": 48},
        progress=False,
    )
    row = df.iloc[0]
    assert row["metadata"]["raw"].strip()
    assert row["metadata"]["think_tags"] in ("none", "closed", "unclosed", "no_open_tag")
    assert row["correct"] in (True, False, None)
    assert row["lineage"]["model"] == "local"
