"""`forge run config.yaml`, the method commands' --help, and a method command end to end."""

import json

import pytest
import yaml

from forgekit.cli import build_parser, main
from forgekit.errors import ConfigError
from forgekit.runfile import load_plan, run_file
from tests.conftest import read_jsonl


def write_config(folder, config, data=None):
    folder.mkdir(parents=True, exist_ok=True)
    if data is not None:
        (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


GENERATE = {
    "method": "generate",
    "model": "stub",
    "prompts": {"system": "Answer in one word.", "user_file": "prompts/user.j2"},
    "input": "data.jsonl",
    "output": "out/records.jsonl",
    "sampling": {"temperature": 0.2, "max_tokens": 32},
    "params": {"parse": "echo: (?P<text>.*)"},
    "run": {"concurrency": 2, "progress": False},
}


def test_forge_run_end_to_end_on_stub(stub, stub_model, tmp_path, capsys):
    folder = tmp_path / "job"
    (folder / "prompts").mkdir(parents=True)
    (folder / "prompts" / "user.j2").write_text("Define {{ word }}.")
    path = write_config(folder, GENERATE, data=[{"word": w} for w in ("tide", "dune", "fjord")])
    assert main(["run", str(path)]) == 0
    assert "completed: 3 ok" in capsys.readouterr().out
    # Two requests in flight: the file holds the records in the order they finished.
    records = {r["input"]: r for r in read_jsonl(folder / "out" / "records.jsonl")}
    assert sorted(records) == ["Define dune.", "Define fjord.", "Define tide."]
    tide = records["Define tide."]
    assert tide["system"] == "Answer in one word."
    assert tide["parsed"] == {"text": "Define tide."}
    assert tide["lineage"]["params"]["temperature"] == 0.2
    manifest = json.loads((folder / "out" / "records.manifest.json").read_text())
    assert manifest["run_config"]["concurrency"] == 2
    # Re-running the same file resumes: nothing new is sent.
    sent = stub.stats()["requests"]
    assert main(["run", str(path)]) == 0
    assert stub.stats()["requests"] == sent
    assert len(read_jsonl(folder / "out" / "records.jsonl")) == 3


def test_forge_run_interrupted_by_budget_then_resumed(stub, stub_model, tmp_path):
    folder = tmp_path / "job"
    (folder / "prompts").mkdir(parents=True)
    (folder / "prompts" / "user.j2").write_text("Define {{ word }}.")
    config = {**GENERATE, "run": {"concurrency": 1, "progress": False}}
    path = write_config(folder, config, data=[{"word": f"w{i}"} for i in range(4)])
    first = run_file(path, max_requests=1)
    assert first.attrs["forgekit"]["status"] == "stopped" and len(first) == 1
    done = run_file(path)
    ids = [r["id"] for r in read_jsonl(folder / "out" / "records.jsonl")]
    assert len(done) == 4 and len(set(ids)) == 4 and ids == list(done["id"])


def test_run_dispatches_any_method_by_signature(stub, stub_model, tmp_path):
    vote_path = write_config(
        tmp_path / "v",
        {
            "method": "vote",
            "models": ["stub", "local"],
            "input": "data.jsonl",
            "params": {"labels": ["yes", "no"], "tie": "first"},
        },
        data=[{"input": "ok?"}],
    )
    plan = load_plan(vote_path)
    assert plan.method == "vote" and plan.kwargs["models"] == ["stub", "local"]
    assert plan.kwargs["labels"] == ["yes", "no"]
    # Magpie takes no input; its count is a plain option.
    magpie_plan = load_plan(
        write_config(
            tmp_path / "m",
            {
                "method": "magpie",
                "model": "local",
                "params": {"n": 3, "n_turns": 2},
                "prompts": {"system": "Math only."},
            },
        )
    )
    assert magpie_plan.describe()["call"]["n"] == 3
    assert magpie_plan.kwargs["system"] == "Math only."
    # Evol and dpo options go through params.
    evol_plan = load_plan(
        write_config(
            tmp_path / "e",
            {
                "method": "evol",
                "input": "data.jsonl",
                "params": {"rounds": 2, "judge": False},
            },
            data=[{"input": "x"}],
        )
    )
    assert evol_plan.kwargs["rounds"] == 2
    assert stub.stats().get("requests", 0) == 0  # loading a plan sends nothing


@pytest.mark.parametrize(
    "config, message",
    [
        (
            {"method": "generate", "input": "data.jsonl"},
            "config.yaml: prompts.user: field required",
        ),
        (
            {"method": "generate", "promts": {"user": "x"}},
            "config.yaml: promts: extra inputs are not permitted",
        ),
        (
            {"method": "generate", "prompts": {"user": "x"}, "params": {"temprature": 1}},
            "config.yaml: params.temprature: method 'generate' has no option 'temprature'",
        ),
        (
            {"method": "evol", "input": "data.jsonl", "params": {"rounds": "three"}},
            "config.yaml: params.rounds: input should be a valid integer",
        ),
        (
            {"method": "generate", "prompts": {"user": "x"}, "run": {"concurrency": 0}},
            "config.yaml: run.concurrency: input should be greater than or equal to 1",
        ),
        (
            {"method": "generate", "prompts": {"user": "x"}, "params": {"concurrency": 3}},
            "config.yaml: params.concurrency: is an engine option: put it under run:",
        ),
        (
            {"method": "summon", "prompts": {"user": "x"}},
            "config.yaml: method: unknown method 'summon'",
        ),
        ({"method": "vote"}, "config.yaml: input: field required"),
        ({"method": "cascade", "input": "data.jsonl"}, "config.yaml: params.route: field required"),
        (
            {"method": "generate", "prompts": {"user_file": "nope.j2"}},
            "config.yaml: prompts.user_file: no such file",
        ),
        ({"method": "generate", "prompts": {"user": "x"}, "sampling": {"temp": 1}}, None),
        (
            {"method": "evol", "input": "data.jsonl", "sampling": {"temperature": 1}},
            "config.yaml: sampling: method 'evol' has no single `params`",
        ),
        (
            {"method": "generate", "prompts": {"user": "x"}, "params": {"user": "y"}},
            "config.yaml: params.user: 'user' is also set by prompts.user",
        ),
    ],
)
def test_bad_config_errors_name_the_key(tmp_path, config, message):
    path = write_config(tmp_path, config, data=[{"input": "x"}])
    if message is None:  # a bad sampling key is caught when the method builds its params
        with pytest.raises(ValueError, match="unknown sampling parameter"):
            run_file(path)
        return
    with pytest.raises(ConfigError) as err:
        load_plan(path)
    assert message in str(err.value)


def test_cli_reports_a_bad_key(tmp_path, capsys):
    path = write_config(tmp_path, {"method": "generate", "input": "data.jsonl"}, data=[{}])
    assert main(["run", str(path)]) == 1
    assert "prompts.user: field required" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.yaml")]) == 1
    assert "missing.yaml: no such file" in capsys.readouterr().err


OPTIONS = {
    "generate": [
        "--input",
        "--model",
        "--user",
        "--user-file",
        "--system",
        "--system-file",
        "--parse",
        "--schema",
        "--samples",
        "--temperature",
        "--max-tokens",
        "--seed",
        "--out",
        "--max-requests",
        "--concurrency",
    ],
    "vote": [
        "--models",
        "--temperatures",
        "--seeds",
        "--votes",
        "--labels",
        "--alias",
        "--match",
        "--tie",
        "--user",
    ],
    "cascade": [
        "--route",
        "--stage2-model",
        "--stage2-user",
        "--stage2-user-file",
        "--stage2-system",
        "--stage2-temperature",
        "--labels",
    ],
    "evol": [
        "--rounds",
        "--operations",
        "--field",
        "--data-field",
        "--response-model",
        "--judge-model",
        "--no-judge",
        "--evolve-max-tokens",
        "--response-temperature",
    ],
    "dpo": [
        "-k",
        "--models",
        "--temperatures",
        "--judge-model",
        "--judge-max-tokens",
        "--rubric",
        "--rubric-file",
        "--scale",
        "--rejected",
        "--min-margin",
        "--unparsable",
        "--keep-unpaired",
    ],
    "run": ["config", "--dry-run", "--out", "--max-requests", "--overwrite", "--no-cache"],
}


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_help_lists_every_option(command, capsys):
    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    for option in OPTIONS[command]:
        assert option in text, f"forge {command} --help does not mention {option}"
    # Every option the parser defines has help text.
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    undocumented = [
        a.option_strings
        for a in sub._actions
        if a.option_strings and not a.help and a.dest != "help"
    ]
    assert undocumented == []


def test_method_commands_end_to_end_on_stub(stub, stub_model, tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    data.write_text('{"input": "Is it hot?"}\n{"input": "Is it cold?"}\n')
    stub.configure(rules=[{"match": "hot", "content": "Yes."}, {"match": "cold", "content": "no"}])
    out = tmp_path / "votes.jsonl"
    assert (
        main(
            [
                "vote",
                "-i",
                str(data),
                "--model",
                stub_model,
                "--temperatures",
                "0",
                "1",
                "--labels",
                "yes",
                "no",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "completed: 2 ok" in capsys.readouterr().out
    # Records land in the order their requests finish: compare by input.
    assert {r["input"]: r["output"] for r in read_jsonl(out)} == {
        "Is it hot?": "yes",
        "Is it cold?": "no",
    }
    assert (
        main(
            [
                "generate",
                "-i",
                str(data),
                "--model",
                stub_model,
                "--user",
                "Q: {{ input }}",
                "--parse",
                "json",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "generate",
                "-i",
                str(data),
                "--model",
                stub_model,
                "--user",
                "{{ missing }}",
                "--no-progress",
            ]
        )
        == 1
    )
    assert "variable 'missing' is undefined for item 0" in capsys.readouterr().err


def test_a_config_reads_a_save_to_disk_split_with_a_column_map(tmp_path):
    datasets = pytest.importorskip("datasets")
    from forgekit.models.scripted import ScriptedModel

    rows = [{"word": "tide"}, {"word": "dune"}]
    split = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)})
    split.save_to_disk(str(tmp_path / "words"))
    config = {
        "method": "generate",
        "input": "words",  # a folder, relative to the file
        "split": "train",
        "column_map": {"word": "term"},
        "prompts": {"user": "Define {{ term }}."},
        "run": {"progress": False},
    }
    df = run_file(write_config(tmp_path, config), model=ScriptedModel())
    assert list(df["output"]) == ["echo: Define tide.", "echo: Define dune."]
    with pytest.raises(ConfigError, match="column_map: method 'magpie' reads no records"):
        load_plan(write_config(tmp_path / "m", {"method": "magpie", "column_map": {"a": "b"}}))
    with pytest.raises(ConfigError, match="input: no such file"):
        load_plan(write_config(tmp_path / "x", {**config, "input": "nowhere"}))
