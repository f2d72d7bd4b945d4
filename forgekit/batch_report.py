"""Reports of a batch for people and CI systems: the failure list, a JUnit XML file (one test
case per combination, the error cell as the failure) and a Markdown summary (for
`$GITHUB_STEP_SUMMARY` or a file).

They read the index table `forgekit.batch.run_batch` returns, so they describe exactly what
`index.jsonl` holds; every text they write is scrubbed of the API key values in the
environment.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from forgekit.secrets import scrub

# ANSI colour codes (IPython colours its tracebacks) and the other control characters that
# XML 1.0 cannot hold.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_XML_INVALID = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


def plain_text(text: str | None) -> str:
    """`text` without colour codes or characters XML cannot carry."""
    return _XML_INVALID.sub("", _ANSI.sub("", text or ""))


def _present(value: Any) -> bool:
    return value is not None and value == value  # a missing number is NaN in a DataFrame


def failure_report(df: Any) -> str:
    """'N of M combination(s) failed', then one line per failed combination: its executed
    notebook (or work folder), the cell that raised (papermill's `In [N]`) and the error."""
    failed = df[df["status"] == "failed"]
    lines = [f"{len(failed)} of {len(df)} combination(s) failed:"]
    for row in failed.itertuples():
        where = row.notebook or f"{row.workdir} (no notebook written)"
        cell = f" at In [{int(row.error_cell)}]" if _present(row.error_cell) else ""
        error = " ".join(str(row.error or "unknown error").split())
        lines.append(f"  {where}{cell}: {error}")
    return "\n".join(lines)


def _suite_name(df: Any) -> str:
    index = (df.attrs.get("forgekit") or {}).get("index") or "batch"
    template = (df.attrs.get("forgekit") or {}).get("template") or "notebook"
    return f"forge batch {Path(template).name} ({Path(index).parent})"


def junit_xml(df: Any) -> str:
    """The batch as JUnit XML: one <testcase> per combination (its parameters as
    properties); a failed one carries the error cell's `ename: evalue` as the failure
    message and its traceback as the failure text."""
    failures = int((df["status"] == "failed").sum())
    total_time = float(df["duration_s"].fillna(0).sum()) if len(df) else 0.0
    suites = ET.Element("testsuites", tests=str(len(df)), failures=str(failures), errors="0")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=_suite_name(df),
        tests=str(len(df)),
        failures=str(failures),
        errors="0",
        skipped="0",
        time=f"{total_time:.2f}",
    )
    classname = "forge_batch." + Path((df.attrs.get("forgekit") or {}).get("template") or "nb").stem
    for row in df.to_dict("records"):
        case = ET.SubElement(
            suite,
            "testcase",
            classname=classname,
            name=str(row["name"]),
            time=f"{float(row['duration_s']) if _present(row['duration_s']) else 0.0:.2f}",
        )
        properties = ET.SubElement(case, "properties")
        for name, value in sorted((row.get("params") or {}).items()):
            ET.SubElement(
                properties, "property", name=f"param.{name}", value=plain_text(str(value))
            )
        if row["status"] == "failed":
            message = plain_text(row.get("error") or "failed")
            where = f" (cell In [{int(row['error_cell'])}])" if _present(row["error_cell"]) else ""
            failure = ET.SubElement(
                case, "failure", message=message + where, type=message.split(":", 1)[0]
            )
            failure.text = plain_text(row.get("traceback") or message)
        notebook = row.get("notebook") or row.get("workdir") or ""
        records = int(row["records"]) if _present(row.get("records")) else 0
        ET.SubElement(case, "system-out").text = f"notebook: {notebook}\nrecords: {records}"
    ET.indent(suites)
    return scrub(ET.tostring(suites, encoding="unicode", xml_declaration=True)) + "\n"


def write_junit(df: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(df), encoding="utf-8")
    return path


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def markdown_summary(df: Any, *, max_failures: int = 0) -> str:
    """A Markdown section for a CI run's summary page: the verdict, then one table row per
    combination (status, records, seconds, the error and its cell)."""
    info = df.attrs.get("forgekit") or {}
    failed = int((df["status"] == "failed").sum())
    ok = len(df) - failed
    tolerated = f", {max_failures} tolerated" if max_failures else ""
    verdict = "passed" if failed <= max_failures else "FAILED"
    title = Path(info.get("template") or "notebook").name
    lines = [
        f"## forge batch {title}: {verdict}",
        "",
        f"{ok} ok, {failed} failed of {len(df)} combination(s){tolerated}. "
        f"Index: `{info.get('index', '')}`",
        "",
        "| combination | status | records | seconds | error |",
        "|---|---|---:|---:|---|",
    ]
    for row in df.to_dict("records"):
        status = "❌ failed" if row["status"] == "failed" else f"✅ {row['status']}"
        error = ""
        if row["status"] == "failed":
            cell = f" at In [{int(row['error_cell'])}]" if _present(row["error_cell"]) else ""
            error = f"`{_cell(plain_text(row.get('error') or ''))[:300]}`{cell}"
        records = int(row["records"]) if _present(row.get("records")) else 0
        seconds = f"{float(row['duration_s']):.1f}" if _present(row["duration_s"]) else ""
        lines.append(f"| {_cell(row['name'])} | {status} | {records} | {seconds} | {error} |")
    return scrub("\n".join(lines)) + "\n"


def write_summary(text: str, path: str | os.PathLike | None = None) -> list[Path]:
    """Append `text` to $GITHUB_STEP_SUMMARY when it is set, and write it to `path` when
    given; the files written."""
    written = []
    target = os.environ.get(SUMMARY_ENV)
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
        written.append(Path(target))
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")
        written.append(Path(path))
    return written
