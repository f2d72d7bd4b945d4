"""The templates the way a user runs them: on the user's own file (JSONL and Parquet) for
every parameter that takes one, on their own documents folder and on their own seed tasks
(tests/user_data.py). The built-in examples only run when no input is given, so these are
the tests of the code path a user's first real run takes. Assertions are on data: records
come from the user's rows, carry their extra fields, and every input is accounted for.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.notebook_checks import printed, read_jsonl, run_errors, this_run
from tests.user_data import (
    ARTICLES,
    DOCS,
    HOMEWORK,
    SEED_TASKS,
    TICKETS,
    assert_from_user_rows,
    run_template,
    write_user_file,
)

pytestmark = [pytest.mark.slow, pytest.mark.model]


# -- what each template must make of the user's rows ----------------------------------------
def one_record_per_row(out: Path, rows: list[dict], nb) -> list[dict]:
    records = assert_from_user_rows(out, rows)
    assert sorted(r["lineage"]["parent_id"] for r in records) == sorted(r["id"] for r in rows)
    by_id = {row["id"]: row for row in rows}
    for record in records:  # the prompt is the user's text (whatever the template wraps it in)
        assert by_id[record["lineage"]["parent_id"]]["input"].strip() in record["input"]
    return records


def check_vote(out, rows, nb):
    for record in one_record_per_row(out, rows, nb):
        assert len(record["metadata"]["votes"]) == 2  # one per temperature
        assert record["metadata"]["winner"] in ("billing", "luggage", "other", None)


def check_dpo(out, rows, nb):
    for record in one_record_per_row(out, rows, nb):  # keep_unpaired: every prompt stays
        assert len(record["metadata"]["responses"]) == 2


def check_judge(out, rows, nb):
    by_id = {row["id"]: row for row in rows}
    for record in one_record_per_row(out, rows, nb):
        assert record["input"] == by_id[record["lineage"]["parent_id"]]["input"]
        assert {"difficulty", "language"} <= set(record)


def check_reasoning(out, rows, nb):
    by_id = {row["id"]: row for row in rows}
    for record in one_record_per_row(out, rows, nb):
        row = by_id[record["lineage"]["parent_id"]]
        assert record["metadata"]["check"]["reference"] == row["target"]
        assert record["unit"] == row["unit"] and record["source"] == row["source"]
        assert record["correct"] in (True, False, None)


def check_evol(out, rows, nb):
    # One round: every seed evolved, or its evolution was eliminated for a stated reason.
    run = this_run(out)
    assert run["ok"] + run["filtered"] + run["failed"] == len(rows)
    assert sum(printed(nb, "eliminated").values()) == run["filtered"]
    records = assert_from_user_rows(out, rows, parent="root_id")
    assert len(records) == run["ok"]
    by_id = {row["id"]: row for row in rows}
    for record in records:
        seed = by_id[record["lineage"]["root_id"]]
        assert record["metadata"]["parent_instruction"] == seed["input"]


def check_cosmopedia(out, rows, nb):
    run = this_run(out)
    assert run["ok"] + run["filtered"] + run["failed"] == len(rows)
    records = assert_from_user_rows(out, rows)
    assert len(records) == run["ok"] >= 1
    by_id = {row["id"]: row for row in rows}
    for record in records:
        row = by_id[record["lineage"]["parent_id"]]
        assert row["body"].startswith(record["metadata"]["seed_extract"])  # column="body"
        assert record["url"] == row["url"] and record["section"] == row["section"]


def check_transform(out, rows, nb):
    # translate / rewrite: a record, or an error saying which field failed and why.
    run = this_run(out)
    errors = run_errors(out)
    assert run["ok"] + run["failed"] == len(rows) and run["filtered"] == 0
    assert len({e["task"]["index"] for e in errors}) == run["failed"]
    assert all(re.match(r"(input|output|history)\S*: ", e["message"]) for e in errors)
    by_id = {row["id"]: row for row in rows}
    for record in assert_from_user_rows(out, rows):
        row = by_id[record["lineage"]["parent_id"]]
        assert record["metadata"]["original"]["input"] == row["input"]


TICKET_TEMPLATES = {
    "cascade": ({"max_tokens": 8}, one_record_per_row),
    "vote": (
        {"max_tokens": 4, "temperatures": [0.2, 1.0], "labels": ["billing", "luggage", "other"]},
        check_vote,
    ),
    "dpo": ({"max_tokens": 8, "judge_max_tokens": 16}, check_dpo),
    "evol": ({"max_tokens": 16, "judge": False}, check_evol),
    "judge": ({"max_tokens": 24, "aspects": ["difficulty", "language"]}, check_judge),
    "translate": ({"max_tokens": 32, "language": "German"}, check_transform),
}
# (template, user rows, parameters, output file, check); JSONL gets every row, Parquet a
# smaller slice (the code path after reading is the same: what differs is how the values
# come back: numbers, lists, missing values).
CASES = {
    **{
        name: (TICKETS, params, f"{name}.jsonl", check)
        for name, (params, check) in TICKET_TEMPLATES.items()
    },
    "cosmopedia": (
        ARTICLES,
        {"column": "body", "max_chars": 300, "max_tokens": 24},
        "cosmopedia.jsonl",
        check_cosmopedia,
    ),
    "reasoning": (HOMEWORK, {"max_tokens": 32}, "reasoning.jsonl", check_reasoning),
}
PARQUET_OVERRIDES = {"translate": {"mode": "rewrite", "difficulty": "easier", "max_tokens": 24}}


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_template_on_the_users_file(name, fmt, tmp_path, monkeypatch):
    monkeypatch.setenv("FORGEKIT_NO_WIDGETS", "1")
    rows, params, out, check = CASES[name]
    if fmt == "parquet":
        rows = rows[-2:]
        params = {**params, **PARQUET_OVERRIDES.get(name, {})}
    data = write_user_file(tmp_path / f"users_data.{fmt}", rows)
    nb = run_template(name, tmp_path, {**params, "input_path": str(data)})
    check(tmp_path / out, rows, nb)


def test_doc_qa_on_the_users_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FORGEKIT_NO_WIDGETS", "1")
    folder = tmp_path / "handbook"
    for name, text in DOCS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "contacts.csv").write_text("desk,phone\nBergen,5555\n")  # not a document
    (folder / "scan.pdf").write_bytes(b"%PDF-1.4 truncated by the scanner")  # unreadable
    nb = run_template("doc_qa", tmp_path, {"docs_dir": str(folder), "max_tokens": 48})
    assert printed(nb, "documents", literal=False) == "3 | chunks: 3"  # one chunk per file
    unreadable = printed(nb, "unreadable files")
    assert [Path(e["file"]).name for e in unreadable] == ["scan.pdf"] and unreadable[0]["error"]
    out = tmp_path / "doc_qa.jsonl"
    run = this_run(out)
    # One request per chunk (questions_per_chunk=1): a pair, or the reason why not (the 135M
    # model often writes no parsable pair for these); the unreadable file is one more error.
    assert run["ok"] + run["filtered"] + run["failed"] == 3 + len(unreadable)
    errors = run_errors(out)
    assert [e["message"] for e in errors if "scan.pdf" in json.dumps(e)], errors
    assert sum(printed(nb, "filtered").values()) == run["filtered"]
    records = read_jsonl(out)
    assert len(records) == run["ok"]
    for record in records:
        source = record["metadata"]["source"]
        assert source in DOCS and record["metadata"]["chunk"] in DOCS[source]
    assert not (tmp_path / "docs").exists()  # the built-in documents were not written


def test_self_instruct_on_the_users_seed_tasks(tmp_path, monkeypatch):
    monkeypatch.setenv("FORGEKIT_NO_WIDGETS", "1")
    seeds = write_user_file(tmp_path / "my_seeds.jsonl", SEED_TASKS)
    nb = run_template(
        "self_instruct",
        tmp_path,
        {"seed_tasks": str(seeds), "n": 1, "max_tokens": 48, "max_prompts": 2},
    )
    # The list prompts showed the user's seed tasks, never the bundled ones.
    batches = read_jsonl(tmp_path / "self_instruct.instructions.jsonl")
    assert batches
    instructions = {task["id"]: task["instruction"] for task in SEED_TASKS}
    for batch in batches:
        shown = batch["metadata"]["examples"]
        assert len(shown) == 3 and set(shown) <= set(instructions)
        assert all(instructions[i] in batch["input"] for i in shown)
    pool = printed(nb, "instruction pool")
    assert pool["seeds"] == len(SEED_TASKS) and pool["prompts"] == len(batches)
    # n=1: one record, or every kept instruction tried and dropped for a stated reason.
    run = this_run(tmp_path / "self_instruct.jsonl")
    records = read_jsonl(tmp_path / "self_instruct.jsonl")
    assert len(records) == run["ok"] <= 1
    if run["ok"] < 1:
        assert run["ok"] + run["filtered"] + run["failed"] == pool["kept_instructions"]
        assert printed(nb, "filtered").get("instance_unparsable", 0) == run["filtered"]
    for record in records:
        assert record["lineage"]["parent_id"] in {b["id"] for b in batches}
