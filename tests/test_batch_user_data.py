"""The evaluate template (no model) on a user's file, directly and through `forge batch`, and
the generate template through `forge batch`, the way a user runs them: from their project
folder, with a grid naming their own files by relative paths (JSONL and Parquet), and one
combination whose file does not exist (the batch exits 1 naming it; the other
combinations' data is there)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.notebook_checks import read_jsonl
from tests.user_data import (
    ARTICLES_WITH_COPY,
    ROOT,
    TICKETS,
    assert_from_user_rows,
    run_template,
    write_user_file,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_evaluate_on_the_users_file(fmt, tmp_path):
    data = write_user_file(tmp_path / f"kb.{fmt}", ARTICLES_WITH_COPY)
    run_template(
        "evaluate",
        tmp_path,
        {"input_path": str(data), "text_field": "body", "label_field": "section"},
    )
    kept = read_jsonl(tmp_path / "deduplicated.jsonl")
    # The copy is gone; the user's own records come back whole, in order.
    assert kept == [row for row in ARTICLES_WITH_COPY if row["id"] != "kb-11-copy"]
    report = (tmp_path / "diversity_report.html").read_text(encoding="utf-8")
    assert "refunds" in report and "boarding" in report  # the user's labels, not "tag"


def forge_batch(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "forgekit.cli", "batch", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1800,
    )


def test_forge_batch_evaluate_grid_on_user_files_with_one_missing(tmp_path):
    """Paths as a user writes them (relative to where `forge batch` runs); a missing file
    fails its combination with an error naming the file, and the batch exits 1."""
    (tmp_path / "data").mkdir()
    write_user_file(tmp_path / "data" / "kb.jsonl", ARTICLES_WITH_COPY)
    write_user_file(tmp_path / "data" / "kb.parquet", ARTICLES_WITH_COPY)
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "product:\n  input_path: [data/kb.jsonl, data/kb.parquet]\n"
        "cases:\n  - {input_path: data/kb-2023.jsonl}\n"
        "fixed: {text_field: body, label_field: section}\n"
    )
    template = str(ROOT / "templates" / "evaluate.ipynb")
    proc = forge_batch(tmp_path, template, "--grid", "grid.yaml", "--out", "runs", "--jobs", "2")
    assert proc.returncode == 1, proc.stderr
    index = {row["params"]["input_path"]: row for row in read_jsonl(tmp_path / "runs/index.jsonl")}
    assert {path: row["status"] for path, row in index.items()} == {
        "data/kb.jsonl": "ok",
        "data/kb.parquet": "ok",
        "data/kb-2023.jsonl": "failed",
    }
    missing = index["data/kb-2023.jsonl"]
    assert missing["error"] == "FileNotFoundError: data/kb-2023.jsonl: no such file"
    assert "1 of 3 combination(s) failed:" in proc.stderr
    assert (
        f"{missing['notebook']} at In [{missing['error_cell']}]: {missing['error']}" in proc.stderr
    )
    expected = [row for row in ARTICLES_WITH_COPY if row["id"] != "kb-11-copy"]
    for path in ("data/kb.jsonl", "data/kb.parquet"):
        row = index[path]
        assert row["records"] == len(expected)
        kept = read_jsonl(tmp_path / "runs" / "runs" / row["name"] / "deduplicated.jsonl")
        assert kept == expected
    # The user drops the missing file from the grid: the finished ones are kept, exit 0.
    grid.write_text(grid.read_text().replace("cases:\n  - {input_path: data/kb-2023.jsonl}\n", ""))
    again = forge_batch(tmp_path, template, "--grid", "grid.yaml", "--out", "runs")
    assert again.returncode == 0, again.stderr
    assert "2 skipped; all ok" in again.stdout


@pytest.mark.model
def test_forge_batch_generate_on_the_users_jsonl_and_parquet(tmp_path):
    (tmp_path / "data").mkdir()
    write_user_file(tmp_path / "data" / "tickets.jsonl", TICKETS)
    write_user_file(tmp_path / "data" / "tickets.parquet", TICKETS[-2:])
    (tmp_path / "grid.yaml").write_text(
        "product:\n  input_path: [data/tickets.jsonl, data/tickets.parquet]\n"
        "fixed:\n  max_tokens: 8\n"
        "  user_template: 'A {{ tag }} ticket via {{ channel }}: {{ input }}'\n"
        "  system_template: 'You answer {{ channel }} tickets for a ferry company.'\n"
        "  parse_regex: '(?P<first_word>\\w+)'\n"
    )
    proc = forge_batch(
        tmp_path, str(ROOT / "templates" / "generate.ipynb"), "--grid", "grid.yaml", "--out", "runs"
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 ok; all ok" in proc.stdout
    index = {row["params"]["input_path"]: row for row in read_jsonl(tmp_path / "runs/index.jsonl")}
    for path, rows in (("data/tickets.jsonl", TICKETS), ("data/tickets.parquet", TICKETS[-2:])):
        assert index[path]["status"] == "ok" and index[path]["records"] == len(rows)
        out = tmp_path / "runs" / "runs" / index[path]["name"] / "generate.jsonl"
        records = assert_from_user_rows(out, rows)
        by_id = {row["id"]: row for row in rows}
        assert sorted(by_id) == sorted(r["lineage"]["parent_id"] for r in records)
        for record in records:
            row = by_id[record["lineage"]["parent_id"]]
            assert (
                record["input"] == f"A {row['tag']} ticket via {row['channel']}: "
                f"{row['input'].strip()}"
            )
            assert record["system"] == f"You answer {row['channel']} tickets for a ferry company."
            first = re.search(r"\w+", record["output"])  # parse_regex, on the raw answer
            assert record["parsed"] == ({"first_word": first.group(0)} if first else None)
            assert record["metadata"]["parse"]["ok"] is bool(first)
