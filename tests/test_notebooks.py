"""Every template and tutorial notebook, executed by papermill on the embedded model with
small parameters: no error cell, the data it promises on disk, its outputs present."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import papermill
import pytest

from forgekit.batch_grid import template_parameters
from tests.notebook_checks import printed, read_jsonl, run_errors, stream_text, this_run

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = sorted((ROOT / "templates").glob("*.ipynb"))
TUTORIALS = sorted((ROOT / "notebooks").glob("*.ipynb"))

pytestmark = [pytest.mark.slow, pytest.mark.model]

# Small parameters per notebook, and the JSONL files it must leave behind (with a minimum
# number of records).
SMALL = {
    "magpie": ({"n": 2, "max_tokens": 24}, {"magpie.jsonl": 2}),
    "generate": ({"max_tokens": 16}, {"generate.jsonl": 3}),
    "vote": ({"max_tokens": 4, "temperatures": [0.2, 1.0]}, {"vote.jsonl": 3}),
    "cascade": ({"max_tokens": 16}, {"cascade.jsonl": 3}),
    "evol": ({"max_tokens": 24}, {"evol.jsonl": 1}),
    "dpo": ({"max_tokens": 16, "judge_max_tokens": 32}, {"dpo.jsonl": 1}),
    # n=1: one record, or each kept instruction dropped with a reason (see ACCOUNTING). The
    # list prompts run until one gives a candidate (at most 3); sampled at temperature 1,
    # SmolLM2-135M sometimes writes no parseable list in three tries (seen in CI), and then
    # the instance stage has nothing to attempt.
    "self_instruct": (
        {"n": 1, "max_tokens": 64, "max_prompts": 3},
        {"self_instruct.instructions.jsonl": 1, "self_instruct.jsonl": 0},
    ),
    "cosmopedia": ({"max_tokens": 32}, {"cosmopedia.jsonl": 2}),
    "reasoning": ({"max_tokens": 48}, {"reasoning.jsonl": 2}),
    "doc_qa": ({"max_tokens": 48}, {"doc_qa.jsonl": 1}),
    # SmolLM-135M often rambles past the limit when translating; translate refuses cut-off
    # fields rather than keep them, so the records may all land in translate.errors.jsonl
    # (ACCOUNTING checks each input is a record or an error naming the field).
    "translate": ({"max_tokens": 64}, {"translate.jsonl": 0}),
    "judge": ({"max_tokens": 48}, {"judge.jsonl": 2}),
    "evaluate": ({}, {"deduplicated.jsonl": 4}),
    "pipeline": ({"n": 2, "max_tokens": 24}, {"magpie.jsonl": 2, "sft.jsonl": 1}),
    "training_set": (
        {"max_tokens": 24, "judge_max_tokens": 24, "min_words": 1},
        {"generated.jsonl": 4, "judged.jsonl": 4, "training_set/train.jsonl": 1},
    ),
    "quickstart": ({"n": 2, "max_tokens": 24}, {"quickstart.jsonl": 2}),
    "end_to_end": (
        {"max_tokens": 24, "topics_list": ["volcanoes", "fractions"]},
        {"seeds.jsonl": 2, "sft.jsonl": 1},
    ),
    "diversity_analysis": ({"n_records": 30}, {}),
}
# Outputs of a stage that runs only on what an earlier stage kept (it may attempt nothing).
LATER_STAGES = {"self_instruct.jsonl"}
FILES = {
    "evaluate": ["diversity_report.html"],
    "pipeline": ["report.html"],
    "training_set": ["training_set/README.md"],
    "diversity_analysis": ["diversity_report.html"],
}


# Methods the 135M model often fails on: every input of the built-in example must end as a
# record, an item filtered for a reason the notebook prints, or an error saying why.
def evol_accounts(folder: Path, nb) -> None:
    run = this_run(folder / "evol.jsonl")  # 3 seeds, one round
    assert run["ok"] + run["filtered"] + run["failed"] == 3
    assert sum(printed(nb, "eliminated").values()) == run["filtered"]


def doc_qa_accounts(folder: Path, nb) -> None:
    run = this_run(folder / "doc_qa.jsonl")  # 2 short documents: one chunk each
    assert printed(nb, "documents", literal=False) == "2 | chunks: 2"
    assert run["ok"] + run["filtered"] + run["failed"] == 2
    assert sum(printed(nb, "filtered").values()) == run["filtered"]
    for record in read_jsonl(folder / "doc_qa.jsonl"):
        assert (
            record["metadata"]["chunk"]
            in (folder / "docs" / record["metadata"]["source"]).read_text()
        )


def translate_accounts(folder: Path, nb) -> None:
    out = folder / "translate.jsonl"
    run, errors = this_run(out), run_errors(out)
    assert run["ok"] + run["failed"] == 2 and run["filtered"] == 0
    assert len({e["task"]["index"] for e in errors}) == run["failed"]
    for error in errors:  # which field, and why (e.g. "input: the answer was cut off ...")
        assert re.match(r"(input|output)\S*: \w", error["message"]), error
        assert f"failed: {error['task']} {error['message']}" in stream_text(nb)


def self_instruct_accounts(folder: Path, nb) -> None:
    run = this_run(folder / "self_instruct.jsonl")
    pool = printed(nb, "instruction pool")
    assert pool["prompts"] <= 3 and pool["candidates"] >= pool["kept_instructions"]
    assert run["ok"] <= 1
    if run["ok"] == 0:  # every kept instruction was tried, and why each was dropped is known
        assert run["ok"] + run["filtered"] + run["failed"] == pool["kept_instructions"]
        assert printed(nb, "filtered").get("instance_unparsable", 0) == run["filtered"]


ACCOUNTING = {
    "evol": evol_accounts,
    "doc_qa": doc_qa_accounts,
    "translate": translate_accounts,
    "self_instruct": self_instruct_accounts,
}


def test_every_notebook_has_a_test_entry():
    assert {p.stem for p in TEMPLATES + TUTORIALS} == set(SMALL)


@pytest.mark.parametrize("path", TEMPLATES + TUTORIALS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, tmp_path, monkeypatch):
    monkeypatch.setenv("FORGEKIT_NO_WIDGETS", "1")
    params, outputs = SMALL[path.stem]
    declared = template_parameters(path)
    assert set(params) <= set(declared), f"{path.name}: unknown test parameters"
    for name, info in declared.items():
        assert info["help"], f"{path.name}: parameter {name} has no help text"
    executed = tmp_path / f"{path.stem}.out.ipynb"
    papermill.execute_notebook(
        str(path),
        str(executed),
        parameters=params,
        cwd=str(tmp_path),
        progress_bar=False,
        kernel_name="python3",
    )
    nb = nbformat.read(executed, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code_cells)
    # The last cell shows something (a table, a report, a summary).
    assert code_cells[-1].get("outputs"), f"{path.name}: the last cell shows nothing"
    for name, minimum in outputs.items():
        file = tmp_path / name
        assert file.exists(), f"{path.name} did not write {name}"
        rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
        assert len(rows) >= minimum, f"{name}: {len(rows)} records"
        if name.endswith(".jsonl") and rows and "lineage" in rows[0]:
            assert rows[0]["lineage"]["method"]
        manifest = file.with_name(file.stem + ".manifest.json")
        if manifest.exists():  # a method run: it did run, and accounted for every item
            counts = json.loads(manifest.read_text())["this_run"]
            attempted = counts["ok"] + counts["failed"] + counts["filtered"]
            if name not in LATER_STAGES:
                assert attempted + counts["skipped"] >= 1, f"{name}: nothing was attempted"
    for name in FILES.get(path.stem, []):
        assert (tmp_path / name).stat().st_size > 1000
    if path.stem in ACCOUNTING:
        ACCOUNTING[path.stem](tmp_path, nb)


def test_repository_notebooks_have_no_outputs():
    for path in TEMPLATES + TUTORIALS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: exactly one parameters cell"
        assert "api_key" not in tagged[0].source.lower(), f"{path.name}: a key as parameter"


def test_diversity_notebook_on_a_users_file(tmp_path, monkeypatch):
    """The diversity tutorial on a user's own JSONL with other column names (man page
    descriptions: `output` text, `tag` labels, long `id` keys): every cell runs, the report
    is saved, and the selection cell lists the records."""
    from tests.report_corpus import man_page_corpus

    monkeypatch.setenv("FORGEKIT_NO_WIDGETS", "1")
    data = tmp_path / "mine.jsonl"
    man_page_corpus(300).to_json(data, orient="records", lines=True)
    executed = tmp_path / "out.ipynb"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "diversity_analysis.ipynb"),
        str(executed),
        parameters={"data_path": str(data), "text_column": "output", "label_column": "tag"},
        cwd=str(tmp_path),
        progress_bar=False,
        kernel_name="python3",
    )
    nb = nbformat.read(executed, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    text = stream_text(nb)
    assert "300 records\n" in text and "300 records selected" in text
    page = (tmp_path / "diversity_report.html").read_text(encoding="utf-8")
    assert "gcloud" in page and "cdn.jsdelivr" not in page
    # The report cell's static output: the summary and the chart as an image.
    report_outputs = [o for o in nb.cells[-3].outputs if o.get("output_type") == "display_data"]
    assert report_outputs and "image/png" in report_outputs[0]["data"]
