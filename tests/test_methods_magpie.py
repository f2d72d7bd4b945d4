"""Magpie on a scripted OpenAI-compatible stub: exact templates, filters, turns, errors."""

import json
import subprocess
import sys

import pytest

from forgekit.data.text import detect_script
from forgekit.errors import ConfigError, UnsupportedOperationError
from forgekit.methods import magpie
from forgekit.methods.magpie import instruction_key
from forgekit.models.chat_formats import CHAT_FORMATS, pre_query_text
from forgekit.models.scripted import ScriptedModel
from tests.conftest import read_jsonl, write_profile

EXPECTED_PRE_QUERY = {
    "chatml": "<|im_start|>user\n",
    "qwen2": "<|im_start|>user\n",
    "qwen2.5": "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
    "assistant.<|im_end|>\n<|im_start|>user\n",
    "llama3": "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n",
    "gemma2": "<bos><start_of_turn>user\n",
    "phi3": "<s><|user|>\n",
    "mistral": "<s>[INST] ",
    "llama2": "<s>[INST] ",
}


@pytest.mark.parametrize("family", sorted(EXPECTED_PRE_QUERY))
def test_pre_query_templates(family):
    assert pre_query_text(CHAT_FORMATS[family], None, []) == EXPECTED_PRE_QUERY[family]


def test_system_and_multi_turn_rendering():
    chatml = CHAT_FORMATS["chatml"]
    assert pre_query_text(chatml, "Math only.", [("1+1?", "2")]) == (
        "<|im_start|>system\nMath only.<|im_end|>\n<|im_start|>user\n1+1?<|im_end|>\n"
        "<|im_start|>assistant\n2<|im_end|>\n<|im_start|>user\n"
    )
    llama3 = CHAT_FORMATS["llama3"]
    assert pre_query_text(llama3, "Be brief.", []) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n"
    )
    assert pre_query_text(CHAT_FORMATS["llama2"], "Be kind.", []) == (
        "<s>[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\n"
    )
    # Mistral and Llama-2 keep the system text inside the first [INST] on later turns too.
    assert pre_query_text(CHAT_FORMATS["llama2"], "Be kind.", [("Hi?", "Hello.")]) == (
        "<s>[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\nHi? [/INST] Hello. </s><s>[INST] "
    )
    assert pre_query_text(CHAT_FORMATS["mistral"], "Be kind.", [("Hi?", "Hello.")]) == (
        "<s>[INST] Be kind.\n\nHi? [/INST] Hello.</s>[INST] "
    )
    with pytest.raises(ConfigError, match="gemma2.*no system role"):
        pre_query_text(CHAT_FORMATS["gemma2"], "x", [])


def test_filters_count_what_they_remove(stub, stub_model):
    stub.configure(
        rules=[
            {
                "match": r"^<\|im_start\|>user\n$",
                "contents": [
                    "How do I sort a list of tuples by the second item in Python?",
                    "",  # empty
                    "Hi there",  # too short (2 words)
                    "User: tell me a joke about cats please",  # template echo
                    "如何在周末学习一门新的编程语言并坚持下去？",  # wrong language (en wanted)
                    "How do I sort a list of tuples by the second item in Python?",  # duplicate
                    "What are three good habits for writing clear commit messages?",
                ],
            }
        ]
    )
    df = magpie(
        2, model=stub_model, template="chatml", language="en", concurrency=1, progress=False
    )
    assert list(df["input"]) == [
        "How do I sort a list of tuples by the second item in Python?",
        "What are three good habits for writing clear commit messages?",
    ]
    assert list(df["output"]) == [f"echo: {q}" for q in df["input"]]
    info = df.attrs["forgekit"]
    assert info["filtered"] == {
        "empty": 1,
        "too_short": 1,
        "template_echo": 1,
        "wrong_language": 1,
        "duplicate": 1,
    }
    assert info["generations"] == 7
    # Sampling per stage: instructions at T=1 with a newline stop, responses at T=0.
    lineage = df["lineage"].iloc[0]
    assert lineage["params"]["instruction"]["temperature"] == 1.0
    assert "\n" in lineage["params"]["instruction"]["stop"]
    assert lineage["params"]["response"]["temperature"] == 0.0


def test_newline_stop_can_be_switched_off(stub, stub_model):
    df = magpie(
        1, model=stub_model, template="chatml", newline_stop=False, progress=False, min_words=1
    )
    assert "\n" not in df["lineage"].iloc[0]["params"]["instruction"]["stop"]


def test_multi_turn_records_history_and_system(stub, stub_model):
    stub.configure(
        rules=[
            {
                "match": r"<\|im_start\|>user\n$",
                "contents": [f"Question number {i} about rivers?" for i in range(9)],
            }
        ]
    )
    df = magpie(
        2,
        model=stub_model,
        template="chatml",
        n_turns=2,
        system="Geography only.",
        concurrency=1,
        progress=False,
    )
    first = df.iloc[0]
    assert first["system"] == "Geography only."
    assert first["history"] == [
        ["Question number 0 about rivers?", "echo: Question number 0 about rivers?"]
    ]
    assert first["input"] == "Question number 1 about rivers?"
    assert first["output"] == "echo: Question number 1 about rivers?"
    assert len(first["metadata"]["raw_instructions"]) == 2


