"""`forge dedup / diversity / merge / unify` through the shared command parser."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from forgekit.cli import CommandContext, execute, main, parse
from forgekit.data.io import read_records
from forgekit.errors import ConfigError


@pytest.fixture
def data_file(tmp_path):
    rows = [
        {"id": "a", "input": "How do I bake sourdough bread at home today?", "tag": "cook"},
        {"id": "b", "input": "How do I bake sourdough bread at home today ?", "tag": "cook"},
        {"id": "c", "input": "涂了甲硝唑后皮肤长的痘痘没有效果，我应该如何处理？", "tag": "med"},
        {"id": "d", "input": "涂了甲硝唑后皮肤长的痘痘没有效果，我应该如何处理", "tag": "med"},
        {"id": "e", "input": "What is the capital of France?", "tag": "geo"},
    ]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def test_dedup_minhash_writes_kept_and_removed(data_file, tmp_path, capsys):
    out, removed = tmp_path / "kept.jsonl", tmp_path / "removed.jsonl"
    code = main(
        ["dedup", "-i", str(data_file), "--method", "minhash", "--out", str(out),
         "--removed-out", str(removed)]
    )  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["kept"], summary["removed"]) == (3, 2)
    assert [r["id"] for r in read_records(out)] == ["a", "c", "e"]
    gone = read_records(removed)
    assert [(r["id"], r["duplicate_of"]) for r in gone] == [("b", "a"), ("d", "c")]
    assert all(r["estimated_jaccard"] >= 0.7 for r in gone)


@pytest.mark.parametrize(
    ("method", "extra", "kept"),
    [
        ("exact", [], ["a", "b", "c", "d", "e"]),
        ("exact", ["--ignore-punctuation"], ["a", "c", "e"]),
        ("rouge", ["--threshold", "0.9"], ["a", "c", "e"]),
        ("semantic", ["--eps", "0.1"], ["a", "c", "e"]),
    ],
)
def test_dedup_methods_return_the_kept_dataframe_without_out(data_file, method, extra, kept):
    args = parse(["dedup", "-i", str(data_file), "--method", method, *extra])
    df = execute(args)
    assert isinstance(df, pd.DataFrame) and df["id"].tolist() == kept


def test_dedup_accepts_a_notebook_variable(data_file):
    frame = pd.read_json(data_file, lines=True)
    ctx = CommandContext(namespace={"frame": frame})
    df = execute(parse("dedup --input frame --method exact --ignore-punctuation"), ctx)
    assert df["id"].tolist() == ["a", "c", "e"]


def test_diversity_reports_vendi_and_label_indices(data_file, tmp_path):
    result = execute(
        parse(
            ["diversity", "-i", str(data_file), "--label", "tag", "--q", "1", "--q", "inf",
             "--entities", "--report", str(tmp_path / "r.html")]
        )
    )  # fmt: skip
    assert result["records"] == 5
    assert set(result["vendi"]) == {"kernel", "q=1", "q=inf"}
    assert result["vendi"]["q=inf"] <= result["vendi"]["q=1"]
    labels = result["label_diversity"]
    assert labels["richness"] == 3 and labels["simpson_dominance"] == pytest.approx(9 / 25)
    assert result["entity_diversity"]["top"] == {"甲硝唑": 2, "France": 1}
    assert (tmp_path / "r.html").exists()


def test_merge_and_unify_commands(tmp_path, capsys):
    hs = tmp_path / "helpsteer3.jsonl"
    hs.write_text(
        "".join(
            json.dumps({"context": [{"role": "user", "content": f"q{s}"}], "response1": "A",
                        "response2": "B", "overall_preference": s}) + "\n"
            for s in (-2, 0, 2)
        ),
        "utf-8",
    )  # fmt: skip
    out = tmp_path / "pref.jsonl"
    assert main(["unify", "-i", str(hs), "--to", "preference", "--out", str(out)]) == 0
    rows = read_records(out)
    assert [(r["chosen"], r["rejected"]) for r in rows] == [("A", "B"), ("", ""), ("B", "A")]
    assert rows[0]["source_prompt_id"] == "0_helpsteer3"
    capsys.readouterr()
    merged = tmp_path / "merged.jsonl"
    assert main(["merge", str(hs), str(out), "--names", "hs,again", "--out", str(merged)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["records"] == 3 and summary["dropped_duplicates"] == 3


def test_cli_errors_are_one_line_and_name_the_problem(data_file, tmp_path, capsys):
    assert main(["dedup", "-i", str(tmp_path / "missing.jsonl")]) == 1
    assert "missing.jsonl: no such file" in capsys.readouterr().err
    assert main(["dedup", "-i", str(data_file), "--text", "output"]) == 1
    assert "text field 'output' is not in the data" in capsys.readouterr().err
    assert main(["unify", "-i", str(data_file), "--to", "sft", "--map", "prompt"]) == 1
    assert "--map 'prompt': use TARGET=FIELD" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "ok"}\n{broken\n', "utf-8")
    assert main(["dedup", "-i", str(bad)]) == 1
    assert "bad.jsonl:2" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--storage-config: not valid JSON"):
        execute(parse(["dedup", "-i", str(data_file), "--storage-config", "{redis"]))


def test_merge_names_notebook_variables_by_their_names(tmp_path):
    first = pd.DataFrame({"input": ["a", "b"]})
    second = pd.DataFrame({"input": ["B", "c"]})
    ctx = CommandContext(namespace={"first": first, "second": second})
    out = tmp_path / "m.jsonl"
    summary = execute(parse(["merge", "first", "second", "--out", str(out)]), ctx)
    assert [s["source"] for s in summary["per_source"]] == ["first", "second"]
    assert [r["source_prompt_id"] for r in read_records(out)] == ["0_first", "1_first", "1_second"]
