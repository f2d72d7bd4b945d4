"""`%forge` / `%%forge` driven through a real IPython shell (no kernel, no browser)."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from IPython.testing.globalipapp import start_ipython

from forgekit.cli import main as cli_main
from forgekit.jupyter.magics import MagicError
from tests.conftest import read_jsonl

QUESTIONS = [f"How do rivers shape valley number {i} over time?" for i in range(30)]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def ip():
    from IPython import get_ipython

    shell = start_ipython() or get_ipython()  # one global test shell per process
    shell.run_line_magic("load_ext", "forgekit")
    return shell


def run(ip, capsys, code: str):
    """Run a cell; (result, everything it printed without colours)."""
    result = ip.run_cell(code)
    captured = capsys.readouterr()
    return result, ANSI.sub("", captured.out + captured.err)


def magpie_rules(stub) -> None:
    stub.configure(rules=[{"match": r"<\|im_start\|>user\n$", "contents": QUESTIONS}])


def assert_one_line_error(result, output: str, *fragments: str) -> None:
    assert isinstance(result.error_in_exec, MagicError), output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("%forge error: "), output
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_prints_the_shared_docs(ip, capsys):
    result, out = run(ip, capsys, "%forge --help")
    assert result.success
    assert "usage: %forge" in out and "magpie" in out and "generate" in out
    assert "notebook extras" in out and "%%forge system" in out
    result, out = run(ip, capsys, "%forge magpie --help")
    assert result.success
    # The very options of `forge magpie`, plus the shared notebook ones.
    for option in ("--response-model", "--out", "--concurrency", "-o NAME, --output-var"):
        assert option in out


@pytest.mark.parametrize(
    ("line", "fragments"),
    [
        ("%forge bogus", ["invalid choice: 'bogus'", "%forge --help"]),
        ("%forge magpie --bogus 3", ["unrecognized arguments: --bogus 3"]),
        ("%forge magpie -n many", ["argument -n: invalid int value: 'many'"]),
        ("%forge dedup --input no_such_df", ["--input no_such_df", "no notebook variable"]),
        ("%forge generate --user 'it''s", ["cannot split the line", "quotation"]),
        ("%forge models -o 2x", ["-o 2x: not a valid Python variable name"]),
        ("%%forge magpie -n 2\nbody text", ["%%forge magpie: this command takes no cell body"]),
        ("%forge config --model nope", ["nope"]),
    ],
)
def test_bad_input_is_one_clear_line(ip, capsys, line, fragments):
    result, out = run(ip, capsys, line)
    assert_one_line_error(result, out, *fragments)


def test_debug_shows_the_traceback(ip, capsys):
    result, out = run(ip, capsys, "%forge dedup --input no_such_df --debug")
    assert type(result.error_in_exec).__name__ == "ConfigError"
    assert "Traceback" in out and "resolve_input" in out


def test_magpie_binds_the_frame_and_returns_it(ip, capsys, stub, stub_model, tmp_path):
    magpie_rules(stub)
    out_file = tmp_path / "magpie.jsonl"
    result, out = run(
        ip,
        capsys,
        f"%forge magpie -n 3 --model stub --template chatml --concurrency 1 --out {out_file} -o mp",
    )
    assert result.success, out
    df = ip.user_ns["mp"]
    assert isinstance(df, pd.DataFrame) and len(df) == 3
    assert result.result is df  # returned as well, so it displays
    assert list(df["input"]) == QUESTIONS[:3]
    assert list(df["output"]) == [f"echo: {q}" for q in QUESTIONS[:3]]
    assert [r["id"] for r in read_jsonl(out_file)] == list(df["id"])
    # No widgets outside a kernel: a text progress bar and the run summary instead.
    assert "magpie" in out and "3/3" in out and "completed: 3 ok" in out
    # The same line again costs nothing: resumed from --out.
    requests = stub.stats()["requests"]
    result, _ = run(
        ip, capsys, f"%forge magpie -n 3 --model stub --template chatml --out {out_file}"
    )
    assert result.success and len(result.result) == 3
    assert stub.stats()["requests"] == requests


def test_input_names_a_notebook_variable(ip, capsys, stub, stub_model):
    stub.configure(
        rules=[{"match": "tides", "content": "Moon."}, {"match": "rain", "content": "Clouds."}]
    )
    ip.user_ns["topics"] = pd.DataFrame({"id": ["a", "b"], "topic": ["tides", "rain"]})
    result, out = run(
        ip, capsys, '%forge generate --input topics --model stub --user "Why {{ topic }}?" -o why'
    )
    assert result.success, out
    why = ip.user_ns["why"]
    assert list(why["output"]) == ["Moon.", "Clouds."]
    assert list(why["input"]) == ["Why tides?", "Why rain?"]
    assert [r["lineage"]["parent_id"] for r in why.to_dict("records")] == ["a", "b"]


def test_cell_body_is_the_user_template_braces_untouched(ip, capsys, stub, stub_model):
    # The stub answers this only if the model really received the literal braces.
    stub.configure(
        rules=[
            {
                "match": r"Tone gentle\..*glaciers in the \{style\} of a poem",
                "content": "literal braces arrived",
            }
        ]
    )
    ip.user_ns["items"] = [{"topic": "glaciers"}]
    ip.user_ns["style"] = "gentle"
    # In the line, {style} is a notebook variable (as in any IPython line magic); in the body
    # it is template text: only Jinja ({{ topic }}) may fill anything there.
    cell = (
        "%%forge generate --input items --model stub --system 'Tone {style}.' -o g\n"
        "Explain {{ topic }} in the {style} of a poem.\n- keep it short"
    )
    result, out = run(ip, capsys, cell)
    assert result.success, out
    g = ip.user_ns["g"]
    assert g["input"].iloc[0] == "Explain glaciers in the {style} of a poem.\n- keep it short"
    assert g["system"].iloc[0] == "Tone gentle."
    assert g["output"].iloc[0] == "literal braces arrived"


def test_cell_body_and_user_option_conflict(ip, capsys):
    result, out = run(ip, capsys, "%%forge generate --user x\nbody")
    assert_one_line_error(result, out, "the cell body is the user template; drop --user")
    result, out = run(ip, capsys, "%%forge generate\n\n")
    assert_one_line_error(result, out, "cell body (the user template) is empty")


def test_system_cell_applies_until_cleared(ip, capsys, stub, stub_model):
    stub.configure(
        rules=[{"match": '"role": "system", "content": "Answer like a pirate."', "content": "Arr."}]
    )
    result, out = run(ip, capsys, "%%forge system\nAnswer like a pirate.")
    assert result.success and "system template set" in out
    result, out = run(ip, capsys, "%forge system")
    assert out.strip() == "Answer like a pirate."
    result, out = run(ip, capsys, "%%forge generate --model stub -o pirate\nSay hi.")
    assert result.success, out
    assert ip.user_ns["pirate"]["output"].iloc[0] == "Arr."
    assert ip.user_ns["pirate"]["system"].iloc[0] == "Answer like a pirate."
    # An explicit --system wins over the stored one.
    result, out = run(ip, capsys, "%%forge generate --model stub --system Plain. -o plain\nSay hi.")
    assert ip.user_ns["plain"]["system"].iloc[0] == "Plain."
    run(ip, capsys, "%forge system --clear")
    result, out = run(ip, capsys, "%%forge generate --model stub -o bare\nSay hi.")
    assert result.success and ip.user_ns["bare"]["output"].iloc[0] == "echo: Say hi."


def test_models_and_config(ip, capsys, stub, stub_model, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-value-123")
    result, out = run(ip, capsys, "%forge models -o models")
    assert result.success
    assert {"local", "stub"} <= set(ip.user_ns["models"]["name"])
    result, out = run(ip, capsys, "%forge models --check")
    assert result.result.set_index("name").loc["stub", "reachable"] == "yes"
    result, out = run(ip, capsys, "%forge config --model stub -o cfg")
    assert ip.user_ns["cfg"]["active_profile"]["base_url"] == stub.url
    assert "sk-test-secret-value-123" not in json.dumps(ip.user_ns["cfg"]) + out


def test_the_cli_refuses_the_notebook_option(capsys):
    assert cli_main(["models", "-o", "x"]) == 2
    assert "only works in the %forge magic" in capsys.readouterr().err
    assert cli_main(["magpie", "--help"]) == 0
    assert "--out OUT" in capsys.readouterr().out
