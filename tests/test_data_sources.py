"""Inputs beyond single files (forgekit.data.sources): datasets objects, save_to_disk and
Parquet folders, Arrow files, hf: names offline, column maps — through every entry point
(read_records, a method, an evaluate function, the CLI)."""

from __future__ import annotations

import json
import time

import pytest

datasets = pytest.importorskip("datasets")

from forgekit.cli.app import main  # noqa: E402
from forgekit.data import read_records, source, write_records  # noqa: E402
from forgekit.data.sources import HubOfflineError, parse_hub_name  # noqa: E402
from forgekit.errors import ConfigError  # noqa: E402
from forgekit.evaluate import exact_dedup  # noqa: E402
from forgekit.methods import generate  # noqa: E402
from forgekit.models.scripted import ScriptedModel  # noqa: E402

ROWS = [
    {"instruction": "Name a colour.", "history": [["Hi", "Hello"]], "tag": "a"},
    {"instruction": "Name a fruit.", "history": [], "tag": "b"},
    {"instruction": "Name a colour.", "history": [], "tag": "c"},
]


@pytest.fixture(autouse=True)
def quiet_datasets():
    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()


def test_dataset_and_datasetdict_split():
    ds = datasets.Dataset.from_list(ROWS)
    assert read_records(ds) == ROWS
    dd = datasets.DatasetDict({"train": ds, "test": ds.select([1])})
    assert read_records(dd, split="test") == [ROWS[1]]
    with pytest.raises(ConfigError, match="splits train, test: choose one with split="):
        read_records(dd)
    with pytest.raises(ConfigError, match="no split 'dev'; splits: train, test"):
        read_records(dd, split="dev")
    # a DatasetDict with one split needs no split=
    assert read_records(datasets.DatasetDict({"train": ds})) == ROWS


def test_save_to_disk_folders_parquet_folder_and_arrow_file(tmp_path):
    ds = datasets.Dataset.from_list(ROWS)
    ds.save_to_disk(str(tmp_path / "one"))
    datasets.DatasetDict({"train": ds, "test": ds.select([2])}).save_to_disk(str(tmp_path / "two"))
    assert read_records(tmp_path / "one") == ROWS
    assert read_records(tmp_path / "two", split="test") == [ROWS[2]]
    with pytest.raises(ConfigError, match="splits train, test"):
        read_records(tmp_path / "two")
    arrow = next((tmp_path / "one").glob("*.arrow"))
    assert read_records(arrow) == ROWS
    # a folder of Parquet shards, read in name order
    folder = tmp_path / "shards"
    write_records(ROWS[:2], folder / "part-0.parquet")
    write_records(ROWS[2:], folder / "part-1.parquet")
    assert [r["tag"] for r in read_records(folder)] == ["a", "b", "c"]
    (folder / "notes.jsonl").write_text('{"tag": "x"}\n')
    with pytest.raises(ConfigError, match="holds .parquet and .jsonl files"):
        read_records(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no .parquet, .arrow or .jsonl files"):
        read_records(tmp_path / "empty")


def test_column_map_renames_and_names_missing_columns():
    ds = datasets.Dataset.from_list(ROWS)
    got = read_records(ds, column_map={"instruction": "input"})
    assert [r["input"] for r in got] == [r["instruction"] for r in ROWS]
    assert all("instruction" not in r for r in got) and got[0]["history"] == [["Hi", "Hello"]]
    with pytest.raises(ConfigError, match=r"no column 'prompt'; available columns: instruction"):
        read_records(ds, column_map={"prompt": "input"})
    # renaming onto an existing column would lose it, unless that column moves too (a swap)
    with pytest.raises(ConfigError, match="'tag' already exists"):
        read_records(ROWS, column_map={"instruction": "tag"})
    swapped = read_records(ROWS, column_map={"instruction": "tag", "tag": "instruction"})
    assert swapped[1] == {"tag": "Name a fruit.", "instruction": "b", "history": []}


def test_a_method_and_an_evaluate_function_read_a_datasetdict_split_with_a_map():
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)})
    df = generate(
        dd,
        split="train",
        column_map={"instruction": "question"},
        user="Q: {{ question }}",
        model=ScriptedModel(),
        progress=False,
    )
    assert list(df["output"]) == [f"echo: Q: {r['instruction']}" for r in ROWS]
    with pytest.raises(TypeError, match="reads no records: column_map"):
        from forgekit.methods import magpie

        magpie(1, column_map={"a": "b"}, model=ScriptedModel())
    result = exact_dedup(source(dd, column_map={"instruction": "input"}), "input")
    assert result.n_input == 3 and list(result.kept["tag"]) == ["a", "b"]


def test_offline_hub_name_fails_at_once_naming_the_data_set(monkeypatch):
    assert parse_hub_name("hf:org/name:test") == ("org/name", None, "test")
    assert parse_hub_name("hf:org/name/config") == ("org/name", "config", None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubOfflineError, match=r"hf:org/some-set:train: .*offline"):
        read_records("hf:org/some-set:train")
    # no network: a closed local port stands for the Hub; the error comes without a hang
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    started = time.monotonic()
    with pytest.raises(HubOfflineError, match=r"hf:org/some-set: .*offline: 127.0.0.1:9"):
        read_records("hf:org/some-set")
    assert time.monotonic() - started < 30  # bounded by the probe's timeout, not a hang


def test_cli_reads_a_save_to_disk_split_with_map(tmp_path, capsys, monkeypatch):
    ds = datasets.Dataset.from_list(ROWS)
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "dd"))
    out = tmp_path / "kept.jsonl"
    argv = ["dedup", "-i", str(tmp_path / "dd"), "--split", "train", "--map", "instruction=input"]
    assert main([*argv, "--method", "exact", "--out", str(out)]) == 0
    assert [r["tag"] for r in read_records(out)] == ["a", "b"]
    manifest = json.loads((tmp_path / "kept.manifest.json").read_text())
    assert (manifest["step"], manifest["input"], manifest["removed"]) == ("dedup", 3, 1)
    assert main(["dedup", "-i", str(tmp_path / "dd"), "--map", "nope=input"]) == 1
    assert "no column 'nope'; available columns: instruction, history, tag" in (
        capsys.readouterr().err
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["dedup", "-i", "hf:org/x:train", "--method", "exact"]) == 1
    assert "hf:org/x:train: the Hugging Face Hub is offline" in capsys.readouterr().err
