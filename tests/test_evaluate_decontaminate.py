"""Decontamination on planted contamination: exact copies, lightly edited copies and Chinese
copies of benchmark items are all found, with the matched n-gram; records on the same topic
in other words are not; remove=True drops exactly the flagged records."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from forgekit.cli import main
from forgekit.data.io import read_records
from forgekit.errors import ConfigError
from forgekit.evaluate import Benchmark, decontaminate
from forgekit.evaluate.ngram_index import ngram_hashes

GSM = [
    {
        "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as "
        "many clips in May. How many clips did Natalia sell altogether in April and May?",
        "answer": "Natalia sold 48/2 = 24 clips in May. Natalia sold 48+24 = 72 clips "
        "altogether in April and May. #### 72",
    },
    {
        "question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes "
        "of babysitting. How much did she earn?",
        "answer": "Weng earns 12/60 = $0.2 per minute. Working 50 minutes, she earned "
        "0.2 x 50 = $10. #### 10",
    },
]
CMMLU = [
    {
        "question": "在中国古代，被称为“诗圣”的唐代诗人是谁？他的代表作有哪些反映社会现实的作品？",
        "answer": "杜甫，代表作有《春望》《石壕吏》等",
    }
]


def planted() -> pd.DataFrame:
    rows = [
        # 0: an exact copy of a GSM8K question (with an answer of our own)
        {"input": GSM[0]["question"], "output": "The answer is 72."},
        # 1: lightly edited: case, punctuation, spacing, one word changed far from a 13-gram
        {
            "input": "WESLEY earns $12 an hour for babysitting!! yesterday,   she just did 50 "
            "minutes of babysitting... how much did she earn",
            "output": "She earned ten dollars.",
        },
        # 2: the benchmark's answer (its reasoning) copied into the response
        {
            "input": "Solve this for me please.",
            "output": "Sure. natalia sold 48/2 = 24 clips in may; Natalia sold 48+24=72 clips "
            "altogether in April and May.",
        },
        # 3: Chinese, full-width punctuation changed, inside a longer text
        {
            "input": "请回答：在中国古代被称为诗圣的唐代诗人是谁?谢谢",
            "output": "杜甫。",
        },
        # 4-6: clean controls, the same topics in other words
        {
            "input": "A girl sells hair clips to her classmates in spring and fewer in summer; "
            "how could she work out her total sales?",
            "output": "Add the two months together.",
        },
        {
            "input": "How much does a babysitter earn for under an hour of work at twelve "
            "dollars hourly?",
            "output": "Multiply the rate by the fraction of an hour.",
        },
        {"input": "唐代有哪些著名的诗人？请简单介绍一下杜甫的生平。", "output": "杜甫是唐代诗人。"},
    ]
    return pd.DataFrame([{"id": f"r{i}", **row} for i, row in enumerate(rows)])


def test_planted_contamination_is_found_and_clean_controls_are_not():
    result = decontaminate(planted(), against={"gsm8k": GSM, "cmmlu": CMMLU})
    report = result.report.set_index("id")
    assert sorted(report.index) == ["r0", "r1", "r2", "r3"]
    assert report.loc["r0", "benchmark"] == "gsm8k" and report.loc["r0", "benchmark_item"] == 0
    assert report.loc["r1", "benchmark_item"] == 1 and report.loc["r2", "benchmark_item"] == 0
    assert report.loc["r3", "benchmark"] == "cmmlu" and report.loc["r3", "benchmark_item"] == 0
    # The first shared n-gram, normalized: 13 words, or 13 characters for Chinese.
    assert report.loc["r0", "matched_ngram"] == (
        "natalia sold clips to 48 of her friends in april and then she"
    )
    assert report.loc["r1", "matched_ngram"] == (
        "earns 12 an hour for babysitting yesterday she just did 50 minutes of"
    )
    assert report.loc["r3", "matched_ngram"] == "在中国古代被称为诗圣的唐代"
    assert report.loc["r0", "matched_ngrams"] == 19  # every 13-gram of the 31-word question
    per = {b["benchmark"]: b for b in result.per_benchmark}
    assert (per["gsm8k"]["records_hit"], per["cmmlu"]["records_hit"]) == (3, 1)
    assert per["gsm8k"]["fields"] == ["question", "answer"] and per["gsm8k"]["items"] == 2
    # flag only: every record is kept, the flagged ones carry the report
    assert len(result.kept) == 7 and result.n_removed == 0
    assert list(result.flagged["benchmarks"]) == [["gsm8k"], ["gsm8k"], ["gsm8k"], ["cmmlu"]]


def test_remove_drops_exactly_the_flagged_records_and_records_the_counts():
    data = planted()
    data.index = [0] * len(data)  # repeated labels: removal goes by position
    data.attrs["forgekit"] = {"method": "magpie"}
    result = decontaminate(data, against=[Benchmark(GSM, name="gsm8k")], remove=True)
    flagged = set(result.report["id"])
    assert flagged == {"r0", "r1", "r2"}
    assert list(result.kept["id"]) == [i for i in data["id"] if i not in flagged]
    assert list(result.kept.columns) == list(data.columns)  # no report columns in the data
    summary = result.kept.attrs["forgekit"]["decontaminate"]
    assert (summary["input"], summary["flagged"], summary["removed"]) == (7, 3, 3)
    assert result.kept.attrs["forgekit"]["method"] == "magpie"  # earlier steps stay
    assert "decontaminate" not in data.attrs["forgekit"]  # the input is not modified


def test_n_is_configurable_and_shorter_texts_cannot_match():
    bench = [{"question": "one two three four five", "answer": "x"}]
    data = [{"input": "say one two three four five now"}, {"input": "one two three"}]
    assert decontaminate(data, bench, n=13).n_flagged == 0
    (per,) = decontaminate(data, bench, n=13).per_benchmark
    assert per["too_short"] == 1 and per["ngrams"] == 0
    found = decontaminate(data, bench, n=5)
    assert list(found.report["row"]) == [0]
    assert found.report["matched_ngram"][0] == "one two three four five"


def test_benchmarks_from_files_and_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    parquet = tmp_path / "gsm8k.parquet"
    pd.DataFrame(GSM).to_parquet(parquet)
    csv = tmp_path / "cmmlu.csv"
    pd.DataFrame(CMMLU).to_csv(csv, index=False)
    hf = datasets.Dataset.from_list([{"problem": GSM[1]["question"], "solution": "10"}])
    result = decontaminate(planted(), against=[parquet, csv, Benchmark(hf, name="hf")])
    per = {b["benchmark"]: b["records_hit"] for b in result.per_benchmark}
    assert per == {"gsm8k": 3, "cmmlu": 1, "hf": 1}
    assert result.report.set_index("id").loc["r1", "benchmarks"] == ["gsm8k", "hf"]


def test_a_missing_field_is_one_error_naming_the_field_and_the_file(tmp_path):
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    with pytest.raises(ConfigError, match=r"bench \(file .*bench.jsonl\): field 'prompt' is not"):
        decontaminate(planted(), against=[path], fields="prompt+answer")
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"q": "x"}) + "\n")
    with pytest.raises(ConfigError, match=r"other.jsonl\): none of the prompt/answer fields.*q"):
        decontaminate(planted(), against=[other])
    with pytest.raises(ConfigError, match="text field 'body' is not in the data"):
        decontaminate(planted(), against=[path], text="body")


def test_hashes_are_word_windows_of_normalized_text():
    texts = ["The cat, sat ON the mat!", "the CAT sat on the   mat", "the cat sat on a mat", "x"]
    hashes, per_text = ngram_hashes(texts, 6)
    assert per_text.tolist() == [1, 1, 1, 0]
    assert hashes[0] == hashes[1] != hashes[2]


def test_forge_decontaminate_writes_kept_records_report_and_manifest(tmp_path, capsys):
    data, bench = tmp_path / "data.jsonl", tmp_path / "gsm8k.jsonl"
    rows = planted().to_dict("records")
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    bench.write_text("".join(json.dumps(r) + "\n" for r in GSM))
    out, report = tmp_path / "clean.jsonl", tmp_path / "flagged.jsonl"
    code = main(
        ["decontaminate", "-i", str(data), "--against", f"gsm={bench}", "--remove",
         "--out", str(out), "--report-out", str(report)]
    )  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["flagged"], summary["removed"], summary["kept"]) == (3, 3, 4)
    assert [r["id"] for r in read_records(out)] == ["r3", "r4", "r5", "r6"]
    assert [r["benchmark"] for r in read_records(report)] == ["gsm"] * 3
    manifest = json.loads((tmp_path / "clean.manifest.json").read_text())
    assert manifest["decontaminate"]["removed"] == 3
    assert main(["decontaminate", "-i", str(data), "--against", str(tmp_path / "no.jsonl")]) != 0
    assert "--against" in capsys.readouterr().err


def test_long_records_are_looked_up_in_smaller_chunks(monkeypatch):
    monkeypatch.setattr("forgekit.evaluate.contamination.CHUNK_CHARS", 300)
    filler = "lorem ipsum dolor sit amet " * 20  # ~540 characters: one record per chunk
    data = [{"input": filler + GSM[i % 2]["question"]} for i in range(5)] + [{"input": "hi"}]
    result = decontaminate(data, {"gsm8k": GSM})
    assert list(result.report["row"]) == [0, 1, 2, 3, 4]
    assert list(result.report["benchmark_item"]) == [0, 1, 0, 1, 0]
