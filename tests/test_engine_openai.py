"""The OpenAI-compatible path against a real HTTP server (tests/openai_stub.py), with fault
injection — every test twice: through the lean HTTP transport and through the real `openai`
SDK, which must behave the same."""

import time

import pytest

from forgekit.engine import RunConfig, Task, run
from forgekit.engine.runner import run_sync
from forgekit.errors import ClientRequestError, UnsupportedOperationError
from forgekit.models import SamplingParams, get_model
from tests.conftest import read_jsonl, write_profile


@pytest.fixture(params=["lean", "sdk"])
def transport(request):
    return request.param


@pytest.fixture
def stub_model(stub, tmp_path, monkeypatch, transport):
    """The profile 'stub' (timeout 2 s) on the transport under test."""
    write_profile(tmp_path, monkeypatch, stub.url, timeout=2.0, transport=transport)
    model = get_model("stub")
    assert model.lean is (transport == "lean")
    return "stub"


def chat_tasks(n, prefix="q"):
    async def make(ctx, i):
        completion = await ctx.chat([{"role": "user", "content": f"{prefix}{i}"}], max_tokens=16)
        return {"id": ctx.task.id, "input": f"{prefix}{i}", "output": completion.text}

    return [Task(id=f"{prefix}{i}", fn=lambda ctx, i=i: make(ctx, i)) for i in range(n)]


def cfg(**kw):
    kw.setdefault("progress", False)
    kw.setdefault("base_delay", 0.01)
    kw.setdefault("max_delay", 0.05)
    return RunConfig(**kw)


def test_chat_and_completion_through_sdk(stub_model):
    model = get_model(stub_model)

    async def both():
        try:
            chat = await model.chat(
                [{"role": "user", "content": "hello there"}],
                SamplingParams(max_tokens=8, n=2, seed=1),
            )
            raw = await model.complete("<|im_start|>user\n", SamplingParams(stop=["\n"]))
            return chat, raw
        finally:
            await model.aclose()

    chat, raw = run_sync(both)
    assert chat.texts == ["echo: hello there", "echo: hello there"]
    assert chat.usage.prompt_tokens == 2 and chat.usage.completion_tokens == 6
    assert chat.finish_reason == "stop"
    assert raw.text == "completion: <|im_start|>user\n"


def test_500_requests_with_20_percent_faults_every_record_exactly_once(
    stub, stub_model, tmp_path, monkeypatch, transport
):
    # Faults of every kind; "hang" never answers within the client's timeout. The timeout
    # is long enough that no healthy request reaches it on a loaded machine (a spurious
    # timeout would be an extra retry and break the exact counts below).
    stub.configure(
        fault_rate=0.2,
        faults=["429", "500", "drop", "malformed", "shape", "hang"],
        hang_s=60.0,
        faults_per_request=2,
    )
    write_profile(tmp_path, monkeypatch, stub.url, timeout=3.0, transport=transport)
    out = tmp_path / "big.jsonl"
    result = run(
        chat_tasks(500),
        model=stub_model,
        out=out,
        config=cfg(concurrency=64, max_attempts=6),
        job={"m": "faults"},
    )
    stats = stub.stats()
    records = read_jsonl(out)
    ids = [r["id"] for r in records]
    assert sorted(ids) == sorted(f"q{i}" for i in range(500))
    assert len(ids) == len(set(ids)) == 500
    assert all(r["output"] == f"echo: {r['input']}" for r in records)
    assert result.stats.failed == 0 and result.stats.ok == 500
    faults = sum(v for k, v in stats.items() if k.startswith("fault_"))
    assert 150 <= faults <= 250  # ~20% of 500 bodies, two failing attempts each
    assert result.stats.retried == faults
    assert {k for k in stats if k.startswith("fault_")} == {
        "fault_429",
        "fault_500",
        "fault_drop",
        "fault_malformed",
        "fault_shape",
        "fault_hang",
    }


def test_retry_after_is_honoured(stub, stub_model):
    stub.configure(fault_rate=1.0, faults=["429"], retry_after=0.6, faults_per_request=1)
    result = run(chat_tasks(1), model=stub_model, config=cfg(cache=False))
    log = stub.log()
    assert [entry["fault"] for entry in log] == ["429", None]
    assert log[1]["t"] - log[0]["t"] >= 0.6
    assert result.stats.retried == 1 and result.records[0]["output"] == "echo: q0"


def test_client_errors_are_not_retried(stub, stub_model):
    stub.configure(status=400)
    result = run(chat_tasks(3), model=stub_model, config=cfg(cache=False))
    assert stub.stats()["requests"] == 3  # one attempt each, no retries
    assert result.stats.failed == 3 and result.stats.retried == 0
    assert "HTTP 400" in result.errors[0]["message"]
    assert "refused" in result.errors[0]["message"]


def test_auth_failure_stops_the_run_with_a_clear_error(stub, stub_model, monkeypatch):
    stub.configure(status=401)
    with pytest.raises(ClientRequestError, match="HTTP 401"):
        run(chat_tasks(50), model=stub_model, config=cfg(cache=False, concurrency=2))
    assert stub.stats()["requests"] <= 3  # stopped instead of failing 50 times


