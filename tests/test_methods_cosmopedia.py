"""cosmopedia: extract trimming, style/audience/topic prompts, per-style records, filters,
resume and cache on the stub; a real long-form run on the embedded model."""

import pandas as pd
import pytest

from forgekit.cli import execute, parse
from forgekit.cli import main as cli_main
from forgekit.data.text import truncate_text
from forgekit.errors import ConfigError
from forgekit.methods import cosmopedia
from forgekit.models.scripted import ScriptedModel
from tests.conftest import read_jsonl

EXTRACT = (
    "Composting turns kitchen scraps and garden waste into a dark, crumbly soil amendment. "
    "Microbes break down the material, and the pile heats up as they work. A good pile mixes "
    "greens, such as vegetable peels, with browns, such as dry leaves. " * 6
)
LONG_TEXT = " ".join(["The document explains composting in many clear words."] * 8)


def test_truncate_at_a_boundary():
    text = "First sentence here. Second one is longer than that. Third."
    assert truncate_text(text, 40) == "First sentence here."
    assert truncate_text("word " * 30, 23) == "word word word word"
    assert truncate_text("没有空格的中文句子非常长" * 5, 10) == "没有空格的中文句子非"  # hard cut
    assert truncate_text("short", 100) == "short"


def test_styles_audience_topic_and_trimming(stub, stub_model, tmp_path):
    stub.configure(rules=[{"match": "wikiHow|textbook|blog", "content": LONG_TEXT}])
    seeds = pd.DataFrame(
        {
            "text": [EXTRACT, "Tides rise and fall twice a day. " * 3],
            "url": ["https://a.example", "https://b.example"],
        }
    )
    out = tmp_path / "c.jsonl"
    df = cosmopedia(
        seeds,
        model=stub_model,
        style=["wikihow", "blogpost"],
        audience="high school students",
        topic="gardening",
        max_chars=300,
        out=out,
        progress=False,
    )
    assert len(df) == 4  # 2 extracts x 2 styles
    assert [m["style"] for m in df["metadata"]] == ["wikihow", "blogpost"] * 2
    first = df.iloc[0]
    assert first["output"] == LONG_TEXT and first["url"] == "https://a.example"
    extract = first["metadata"]["seed_extract"]
    assert len(extract) <= 300 and extract.endswith(".") and EXTRACT.startswith(extract)
    prompt = first["input"]
    assert "wikiHow" in prompt and "high school students" in prompt and "gardening" in prompt
    assert f"<extract>\n{extract}\n</extract>" in prompt
    assert "blog post" in df.iloc[1]["input"]
    assert first["lineage"]["method"] == "cosmopedia"
    before = stub.stats()["requests"]
    again = cosmopedia(
        seeds,
        model=stub_model,
        style=["wikihow", "blogpost"],
        audience="high school students",
        topic="gardening",
        max_chars=300,
        out=out,
        progress=False,
        cache=False,
    )
    assert stub.stats()["requests"] == before and list(again["id"]) == list(df["id"])
    assert len(read_jsonl(out)) == 4


def test_short_outputs_are_filtered_and_counted(stub, stub_model):
    stub.configure(rules=[{"match": "textbook", "content": "Sorry, I cannot."}])
    df = cosmopedia(
        ["Some web text about volcanoes and how they erupt."], model=stub_model, progress=False
    )
    assert len(df) == 0 and df.attrs["forgekit"]["filtered"] == {"too_short": 1}


def test_plain_strings_styles_limit_and_seeds_on_a_scripted_model(tmp_path):
    model = ScriptedModel([(r"blog post", LONG_TEXT), (r"wikiHow", "Too short.")])
    texts = ["Bees pollinate flowers.", "Tides follow the moon.", "Rust is iron oxide."]
    df = cosmopedia(texts, model=model, style="blogpost", n=2, progress=False)
    assert list(df["output"]) == [LONG_TEXT] * 2  # n=2: the third extract is not written
    assert [m["seed_extract"] for m in df["metadata"]] == texts[:2]
    assert all(p.startswith("Write an engaging blog post") for p in df["input"])  # the prompt
    seeds = [call["params"]["seed"] for call in model.calls]
    assert len(seeds) == 2 and seeds[0] != seeds[1]  # each document its own seed
    src = tmp_path / "web.jsonl"
    src.write_text('{"text": "Bees pollinate flowers.", "topic": "farming"}\n')
    args = parse(["cosmopedia", "-i", str(src), "--style", "wikihow,blogpost", "--no-progress"])
    assert args.style == ["wikihow", "blogpost"]
    args.model = model
    both = execute(args)  # the wikiHow document is too short: dropped and counted
    assert [m["style"] for m in both["metadata"]] == ["blogpost"]
    assert (
        both.iloc[0]["topic"] == "farming"
        and "Focus on this topic: farming." in both.iloc[0]["input"]
    )
    assert both.attrs["forgekit"]["filtered"] == {"too_short": 1}


def test_errors_name_the_problem(stub_model):
    with pytest.raises(ConfigError, match="style.*'essay'.*choose from wikihow"):
        cosmopedia(["x"], model=stub_model, style="essay")
    with pytest.raises(ConfigError, match="seed extract 1 has no text in column 'text'"):
        cosmopedia([{"text": "fine"}, {"body": "elsewhere"}], model=stub_model)
    with pytest.raises(ConfigError, match="max_chars must be >= 50, got 10"):
        cosmopedia(["x"], model=stub_model, max_chars=10)


def test_cli(stub, stub_model, tmp_path, capsys):
    assert cli_main(["cosmopedia", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--column", "--style", "--audience", "--topic", "--max-chars", "--min-words"):
        assert option in text
    stub.configure(rules=[{"match": "textbook", "content": LONG_TEXT}])
    src = tmp_path / "web.jsonl"
    src.write_text('{"text": "Bees pollinate flowers."}\n')
    out = tmp_path / "o.jsonl"
    assert (
        cli_main(
            [
                "cosmopedia",
                "-i",
                str(src),
                "-m",
                "stub",
                "--style",
                "textbook_academic",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert read_jsonl(out)[0]["metadata"]["style"] == "textbook_academic"


@pytest.mark.model
def test_cosmopedia_on_local_model():
    df = cosmopedia(
        ["Honey bees live in colonies with one queen and many workers."],
        model="local",
        style="blogpost",
        min_words=5,
        params={"max_tokens": 32},
        progress=False,
    )
    assert len(df) == 1
    assert len(df.iloc[0]["output"].split()) >= 5
    assert df.iloc[0]["lineage"]["model"] == "local"


def test_a_run_file_takes_one_style_as_a_string(tmp_path):
    from forgekit.runfile import load_plan

    (tmp_path / "web.jsonl").write_text('{"text": "Bees pollinate flowers."}\n')
    config = tmp_path / "c.yaml"
    config.write_text("method: cosmopedia\ninput: web.jsonl\nparams: {style: blogpost, n: 1}\n")
    df = load_plan(config)(model=ScriptedModel([(r"blog post", LONG_TEXT)]), progress=False)
    assert [m["style"] for m in df["metadata"]] == ["blogpost"]
