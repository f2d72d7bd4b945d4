"""reasoning: <think> parsing (closed, unclosed, template-opened), final-answer parsing,
reference and majority checks on a scripted stub, and a real run on the embedded model."""

import pytest

from forgekit.cli import execute, parse
from forgekit.cli import main as cli_main
from forgekit.errors import ConfigError
from forgekit.methods import reasoning
from forgekit.methods.reasoning import COT_SYSTEM, answers_match, parse_reasoning, split_thinking
from forgekit.models.scripted import ScriptedModel
from tests.conftest import read_jsonl

QUIET = {"progress": False}


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
    assert list(df["target"]) == ["42", "7", "Paris"]  # the user's references stay a column
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


def test_scripted_answers_give_the_known_check_results():
    """Each answer's correct result is known: right -> True, wrong -> False, no parsable
    answer -> None; keep='correct' drops all but the right one and counts the others."""
    model = ScriptedModel(
        [
            (r"6 times 7", "6 * 7 = 42.\nFinal answer: **42**"),  # right
            (r"10 minus 3", "#### 6"),  # wrong
            (r"capital of France", "I would rather not say."),  # no final answer
        ]
    )
    df = reasoning(PROBLEMS, model=model, check="reference", **QUIET)
    assert [bool(c) if c is not None else None for c in df["correct"]] == [True, False, None]
    assert [m["check"]["correct"] for m in df["metadata"]] == [True, False, None]
    assert [m["answer_from"] for m in df["metadata"]] == ["final_answer_line"] * 2 + [None]
    assert list(df["output"]) == ["42", "6", ""]
    assert df.attrs["forgekit"]["counts"] == {"no_answer": 1}
    assert all(call["prompt"].startswith(f"system: {COT_SYSTEM}") for call in model.calls)
    kept = reasoning(PROBLEMS, model=model, check="reference", keep="correct", **QUIET)
    assert list(kept["input"]) == ["What is 6 times 7?"]
    assert kept.attrs["forgekit"]["counts"] == {"no_answer": 1, "dropped_by_check": 2}


def test_majority_needs_a_strict_majority_and_a_tie_goes_to_the_first_answer():
    model = ScriptedModel(
        [
            (r"6 times 7", ["Final answer: 41", "Final answer: 42", "no idea", "Final answer: 42"]),
            (r"10 minus 3", ["Final answer: 7", "Final answer: 8", "Final answer: 8"]),
        ]
    )
    df = reasoning(PROBLEMS[:2], model=model, check="majority", samples=4, concurrency=1, **QUIET)
    first, second = (row["metadata"]["check"] for _, row in df.iterrows())
    # 42 wins 2 of 4 (one sample had no answer): a majority of answers, not of samples.
    assert first["majority"] == "42.0" and first["votes"] == {"41.0": 1, "42.0": 2}
    assert df.iloc[0]["output"] == "42" and not bool(df.iloc[0]["correct"])
    # 7, 8, 8, 8 (the last reply repeats): 8 has 3 of 4.
    assert second["answers"] == ["7", "8", "8", "8"] and df.iloc[1]["output"] == "8"
    assert bool(df.iloc[1]["correct"]) is True
    seeds = [call["params"]["seed"] for call in model.calls]
    assert len(set(seeds)) == 8  # every sample of every problem has its own seed
    tie = ScriptedModel([(r"6 times 7", ["Final answer: 5", "Final answer: 6"])])
    tied = reasoning(PROBLEMS[:1], model=tie, check="majority", samples=2, **QUIET).iloc[0]
    assert tied["output"] == "5" and tied["metadata"]["check"]["tie"]
    assert not bool(tied["correct"])  # a tied winner is never called correct


def test_think_mode_sends_the_problem_as_is_and_a_system_file_is_read(tmp_path):
    model = ScriptedModel([(r".", "<think>6*7</think>42")])
    df = reasoning(PROBLEMS[:1], model=model, mode="think", **QUIET)
    assert model.calls[0]["prompt"] == "user: What is 6 times 7?"
    assert df.iloc[0]["output"] == "42" and df.iloc[0]["metadata"]["answer_from"] == "after_think"
    assert "correct" not in df.columns  # no check, no column
    system = tmp_path / "system.txt"
    system.write_text("Be brief.")
    src = tmp_path / "p.jsonl"
    src.write_text('{"input": "What is 6 times 7?", "target": "42"}\n')
    args = parse(["reasoning", "-i", str(src), "--system-file", str(system), "--no-progress"])
    args.model = model
    execute(args)
    assert model.calls[-1]["prompt"] == "system: Be brief.\nuser: What is 6 times 7?"


def test_bad_input_names_the_record(stub_model):
    with pytest.raises(ConfigError, match="record 1 has no 'target' field"):
        reasoning(
            [{"input": "a", "target": "1"}, {"input": "b"}], model=stub_model, check="reference"
        )
    with pytest.raises(ConfigError, match="keep='correct' needs check"):
        reasoning(PROBLEMS, model=stub_model, keep="correct")
    with pytest.raises(ConfigError, match="samples >= 2, got 1"):
        reasoning(PROBLEMS, model=stub_model, check="majority", samples=1)
    with pytest.raises(ConfigError, match="check: unknown.*'exact'.*choose from reference"):
        reasoning(PROBLEMS, model=stub_model, check="exact")


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
    raw = row["metadata"]["raw"]
    assert raw.strip() and row["lineage"]["model"] == "local"
    # Whatever the small model wrote, the record says what its text holds.
    expected = parse_reasoning(raw)
    assert row["metadata"]["think_tags"] == expected["think_tags"]
    assert row["output"] == (expected["answer"] or "")
    if expected["answer"] is None:
        assert row["correct"] is None and df.attrs["forgekit"]["counts"]["no_answer"] == 1
    else:
        assert bool(row["correct"]) is answers_match(expected["answer"], "5")
    assert row["metadata"]["check"]["correct"] == (
        None if row["correct"] is None else bool(row["correct"])
    )
