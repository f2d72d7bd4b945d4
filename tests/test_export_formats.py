"""Round trips of every export format: write, load back with `datasets` the way the trainer
does, check the field names against the trainer's documented schema, and compare with the
source records — single-turn, multi-turn with a system prompt and a thinking trace, and
preference records. Records a format cannot hold must be counted and written to rejects."""

from __future__ import annotations

import json

import pytest

datasets = pytest.importorskip("datasets")

import forgekit  # noqa: E402
from forgekit.cli.app import main  # noqa: E402
from forgekit.export import FORMATS, export  # noqa: E402

SFT = {
    "id": "s1",
    "input": "What is 2+2?",
    "output": "4",
    "history": [],
    "target": "4",
    "metadata": {},
    "lineage": {"method": "generate", "model": "m", "template_hash": "t1"},
}
MULTI = {
    "id": "m1",
    "input": "And times 3?",
    "output": "12",
    "history": [["What is 2+2?", "4"], ["Plus 0?", "Still 4"]],
    "system": "You are terse.",
    "thinking": "4 * 3 = 12",
    "target": "12",
    "metadata": {"ability": "math"},
}
PREF = {
    "id": "p1",
    "input": "Say hello politely.",
    "output": "",
    "history": [["Hi", "Hello!"]],
    "system": "Be kind.",
    "chosen": "Good day to you!",
    "rejected": "yo",
    "metadata": {},
}
PREF_MESSAGES = {  # unified multi-turn preference: message lists
    "id": "p2",
    "input": "Pick a colour.",
    "output": "",
    "history": [],
    "chosen": [{"role": "assistant", "content": "Blue."}],
    "rejected": [{"role": "assistant", "content": "No."}],
}
RECORDS = [SFT, MULTI, PREF, PREF_MESSAGES]

SFT_REASON = "an SFT record (no chosen/rejected) in a preference format"
PREF_REASON = "a preference record (chosen/rejected, no output)"
LLAMAFACTORY_KEYS = {"file_name", "formatting", "ranking", "columns", "tags"}


@pytest.fixture(autouse=True)
def quiet_datasets():
    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()


def load(result) -> list[dict]:
    path = result.data_path
    if path.suffix == ".jsonl":
        return datasets.load_dataset("json", data_files=str(path), split="train").to_list()
    if path.suffix == ".parquet":
        return datasets.load_dataset("parquet", data_files=str(path), split="train").to_list()
    return datasets.load_from_disk(str(path)).to_list()


def rejects(result) -> list[dict]:
    if result.rejects_path is None:
        return []
    return [json.loads(line) for line in result.rejects_path.read_text().splitlines()]


def msgs(*pairs):
    return [{"role": role, "content": content} for role, content in pairs]


MULTI_PROMPT = msgs(
    ("system", "You are terse."),
    ("user", "What is 2+2?"),
    ("assistant", "4"),
    ("user", "Plus 0?"),
    ("assistant", "Still 4"),
    ("user", "And times 3?"),
)
THINK_12 = "<think>\n4 * 3 = 12\n</think>\n\n12"


def test_trl_messages_and_openai(tmp_path):
    result = export(RECORDS, "trl-messages", tmp_path / "trl")
    rows = load(result)
    assert all(set(r) == {"messages"} for r in rows)
    assert rows[0]["messages"] == msgs(("user", "What is 2+2?"), ("assistant", "4"))
    assert rows[1]["messages"] == [*MULTI_PROMPT, *msgs(("assistant", THINK_12))]
    assert result.thinking == {"inlined": 1, "dropped": 0}
    assert [(r["id"], r["reason"]) for r in rejects(result)] == [
        ("p1", PREF_REASON),
        ("p2", PREF_REASON),
    ]
    assert rejects(result)[0]["record"] == PREF  # the whole record is kept, not lost
    # OpenAI SFT: the same messages, but thinking is dropped (and said so) by default
    openai = export(RECORDS, "openai", tmp_path / "openai")
    assert load(openai)[1]["messages"][-1] == {"role": "assistant", "content": "12"}
    assert openai.thinking == {"inlined": 0, "dropped": 1}
    assert openai.summary()["rejected"] == 2


def test_trl_prompt_completion_is_conversational_when_any_record_has_context(tmp_path):
    plain = load(export([SFT], "trl-prompt-completion", tmp_path / "plain"))
    assert plain == [{"prompt": "What is 2+2?", "completion": "4"}]
    rows = load(export([SFT, MULTI], "trl-prompt-completion", tmp_path / "conv"))
    assert rows[0] == {
        "prompt": msgs(("user", "What is 2+2?")),
        "completion": msgs(("assistant", "4")),
    }
    assert rows[1] == {"prompt": MULTI_PROMPT, "completion": msgs(("assistant", THINK_12))}


