"""The widget layer from Python: traitlets both ways, the review file, a RunMonitor fed by
real engine runs, and the Cancel button reaching a real, busy ipykernel."""

from __future__ import annotations

import ast
import json
import queue
import re
import time
from pathlib import Path

import pytest
import traitlets

from forgekit.engine import RunConfig
from forgekit.errors import ConfigError
from forgekit.jupyter.widgets import (
    DatasetViewer,
    PairReviewer,
    RunMonitor,
    asset_dir,
    load_decisions,
)
from forgekit.methods import magpie
from tests.conftest import read_jsonl

QUESTIONS = [f"How do glaciers carve valley number {i} slowly?" for i in range(60)]


def magpie_rules(stub, **config) -> None:
    stub.configure(rules=[{"match": r"<\|im_start\|>user\n$", "contents": QUESTIONS}], **config)


def front_end_update(widget, **state) -> None:
    """Deliver a state update exactly as a front end's comm message arrives."""
    widget._handle_msg(
        {
            "content": {"data": {"method": "update", "state": state, "buffer_paths": []}},
            "buffers": [],
        }
    )


def _one_of_each(tmp_path) -> dict:
    """A live widget of each kind, keyed by the stem of its front-end files."""
    return {
        "run_monitor": RunMonitor(),
        "dataset_viewer": DatasetViewer(_records(3)),
        "pair_reviewer": PairReviewer(
            [{"id": "a", "chosen": "c", "rejected": "r"}], decisions_path=tmp_path / "r.jsonl"
        ),
    }


def test_front_end_modules_come_from_the_widgets_folder_and_use_only_synced_traits(tmp_path):
    folder = asset_dir()
    # A source checkout uses the top-level widgets/ folder itself, not a copy of it.
    assert folder == Path(__file__).resolve().parents[1] / "widgets"
    for stem, widget in _one_of_each(tmp_path).items():
        state = widget.get_state()  # what the front end receives when the widget opens
        assert state["_esm"] == (folder / f"{stem}.js").read_text(encoding="utf-8")
        assert state["_css"] == (folder / f"{stem}.css").read_text(encoding="utf-8")
        # The module's contract with Python: every trait it reads or writes is synced.
        used = set(re.findall(r'model\.(?:get|set)\(\s*"(\w+)"', state["_esm"]))
        assert len(used) >= 5, f"{stem}.js: expected the module to read its state"
        missing = used - set(widget.keys)
        assert not missing, f"{stem}.js uses traits the Python widget does not sync: {missing}"


def test_asset_dir_finds_the_installed_copy_first_then_the_checkout(tmp_path):
    package = tmp_path / "site" / "forgekit"
    with pytest.raises(FileNotFoundError, match=r"_widgets.*widgets"):
        asset_dir(package)
    checkout = tmp_path / "site" / "widgets"  # a source checkout: widgets/ beside the package
    checkout.mkdir(parents=True)
    (checkout / "run_monitor.js").write_text("export default {};\n")
    assert asset_dir(package) == checkout
    installed = package / "_widgets"  # a wheel: pyproject force-includes widgets/ here
    installed.mkdir(parents=True)
    (installed / "run_monitor.js").write_text("export default {};\n")
    assert asset_dir(package) == installed


# --- RunMonitor -----------------------------------------------------------------------------


def test_run_monitor_follows_a_real_run(stub, stub_model, tmp_path):
    magpie_rules(stub)
    monitor = RunMonitor("magpie", keep=2)
    df = magpie(
        3,
        model=stub_model,
        template="chatml",
        concurrency=1,
        out=tmp_path / "m.jsonl",
        config=RunConfig(
            on_event=[monitor.handle_event], cancel_event=monitor.cancel_event, progress=False
        ),
    )
    assert len(df) == 3
    assert monitor.status == "completed" and monitor.done == 3 and monitor.ok == 3
    assert monitor.total == 3 and monitor.requests == 6 and monitor.failed == 0
    assert (
        monitor.tokens
        == df.attrs["forgekit"]["stats"]["prompt_tokens"]
        + df.attrs["forgekit"]["stats"]["completion_tokens"]
        > 0
    )
    assert monitor.out.endswith("m.jsonl")
    # The latest records, newest first, at most `keep`.
    assert [r["input"] for r in monitor.latest] == QUESTIONS[2:0:-1]
    assert monitor.latest[0]["output"] == f"echo: {QUESTIONS[2]}"
    assert monitor.result.status == "completed"


