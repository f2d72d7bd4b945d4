"""The docs' example method (docs/examples/summarize.py, one file): declaring it is enough
for it to work from Python, the `forge` command line, the `%forge` magics and `forge run`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from IPython.testing.globalipapp import start_ipython

import forgekit.methods
from forgekit.cli import main
from forgekit.methods.registry import unregister
from forgekit.models.scripted import ScriptedModel
from forgekit.runfile import example, run_file
from tests.conftest import read_jsonl

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "summarize.py"
TEXTS = [
    {"id": "t1", "input": "Tides rise and fall twice a day because of the moon."},
    {"id": "t2", "input": "Dunes move as the wind carries sand over their crest."},
]


@pytest.fixture
def summarize():
    """Import the example file the way a user would; forget the method afterwards."""
    assert EXAMPLE.stat().st_size and len(EXAMPLE.read_text().splitlines()) < 80
    spec = importlib.util.spec_from_file_location("docs_example_summarize", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    unregister("summarize")
    sys.modules.pop(spec.name, None)


def test_python_function_with_its_options_and_counts(summarize):
    model = ScriptedModel([(r"Tides", "The moon drives the tides."), (r"Dunes", "word " * 40)])
    df = forgekit.methods.summarize(TEXTS, max_words=10, style="bullets", model=model)
    assert list(df["output"]) == ["The moon drives the tides."]
    assert df.attrs["forgekit"]["counts"] == {"too_long": 1}
    assert "three bullet points, 10 words" in model.calls[0]["prompt"]
    assert df["lineage"].iloc[0]["params"]["temperature"] == 0.3


def test_command_line_help_and_run(summarize, stub_model, tmp_path, capsys):
    assert main(["summarize", "--help"]) == 0
    text = capsys.readouterr().out
    for fragment in ("--max-words", "{plain,bullets}", "--temperature", "longest summary kept"):
        assert fragment in text
    data = tmp_path / "texts.jsonl"
    pd.DataFrame(TEXTS).to_json(data, orient="records", lines=True)
    out = tmp_path / "sums.jsonl"
    argv = ["summarize", "-i", str(data), "--model", stub_model, "--max-words", "20"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    records = read_jsonl(out)
    assert sorted(r["output"] for r in records) == sorted(f"echo: {t['input']}" for t in TEXTS)
    assert main(["summarize", "-i", str(data), "--style", "poem"]) == 2
    assert "invalid choice: 'poem'" in capsys.readouterr().err


def test_magic(summarize, stub_model, monkeypatch):
    from IPython import get_ipython

    monkeypatch.setenv("FORGEKIT_NO_WIDGETS", "1")
    shell = start_ipython() or get_ipython()
    shell.run_line_magic("load_ext", "forgekit")
    shell.user_ns["texts"] = pd.DataFrame(TEXTS)
    result = shell.run_cell(
        f"%forge summarize --input texts --model {stub_model} --max-words 20 --no-progress -o s"
    )
    assert result.success, result.error_in_exec
    assert list(shell.user_ns["s"]["lineage"].map(lambda x: x["parent_id"])) == ["t1", "t2"]


def test_yaml_keys_and_run(summarize, stub_model, tmp_path, capsys):
    skeleton = example("summarize")
    assert main(["run", "--example", "summarize"]) == 0
    assert capsys.readouterr().out.strip() == skeleton
    assert "max_words: 30  # longest summary kept" in skeleton
    assert "style: plain  # plain prose or bullet points" in skeleton
    assert "\nsampling: {max_tokens: 128, temperature: 0.3}  # optional; each summary" in skeleton
    pd.DataFrame(TEXTS).to_json(tmp_path / "texts.jsonl", orient="records", lines=True)
    config = {
        "method": "summarize",
        "model": stub_model,
        "input": "texts.jsonl",
        "output": "out.jsonl",
        "sampling": {"temperature": 0.0},
        "params": {"max_words": 20, "style": "plain"},
        "run": {"progress": False},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    df = run_file(tmp_path / "run.yaml")
    assert len(df) == 2 and df["lineage"].iloc[0]["params"]["temperature"] == 0.0
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 2