def test_trl_preference(tmp_path):
    result = export(RECORDS, "trl-preference", tmp_path / "dpo")
    rows = load(result)
    assert all(set(r) == {"prompt", "chosen", "rejected"} for r in rows)
    assert rows[0] == {
        "prompt": msgs(("system", "Be kind."), ("user", "Hi"), ("assistant", "Hello!"))
        + msgs(("user", "Say hello politely.")),
        "chosen": msgs(("assistant", "Good day to you!")),
        "rejected": msgs(("assistant", "yo")),
    }
    assert rows[1]["chosen"] == msgs(("assistant", "Blue."))
    assert result.rejected == {SFT_REASON: 2}
    # without context anywhere: the standard (string) form
    plain = load(export([PREF_MESSAGES], "trl-preference", tmp_path / "plain"))
    assert plain == [{"prompt": "Pick a colour.", "chosen": "Blue.", "rejected": "No."}]


def check_dataset_info(result, rows, formatting, ranking):
    info = json.loads(result.dataset_info_path.read_text())
    entry = info[result.name]
    assert set(entry) <= LLAMAFACTORY_KEYS
    assert entry["formatting"] == formatting and entry.get("ranking", False) is ranking
    assert (result.dataset_info_path.parent / entry["file_name"]).exists()
    assert set(entry["columns"].values()) <= set(rows[0])  # every named column exists
    return entry


def test_llamafactory_alpaca_sft_and_ranking(tmp_path):
    result = export(RECORDS, "alpaca", tmp_path / "lf")
    rows = load(result)
    assert rows[1] == {
        "instruction": "And times 3?",
        "input": "",
        "output": THINK_12,
        "system": "You are terse.",
        "history": [["What is 2+2?", "4"], ["Plus 0?", "Still 4"]],
    }
    entry = check_dataset_info(result, rows, "alpaca", False)
    assert entry["columns"] == {
        "prompt": "instruction",
        "query": "input",
        "response": "output",
        "system": "system",
        "history": "history",
    }
    # a second data set in the same folder: its own file, an entry beside the first one
    ranked = export(RECORDS, "alpaca-preference", tmp_path / "lf", name="lf-dpo", card=False)
    assert ranked.data_path.name == "lf-dpo.jsonl" and result.data_path.name == "lf.jsonl"
    rows = load(ranked)
    assert rows[0] == {
        "instruction": "Say hello politely.",
        "input": "",
        "chosen": "Good day to you!",
        "rejected": "yo",
        "system": "Be kind.",
        "history": [["Hi", "Hello!"]],
    }
    check_dataset_info(ranked, rows, "alpaca", True)
    # both entries live in the one dataset_info.json
    assert set(json.loads((tmp_path / "lf" / "dataset_info.json").read_text())) == {"lf", "lf-dpo"}


def test_llamafactory_sharegpt_sft_and_ranking(tmp_path):
    result = export(RECORDS, "sharegpt", tmp_path / "sg")
    rows = load(result)
    assert rows[1]["conversations"] == [
        {"from": "human", "value": "What is 2+2?"},
        {"from": "gpt", "value": "4"},
        {"from": "human", "value": "Plus 0?"},
        {"from": "gpt", "value": "Still 4"},
        {"from": "human", "value": "And times 3?"},
        {"from": "gpt", "value": THINK_12},
    ]
    assert rows[1]["system"] == "You are terse."
    entry = check_dataset_info(result, rows, "sharegpt", False)
    assert entry["tags"] == {
        "role_tag": "from",
        "content_tag": "value",
        "user_tag": "human",
        "assistant_tag": "gpt",
        "system_tag": "system",
    }
    ranked = export(RECORDS, "sharegpt-preference", tmp_path / "sg2")
    rows = load(ranked)
    assert rows[0]["conversations"][-1] == {"from": "human", "value": "Say hello politely."}
    assert rows[0]["chosen"] == {"from": "gpt", "value": "Good day to you!"}
    assert rows[0]["rejected"] == {"from": "gpt", "value": "yo"}
    entry = check_dataset_info(ranked, rows, "sharegpt", True)
    assert (
        entry["columns"]["chosen"] == "chosen" and entry["columns"]["messages"] == "conversations"
    )


def test_openai_preference(tmp_path):
    result = export(RECORDS, "openai-preference", tmp_path / "oai")
    rows = load(result)
    assert set(rows[0]) == {"input", "preferred_output", "non_preferred_output"}
    assert rows[0]["input"]["messages"][-1] == {"role": "user", "content": "Say hello politely."}
    assert rows[0]["preferred_output"] == msgs(("assistant", "Good day to you!"))
    assert rows[0]["non_preferred_output"] == msgs(("assistant", "yo"))
    assert result.rejected == {SFT_REASON: 2}


def test_verl_parquet(tmp_path):
    result = export(RECORDS, "verl", tmp_path / "rl", split="test", ability="arith")
    rows = load(result)
    assert set(rows[0]) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
    assert rows[0]["prompt"] == msgs(("user", "What is 2+2?"))
    assert rows[0]["reward_model"] == {"style": "rule", "ground_truth": "4"}
    assert rows[0]["extra_info"] == {"split": "test", "index": 0, "id": "s1"}
    assert (rows[0]["data_source"], rows[0]["ability"], rows[1]["ability"]) == (
        "rl",
        "arith",
        "math",
    )
    assert rows[1]["prompt"] == MULTI_PROMPT and rows[1]["extra_info"]["index"] == 1
    assert result.thinking == {"inlined": 0, "dropped": 1}  # a prompt has no place for it
    assert result.rejected == {"no 'target' (the reference answer a rule reward checks)": 2}


