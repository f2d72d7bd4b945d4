"""Batch mode (batch=True / --batch) with the real openai SDK against the stub's /v1/files and
/v1/batches: completion, partial failures, expiry, a corrupted results file, a crash between
submit and collect, a multi-stage method, the CLI, the magic, and the batch price."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forgekit.cli import main as cli_main
from forgekit.errors import UnsupportedOperationError
from forgekit.methods import evol, generate
from tests.conftest import read_jsonl, write_profile
from tests.test_methods_dpo import extra_servers, responders  # noqa: F401 - fixtures
from tests.test_methods_evol import EVOLVE_RULES

SECRET = "sk-batch-test-secret-0123456789"
QUESTIONS = [{"q": f"question {i}"} for i in range(6)]
FAST = {"batch": True, "batch_poll_s": 0.01, "progress": False}


@pytest.fixture
def model(stub, tmp_path, monkeypatch):
    """A priced profile on the stub whose key lives in the environment."""
    monkeypatch.setenv("STUB_KEY", SECRET)
    write_profile(
        tmp_path,
        monkeypatch,
        stub.url,
        timeout=2.0,
        api_key_env="STUB_KEY",
        price={"input": 3.0, "output": 5.0},
    )
    return "stub"


def state(stub) -> dict:
    return stub._call("/_batch_state")


def batch_config(stub, **knobs) -> None:
    stub._call("/_batch_config", knobs)


def batch_lines(stub, batch_id: str) -> list[dict]:
    info = state(stub)
    content = info["files"][info["batches"][batch_id]["input_file_id"]]["content"]
    return [json.loads(line) for line in content.splitlines()]


def run_generate(model: str, out: Path | None = None, **options):
    return generate(QUESTIONS, user="Answer: {{ q }}", model=model, out=out, **options)


def test_batch_completes_like_online_at_half_the_price(stub, model, tmp_path):
    online = run_generate(model, cache=False, progress=False)
    stub.configure(batch_polls=3)
    out = tmp_path / "batch.jsonl"
    df = run_generate(model, out, **FAST)
    stats = stub.stats()
    # Nothing went online; one file, one batch, polled through its states until done.
    assert stats.get("requests", 0) == 0
    assert stats["batch_creates"] == 1 and stats["batch_items"] == len(QUESTIONS)
    assert stats["batch_retrieves"] == 3
    assert df["output"].tolist() == online["output"].tolist()
    assert df["id"].tolist() == online["id"].tolist()  # the same records, the same ids
    assert [r["id"] for r in read_jsonl(out)] == df["id"].tolist()
    run = df.attrs["forgekit"]
    assert run["status"] == "completed" and run["stats"]["ok"] == len(QUESTIONS)
    assert run["stats"]["requests"] == len(QUESTIONS) and run["stats"]["cached"] == 0
    # Same tokens as online, at half the price (the default batch discount).
    assert run["stats"]["prompt_tokens"] == online.attrs["forgekit"]["stats"]["prompt_tokens"]
    assert run["stats"]["cost"] == pytest.approx(online.attrs["forgekit"]["stats"]["cost"] / 2)
    assert run["batch"]["problems"] == []
    # The batch file: one line per request, the online body, the right endpoint, no key.
    (batch_id,) = run["batch"]["batches"]
    lines = batch_lines(stub, batch_id)
    assert {line["url"] for line in lines} == {"/v1/chat/completions"}
    assert lines[0]["body"]["model"] == "stub-model"
    assert lines[0]["body"]["messages"] == [{"role": "user", "content": "Answer: question 0"}]
    assert len({line["custom_id"] for line in lines}) == len(QUESTIONS)
    uploaded = json.dumps(state(stub)["files"])
    assert SECRET not in uploaded
    for path in tmp_path.glob("batch.*"):
        assert SECRET not in path.read_text(), path
    manifest = json.loads((tmp_path / "batch.manifest.json").read_text())
    assert batch_id in manifest["batch"]["batches"]
    assert manifest["run_config"]["batch"] is True


def test_profile_batch_price_wins(stub, tmp_path, monkeypatch):
    write_profile(
        tmp_path,
        monkeypatch,
        stub.url,
        price={"input": 3.0, "output": 5.0},
        batch_price={"input": 1.0, "output": 0.0},
    )
    df = run_generate("stub", **FAST)
    stats = df.attrs["forgekit"]["stats"]
    assert stats["cost"] == pytest.approx(stats["prompt_tokens"] * 1.0 / 1e6)


def test_batches_split_at_the_per_file_limit(stub, model):
    df = run_generate(model, batch_max_requests=4, **FAST)
    assert stub.stats()["batch_creates"] == 2
    sizes = sorted(b["answered"] for b in df.attrs["forgekit"]["batch"]["batches"].values())
    assert sizes == [2, 4] and df.attrs["forgekit"]["stats"]["ok"] == len(QUESTIONS)


def test_partial_failures_are_resubmitted_in_a_new_batch(stub, model):
    stub.configure(batch_error_rate=0.5)
    df = run_generate(model, **FAST)
    run = df.attrs["forgekit"]
    first, second = run["batch"]["batches"].values()
    assert first["errors"] > 0 and first["answered"] + first["errors"] == len(QUESTIONS)
    # Exactly the failed items went into the second batch, and all came back.
    assert second["answered"] == first["errors"] and second["errors"] == 0
    assert run["stats"]["ok"] == len(QUESTIONS) and run["errors"] == []
    assert run["batch"]["counts"]["resubmitted"] == first["errors"]
    assert stub.stats().get("requests", 0) == 0


def test_partial_failures_can_go_online(stub, model):
    stub.configure(batch_error_rate=0.5)
    df = run_generate(model, batch_failed="online", **FAST)
    run = df.attrs["forgekit"]
    (only,) = run["batch"]["batches"].values()
    stats = stub.stats()
    assert stats["batch_creates"] == 1 and stats["requests"] == only["errors"] > 0
    assert run["stats"]["ok"] == len(QUESTIONS)
    assert run["batch"]["counts"]["sent_online"] == only["errors"]


def test_refused_items_fail_their_records_and_are_not_resubmitted(stub, model):
    stub.configure(batch_error_rate=0.5, batch_error_status=400)
    df = run_generate(model, **FAST)
    run = df.attrs["forgekit"]
    (only,) = run["batch"]["batches"].values()
    assert stub.stats()["batch_creates"] == 1
    assert run["stats"]["failed"] == only["errors"] > 0
    assert run["stats"]["ok"] == len(QUESTIONS) - only["errors"]
    assert all("http_400" in e["message"] for e in run["errors"])


@pytest.mark.parametrize("listed", [True, False], ids=["in-error-file", "absent"])
def test_expired_batch_keeps_what_was_done_and_resubmits_the_rest(stub, model, listed):
    stub.configure(batch_expire_after=2, batch_expired_in_error_file=listed)
    with pytest.warns(UserWarning, match="expired"):
        df = run_generate(model, **FAST)
    run = df.attrs["forgekit"]
    first, second = run["batch"]["batches"].values()
    assert first["status"] == "expired" and first["answered"] == 2
    assert second["status"] == "completed" and second["answered"] == len(QUESTIONS) - 2
    assert run["stats"]["ok"] == len(QUESTIONS)
    problems = " | ".join(run["batch"]["problems"])
    assert "ended expired with 2 of 6 answered" in problems
    # Items that came back in neither file are a reported gap, never silent.
    assert ("came back in neither" in problems) is (not listed)


def test_corrupted_results_file_names_file_and_line_keeps_good_lines(stub, model):
    stub.configure(batch_corrupt_line=2)
    with pytest.warns(UserWarning, match=r"output file file-\d+, line 2: not a valid result"):
        df = run_generate(model, **FAST)
    run = df.attrs["forgekit"]
    first, second = run["batch"]["batches"].values()
    assert first["answered"] == len(QUESTIONS) - 1  # the good lines were kept
    assert second["answered"] == 1  # the torn one was asked again, alone
    assert f"output file {first['output_file_id']}, line 2" in run["batch"]["problems"][0]
    assert run["stats"]["ok"] == len(QUESTIONS)


def test_local_model_has_no_batch_api():
    with pytest.raises(UnsupportedOperationError, match="'local'.*has none"):
        run_generate("local", batch=True, progress=False)


JOB = """
import sys
from forgekit.methods import generate
qs = [{"q": f"question {i}"} for i in range(6)]
df = generate(qs, user="Answer: {{ q }}", model="stub", out=sys.argv[1], batch=True,
              batch_poll_s=0.01, progress=False)
