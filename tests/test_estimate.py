"""Dry runs (estimate=True / --dry-run): requests per stage, prompt tokens, the completion
bound and the cost range, online and batch — and nothing is sent."""

from __future__ import annotations

import json
import warnings

import pytest

from forgekit.cli import main as cli_main
from forgekit.engine.estimate import Estimate
from forgekit.methods import evol, generate
from forgekit.methods.registry import methods
from forgekit.models.tokens import heuristic_tokens
from tests.conftest import write_profile

QUESTIONS = [{"q": f"question {i}", "input": f"Name a {w}."} for i, w in enumerate("abcde")]
PRICE_IN, PRICE_OUT = 3.0, 5.0  # USD per 1M tokens


@pytest.fixture
def model(stub, tmp_path, monkeypatch):
    write_profile(tmp_path, monkeypatch, stub.url, price={"input": PRICE_IN, "output": PRICE_OUT})
    return "stub"


def assert_nothing_sent(stub) -> None:
    stats = stub.stats()
    sent = {k: v for k, v in stats.items() if k != "max_inflight"}
    assert sent == {}, f"a dry run sent something: {sent}"


def test_single_stage_counts_tokens_and_prices(stub, model):
    estimate = generate(
        QUESTIONS, user="Answer: {{ q }}", model=model, params={"max_tokens": 40}, estimate=True
    )
    assert_nothing_sent(stub)
    assert isinstance(estimate, Estimate)
    (stage,) = estimate.stages
    assert (stage.stage, stage.model, stage.requests) == ("generate", "stub", 5)
    # The documented estimate for remote models: chars/4 per message, +4 per message, +3.
    expected = sum(heuristic_tokens(f"Answer: {q['q']}") + 4 + 3 for q in QUESTIONS)
    assert stage.prompt_tokens == expected
    assert stage.max_completion_tokens == 5 * 40
    assert stage.cost_min == pytest.approx(expected * PRICE_IN / 1e6)
    assert stage.cost_max == pytest.approx((expected * PRICE_IN + 200 * PRICE_OUT) / 1e6)
    assert stage.batch_cost_max == pytest.approx(stage.cost_max / 2)
    table = estimate.to_dataframe()
    assert table.loc[0, "requests"] == 5 and "batch_cost_max" in table.columns
    text = str(estimate)
    assert "nothing was sent" in text and "generate" in text
    assert f"{stage.cost_min:.4f}-{stage.cost_max:.4f}" in text


def test_heuristic_counts_cjk_per_character():
    assert heuristic_tokens("abcdefgh") == 2
    assert heuristic_tokens("涂了甲硝唑") == 5


def test_multi_stage_method_estimates_each_stage_from_its_bounds(stub, model):
    seeds = [{"input": f"Name a {w}."} for w in ("fruit", "city", "river")]
    estimate = evol(seeds, rounds=2, model=model, estimate=True)
    assert_nothing_sent(stub)
    # Every item of every round: rewrite + answer + judge (the upper bound: none eliminated).
    assert [(s.stage, s.requests) for s in estimate.stages] == [
        ("evol round 1/2", 9),
        ("evol round 2/2", 9),
    ]
    without_judge = evol(seeds, rounds=2, judge=False, model=model, estimate=True)
    assert [s.requests for s in without_judge.stages] == [6, 6]
    # Round 2 rewrites round 1's answers, counted at max_tokens: it cannot cost less.
    first, second = estimate.stages
    assert second.prompt_tokens > first.prompt_tokens


def test_self_instruct_estimates_the_instance_stage_too(stub, model):
    from forgekit.methods import self_instruct

    estimate = self_instruct(model=model, n=20, estimate=True)
    assert_nothing_sent(stub)
    lists, instances = estimate.stages
    assert lists.stage == "self_instruct task lists" and lists.requests >= 1
    assert instances.requests == 2 * 20  # classify + instance for each of the n tasks


def test_budget_cap_below_the_estimate_warns_before_the_run(stub, model):
    with pytest.warns(UserWarning, match=r"max_cost=\$1e-05 is below"):
        estimate = generate(
            QUESTIONS, user="Answer: {{ q }}", model=model, max_cost=0.00001, estimate=True
        )
    assert any("max_cost" in w for w in estimate.warnings)
    # A real run with a cap: the warning comes before any request (as an error here, the
    # run never starts).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="estimated before the run"):
            generate(QUESTIONS, user="Answer: {{ q }}", model=model, max_requests=2)
    assert_nothing_sent(stub)
    # A cap the estimate fits in: no warning, and the run goes ahead.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = generate(QUESTIONS, user="{{ q }}", model=model, max_requests=50, progress=False)
    assert len(df) == len(QUESTIONS)


