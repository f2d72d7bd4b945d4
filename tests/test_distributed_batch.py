"""`forge batch --ray` on a real local Ray cluster gives the index of a local batch, and the
CI reports: --max-failures, a JUnit file a CI system parses, the Markdown summary."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from forgekit.cli.app import main
from tests.conftest import read_jsonl
from tests.test_batch import template  # noqa: F401 - the tiny parameterized notebook

pytestmark = pytest.mark.slow

# The 2x2 grid n x label, with one combination failing on purpose.
GRID = (
    "cases:\n"
    "  - {n: 1, label: ok}\n  - {n: 3, label: ok}\n  - {n: 1, label: bad}\n"
    "  - {n: 3, label: bad, fail: true}\n"
)
# What may differ between two runs of one grid: where and how long.
PLACES = {"duration_s", "notebook", "workdir", "data_files"}


def index_without_places(out) -> list[dict]:
    rows = read_jsonl(out / "index.jsonl")
    return sorted(({k: v for k, v in r.items() if k not in PLACES} for r in rows), key=str)


def test_batch_on_ray_gives_the_local_index_and_ci_reports(
    ray_cluster,
    template,  # noqa: F811
    tmp_path,
    monkeypatch,
    capsys,
):
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID)
    step_summary = tmp_path / "step_summary.md"
    step_summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    junit = tmp_path / "reports" / "batch.xml"
    local_args = [str(template), "--grid", str(grid), "--junit", str(junit)]
    assert main(["batch", *local_args, "--out", str(tmp_path / "local"), "--jobs", "2"]) == 1
    assert "1 of 4 combination(s) failed" in capsys.readouterr().err

    # The JUnit file as a CI system reads it: one suite, 4 cases, 1 failure, 3 passes.
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "1", "0")
    cases = suite.findall("testcase")
    failures = [c.find("failure") for c in cases if c.find("failure") is not None]
    assert len(cases) == 4 and len(failures) == 1
    (failure,) = failures
    assert failure.get("type") == "RuntimeError"
    assert failure.get("message").startswith("RuntimeError: planned failure for label=bad")
    assert "raise RuntimeError" in failure.text and "\x1b[" not in failure.text
    failed_case = next(c for c in cases if c.find("failure") is not None)
    params = {p.get("name"): p.get("value") for p in failed_case.iter("property")}
    assert params == {"param.fail": "True", "param.label": "bad", "param.n": "3"}
    # The Markdown summary, appended to the CI step's summary.
    summary = step_summary.read_text()
    assert summary.startswith("earlier step\n## forge batch tiny.ipynb: FAILED")
    assert "3 ok, 1 failed of 4 combination(s)" in summary
    assert summary.count("| ✅ ok |") == 3 and summary.count("| ❌ failed |") == 1

    # On Ray, tolerating one failure: exit 0, the same index, its own summary file. A
    # relative --out means the same folder to the workers as to the caller.
    monkeypatch.chdir(tmp_path)
    ray_out = tmp_path / "ray"
    summary_file = tmp_path / "ray-summary.md"
    ray_args = ["--out", "ray", "--ray", "--max-failures", "1"]
    assert main(["batch", *local_args, *ray_args, "--summary", str(summary_file)]) == 0
    assert "tolerated: --max-failures 1" in capsys.readouterr().err
    assert index_without_places(ray_out) == index_without_places(tmp_path / "local")
    assert "passed" in summary_file.read_text().splitlines()[0]
    for row in read_jsonl(ray_out / "index.jsonl"):
        assert row["notebook"] == f"ray/notebooks/{row['name']}.ipynb"
        assert (ray_out / "notebooks" / f"{row['name']}.ipynb").exists()
    # A re-run on Ray resumes: only the failed combination runs again, and fails again.
    first = {r["key"]: r for r in read_jsonl(ray_out / "index.jsonl")}
    assert main(["batch", *local_args, *ray_args]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "tiny_" in line]
    assert sorted("skipped" in row for row in rows) == [False, True, True, True]
    again = {
        r["params"]["label"] + str(r["params"]["n"]): r for r in read_jsonl(ray_out / "index.jsonl")
    }
    assert again["bad3"]["status"] == "failed" and again["bad3"]["traceback"]
    for row in first.values():  # the finished ones kept their first run's record
        if row["status"] == "ok":
            assert again[row["params"]["label"] + str(row["params"]["n"])] == row