def test_the_count_is_the_one_positional_argument():
    with pytest.raises(TypeError, match="got n twice"):
        magpie(2, n=3)
    with pytest.raises(TypeError, match="takes n as its only positional argument"):
        magpie(2, 3)
    with pytest.raises(TypeError, match="takes no input data"):
        magpie(data=[{"input": "x"}], model=ScriptedModel())


def test_chat_only_provider_gets_a_clear_error(stub, tmp_path, monkeypatch):
    write_profile(tmp_path, monkeypatch, stub.url, name="gpt", completions=False)
    with pytest.raises(UnsupportedOperationError, match="Magpie needs a raw completion"):
        magpie(3, model="gpt", progress=False)
    assert stub.stats().get("requests", 0) == 0


def test_unknown_template_and_missing_template(stub, tmp_path, monkeypatch):
    write_profile(tmp_path, monkeypatch, stub.url, name="bare", template=None)
    with pytest.raises(ConfigError, match="no chat-template family"):
        magpie(1, model="bare", progress=False)
    with pytest.raises(ConfigError, match="unknown chat template 'vicuna'"):
        magpie(1, model="bare", template="vicuna", progress=False)


def test_second_call_costs_zero_requests_and_budget_resume(stub, stub_model, tmp_path):
    stub.configure(
        rules=[{"match": r"user\n$", "contents": [f"Distinct question {i}?" for i in range(50)]}]
    )
    out = tmp_path / "m.jsonl"
    first = magpie(
        6,
        model=stub_model,
        template="chatml",
        out=out,
        progress=False,
        max_requests=5,
        min_words=1,
        concurrency=1,
    )
    assert first.attrs["forgekit"]["status"] == "stopped"
    assert len(first) == 2  # 2 records = 4 requests; the 5th record's answer was refused
    rest = magpie(6, model=stub_model, template="chatml", out=out, progress=False, min_words=1)
    assert len(rest) == 6 and rest["id"].is_unique
    assert rest.attrs["forgekit"]["stats"]["skipped"] == len(first)
    sent = stub.stats()["requests"]
    again = magpie(6, model=stub_model, template="chatml", progress=False, min_words=1)
    assert stub.stats()["requests"] == sent  # all from the cache
    assert list(again["id"]) == list(rest["id"])


# The instruction at generation i is PAIRED[(101 * i) % 10] = PAIRED[i % 10] (the request
# seed is 101 * i): every question comes twice in a row, q0 q0 q1 q1 ... q4 q4.
PAIRED = [f"Which river is number {i // 2}?" for i in range(10)]


def test_a_resumed_run_never_repeats_an_instruction_already_in_its_output(
    stub, stub_model, tmp_path
):
    stub.configure(rules=[{"match": r"user\n$", "by_seed": PAIRED}])
    out = tmp_path / "m.jsonl"
    call = {"model": stub_model, "template": "chatml", "out": out, "min_words": 1}
    call |= {"concurrency": 1, "progress": False, "cache": False}
    first = magpie(2, **call)
    assert list(first["input"]) == [PAIRED[0], PAIRED[2]]
    assert first.attrs["forgekit"]["filtered"] == {"duplicate": 1}  # generation 1
    # A killed writer left a last line without its newline: not a record (the store cuts it
    # off), so its instruction is not taken.
    torn = {**first.iloc[1].to_dict(), "id": "torn", "input": PAIRED[4]}
    with open(out, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(torn))
    # Resumed to n=5: generations 0 and 2 are in the file; 1 and 3 ask the questions they
    # hold again (the same seed), which must count as repeats, not as new records.
    again = magpie(5, **call)
    stored = read_jsonl(out)
    assert len(stored) == 5 and len({instruction_key(r["input"]) for r in stored}) == 5
    assert [r["input"] for r in stored] == [PAIRED[i] for i in (0, 2, 4, 6, 8)]
    assert list(again["input"]) == [r["input"] for r in stored]
    info = again.attrs["forgekit"]
    assert info["stats"]["skipped"] == 2 and info["stats"]["ok"] == 3
    assert info["filtered"] == {"duplicate": 4}  # generations 1, 3, 5, 7
    assert json.loads(out.with_name("m.jsonl.torn").read_text())["input"] == PAIRED[4]


def test_language_detection():
    assert detect_script("How are you today?") == "en"
    assert detect_script("你今天好吗？") == "zh"
    assert detect_script("Wie geht's dir heute, schöne Grüße") == "en"  # latin script
    assert detect_script("Как дела сегодня?") == "other"


def test_cli_magpie_on_stub(stub, stub_model, tmp_path):
    stub.configure(
        rules=[{"match": r"user\n$", "contents": [f"Distinct question {i}?" for i in range(50)]}]
    )
    out = tmp_path / "cli.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "forgekit.cli",
            "magpie",
            "-n",
            "3",
            "--model",
            stub_model,
            "--template",
            "chatml",
            "--min-words",
            "1",
            "--out",
            str(out),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "completed: 3 ok" in proc.stdout
    assert len(out.read_text().splitlines()) == 3
