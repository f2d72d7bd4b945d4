"""merge and unify: unified formats, HelpSteer3 score mapping, exact-duplicate prompts."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from forgekit.data.io import read_records
from forgekit.data.merge import merge, split_thinking, unify, unify_record
from forgekit.errors import ConfigError


def _helpsteer(score, context=None):
    return {
        "domain": "general",
        "context": context or [{"role": "user", "content": "Name a prime number."}],
        "response1": "Seven.",
        "response2": "Nine.",
        "overall_preference": score,
    }


@pytest.mark.parametrize(
    ("score", "chosen", "rejected"),
    [
        (-3, "Seven.", "Nine."),
        (-1, "Seven.", "Nine."),
        (0, "", ""),
        (1, "Nine.", "Seven."),
        (3, "Nine.", "Seven."),
    ],
)
def test_helpsteer3_score_mapping(score, chosen, rejected):
    row = unify_record(_helpsteer(score), "preference", dataset="helpsteer3", index=4)
    assert (row["chosen"], row["rejected"]) == (chosen, rejected)
    assert row["prompt"] == "Name a prime number."
    assert row["source_prompt_id"] == "4_helpsteer3"
    assert row["metadata"]["score"] == score
    assert row["metadata"]["tie"] is (score == 0)
    assert row["metadata"]["domain"] == "general"


def test_helpsteer3_multi_turn_context_is_kept_as_a_list():
    context = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Name a prime number."},
    ]
    row = unify_record(_helpsteer(-2, context), "preference")
    assert row["prompt"] == context
    assert row["chosen"] == "Seven."


def test_helpsteer3_out_of_range_score_is_an_error():
    with pytest.raises(
        ConfigError, match=r"hs record 0: overall_preference=5 is outside .*\[-3, 3\]"
    ):
        unify([_helpsteer(5)], "preference", dataset="hs")


def test_preference_with_multi_turn_chosen_rejected_lists():
    chosen = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    rejected = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go away."}]
    df = unify(
        [{"prompt": "Hi", "chosen": chosen, "rejected": rejected}], "preference", dataset="hh"
    )
    row = df.iloc[0]
    assert row["chosen"] == chosen and row["rejected"] == rejected
    assert list(df.columns[:2]) == ["all_prompt_id", "source_prompt_id"]


def test_sft_from_alpaca_sharegpt_and_plain_records():
    alpaca = unify_record(
        {"instruction": "Translate", "input": "bonjour", "output": "hello"}, "sft"
    )
    assert alpaca["prompt"] == "Translate\n\nbonjour" and alpaca["answer"] == "hello"
    sharegpt = unify_record(
        {
            "conversations": [
                {"from": "system", "value": "Be brief."},
                {"from": "human", "value": "2+2?"},
                {"from": "gpt", "value": "4"},
            ]
        },
        "sft",
    )
    assert sharegpt["prompt"] == "2+2?" and sharegpt["answer"] == "4"
    forge = unify_record(
        {
            "id": "x1",
            "input": "涂了甲硝唑后皮肤长的痘痘没有效果？",
            "target": "",
            "tag": "合理用药",
        },
        "sft",
    )
    assert forge["prompt"].startswith("涂了甲硝唑") and forge["answer"] == ""
    assert forge["metadata"]["tag"] == "合理用药" and forge["metadata"]["id"] == "x1"


def test_cot_thinking_from_field_from_tags_or_all_in_thinking():
    from_field = unify_record({"question": "q", "reasoning": "r", "answer": "a"}, "cot")
    assert (from_field["thinking"], from_field["answer"]) == ("r", "a")
    tagged = unify_record(
        {"prompt": "q", "response": "<think>step 1</think>\nThe answer is 4."}, "cot"
    )
    assert (tagged["thinking"], tagged["answer"]) == ("step 1", "The answer is 4.")
    mixed = unify_record({"problem": "q", "solution": "First... so 4."}, "cot")
    assert (mixed["thinking"], mixed["answer"]) == ("First... so 4.", "")
    assert split_thinking("no tags") == (None, "no tags", "none")


def test_unify_field_map_and_errors():
    row = unify_record({"q": "Why?", "a": "Because."}, "sft", fields={"prompt": "q", "answer": "a"})
    assert (row["prompt"], row["answer"]) == ("Why?", "Because.")
    with pytest.raises(
        ConfigError, match=r"ds record 1: no prompt field found .*fields present: body"
    ):
        unify([{"prompt": "ok"}, {"body": "?"}], "sft", dataset="ds")
    with pytest.raises(ConfigError, match="unknown target 'question'"):
        unify([{"prompt": "ok"}], "sft", fields={"question": "q"})
    with pytest.raises(ConfigError, match="to='dpo'"):
        unify([{"prompt": "ok"}], "dpo")


def test_merge_files_assigns_ids_and_drops_duplicate_prompts(tmp_path):
    a = tmp_path / "alpaca.jsonl"
    a.write_text(
        "\n".join(
            json.dumps(r, ensure_ascii=False)
            for r in [
                {"instruction": "Say hi", "output": "hi"},
                {"instruction": "Count to 3", "output": "1 2 3"},
                {"instruction": "say  HI", "output": "hello"},  # same prompt once normalized
            ]
        ),
        encoding="utf-8",
    )
    b = tmp_path / "medical.parquet"
    pd.DataFrame(
        {"input": ["Count to 3", "涂了甲硝唑后怎么办？"], "target": ["one two three", "停药"]}
    ).to_parquet(b)
    c = tmp_path / "extra.json"
    c.write_text(
        json.dumps({"data": [{"question": "涂了甲硝唑后怎么办？", "answer": "x"}]}), "utf-8"
    )
    out = tmp_path / "merged.jsonl"
    result = merge([a, b, c], out, to="sft")
    rows = read_records(out)
    assert [r["prompt"] for r in rows] == ["Say hi", "Count to 3", "涂了甲硝唑后怎么办？"]
    assert [r["all_prompt_id"] for r in rows] == [0, 1, 2]
    assert [r["source_prompt_id"] for r in rows] == ["0_alpaca", "1_alpaca", "1_medical"]
    assert result.per_source == [
        {"source": "alpaca", "read": 3, "kept": 2, "dropped_duplicates": 1},
        {"source": "medical", "read": 2, "kept": 1, "dropped_duplicates": 1},
        {"source": "extra", "read": 1, "kept": 0, "dropped_duplicates": 1},
    ]
    with pytest.raises(FileExistsError):
        merge([a], out)


def test_merge_without_unify_keeps_fields(tmp_path):
    result = merge(
        {
            "one": [{"input": "a", "tag": "t1"}],
            "two": [{"input": "A ", "tag": "t2"}, {"input": "b"}],
        }
    )
    records = result.records
    assert records["input"].tolist() == ["a", "b"]
    assert records["source"].tolist() == ["one", "two"]
    assert records["source_prompt_id"].tolist() == ["0_one", "1_two"]
    with pytest.raises(ConfigError, match="two sources are named 'x'"):
        merge([[{"input": "a"}], [{"input": "b"}]], names=["x", "x"])
    with pytest.raises(ConfigError, match="one record 0: no field 'question'"):
        merge({"one": [{"input": "a"}]}, prompt_field="question")
