"""Background runs (forgekit.background): a run in its own process, listed, followed,
cancelled, reattached after a kernel restart — with the same records as a foreground run.

Every wait is tied to progress (records in the event log, the run's final event), never to
a sleep; the stub holds requests (`hold_after`) to keep a run going while the test acts.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from forgekit import background
from forgekit.cli import main as cli_main
from tests.conftest import read_jsonl

QUESTIONS = [f"What shapes the valley of river number {i}?" for i in range(40)]
WAIT_S = 120  # an upper bound for a hung run only; progress ends every wait


@pytest.fixture
def questions(tmp_path) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"q{i}", "input": q}) + "\n" for i, q in enumerate(QUESTIONS))
    )
    return path


def generate_argv(questions: Path, out: Path, *extra: str) -> list[str]:
    return [
        "generate",
        "--input",
        str(questions),
        "--user",
        "Answer: {{ input }}",
        "--model",
        "stub",
        "--out",
        str(out),
        "--no-cache",
        *extra,
    ]


def essence(records: list[dict]) -> list[tuple]:
    return sorted((r["id"], r["input"], r["output"]) for r in records)


def records_seen(run: background.BackgroundRun, wanted: int) -> int:
    """Follow the run's log until `wanted` records were written (or it finished)."""
    seen = 0
    for event, _ in run.follow():
        seen += event == "record"
        if seen >= wanted or event == "finished":
            return seen
    return seen


def test_cli_background_run_matches_foreground(stub, stub_model, questions, tmp_path, capsys):
    assert cli_main(generate_argv(questions, tmp_path / "fg.jsonl")) == 0
    capsys.readouterr()
    assert cli_main(generate_argv(questions, tmp_path / "bg.jsonl", "--background")) == 0
    said = capsys.readouterr().out
    assert "started background run" in said and "forge runs --follow" in said

    run = background.get("last")
    state = run.wait(timeout=WAIT_S)
    assert state["status"] == "completed", state
    assert state["done"] == len(QUESTIONS) and state["failed"] == 0
    foreground = read_jsonl(tmp_path / "fg.jsonl")
    assert essence(read_jsonl(tmp_path / "bg.jsonl")) == essence(foreground)
    assert len(foreground) == len(QUESTIONS)
    assert not run.alive()

    assert cli_main(["runs"]) == 0
    listing = capsys.readouterr().out
    assert run.id in listing and "completed" in listing
    assert cli_main(["runs", "--follow", run.id[:12]]) == 0  # a finished run: at once
    assert "completed" in capsys.readouterr().out