def test_run_monitor_shows_errors_and_retries(stub, stub_model):
    magpie_rules(stub, fault_rate=1.0, faults=["500"], faults_per_request=1)
    monitor = RunMonitor("magpie")
    magpie(
        2,
        model=stub_model,
        template="chatml",
        concurrency=1,
        config=RunConfig(on_event=[monitor.handle_event], progress=False, base_delay=0.01),
    )
    assert monitor.retried >= 4 and monitor.status == "completed"
    assert any(e["error"].startswith("retry") for e in monitor.errors)


def test_cancel_from_the_front_end_stops_the_run_keeping_records(stub, stub_model, tmp_path):
    magpie_rules(stub, latency_ms=30)
    monitor = RunMonitor("magpie")

    def click_cancel_after_two(event, data):
        if event == "record" and data["stats"].ok == 2:
            front_end_update(monitor, cancel_requested=True)  # the Cancel button's message

    out = tmp_path / "c.jsonl"
    df = magpie(
        50,
        model=stub_model,
        template="chatml",
        concurrency=1,
        out=out,
        config=RunConfig(
            on_event=[monitor.handle_event, click_cancel_after_two],
            cancel_event=monitor.cancel_event,
            progress=False,
        ),
    )
    assert monitor.cancel_requested and monitor.cancel_event.is_set()
    assert df.attrs["forgekit"]["status"] == "cancelled" and monitor.status == "cancelled"
    assert 2 <= len(df) < 50
    assert [r["id"] for r in read_jsonl(out)] == list(df["id"])


def test_monitor_state_goes_to_the_front_end_and_back():
    monitor = RunMonitor()
    sent = []
    monitor.comm.send = lambda data, *a, **k: sent.append(data)  # what goes over the comm
    monitor.cancel()
    assert monitor.cancel_event.is_set()
    assert sent and sent[-1]["state"] == {"cancel_requested": True}
    front_end_update(monitor, rendered=True)
    assert monitor.rendered


# --- DatasetViewer --------------------------------------------------------------------------


def _records(n: int) -> list[dict]:
    return [
        {
            "id": f"r{i}",
            "input": f"question {i} about {'cats' if i % 3 == 0 else 'dogs'}",
            "output": f"answer {i}",
            "history": [["earlier", "reply"]] if i == 4 else [],
            "lineage": {"method": "test", "index": i},
            "score": float("nan") if i == 1 else i,
        }
        for i in range(n)
    ]


def test_dataset_viewer_pages_searches_and_shows_details():
    viewer = DatasetViewer(_records(25), page_size=10)
    assert viewer.columns == ["id", "input", "output"]
    assert viewer.count == 25 and viewer.matches == 25
    assert [r["id"] for r in viewer.rows] == [f"r{i}" for i in range(10)]
    front_end_update(viewer, page=2)
    assert [r["id"] for r in viewer.rows] == [f"r{i}" for i in range(20, 25)]
    front_end_update(viewer, query="CATS")  # case-insensitive, back to the first page
    assert viewer.page == 0 and viewer.matches == 9
    assert all("cats" in r["input"] for r in viewer.rows)
    front_end_update(viewer, page=7)  # past the end: clamped to the last page
    assert viewer.page == 0
    front_end_update(viewer, selected=4)
    assert viewer.detail["history"] == [["earlier", "reply"]]
    assert viewer.detail["lineage"] == {"method": "test", "index": 4}
    front_end_update(viewer, selected=1)
    assert "score" not in viewer.detail  # NaN cells are dropped, JSON stays valid
    json.dumps(viewer.get_state())


