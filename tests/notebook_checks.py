"""Reading what an executed notebook left behind: its printed values, error outputs, and the
run manifests and error logs of the method runs it made (shared by the notebook tests)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text("utf-8").splitlines() if line]


def error_outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]


def stream_text(nb: nbformat.NotebookNode) -> str:
    """Everything the notebook's cells printed."""
    return "".join(
        o.get("text", "")
        for c in nb.cells
        for o in c.get("outputs", [])
        if o.output_type == "stream"
    )


def printed(nb: nbformat.NotebookNode, label: str, literal: bool = True):
    """What the notebook printed on the line `label: ...` (a Python literal, or the text)."""
    match = re.search(rf"^{re.escape(label)}: (.+)$", stream_text(nb), re.MULTILINE)
    assert match, f"the notebook did not print {label!r}"
    return ast.literal_eval(match.group(1)) if literal else match.group(1)


def this_run(out: Path) -> dict:
    """The counters of the last run that wrote `out` (ok, failed, filtered, ...)."""
    return json.loads(out.with_name(out.stem + ".manifest.json").read_text())["this_run"]


def run_errors(out: Path) -> list[dict]:
    """The run's error log (one line per failed record attempt), empty if there is none."""
    path = out.with_name(out.stem + ".errors.jsonl")
    return read_jsonl(path) if path.exists() else []
