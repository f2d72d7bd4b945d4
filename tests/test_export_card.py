"""The dataset card of a real pipeline run (magpie -> judge -> dedup -> export, on a scripted
model): Hub YAML that parses and has the Hub's keys, and prose that states the right counts,
methods, models and template hashes — from Python objects and from the files and manifests
the CLI leaves behind."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from forgekit.cli.app import main
from forgekit.errors import ConfigError
from forgekit.evaluate import exact_dedup
from forgekit.export import export
from forgekit.export.hub import push_folder
from forgekit.methods import judge, magpie
from forgekit.models.scripted import ScriptedModel

INSTRUCTIONS = [
    "How do I sort a list of tuples by the second item in Python?",
    "Hi there",  # magpie drops it: too short
    "How do I sort a list of tuples by the second item in Python!",  # dedup drops it
    "What are three good habits for writing clear commit messages?",
    "Explain how a hash map handles collisions in simple terms.",
]
JUDGMENT = (
    "Difficulty: easy\nQuality: good\nExplanation: clear.\nCategory: coding\nLanguage: English"
)
HUB_KEYS = {"license", "language", "task_categories", "size_categories", "configs", "tags"}


def scripted() -> ScriptedModel:
    return ScriptedModel(
        [(r"<\|im_start\|>user\n$", INSTRUCTIONS), (r"Difficulty", JUDGMENT)], name="smol"
    )


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    head, _, _ = text[4:].partition("\n---\n")
    return yaml.safe_load(head)


def stage_lines(text: str) -> list[str]:
    body = text.split("Counts at each stage:", 1)[1]
    return [line[2:] for line in body.splitlines() if line.startswith("- ")][:6]


def check_card(card: str, data_file: str) -> None:
    meta = front_matter(card)
    assert set(meta) >= HUB_KEYS
    assert meta["license"] == "unknown" and "# TODO: the license" in card
    assert meta["language"] == ["en"] and meta["size_categories"] == ["n<1K"]
    assert meta["task_categories"] == ["text-generation"]
    assert meta["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": data_file}]}
    ]
    assert {"synthetic", "forgekit", "trl"} <= set(meta["tags"])
    lines = stage_lines(card)
    assert lines[0] == "magpie: 5 generated, 1 filtered, 4 kept"
    assert lines[1] == "judge: 4 records judged"
    assert lines[2] == "dedup (exact): 4 in, deduplicated: 1 removed, 3 kept"
    # the lineage table: both methods, the model, magpie's and judge's template hashes
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| (magpie|judge) \|.*$", card, re.M)}
    assert set(rows) == {"magpie", "judge"} and "`smol`" in rows["magpie"]
    assert re.search(r"`[0-9a-f]{12}`", rows["magpie"]) and re.search(
        r"`[0-9a-f]{12}`", rows["judge"]
    )
    assert card.index("| magpie |") < card.index("| judge |")  # earliest step first


def test_card_from_a_pipeline_in_python(tmp_path):
    model = scripted()
    generated = magpie(4, model=model, progress=False)
    judged = judge(generated, model=model, categories=["coding", "other"], progress=False)
    deduped = exact_dedup(judged, "input", ignore_punctuation=True)
    decontaminated = {"step": "decontaminate", "method": "13-gram", "input": 3, "kept": 3}
    result = export(
        deduped.kept,
        "trl-messages",
        tmp_path / "set",
        stages=[generated, judged, deduped, decontaminated],
        diversity={"vendi": {"q=1": 2.5}},
    )
    assert result.written == 3 and not result.rejected
    card = result.card_path.read_text()
    check_card(card, "train.jsonl")
    assert (
        stage_lines(card)[3] == "decontaminate (13-gram): 3 in, decontaminated: 0 removed, 3 kept"
    )
    assert "- exported: 3 records; not representable in the format: 0" in card
    assert "- vendi: q=1=2.5" in card
    rows = [json.loads(line) for line in result.data_path.read_text().splitlines()]
    assert [r["messages"][0]["content"] for r in rows] == [
        INSTRUCTIONS[0],
        INSTRUCTIONS[3],
        INSTRUCTIONS[4],
    ]


def test_card_from_run_files_and_the_cli(tmp_path, capsys):
    model = scripted()
    magpie(4, model=model, out=tmp_path / "gen.jsonl", progress=False)
    judge(
        tmp_path / "gen.jsonl",
        model=model,
        categories=["coding", "other"],
        out=tmp_path / "judged.jsonl",
        progress=False,
    )
    kept = tmp_path / "kept.jsonl"
    dedup = ["dedup", "-i", str(tmp_path / "judged.jsonl"), "--method", "exact"]
    assert main([*dedup, "--ignore-punctuation", "--out", str(kept)]) == 0
    stages = ["--stage", str(tmp_path / "gen.jsonl"), "--stage", str(tmp_path / "judged.jsonl")]
    out = tmp_path / "set"
    assert main(["export", "-i", str(kept), "-f", "trl-messages", "--out", str(out), *stages]) == 0
    capsys.readouterr()
    check_card((out / "README.md").read_text(), "train.jsonl")


def test_push_to_hub_needs_the_network_and_a_token(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="push_to_hub me/set: the Hugging Face Hub is offline"):
        push_folder(tmp_path, "me/set")
    with pytest.raises(ConfigError, match="use org/name"):
        push_folder(tmp_path, "no-org")


def test_decontamination_stages_in_the_shapes_evaluate_and_the_cli_give(tmp_path):
    summary = {
        "method": "decontaminate",
        "input": 4,
        "flagged": 1,
        "removed": 1,
        "kept": 3,
        "per_benchmark": [{"benchmark": "gsm8k", "records_hit": 1, "items": 9}],
        "params": {"n": 13},
    }

    class Result:  # evaluate.decontaminate's result: a summary() in this shape
        def summary(self):
            return summary

    manifest = tmp_path / "clean.manifest.json"
    manifest.write_text(json.dumps({"decontaminate": {**summary, "removed": 0, "kept": 4}}))
    record = {"input": "Name a colour.", "output": "Blue."}
    result = export([record], "trl-messages", tmp_path / "set", stages=[Result(), manifest])
    lines = stage_lines(result.card_path.read_text())
    assert lines[0] == (
        "decontaminate: 4 in, decontaminated: 1 removed, 3 kept; records matching each "
        "benchmark: gsm8k: 1"
    )
    assert lines[1].startswith("decontaminate: 4 in, decontaminated: 0 removed, 4 kept (1 flagged)")


def test_a_frame_vouches_only_for_the_run_whose_records_it_still_holds(tmp_path):
    model = scripted()
    generated = magpie(4, model=model, progress=False)
    as_run = export(generated, "trl-messages", tmp_path / "a")
    assert stage_lines(as_run.card_path.read_text())[0] == "magpie: 5 generated, 1 filtered, 4 kept"
    # after dedup the rows are fewer than the run's: the attrs pandas carried along are not
    # taken for this data's history
    fewer = exact_dedup(generated, "input", ignore_punctuation=True).kept
    assert "forgekit" in fewer.attrs and len(fewer) == 3
    card = export(fewer, "trl-messages", tmp_path / "b").card_path.read_text()
    assert "No pipeline stages were given to the export" in card
    assert "| magpie | 3 | `smol` |" in card  # the lineage still names method and model


def test_push_to_hub_uses_the_token_from_the_environment_only(tmp_path, monkeypatch):
    import huggingface_hub

    import forgekit.export.hub as hub

    monkeypatch.setattr(hub, "require_online", lambda what: None)  # as if online
    for name in hub.TOKEN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    result = export([{"input": "Hi?", "output": "Hello."}], "openai", tmp_path / "set")
    with pytest.raises(ConfigError, match="push_to_hub me/set: set HF_TOKEN"):
        result.push_to_hub("me/set")
    calls = []

    class FakeApi:  # records what would be sent to the Hub
        def __init__(self, token):
            calls.append(("token", token))

        def create_repo(self, repo_id, **kw):
            calls.append(("create", repo_id, kw["repo_type"], kw["private"]))

        def upload_folder(self, folder_path, repo_id, **kw):
            calls.append(("upload", sorted(p.name for p in Path(folder_path).iterdir()), repo_id))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    assert result.push_to_hub("me/set") == "https://huggingface.co/datasets/me/set"
    assert calls == [
        ("token", "hf_test_token"),
        ("create", "me/set", "dataset", True),
        ("upload", ["README.md", "train.jsonl"], "me/set"),
    ]


def test_diversity_true_measures_the_exported_inputs(tmp_path):
    same = [{"input": "Name a colour.", "output": "Blue."}] * 3
    varied = [{"input": f"{w} rivers shape valleys", "output": "."} for w in ("How", "Why", "When")]
    preference = {"input": "x", "chosen": "a", "rejected": "b"}  # rejected by the format
    cards = {}
    for name, records in (("same", same), ("varied", varied)):
        result = export([*records, preference], "openai", tmp_path / name, diversity=True)
        cards[name] = result.card_path.read_text()
    pattern = r"- vendi score of the inputs \(n-gram kernel, q=1\): ([0-9.]+)"
    scores = {name: float(re.search(pattern, card).group(1)) for name, card in cards.items()}
    assert scores["same"] == pytest.approx(1.0) and scores["varied"] > 1.5
    assert "- records measured: 3" in cards["same"]  # the rejected record is not counted
