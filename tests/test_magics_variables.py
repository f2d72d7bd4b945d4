"""Notebook variables in a `%forge` line: `{name}` and `$name`, never inside templates."""

from __future__ import annotations

import shlex

import pytest
from IPython.testing.globalipapp import start_ipython

from forgekit.jupyter.magic_args import expand_variables


def test_expansion_rules():
    ns = {"n": 5, "model": "my-vllm", "system": "You are a math tutor.", "path": "a b.jsonl"}
    assert expand_variables("magpie -n {n} --model $model", ns) == "magpie -n 5 --model my-vllm"
    # Outside quotes a value with spaces is quoted; inside quotes it is inserted as is.
    assert shlex.split(expand_variables("magpie --system {system}", ns)) == [
        "magpie",
        "--system",
        "You are a math tutor.",
    ]
    assert shlex.split(expand_variables('magpie --system "Be: {system}"', ns)) == [
        "magpie",
        "--system",
        "Be: You are a math tutor.",
    ]
    # Templates and unknown names are left alone.
    assert expand_variables("generate --user '{{ input }} {{input}}'", ns) == (
        "generate --user '{{ input }} {{input}}'"
    )
    assert expand_variables("x {undefined} $nope { n }", ns) == "x {undefined} $nope { n }"
    assert shlex.split(expand_variables("dedup --input {path}", ns)) == [
        "dedup",
        "--input",
        "a b.jsonl",
    ]


@pytest.fixture(scope="module")
def ip():
    from IPython import get_ipython

    shell = start_ipython() or get_ipython()  # one global test shell per process
    shell.run_line_magic("load_ext", "forgekit")
    return shell


def test_variables_reach_the_command(ip, stub, stub_model, monkeypatch):
    monkeypatch.setenv("FORGEKIT_NO_WIDGETS", "1")
    stub.configure(
        rules=[{"match": r"user\n$", "contents": [f"Question {i} about tides?" for i in range(20)]}]
    )
    ip.user_ns.update({"how_many": 2, "who": stub_model})
    result = ip.run_cell(
        "%forge magpie -n {how_many} --model $who --template chatml --concurrency 1 "
        "--no-progress -o got"
    )
    assert result.success, result.error_in_exec
    assert len(ip.user_ns["got"]) == 2
    # A cell body keeps its braces for Jinja2.
    result = ip.run_cell(
        "%%forge generate --input got --model {who} --no-progress -o answers\n"
        "Say hello to: {{ input }}"
    )
    assert result.success, result.error_in_exec
    assert ip.user_ns["answers"]["output"].tolist() == [
        f"echo: Say hello to: {q}" for q in ip.user_ns["got"]["input"]
    ]