def test_gives_up_after_max_attempts_and_records_failure(stub, stub_model, tmp_path):
    stub.configure(fault_rate=1.0, faults=["500"], faults_per_request=99)
    out = tmp_path / "x.jsonl"
    result = run(chat_tasks(2), model=stub_model, out=out, config=cfg(max_attempts=3), job={"m": 1})
    assert stub.stats()["requests"] == 6
    assert result.stats.failed == 2
    errors = read_jsonl(tmp_path / "x.errors.jsonl")
    assert "gave up after 3 attempts" in errors[0]["message"]
    assert out.read_text() == ""


def test_cache_second_run_costs_zero_requests(stub, stub_model, tmp_path):
    first = run(chat_tasks(20), model=stub_model, config=cfg())
    assert stub.stats()["requests"] == 20 and first.stats.cached == 0
    second = run(chat_tasks(20), model=stub_model, config=cfg())
    assert stub.stats()["requests"] == 20  # nothing new reached the server
    assert second.stats.cached == 20 and second.stats.requests == 0
    assert [r["output"] for r in second.records] == [r["output"] for r in first.records]
    third = run(chat_tasks(20), model=stub_model, config=cfg(cache=False))
    assert stub.stats()["requests"] == 40 and third.stats.cached == 0


def test_cache_key_covers_sampling_params(stub, stub_model):
    async def make(ctx, t):
        c = await ctx.chat([{"role": "user", "content": "same"}], temperature=t, seed=7)
        return {"id": ctx.task.id, "output": c.text}

    tasks = [Task(id=f"t{t}", fn=lambda ctx, t=t: make(ctx, t)) for t in (0.0, 0.5, 0.0)]
    run(tasks, model=stub_model, config=cfg(concurrency=1))
    assert stub.stats()["requests"] == 2  # the repeated (0.0, seed 7) request was cached


def test_budget_max_requests_stops_cleanly(stub, stub_model, tmp_path, capsys):
    out = tmp_path / "b.jsonl"
    result = run(
        chat_tasks(30),
        model=stub_model,
        out=out,
        config=cfg(max_requests=10, concurrency=4),
        job={"m": 1},
    )
    assert result.status == "stopped"
    assert "max_requests=10" in result.stop_reason
    assert stub.stats()["requests"] == 10
    assert result.stats.ok == 10 and result.stats.failed == 0
    assert "run stopped" in capsys.readouterr().err
    assert len(read_jsonl(out)) == 10
    # Resuming with a fresh budget finishes the job.
    rest = run(chat_tasks(30), model=stub_model, out=out, config=cfg(), job={"m": 1})
    assert rest.stats.skipped == 10 and rest.stats.ok == 20
    assert len(read_jsonl(out)) == 30
    import json

    manifest = json.loads((tmp_path / "b.manifest.json").read_text())
    assert manifest["totals"]["requests"] == 30  # spend adds up across the two runs
    assert manifest["this_run"]["requests"] == 20 and manifest["status"] == "completed"


def test_budget_max_total_tokens(stub, stub_model):
    # each request: 1 prompt token + 2 completion tokens ("echo: qN")
    result = run(chat_tasks(20), model=stub_model, config=cfg(max_total_tokens=10, concurrency=1))
    assert result.status == "stopped" and "max_total_tokens=10" in result.stop_reason
    assert result.stats.ok == 4 and result.stats.tokens == 12


def test_budget_max_cost_uses_profile_price(stub, tmp_path, monkeypatch, transport):
    write_profile(
        tmp_path,
        monkeypatch,
        stub.url,
        name="priced",
        transport=transport,
        price={"input": 100000.0, "output": 100000.0},
    )
    # each request: 1 prompt token + 2 completion tokens = 3 tokens * $0.1 = $0.3
    result = run(chat_tasks(20), model="priced", config=cfg(max_cost=1.0, concurrency=1))
    assert result.status == "stopped" and "max_cost" in result.stop_reason
    assert result.stats.ok == 4
    assert result.stats.cost == pytest.approx(1.2)


def test_concurrency_is_bounded(stub, stub_model):
    stub.configure(latency_ms=50)
    run(chat_tasks(40), model=stub_model, config=cfg(concurrency=5, cache=False))
    assert stub.stats()["max_inflight"] <= 5 + 1  # +1: the stats request itself


def test_rpm_limit_paces_requests(stub, stub_model):
    started = time.monotonic()
    run(chat_tasks(25), model=stub_model, config=cfg(rpm=600, cache=False, concurrency=8))
    # 600 rpm = 10/s with a 1 s burst of 10: 25 requests need at least 1.5 s.
    assert time.monotonic() - started >= 1.4


