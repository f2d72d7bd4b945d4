"""`forge batch`: a parameter grid run by papermill, failures recorded, re-runs resume."""

import json
import subprocess
import sys

import nbformat
import pytest

from forgekit.batch import run_batch
from forgekit.batch_grid import absolute_inputs, check_parameters, load_grid
from forgekit.errors import ConfigError
from tests.conftest import read_jsonl

pytestmark = pytest.mark.slow

PARAMS = """n = 2  # records to write
label = "a"  # a label copied into every record
fail = False  # raise on purpose (for tests)
"""
BODY = """import json, pathlib
if fail:
    raise RuntimeError(f"planned failure for label={label}")
with open("records.jsonl", "w") as handle:
    for i in range(n):
        handle.write(json.dumps({"id": f"{label}-{i}", "input": label}) + "\\n")
print(f"wrote {n} records")
"""


@pytest.fixture
def template(tmp_path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(PARAMS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# tiny template"),
        params,
        nbformat.v4.new_code_cell(BODY),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    return path


def test_grid_expansion():
    combos = load_grid(
        {
            "product": {"n": [1, 2], "label": ["x", "y"]},
            "cases": [{"n": 9, "label": "z"}],
            "fixed": {"fail": False},
        }
    )
    assert len(combos) == 5
    assert {"n": 9, "label": "z", "fail": False} in combos
    assert all(c["fail"] is False for c in combos)
    with pytest.raises(ConfigError, match="product.n must be a non-empty list"):
        load_grid({"product": {"n": 3}})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['grid'\]"):
        load_grid({"grid": {}})


def test_two_by_two_grid_one_failure_then_rerun_only_the_failed(template, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("product:\n  n: [1, 3]\n  label: [ok, bad]\n")
    out = tmp_path / "runs"
    # Make exactly one combination fail: label=bad with n=3.
    # (The template raises when fail is true; the grid sets it through a case override.)
    grid.write_text(
        "cases:\n"
        "  - {n: 1, label: ok}\n  - {n: 3, label: ok}\n  - {n: 1, label: bad}\n"
        "  - {n: 3, label: bad, fail: true}\n"
    )
    df = run_batch(template, grid, out=out, jobs=2)
    assert sorted(df["status"]) == ["failed", "ok", "ok", "ok"]
    # The API returns the index (no exception) and says how many failed.
    assert df.attrs["forgekit"]["failed"] == 1 and df.attrs["forgekit"]["total"] == 4
    assert "1 of 4 combination(s) FAILED" in df.attrs["forgekit"]["summary"]
    failed = df[df["status"] == "failed"].iloc[0]
    assert failed["params"] == {"n": 3, "label": "bad", "fail": True}
    assert "RuntimeError: planned failure for label=bad" in failed["error"]
    ok = df[df["status"] == "ok"]
    assert sorted(ok["records"]) == [1, 1, 3]
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert len(index) == 4 and (out / "index.csv").exists()
    for row in index:
        executed = nbformat.read(row["notebook"], as_version=4)
        injected = [
            c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])
        ]
        assert injected and f'label = "{row["params"]["label"]}"' in injected[0].source
    # The failed notebook keeps its error cell.
    executed = nbformat.read(failed["notebook"], as_version=4)
    assert any(
        o.get("ename") == "RuntimeError" for c in executed.cells for o in c.get("outputs", [])
    )

    again = run_batch(template, grid, out=out, jobs=2)
    assert sorted(again["status"]) == ["failed", "skipped", "skipped", "skipped"]
    # Fix the failing case: only it runs.
    grid.write_text(grid.read_text().replace("fail: true", "fail: false"))
    fixed = run_batch(template, grid, out=out, jobs=2)
    assert sorted(fixed["status"]) == ["ok", "skipped", "skipped", "skipped"]


def test_unknown_parameter_and_secret_parameter_are_refused(template, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"\['temperature'\] are not parameters of tiny"):
        run_batch(template, {"product": {"temperature": [0.1]}}, out=tmp_path / "r")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-abcdefghijklmnop")
    with pytest.raises(ConfigError, match="secrets are never notebook parameters"):
        run_batch(template, {"fixed": {"label": "sk-live-abcdefghijklmnop"}}, out=tmp_path / "r")
    assert not (tmp_path / "r" / "index.jsonl").exists()


def test_output_notebook_with_a_key_is_not_written(template, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-abcdefghijklmnop")
    nb = nbformat.read(template, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import os; print(os.environ['MY_SERVICE_TOKEN'])"))
    nbformat.write(nb, template)
    df = run_batch(template, {"fixed": {"n": 1}}, out=tmp_path / "r")
    assert df["status"].tolist() == ["failed"]
    assert "contains an API key value" in df["error"][0]
    written = b"".join(p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file())
    assert b"tok-abcdefghijklmnop" not in written


def test_cli_batch(template, tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("product:\n  n: [1, 2]\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "forgekit.cli",
            "batch",
            str(template),
            "--grid",
            str(grid),
            "--out",
            str(tmp_path / "cli"),
            "--jobs",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 ok; all ok" in proc.stdout
    assert "forge: error" not in proc.stderr


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "forgekit.cli", "batch", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_batch_exits_1_and_names_each_failed_combination(template, tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text(
        "cases:\n  - {n: 2, label: good}\n  - {n: 1, label: bad, fail: true}\n"
        "  - {n: 1, label: worse, fail: true}\n"
    )
    out = tmp_path / "cli"
    proc = run_cli(template, "--grid", grid, "--out", out, "--jobs", "2")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    index = {row["params"]["label"]: row for row in read_jsonl(out / "index.jsonl")}
    assert {k: r["status"] for k, r in index.items()} == {
        "good": "ok",
        "bad": "failed",
        "worse": "failed",
    }
    # The table still shows every combination, the error says which failed and where.
    for row in index.values():
        assert row["name"] in proc.stdout
    assert "2 of 3 combination(s) failed:" in proc.stderr
    for label in ("bad", "worse"):
        row = index[label]
        executed = nbformat.read(row["notebook"], as_version=4)
        raised = [
            c.execution_count
            for c in executed.cells
            if any(o.get("output_type") == "error" for o in c.get("outputs", []))
        ]
        assert raised == [row["error_cell"]]  # the cell the user sees as In [N]
        line = next(x for x in proc.stderr.splitlines() if row["notebook"] in x)
        assert (
            f"at In [{row['error_cell']}]: RuntimeError: planned failure for label={label}" in line
        )
    assert index["good"]["notebook"] not in proc.stderr
    # The good combination ran and its data is there.
    good = read_jsonl(out / "runs" / index["good"]["name"] / "records.jsonl")
    assert [r["id"] for r in good] == ["good-0", "good-1"]


def test_magic_batch_shows_the_table_then_fails_the_cell(template, tmp_path, capsys):
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    from forgekit.jupyter.magics import MagicError

    ip = start_ipython() or get_ipython()  # one global test shell per process
    ip.run_line_magic("load_ext", "forgekit")
    grid = tmp_path / "g.yaml"
    grid.write_text("cases:\n  - {label: good}\n  - {label: bad, fail: true}\n")
    out = tmp_path / "magic"
    result = ip.run_cell(f"%forge batch {template} --grid {grid} --out {out} -o runs")
    printed = capsys.readouterr()
    text = printed.out + printed.err
    assert isinstance(result.error_in_exec, MagicError)
    assert "Traceback" not in text
    runs = ip.user_ns["runs"]  # the index table is bound and displayed before the error
    assert sorted(runs["status"]) == ["failed", "ok"]
    for name in runs["name"]:
        assert name in printed.out
    assert "1 of 2 combination(s) failed:" in text
    assert "RuntimeError: planned failure for label=bad" in text
    assert (
        out / "runs" / runs.loc[runs["status"] == "ok", "name"].iloc[0] / "records.jsonl"
    ).exists()


def test_input_files_are_found_from_where_the_batch_runs(tmp_path):
    # A combination runs in its own folder: an input named relative to the caller's folder is
    # passed as an absolute path; outputs and other text stay as written.
    declared = {
        "input_path": {"default": '""'},
        "docs_dir": {"default": "''"},
        "out": {"default": '"result.jsonl"'},
        "system": {"default": '""'},
    }
    (tmp_path / "mine.jsonl").write_text("{}\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "result.jsonl").write_text("")  # an earlier result here must not be shared
    given = {
        "input_path": "mine.jsonl",
        "docs_dir": "docs",
        "out": "result.jsonl",
        "system": "Be brief.",
    }
    assert absolute_inputs(given, declared, tmp_path) == {
        "input_path": str(tmp_path / "mine.jsonl"),
        "docs_dir": str(tmp_path / "docs"),
        "out": "result.jsonl",
        "system": "Be brief.",
    }
    # Absolute paths and missing files are passed as given (the notebook names a missing one).
    other = {"input_path": "/data/x.jsonl", "docs_dir": "nowhere"}
    assert absolute_inputs(other, declared, tmp_path) == other
    # a list of files (training_set's benchmarks): each existing one made absolute
    lists = {"benchmarks": {"default": "[]"}, "reject_quality": {"default": '["poor"]'}}
    given = {"benchmarks": ["mine.jsonl", "gone.jsonl"], "reject_quality": ["mine.jsonl"]}
    assert absolute_inputs(given, lists, tmp_path) == {
        "benchmarks": [str(tmp_path / "mine.jsonl"), "gone.jsonl"],
        "reject_quality": ["mine.jsonl"],  # not an input parameter: as given
    }


def test_token_limits_are_parameters_credentials_are_not(tmp_path):
    # `max_tokens` is a parameter of nearly every template: a grid must be able to set it.
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(
        'max_tokens = 8  # length\njudge_max_tokens = 8  # length\nkeywords = ""  # words\n'
        'api_key = ""  # no\nhf_token = ""  # no\nopenaiSecret = ""  # no\n'
    )
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = tmp_path / "t.ipynb"
    nbformat.write(nb, path)
    declared = check_parameters(path, [{"max_tokens": 16, "judge_max_tokens": 4, "keywords": "a"}])
    assert "max_tokens" in declared
    for name in ("api_key", "hf_token", "openaiSecret"):
        with pytest.raises(ConfigError, match=f"parameter '{name}': secrets are never"):
            check_parameters(path, [{name: "x"}])


def test_a_kernel_that_did_not_start_is_started_again_not_counted_as_failed(
    template, tmp_path, monkeypatch
):
    """Parallel jobs can lose a kernel port to each other (ZMQError: Address already in use,
    then "Kernel died before replying to kernel_info"): the combination is started again.
    A notebook's own error is never retried."""
    import papermill

    real, log = papermill.execute_notebook, tmp_path / "calls.txt"

    def first_kernel_dies(*args, **kwargs):
        # the batch's job process is forked from this one: it counts calls in a file
        with log.open("a") as handle:
            handle.write("call\n")
        if log.read_text().count("call") == 1:  # fault injection: the first kernel never answers
            raise RuntimeError("Kernel died before replying to kernel_info")
        return real(*args, **kwargs)

    monkeypatch.setattr(papermill, "execute_notebook", first_kernel_dies)
    df = run_batch(template, {"fixed": {"n": 2}}, out=tmp_path / "r", jobs=1)
    assert df["status"].tolist() == ["ok"] and df["records"].tolist() == [2]
    assert log.read_text().count("call") == 2

    log.write_text("call\n")  # no more injected deaths: a notebook's own error
    failing = run_batch(
        template, {"fixed": {"n": 1, "label": "bad", "fail": True}}, out=tmp_path / "f", jobs=1
    )
    assert failing["status"].tolist() == ["failed"] and log.read_text().count("call") == 2
    assert "planned failure" in failing["error"][0]
