import json

import pandas as pd
import pytest

from forgekit.data import (
    RecordFormatError,
    make_lineage,
    make_record,
    read_records,
    record_id,
    write_records,
)

SEED = {
    "input": "涂了甲硝唑后皮肤长的痘痘没有效果，我应该如何处理？",
    "target": "",
    "summary_content": "...",
    "history": [],
    "tag": "合理用药-用法用量",
    "task_label": ["medicalknowledge", "pharmacologyknowledge"],
    "num_task_label": 5,
}


def sample_records():
    lineage = make_lineage("generate", "local", params={"temperature": 0.7}, seed=1)
    return [
        make_record(
            id=record_id("generate", SEED, i),
            input=SEED["input"],
            output=f"answer {i}",
            history=[["hi", "hello"]],
            metadata={"k": i},
            lineage=lineage,
            carry=SEED,
        )
        for i in range(3)
    ]


def test_record_id_is_stable_and_distinguishes_inputs():
    assert record_id("magpie", {"a": 1}, 0) == record_id("magpie", {"a": 1}, 0)
    assert record_id("magpie", {"a": 1}, 0) != record_id("magpie", {"a": 1}, 1)
    assert record_id("magpie", {"a": 1}, 0) != record_id("evol", {"a": 1}, 0)
    assert len(record_id("m", {}, 0)) == 20


def test_make_record_carries_unknown_fields_without_overriding_own():
    record = make_record(id="x", input="q", output="a", carry={**SEED, "output": "IGNORED"})
    assert record["output"] == "a"
    assert record["tag"] == "合理用药-用法用量"
    assert record["task_label"] == ["medicalknowledge", "pharmacologyknowledge"]
    lineage = make_lineage("magpie", "local", seed=3, parent_id="p1")
    assert lineage["method"] == "magpie" and lineage["seed"] == 3 and lineage["parent_id"] == "p1"
    assert lineage["forgekit_version"] and lineage["created_at"]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_round_trip_every_format(tmp_path, suffix):
    records = sample_records()
    path = write_records(records, tmp_path / f"data{suffix}")
    back = read_records(path)
    assert [r["id"] for r in back] == [r["id"] for r in records]
    assert back[1]["input"] == SEED["input"]
    assert back[1]["history"] == [["hi", "hello"]]
    assert back[2]["metadata"] == {"k": 2}
    assert back[0]["lineage"]["params"] == {"temperature": 0.7}
    assert back[0]["task_label"] == ["medicalknowledge", "pharmacologyknowledge"]


def test_dataframe_and_list_inputs():
    df = pd.DataFrame({"input": ["a", "b"], "n": [1, 2]})
    assert read_records(df) == [{"input": "a", "n": 1}, {"input": "b", "n": 2}]
    assert read_records(["q1", {"input": "q2"}]) == [{"input": "q1"}, {"input": "q2"}]
    with pytest.raises(RecordFormatError, match="item 1 is int"):
        read_records([{"input": "x"}, 5])


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"input": "ok"}\n\n{"input": "broken"\n{"input": "ok"}\n')
    with pytest.raises(RecordFormatError) as info:
        read_records(path)
    assert f"{path}:3:" in str(info.value)
    path.write_text('{"input": "ok"}\n[1, 2]\n')
    with pytest.raises(RecordFormatError, match=r"in.jsonl:2: expected a JSON object"):
        read_records(path)


def test_unknown_extension_and_missing_file(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(RecordFormatError, match=r"x.txt: cannot tell the format.*'\.txt'"):
        read_records(tmp_path / "x.txt")
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_records(tmp_path / "nope.jsonl")


def test_writer_never_clobbers(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": "precious"}\n')
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_records(sample_records(), path)
    assert json.loads(path.read_text())["id"] == "precious"
    write_records(sample_records(), path, overwrite=True)
    assert len(read_records(path)) == 3
    assert not list(tmp_path.glob(".out.jsonl.*.tmp"))  # no temp files left behind


def test_json_wrapper_object(tmp_path):
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"version": 1, "data": [{"input": "a"}, {"input": "b"}]}))
    assert [r["input"] for r in read_records(path)] == ["a", "b"]


def test_dataframe_keeps_none_for_missing_text():
    from forgekit.data import records_to_dataframe

    df = records_to_dataframe([{"input": "a", "tag": None}, {"input": None, "tag": "t"}])
    assert df["tag"].tolist() == [None, "t"]
    assert df["input"].tolist() == ["a", None]