def test_tpm_limit_paces_tokens(stub, stub_model):
    words = " ".join(f"word{i}" for i in range(100))

    async def make(ctx, i):
        c = await ctx.chat([{"role": "user", "content": f"{i} {words}"}], max_tokens=16)
        return {"id": ctx.task.id, "output": c.text}

    tasks = [Task(id=f"t{i}", fn=lambda ctx, i=i: make(ctx, i)) for i in range(10)]
    started = time.monotonic()
    result = run(tasks, model=stub_model, config=cfg(tpm=60000, cache=False, concurrency=10))
    # 60k tpm = 1000 tokens/s with a 1 s burst; the stub counts ~203 tokens a request, so
    # 10 requests (~2030 tokens) need at least ~1 s.
    assert result.stats.tokens > 2000
    assert time.monotonic() - started >= 0.9


def test_chat_only_provider_refuses_raw_completion(stub, tmp_path, monkeypatch, transport):
    write_profile(
        tmp_path, monkeypatch, stub.url, name="chatonly", completions=False, transport=transport
    )

    async def make(ctx):
        await ctx.complete("<|im_start|>user\n")
        return {"id": ctx.task.id}

    with pytest.raises(UnsupportedOperationError, match="raw text completion"):
        run([Task(id="a", fn=make)], model="chatonly", config=cfg())
    assert stub.stats().get("requests", 0) == 0


def test_sync_api_inside_a_running_event_loop(stub, stub_model):
    import asyncio

    async def notebook_cell():
        # Jupyter: a loop is already running when user code calls the sync API.
        return run(chat_tasks(3), model=stub_model, config=cfg())

    result = asyncio.run(notebook_cell())
    assert [r["output"] for r in result.records] == ["echo: q0", "echo: q1", "echo: q2"]


def test_cancel_event_stops_and_keeps_finished(stub, stub_model, tmp_path):
    import threading

    stub.configure(latency_ms=100)
    cancel = threading.Event()
    seen = []

    def on_event(event, data):
        if event == "record":
            seen.append(data["record"]["id"])
            if len(seen) == 5:
                cancel.set()

    out = tmp_path / "c.jsonl"
    result = run(
        chat_tasks(200),
        model=stub_model,
        out=out,
        job={"m": 1},
        config=cfg(concurrency=2, on_event=[on_event], cancel_event=cancel),
    )
    assert result.status == "cancelled"
    assert 5 <= result.stats.ok < 20
    assert sorted(r["id"] for r in read_jsonl(out)) == sorted(r["id"] for r in result.records)


def test_keyboard_interrupt_in_notebook_thread_keeps_finished(stub, stub_model, tmp_path):
    """A kernel interrupt arrives as KeyboardInterrupt in the main thread while the run
    goes on in run_sync's worker thread: the run is cancelled, records stay valid."""
    import _thread
    import asyncio
    import signal
    import threading

    # The stub answers 40 requests and holds the rest, so the run is still going when the
    # interrupt comes (after 10 records), however fast or slow the machine.
    stub.configure(latency_ms=5, hold_after=40)
    out = tmp_path / "k.jsonl"
    # Like ipykernel, Python's own SIGINT handler, even where this process inherited SIGINT
    # ignored (a job started in the background of a shell): interrupt_main honours it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    def interrupt_after_ten_records() -> None:
        while not out.exists() or out.read_bytes().count(b"\n") < 10:
            threading.Event().wait(0.005)
        _thread.interrupt_main()

    threading.Thread(target=interrupt_after_ten_records, daemon=True).start()

    async def cell():
        return run(
            chat_tasks(500), model=stub_model, out=out, job={"m": 1}, config=cfg(concurrency=4)
        )

    # Like ipykernel: a running loop (asyncio.run would install its own SIGINT handler).
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(cell())
    finally:
        loop.close()
        signal.signal(signal.SIGINT, previous)
    records = read_jsonl(out)
    assert 10 <= len(records) <= 40
    import json

    manifest = json.loads((tmp_path / "k.manifest.json").read_text())
    assert manifest["status"] == "cancelled"
    assert manifest["records_in_file"] == len(records)


def test_one_model_object_serves_several_runs(stub, stub_model):
    """Methods with stages run the engine several times, each on a fresh event loop; a
    Model object passed in must work in all of them."""
    model = get_model(stub_model)
    first = run(chat_tasks(2), model=model, config=cfg())
    second = run(chat_tasks(2, prefix="z"), model=model, config=cfg())
    assert [r["output"] for r in first.records + second.records] == [
        "echo: q0",
        "echo: q1",
        "echo: z0",
        "echo: z1",
    ]


def test_cache_refresh_asks_again_and_replaces_the_entry(stub, stub_model):
    stub.configure(rules=[{"match": "same", "contents": ["first answer", "second answer"]}])

    def tasks(mode):
        async def make(ctx):
            c = await ctx.chat([{"role": "user", "content": "same"}], cache=mode)
            return {"id": ctx.task.id, "output": c.text}

        return [Task(id="t", fn=make)]

    assert run(tasks(True), model=stub_model, config=cfg()).records[0]["output"] == "first answer"
    assert run(tasks(True), model=stub_model, config=cfg()).records[0]["output"] == "first answer"
    refreshed = run(tasks("refresh"), model=stub_model, config=cfg())
    assert refreshed.records[0]["output"] == "second answer" and refreshed.stats.requests == 1
    assert run(tasks(True), model=stub_model, config=cfg()).records[0]["output"] == "second answer"