# --- PairReviewer ---------------------------------------------------------------------------


def _pairs(path: Path, n: int = 4) -> Path:
    rows = [
        {"id": f"p{i}", "input": f"prompt {i}", "chosen": f"good {i}", "rejected": f"bad {i}"}
        for i in range(n)
    ] + [{"id": "nopair", "input": "x", "chosen": None, "rejected": None}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_pair_reviewer_decisions_round_trip(tmp_path):
    data = _pairs(tmp_path / "dpo.jsonl")
    reviewer = PairReviewer(data)
    assert reviewer.total == 4 and reviewer.index == 0
    assert reviewer.path == str(tmp_path / "dpo.review.jsonl")
    assert reviewer.pair["chosen"] == "good 0" and reviewer.pair["decision"] == ""
    # The buttons: the front end sends the new decisions dict and the next index.
    front_end_update(reviewer, decisions={"p0": "accept"}, index=1)
    assert reviewer.pair["id"] == "p1"
    front_end_update(reviewer, decisions={"p0": "accept", "p1": "swap"}, index=2)
    reviewer.decide("reject")  # from Python, as a click would
    assert reviewer.index == 3 and reviewer.decisions == {
        "p0": "accept",
        "p1": "swap",
        "p2": "reject",
    }
    with pytest.raises(traitlets.TraitError):
        reviewer.decisions = {"p3": "maybe"}
    lines = read_jsonl(tmp_path / "dpo.review.jsonl")
    assert [(e["id"], e["decision"]) for e in lines] == [
        ("p0", "accept"),
        ("p1", "swap"),
        ("p2", "reject"),
    ]
    # Change of mind: appended; the latest wins on reload.
    reviewer.index = 0
    reviewer.decide("swap", advance=False)
    again = PairReviewer(data)
    assert again.decisions == {"p0": "swap", "p1": "swap", "p2": "reject"}
    assert again.index == 3  # the first undecided pair
    reviewed = again.reviewed()
    assert list(reviewed["id"]) == ["p0", "p1"]
    assert list(reviewed["chosen"]) == ["bad 0", "bad 1"]
    assert list(reviewed["rejected"]) == ["good 0", "good 1"]


def test_pair_reviewer_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="no preference pairs"):
        PairReviewer([{"input": "x", "output": "y"}], decisions_path=tmp_path / "r.jsonl")
    with pytest.raises(ConfigError, match="pass decisions_path"):
        PairReviewer([{"id": "a", "chosen": "c", "rejected": "r"}])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "decision": "accept"}\nnot json\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: not a review decision"):
        load_decisions(bad)


# --- DiversityReport charts -----------------------------------------------------------------


def test_diversity_report_is_a_linked_widget():
    from forgekit.evaluate import report
    from forgekit.jupyter.widgets.report import ReportCharts, ReportView

    records = [
        {"id": f"r{i}", "input": f"text {i} about {w}", "tag": w}
        for i, w in enumerate(["cats", "dogs", "fish"] * 4)
    ]
    rep = report(records, text="input", label="tag")
    view = rep.widget()
    assert isinstance(view, ReportView) and isinstance(view.charts, ReportCharts)
    # One chart per selection param, the record list is a DatasetViewer of every record.
    assert [c["param"] for c in view.charts.charts] == ["brush", "pick", "span"]
    assert view.viewer.count == len(records) == len(rep.selected_records(view))
    view.charts.selection = {"pick": [[["label_group", "E", "dogs"]]]}
    assert list(rep.selection["id"]) == ["r1", "r4", "r7", "r10"]


# --- the Cancel button reaches a real, busy kernel ----------------------------------------


