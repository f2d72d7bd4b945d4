"""templates/training_set.ipynb the way a user runs it: on their own prompts (their own
column names, a Parquet file and a save_to_disk DatasetDict), against their own evaluation
set with one of their prompts planted in it. Every prompt is accounted for at every step, the
planted one is removed by decontamination (or the notebook says decontamination is missing),
and the card parses as Hub YAML and states the counts the notebook printed."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.notebook_checks import printed, read_jsonl, stream_text, this_run
from tests.user_data import run_template, write_user_file

pytestmark = [pytest.mark.slow, pytest.mark.model]

LEAKED = (
    "A ferry leaves Bergen at 08:15 and reaches Stavanger five hours and twenty minutes "
    "later. At what time does it arrive in Stavanger?"
)
QUESTIONS = [
    {"ticket": "q-1", "question": "How early must foot passengers board the night ferry to Kiel?"},
    {"ticket": "q-2", "question": LEAKED},
    {
        "ticket": "q-3",
        "question": "Can I change the name on a flexible ferry ticket after booking?",
    },
]
EVAL_SET = [
    {"question": LEAKED, "answer": "13:35"},
    {"question": "What is the capital of Norway?", "answer": "Oslo"},
]
PARAMS = {"max_tokens": 24, "judge_max_tokens": 24, "min_words": 1}


def front_matter(card: str) -> dict:
    head = card[4:].partition("\n---\n")[0]
    return yaml.safe_load(head)


def check_run(tmp_path, nb, n_prompts: int) -> None:
    assert printed(nb, "prompts") == n_prompts
    generated = read_jsonl(tmp_path / "generated.jsonl")
    run = this_run(tmp_path / "generated.jsonl")
    made = run["ok"] + run["skipped"]  # skipped: resumed from an earlier run of the notebook
    assert made + run["failed"] == n_prompts and len(generated) == made
    inputs = {r["input"] for r in generated}
    assert inputs <= {q["question"] for q in QUESTIONS}  # the user's prompts, not the example
    gate = printed(nb, "gate")
    assert gate["input"] == len(read_jsonl(tmp_path / "judged.jsonl"))
    export = printed(nb, "export")
    exported = read_jsonl(tmp_path / export["data"])
    assert export["written"] == len(exported)
    users = [m["content"] for row in exported for m in row["messages"] if m["role"] == "user"]
    assert set(users) <= inputs
    text = stream_text(nb)
    card = (tmp_path / "training_set" / "README.md").read_text(encoding="utf-8")
    meta = front_matter(card)
    assert {"license", "language", "task_categories", "size_categories", "configs"} <= set(meta)
    assert meta["configs"][0]["data_files"][0]["path"] == "train.jsonl"
    assert f"generate: {made} generated, 0 filtered, {made} kept" in card
    assert f"gate ({gate['method']}): {gate['input']} in" in card
    assert f"- exported: {export['written']} records" in card
    if export["written"] >= 2:  # diversity=True: the Vendi score of what was exported
        assert f"- records measured: {export['written']}" in card
    assert LEAKED not in users or "decontaminate: skipped" in text
    if "decontaminate: skipped" in text:  # forgekit.evaluate.decontaminate not merged yet
        assert "decontaminate" not in card.split("Counts at each stage:")[1]
        return
    decon = printed(nb, "decontaminate")
    assert re.search(rf"decontaminate: \d+ in, decontaminated: {decon['removed']} removed", card)
    judged = {r["input"]: r for r in read_jsonl(tmp_path / "judged.jsonl")}
    leaked = judged.get(LEAKED)
    if (
        leaked
        and (leaked["output"] or "").strip()
        and leaked["quality"] not in ("very poor", "poor")
    ):
        assert decon["removed"] >= 1  # it passed the gate: decontamination caught it


def test_on_the_users_parquet_with_a_column_map_and_their_eval_set(tmp_path, monkeypatch):
    monkeypatch.setenv("FORGEKIT_NO_WIDGETS", "1")
    data = write_user_file(tmp_path / "questions.parquet", QUESTIONS)
    bench = write_user_file(tmp_path / "eval.jsonl", EVAL_SET)
    params = {
        **PARAMS,
        "input_path": str(data),
        "column_map": {"question": "input", "ticket": "id"},
        "benchmarks": [str(bench)],
    }
    nb = run_template("training_set", tmp_path, params)
    check_run(tmp_path, nb, len(QUESTIONS))