print(df.attrs["forgekit"]["summary"])
"""


def test_crash_between_submit_and_collect_collects_without_resubmitting(stub, model, tmp_path):
    stub.configure(batch_hold=True)  # batches stay in_progress: the job cannot finish first
    out = tmp_path / "crash.jsonl"
    ledger = tmp_path / "crash.batches.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", JOB, str(out)],
        env={**os.environ},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120  # a hang guard only
    while not (ledger.exists() and json.loads(ledger.read_text())["batches"]):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the batch was never recorded"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert stub.stats()["batch_creates"] == 1
    assert not out.exists() or read_jsonl(out) == []
    batch_config(stub, batch_hold=False)
    df = run_generate(model, out, **FAST)
    assert stub.stats()["batch_creates"] == 1  # collected, not submitted again
    assert df.attrs["forgekit"]["stats"]["ok"] == len(QUESTIONS)
    assert len(read_jsonl(out)) == len(QUESTIONS)
    # A third run has nothing left to do: every record is resumed from the file.
    again = run_generate(model, out, **FAST)
    assert again.attrs["forgekit"]["stats"]["skipped"] == len(QUESTIONS)
    assert stub.stats()["batch_creates"] == 1


def test_multi_stage_method_goes_stage_by_stage(stub, model):
    stub.configure(rules=EVOLVE_RULES)
    seeds = [{"id": f"s-{w}", "input": f"Name a {w}."} for w in ("fruit", "colour", "city")]
    online = evol(seeds, rounds=2, model=model, cache=False, progress=False)
    stub.configure(rules=EVOLVE_RULES)
    df = evol(seeds, rounds=2, model=model, **FAST)
    assert df.drop(columns="lineage").equals(online.drop(columns="lineage"))
    assert stub.stats().get("requests", 0) == 0
    # One batch per dependent request: rewrite, then answer, then judge — each round.
    batches = list(df.attrs["forgekit"]["batch"]["batches"])
    kinds = []
    for batch_id in batches:
        prompts = [line["body"]["messages"][-1]["content"] for line in batch_lines(stub, batch_id)]
        if all("Prompt#" in p for p in prompts):
            kinds.append("evolve")
        elif all("First instruction" in p for p in prompts):
            kinds.append("judge")
        else:
            kinds.append("answer")
    assert kinds == ["evolve", "answer", "judge"] * 2


def test_cli_batch(stub, model, tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    out = tmp_path / "cli.jsonl"
    argv = ["generate", "--input", str(data), "--user", "Answer: {{ q }}", "--model", model]
    argv += ["--out", str(out), "--batch", "--batch-poll", "0.01", "--no-progress"]
    assert cli_main(argv) == 0
    assert read_jsonl(out)[0]["output"] == "echo: Answer: question 0"
    assert stub.stats()["batch_creates"] == 1 and stub.stats().get("requests", 0) == 0


def test_magic_batch(stub, model, tmp_path, capsys):
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython() or get_ipython()
    shell.run_line_magic("load_ext", "forgekit")
    shell.user_ns["qs"] = QUESTIONS
    line = f'generate --input qs --user "Answer: {{{{ q }}}}" --model {model} --batch '
    line += "--batch-poll 0.01 --no-progress -o batched"
    shell.run_line_magic("forge", line)
    batched = shell.user_ns["batched"]
    assert batched["output"].tolist()[0] == "echo: Answer: question 0"
    assert batched.attrs["forgekit"]["batch"]["counts"]["answered"] == len(QUESTIONS)


def test_run_file_batch_key(stub, model, tmp_path):
    from forgekit.runfile import run_file

    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    spec = tmp_path / "run.yaml"
    spec.write_text(
        "method: generate\nmodel: stub\ninput: in.jsonl\nprompts: {user: 'Answer: {{ q }}'}\n"
        "run: {batch: true, batch_poll_s: 0.01, progress: false}\n"
    )
    df = run_file(spec)
    assert df.attrs["forgekit"]["stats"]["ok"] == len(QUESTIONS)
    assert stub.stats()["batch_creates"] == 1


def test_run_monitor_shows_batch_state(stub, model):
    from forgekit.jupyter.widgets import RunMonitor

    stub.configure(batch_polls=3)
    monitor = RunMonitor("batch")
    seen: list[str] = []

    def record(event: str, data: dict) -> None:
        if event == "batch":
            seen.append(data["batch"]["status"])

    run_generate(model, on_event=[monitor.handle_event, record], **FAST)
    monitor.flush(force=True)
    # The states the provider went through, as the monitor was told them.
    assert seen[0] == "validating" and seen[-1] == "completed"
    assert "in_progress" in seen and "finalizing" in seen
    assert monitor.batch == {
        "batches": 1,
        "by_status": {"completed": 1},
        "completed": len(QUESTIONS),
        "failed": 0,
        "total": len(QUESTIONS),
    }
    assert monitor.status == "completed" and monitor.ok == len(QUESTIONS)


def test_text_progress_shows_batch_state(stub, model):
    stub.configure(batch_polls=3)
    postfixes: list[str] = []

    class Recorder:
        def update(self, n: int = 1) -> None:
            pass

        def set_postfix(self, refresh: bool = True, **counters) -> None:
            if "batch" in counters:
                postfixes.append(counters["batch"])

        def close(self) -> None:
            pass

    options = {**FAST, "progress": True}
    run_generate(model, progress_factory=lambda total, description: Recorder(), **options)
    assert postfixes[0] == "0/6 done (1 validating)"
    assert "0/6 done (1 in_progress)" in postfixes
    assert postfixes[-1] == "6/6 done (1 completed)"


def test_magpie_in_batch_mode_completion_endpoint_then_chat(stub, model):
    from forgekit.methods import magpie

    questions = [f"Distinct question number {i} about rivers?" for i in range(50)]
    stub.configure(rules=[{"match": r"user\n$", "contents": questions}])
    df = magpie(4, model=model, template="chatml", min_words=1, **FAST)
    assert len(df) == 4 and df["input"].tolist() == questions[:4]
    info = state(stub)
    endpoints = [b["endpoint"] for b in info["batches"].values()][-2:]
    assert endpoints == ["/v1/completions", "/v1/chat/completions"]
    assert stub.stats().get("requests", 0) == 0


def test_budget_caps_what_is_submitted(stub, model):
    with pytest.warns(UserWarning, match="max_requests=3"):
        df = run_generate(model, max_requests=3, **FAST)
    run = df.attrs["forgekit"]
    assert stub.stats()["batch_items"] == 3
    assert run["status"] == "stopped" and run["stats"]["ok"] == 3
    assert "budget" in run["stop_reason"]


def test_byte_limit_splits_batch_files(stub, model):
    df = run_generate(model, batch_max_bytes=600, **FAST)
    created = stub.stats()["batch_creates"]
    assert created >= 2 and df.attrs["forgekit"]["stats"]["ok"] == len(QUESTIONS)
    for batch_id in df.attrs["forgekit"]["batch"]["batches"]:
        content = state(stub)["files"][state(stub)["batches"][batch_id]["input_file_id"]]
        assert len(content["content"].encode()) <= 600 or content["content"].count("\n") == 1


def test_cancel_while_waiting_keeps_the_batch_for_a_rerun(stub, model, tmp_path):
    import threading

    stub.configure(batch_hold=True)
    out = tmp_path / "cancel.jsonl"
    cancel = threading.Event()

    def cancel_once_submitted(event: str, data: dict) -> None:
        if event == "batch" and data["batch"]["status"] == "in_progress":
            cancel.set()

    df = run_generate(model, out, cancel_event=cancel, on_event=[cancel_once_submitted], **FAST)
    assert df.attrs["forgekit"]["status"] == "cancelled" and len(df) == 0
    assert stub.stats()["batch_creates"] == 1
    batch_config(stub, batch_hold=False)
    again = run_generate(model, out, **FAST)
    assert again.attrs["forgekit"]["stats"]["ok"] == len(QUESTIONS)
    assert stub.stats()["batch_creates"] == 1  # the recorded batch was collected


def test_dpo_several_models_one_batch_each_then_the_judge(responders):  # noqa: F811
    from forgekit.methods import dpo
    from tests.test_methods_dpo import DATA

    common = {"k": 3, "models": ["a", "b", "c"], "judge_model": "a", "keep_unpaired": True}
    online = dpo(DATA, cache=False, progress=False, **common)
    df = dpo(DATA, **common, **FAST)
    columns = ["chosen", "rejected"]
    assert df[columns].fillna("").equals(online[columns].fillna(""))
    assert df.attrs["forgekit"]["pairs"] == online.attrs["forgekit"]["pairs"]
    # Each responder's requests went to its own server in one batch; then the judge's.
    batches = list(df.attrs["forgekit"]["batch"]["batches"].values())
    assert [b["answered"] for b in batches] == [4, 4, 4, 12]
    assert len({b["model"] for b in batches[:3]}) == 3
    assert (
        batches[3]["model"]
        == batches[[b["model"] for b in batches[:3]].index(batches[3]["model"])]["model"]
    )