@pytest.mark.parametrize("fmt", ["parquet", "save_to_disk"])
def test_plain_records(tmp_path, fmt):
    result = export(RECORDS, fmt, tmp_path / fmt)
    rows = load(result)
    assert [r["id"] for r in rows] == ["s1", "m1", "p1", "p2"]
    assert rows[1]["history"] == MULTI["history"] and rows[1]["thinking"] == MULTI["thinking"]
    # free-form dicts and mixed text/list columns are kept as JSON text, losslessly
    assert json.loads(rows[1]["metadata"]) == {"ability": "math"}
    assert [rows[2]["chosen"], json.loads(rows[3]["chosen"])] == [
        "Good day to you!",
        PREF_MESSAGES["chosen"],
    ]
    assert result.rejected == {}


def test_thinking_drop_is_reported_and_inline_can_be_chosen_for_openai(tmp_path):
    dropped = export([MULTI], "trl-messages", tmp_path / "a", thinking="drop")
    assert load(dropped)[0]["messages"][-1]["content"] == "12"
    assert dropped.thinking == {"inlined": 0, "dropped": 1}
    assert "1 thinking traces were left out" in dropped.card_path.read_text()
    inlined = export([MULTI], "openai", tmp_path / "b", thinking="inline")
    assert load(inlined)[0]["messages"][-1]["content"] == THINK_12


def test_never_overwrites_without_overwrite_and_keeps_other_dataset_info_entries(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    info = {"mine": {"file_name": "mine.json", "formatting": "alpaca"}}
    (folder / "dataset_info.json").write_text(json.dumps(info))
    (folder / "README.md").write_text("my own notes")
    with pytest.raises(FileExistsError, match="README.md: exists; pass overwrite"):
        export([SFT], "alpaca", folder)
    assert (folder / "README.md").read_text() == "my own notes"
    assert not list(folder.glob("*.jsonl"))  # refused before writing anything
    result = export([SFT], "alpaca", folder, overwrite=True, name="synth")
    merged = json.loads((folder / "dataset_info.json").read_text())
    assert merged["mine"] == info["mine"] and merged["synth"]["formatting"] == "alpaca"
    with pytest.raises(FileExistsError, match="synth.jsonl"):
        export([SFT], "alpaca", folder, name="synth")
    assert not list(folder.glob(".*tmp"))  # no temporary files left behind
    assert result.written == 1


def test_every_format_is_tested_and_forgekit_export_is_callable(tmp_path):
    tested = {
        "trl-messages", "trl-prompt-completion", "trl-preference", "alpaca",
        "alpaca-preference", "sharegpt", "sharegpt-preference", "openai",
        "openai-preference", "verl", "parquet", "save_to_disk",
    }  # fmt: skip
    assert set(FORMATS) == tested
    result = forgekit.export([SFT], format="alpaca", out=tmp_path / "x")
    assert result.written == 1


def test_cli_and_column_map(tmp_path, capsys):
    source = tmp_path / "unified.jsonl"
    source.write_text(json.dumps({"prompt": "Hi?", "answer": "Hello."}) + "\n")
    argv = ["export", "-i", str(source), "--map", "prompt=input", "--map", "answer=output"]
    assert main([*argv, "-f", "sharegpt", "--out", str(tmp_path / "o"), "--name", "u"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["written"] == 1 and summary["rejected"] == 0
    rows = [json.loads(x) for x in (tmp_path / "o" / "u.jsonl").read_text().splitlines()]
    assert rows[0]["conversations"][0] == {"from": "human", "value": "Hi?"}
    assert main([*argv, "-f", "sharegpt", "--out", str(tmp_path / "o"), "--name", "u"]) == 1
    assert "exists; pass overwrite" in capsys.readouterr().err


def test_magic_exports_a_notebook_dataset_variable(tmp_path):
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython() or get_ipython()
    shell.run_line_magic("load_ext", "forgekit")
    shell.user_ns["my_ds"] = datasets.Dataset.from_list([{"question": "Hi?", "answer": "Hey."}])
    out = tmp_path / "m"
    line = f"export -i my_ds --map question=input --map answer=output -f openai --out {out}"
    summary = shell.run_line_magic("forge", line)
    assert summary["written"] == 1
    rows = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    assert rows == [{"messages": msgs(("user", "Hi?"), ("assistant", "Hey."))}]


def test_card_language_is_detected_or_left_for_the_user(tmp_path):
    import yaml

    def meta(records, folder):
        card = export(records, "parquet", tmp_path / folder).card_path.read_text()
        return yaml.safe_load(card[4:].partition("\n---\n")[0]), card

    zh, _ = meta([{"input": "涂了甲硝唑后皮肤长的痘痘没有效果，我应该如何处理？"}], "zh")
    assert zh["language"] == ["zh"]
    unknown, card = meta([{"input": "Как дела у тебя сегодня?"}], "ru")
    assert unknown["language"] == [] and "**Language**: not detected" in card