@pytest.mark.slow
def test_cancel_and_interrupt_reach_a_busy_kernel(stub, stub_model, tmp_path):
    """A real ipykernel runs `%forge magpie`; this test plays the front end: it sends the
    Cancel button's comm message while the cell is still running, then a kernel interrupt
    in a second run. Both stop the run and keep finished records; a cell queued behind
    the run still runs after it, in order."""
    from jupyter_client.manager import start_new_kernel

    # The stub answers 6 requests (3 records) and holds the rest: the run is busy, waiting on
    # a request, when Cancel and the interrupt arrive, however fast the machine is.
    magpie_rules(stub, latency_ms=60, hold_after=6)
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=60)
    try:
        reply = kc.execute_interactive("%load_ext forgekit", timeout=60)
        assert reply["content"]["status"] == "ok"
        out = tmp_path / "run.jsonl"
        run_id = kc.execute(
            f"%forge magpie -n 50 --model stub --template chatml --concurrency 1 --out {out} -o d"
        )
        queued_id = kc.execute("after = len(d)")  # waits behind the run
        comm_id = _wait_for_monitor(kc, records=2)
        cancel = kc.session.msg(
            "comm_msg",
            {
                "comm_id": comm_id,
                "data": {
                    "method": "update",
                    "state": {"cancel_requested": True},
                    "buffer_paths": [],
                },
            },
        )
        kc.shell_channel.send(cancel)
        replies = _replies(kc, {run_id, queued_id}, timeout=60)
        assert replies[run_id]["status"] == "ok" and replies[queued_id]["status"] == "ok", replies
        assert replies[run_id]["execution_count"] < replies[queued_id]["execution_count"]
        status = _eval(kc, "(len(d), d.attrs['forgekit']['status'], after)")
        kept, state, after = status
        assert state == "cancelled" and 2 <= kept <= 3 and after == kept
        assert len(read_jsonl(out)) == kept

        # A kernel interrupt: the cell fails with one line, finished records are kept.
        magpie_rules(stub, latency_ms=60, hold_after=6)
        # stop_on_error=False: after a failed cell ipykernel aborts execute requests until
        # a marker it queues *after* sending the error reply, so the check below could be
        # aborted if it arrived first (seen about once in 20 runs on a loaded machine).
        run_id = kc.execute(
            "%forge magpie -n 50 --model stub --template chatml --concurrency 1 --seed 9 -o d2",
            stop_on_error=False,
        )
        _wait_for_monitor(kc, records=2)
        km.interrupt_kernel()
        reply = _replies(kc, {run_id}, timeout=30)[run_id]
        assert reply["status"] == "error" and reply["ename"] == "RunInterrupted"
        assert len(reply["traceback"]) == 1 and "finished record(s) kept" in reply["traceback"][0]
        kept2 = _eval(kc, "len(d2)")
        assert 2 <= kept2 <= 3
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _wait_for_monitor(kc, records: int, timeout: float = 30) -> str:
    """Read IOPub until a RunMonitor was opened and has reported `records` records."""
    deadline = time.monotonic() + timeout
    comm_id = None
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        content = msg["content"]
        if msg["msg_type"] == "comm_open":
            state = content.get("data", {}).get("state", {})
            if "cancel_requested" in state:
                comm_id = content["comm_id"]
        elif (
            msg["msg_type"] == "comm_msg"
            and content.get("comm_id") == comm_id
            and content["data"].get("state", {}).get("done", 0) >= records
        ):
            return comm_id
    raise AssertionError("the run monitor never reported progress")


def _replies(kc, ids: set[str], timeout: float) -> dict[str, dict]:
    found: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while set(found) != ids and time.monotonic() < deadline:
        try:
            msg = kc.get_shell_msg(timeout=1)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") in ids:
            found[msg["parent_header"]["msg_id"]] = msg["content"]
    assert set(found) == ids, f"no reply for {ids - set(found)}"
    return found


def _eval(kc, expression: str):
    reply = kc.execute_interactive(
        "", user_expressions={"v": f"__import__('json').dumps({expression})"}, timeout=30
    )
    value = reply["content"]["user_expressions"]["v"]
    assert value["status"] == "ok", value
    return json.loads(ast.literal_eval(value["data"]["text/plain"]))