def test_dry_run_in_batch_mode_submits_nothing(stub, model):
    estimate = generate(QUESTIONS, user="{{ q }}", model=model, batch=True, estimate=True)
    assert estimate.requests == len(QUESTIONS)
    assert_nothing_sent(stub)


def test_cli_dry_run_prints_a_table(stub, model, tmp_path, capsys):
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    argv = ["generate", "--input", str(data), "--user", "Answer: {{ q }}", "--model", model]
    assert cli_main([*argv, "--dry-run", "--max-tokens", "40"]) == 0
    out = capsys.readouterr().out
    assert "dry run of generate: nothing was sent" in out
    header = next(line for line in out.splitlines() if line.startswith("stage"))
    assert "requests" in header and "batch cost (USD)" in header
    assert any(line.startswith("total") and " 5 " in line for line in out.splitlines())
    assert_nothing_sent(stub)


def test_magic_dry_run(stub, model):
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython() or get_ipython()
    shell.run_line_magic("load_ext", "forgekit")
    shell.user_ns["qs"] = QUESTIONS
    shell.run_line_magic(
        "forge", f"generate --input qs --user '{{{{ q }}}}' --model {model} --dry-run -o plan"
    )
    plan = shell.user_ns["plan"]
    assert isinstance(plan, Estimate) and plan.requests == len(QUESTIONS)
    assert "nothing was sent" in repr(plan)
    assert_nothing_sent(stub)


def _inputs(name: str, tmp_path):
    """Small, valid inputs for each method."""
    doc = tmp_path / "doc.md"
    doc.write_text("# Rivers\n\n" + "Rivers carve valleys over long periods of time. " * 30)
    records = [{"input": "What shapes a valley?", "output": "Rivers do.", "text": "x " * 40}]
    return {
        "magpie": ((), {"n": 3}),
        "self_instruct": ((), {"n": 3}),
        "doc_qa": ((doc,), {}),
        "translate": ((records,), {"language": "French"}),
        "cascade": (
            (records,),
            {"labels": ("a", "b"), "route": ("a",), "stage2_user": "2: {{ input }}"},
        ),
        "generate": ((records,), {"user": "{{ input }}"}),
        "rewrite": ((records,), {"difficulty": "harder"}),
        "vote": ((records,), {"labels": ("a", "b"), "n_votes": 3}),
    }.get(name, ((records,), {}))


@pytest.mark.parametrize("name", sorted(methods()))
def test_every_method_has_a_dry_run(stub, model, tmp_path, name):
    fn = getattr(__import__("forgekit.methods", fromlist=[name]), name)
    args, kwargs = _inputs(name, tmp_path)
    estimate = fn(*args, model=model, estimate=True, **kwargs)
    assert isinstance(estimate, Estimate) and estimate.requests >= 1
    assert all(s.max_completion_tokens >= s.requests for s in estimate.stages)
    assert_nothing_sent(stub)


@pytest.mark.model
def test_embedded_model_prompt_tokens_are_exact():
    data = [{"q": "What is the capital of France?"}, {"q": "Name three colours, 中文 too."}]
    common = {"user": "Answer: {{ q }}", "model": "local", "params": {"max_tokens": 1}}
    estimate = generate(data, estimate=True, **common)
    (stage,) = estimate.stages
    assert stage.tokens_counted.startswith("exact")
    df = generate(data, progress=False, cache=False, **common)
    assert stage.prompt_tokens == df.attrs["forgekit"]["stats"]["prompt_tokens"]


def test_forge_run_dry_run_shows_the_call_and_its_estimate(stub, model, tmp_path, capsys):
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    spec = tmp_path / "run.yaml"
    spec.write_text(
        "method: generate\nmodel: stub\ninput: in.jsonl\nprompts: {user: 'Answer: {{ q }}'}\n"
    )
    assert cli_main(["run", str(spec), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert '"method": "generate"' in out and "dry run of generate: nothing was sent" in out
    assert_nothing_sent(stub)