def test_python_background_run_keeps_the_key_out_of_its_folder(
    stub, stub_model, questions, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-background-secret-123")
    run = background.start(
        "generate", str(questions), user="Answer: {{ input }}", model="stub", cache=False
    )
    assert run.wait(timeout=WAIT_S)["status"] == "completed"
    df = run.result()
    assert len(df) == len(QUESTIONS)
    assert set(df["output"]) == {f"echo: Answer: {q}" for q in QUESTIONS}
    for path in run.dir.iterdir():
        assert b"sk-background-secret-123" not in path.read_bytes(), path.name


def test_monitor_cancel_stops_the_run_and_keeps_finished_records(
    stub, stub_model, questions, tmp_path
):
    stub.configure(hold_after=5)
    from forgekit.jupyter import start_background

    # What a notebook user calls: the run starts in its own process, a live widget at once.
    monitor = start_background(
        "generate",
        str(questions),
        user="{{ input }}",
        model="stub",
        out=tmp_path / "out.jsonl",
        cache=False,
    )
    run = monitor.background_run
    assert records_seen(run, 5) == 5
    monitor.cancel()  # what the Cancel button does
    state = run.wait(timeout=WAIT_S)
    stub.configure()
    assert state["status"] == "cancelled", state
    kept = read_jsonl(tmp_path / "out.jsonl")  # every line whole JSON
    assert len(kept) == 5 and state["done"] == 5
    monitor.follower.join(WAIT_S)
    assert monitor.status == "cancelled" and monitor.done == 5
    assert not run.alive()


def test_a_killed_run_is_reported_and_a_rerun_resumes(stub, stub_model, questions, tmp_path):
    out = tmp_path / "out.jsonl"
    stub.configure(hold_after=7)
    assert cli_main(generate_argv(questions, out, "--background")) == 0
    run = background.get("last")
    assert records_seen(run, 7) == 7
    os.kill(int(run.info["pid"]), signal.SIGKILL)
    state = run.wait(timeout=WAIT_S)
    stub.configure()
    assert state["status"] == "died"
    assert "SIGKILL" in state["error"] and str(run.info["pid"]) in state["error"]
    assert len(read_jsonl(out)) == 7
    listed = background.list_runs()
    assert listed.set_index("id").loc[run.id, "status"] == "died"

    assert cli_main(generate_argv(questions, out)) == 0  # a foreground re-run resumes
    records = read_jsonl(out)
    assert len(records) == len(QUESTIONS) == len({r["id"] for r in records})


def test_bad_run_ids_are_one_clear_error(capsys):
    assert cli_main(["runs", "--follow", "nope"]) == 1
    assert "background run 'nope': no run matches" in capsys.readouterr().err


@pytest.mark.slow
def test_kernel_stays_free_and_a_monitor_reattaches_after_restart(
    stub, stub_model, questions, tmp_path
):
    """In a real Jupyter kernel: `%forge ... --background` returns at once, the kernel
    answers while the run is held, and after a kernel restart `%forge runs --follow`
    gives a monitor that sees the run to its end."""
    from jupyter_client.manager import start_new_kernel

    out = tmp_path / "out.jsonl"
    stub.configure(hold_after=10)
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120, cwd=str(tmp_path))
    try:
        line = " ".join(generate_argv(questions, out, "--background")[:-1])
        line = line.replace("Answer: {{ input }}", "'Answer: {{ input }}'")
        started = execute(kc, f"%load_ext forgekit\n%forge {line} --background -o r\nx = 41")
        assert "error" not in started, started
        run = background.get("last")
        assert records_seen(run, 10) == 10  # held: the run cannot end now
        assert execute(kc, "print(x + 1, r.status()['status'])")["stdout"].split() == [
            "42",
            "running",
        ]
        listed = execute(kc, "%forge runs -o runs\nprint(runs.iloc[0]['status'])")
        assert listed["stdout"].split()[-1] == "running"

        km.restart_kernel(now=True)
        kc.wait_for_ready(timeout=120)
        attached = execute(kc, "%load_ext forgekit\n%forge runs --follow last -o m")
        assert "error" not in attached, attached
        stub.configure()  # release the rest
        assert run.wait(timeout=WAIT_S)["status"] == "completed"
        seen = execute(
            kc, "m = m.live_monitor; m.follower.join(60); print(m.status, m.done, m.total)"
        )
        assert "error" not in seen, seen
        assert seen["stdout"].split() == ["completed", str(len(QUESTIONS)), str(len(QUESTIONS))]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    records = read_jsonl(out)
    assert len(records) == len(QUESTIONS) == len({r["id"] for r in records})


def execute(kc, code: str) -> dict[str, str]:
    """Run `code` in the kernel; its stdout and error (if any)."""
    msg_id = kc.execute(code)
    result = {"stdout": ""}
    while True:
        msg = kc.get_iopub_msg(timeout=WAIT_S)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and content["name"] == "stdout":
            result["stdout"] += content["text"]
        elif kind == "error":
            result["error"] = f"{content['ename']}: {content['evalue']}"
        elif kind == "status" and content["execution_state"] == "idle":
            return result


if sys.platform == "win32":  # pragma: no cover
    pytest.skip("background runs use POSIX signals", allow_module_level=True)
