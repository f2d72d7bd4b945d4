"""judge: exact tag parsing (never guessing), new columns, the explanation, custom
categories, counts of unparsable judgments; a real run on the embedded model."""

import pandas as pd
import pytest

from forgekit.cli import execute, parse
from forgekit.cli import main as cli_main
from forgekit.errors import ConfigError
from forgekit.methods import judge
from forgekit.methods.judge import _LABELS, DIFFICULTY, QUALITY, match_label, match_language
from forgekit.methods.parsing import parse_labeled
from forgekit.models.scripted import ScriptedModel
from tests.conftest import read_jsonl

QUIET = {"progress": False}

RECORDS = [
    {"id": "a", "input": "Prove that there are infinitely many primes.", "output": "Assume..."},
    {"id": "b", "input": "Say hi.", "output": "Hi!", "source": "demo"},
    {"id": "c", "input": "写一首关于秋天的诗。", "output": "秋风..."},
]


@pytest.mark.parametrize(
    ("value", "allowed", "expected"),
    [
        ("very hard", DIFFICULTY, "very hard"),
        ("**Very Hard**", DIFFICULTY, "very hard"),
        ("hard - needs a proof", DIFFICULTY, "hard"),
        ("not very hard", DIFFICULTY, None),  # never guessed from a substring
        ("4", DIFFICULTY, None),
        ("medium-hard", DIFFICULTY, None),
        ("excellent.", QUALITY, "excellent"),
        ("quite good I think", QUALITY, None),
        (None, QUALITY, None),
    ],
)
def test_match_label(value, allowed, expected):
    assert match_label(value, allowed) == expected


def test_match_language():
    assert match_language("english") == "English"
    assert match_language("Chinese (Simplified)") is None
    assert match_language("Mandarin Chinese") == "Mandarin Chinese"
    assert match_language("I cannot tell, it might be 2 languages") is None


def col(df, name):
    """A column with missing values as None (pandas shows a None string as NaN)."""
    return [None if pd.isna(v) else v for v in df[name]]


def _script(stub):
    stub.configure(
        rules=[
            {
                "match": "infinitely many primes",
                "content": "Difficulty: very hard\nQuality: **poor**\n"
                "Explanation: The proof stops after one word.\nCategory: math\nLanguage: English",
            },
            {
                "match": "Say hi",
                "content": "Difficulty: trivial\nQuality: good\nExplanation: Fine.\n"
                "Category: greetings\nLanguage: English",
            },  # 'trivial' and 'greetings' are not allowed labels
            {"match": "秋天", "content": "I think this is a nice poem."},  # no labels at all
        ]
    )


def test_tags_become_columns_and_unparsable_stay_empty(stub, stub_model, tmp_path):
    _script(stub)
    out = tmp_path / "j.jsonl"
    df = judge(RECORDS, model=stub_model, out=out, progress=False)
    assert col(df, "difficulty") == ["very hard", None, None]
    assert col(df, "quality") == ["poor", "good", None]
    assert df.iloc[0]["quality_explanation"] == "The proof stops after one word."
    assert col(df, "category") == ["math", None, None]
    assert col(df, "language") == ["English", "English", None]
    assert df.attrs["forgekit"]["unparsable"] == {
        "difficulty": 2,
        "quality": 1,
        "quality_explanation": 1,
        "category": 2,
        "language": 1,
    }
    row = df.iloc[1]
    assert row["input"] == "Say hi." and row["output"] == "Hi!" and row["source"] == "demo"
    assert (
        row["lineage"]["parent_id"] == "b" and "Difficulty: trivial" in row["metadata"]["judge_raw"]
    )
    assert len(read_jsonl(out)) == 3
    before = stub.stats()["requests"]
    judge(RECORDS, model=stub_model, out=out, progress=False, cache=False)
    assert stub.stats()["requests"] == before  # resumed from the file


def test_custom_categories_and_aspects(stub, stub_model):
    stub.configure(rules=[{"match": "Say hi", "content": "Category: greetings\nDifficulty: easy"}])
    df = judge(
        RECORDS[1:2],
        model=stub_model,
        aspects=["category"],
        categories=["greetings", "other"],
        progress=False,
    )
    assert df.iloc[0]["category"] == "greetings"
    assert "difficulty" not in df.columns  # not asked for: no column
    with pytest.raises(ConfigError, match="aspects.*'mood'"):
        judge(RECORDS, model=stub_model, aspects=["mood"])


def test_scripted_judgments_map_to_the_exact_labels():
    model = ScriptedModel(
        [
            (r"primes", "**Difficulty:** Very Hard - needs a proof\nLanguage: english."),
            (r"Say hi", "Difficulty: medium-hard\nLanguage: 2 languages"),  # neither is valid
        ]
    )
    df = judge(RECORDS[:2], model=model, aspects=["difficulty", "language"], **QUIET)
    assert col(df, "difficulty") == ["very hard", None]
    assert col(df, "language") == ["English", None]
    assert "quality" not in df.columns and "category" not in df.columns
    assert df.attrs["forgekit"]["unparsable"] == {"difficulty": 1, "language": 1}
    prompt = model.calls[0]["prompt"]
    assert "Difficulty: <very easy | easy | medium | hard | very hard>" in prompt
    assert "Quality" not in prompt and "[Response]\nAssume..." in prompt


def test_command_line_lists_tag_alias_and_no_response(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"input": "Say hi.", "output": "Hi!"}\n')
    words = "--aspects quality,category --categories greetings other --no-response"
    args = parse(["tag", "-i", str(src), *words.split(), "--no-progress"])
    assert args.aspects == ["quality", "category"] and args.categories == ["greetings", "other"]
    args.model = model = ScriptedModel([(r".", "Quality: good\nCategory: Greetings")])
    df = execute(args)
    assert col(df, "quality") == ["good"] and col(df, "category") == ["greetings"]
    prompt = model.calls[0]["prompt"]
    assert "[Response]" not in prompt and "the quality of the request" in prompt
    assert "exactly one of greetings, other." in prompt


def test_cli(stub, stub_model, tmp_path, capsys):
    assert cli_main(["judge", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--aspects", "--categories", "--field", "--response-field", "--no-response"):
        assert option in text
    _script(stub)
    src = tmp_path / "in.jsonl"
    src.write_text('{"input": "Prove that there are infinitely many primes.", "output": "x"}\n')
    out = tmp_path / "o.jsonl"
    assert cli_main(["tag", "-i", str(src), "-m", "stub", "--out", str(out), "--no-progress"]) == 0
    assert read_jsonl(out)[0]["difficulty"] == "very hard"


@pytest.mark.model
def test_judge_on_local_model():
    aspects = ["difficulty", "language"]  # a shorter prompt: the local model is slow
    df = judge(
        RECORDS[1:2], model="local", aspects=aspects, params={"max_tokens": 24}, progress=False
    )
    row = df.iloc[0]
    raw = row["metadata"]["judge_raw"]
    assert raw.strip()
    # Whatever the small model wrote, the tags are exactly what its text holds, never guessed.
    fields = parse_labeled(raw, _LABELS)
    expected = {
        "difficulty": match_label(fields.get("difficulty"), DIFFICULTY),
        "language": match_language(fields.get("language")),
    }
    assert {k: col(df, k)[0] for k in aspects} == expected
    missing = {k: 1 for k, v in expected.items() if v is None}
    assert df.attrs["forgekit"]["unparsable"] == missing
