"""Self-Instruct: list parsing, the DESIGN §4 filters, the CJK-aware pruned ROUGE-L pool
(exactly the all-pairs answer, far fewer LCS), and end-to-end runs on a scripted stub and on
the embedded model."""

import random
import re

import pytest

from forgekit.cli import main as cli_main
from forgekit.errors import ConfigError, StoreError
from forgekit.evaluate.rouge import RougePool, lcs_length, lcs_table, naive_filter
from forgekit.methods import self_instruct
from forgekit.methods.parsing import parse_numbered_list
from forgekit.methods.self_instruct import (
    default_seed_path,
    instruction_problem,
    load_seed_tasks,
    looks_like_classification,
)
from forgekit.models.scripted import ScriptedModel
from tests.conftest import read_jsonl


def stock_rouge_tokenize(text: str) -> list[str]:
    """rouge_score.tokenize.tokenize (v0.1.2) without a stemmer: lowercase, every run of
    characters outside [a-z0-9] becomes a space, keep only [a-z0-9]+ tokens."""
    text = re.sub(r"[^a-z0-9]+", " ", text.lower())
    return [t for t in re.split(r"\s+", text) if re.match(r"^[a-z0-9]+$", t)]


# --- parsing -------------------------------------------------------------------------------


def test_numbered_lists_in_every_common_shape():
    text = (
        "Sure! Here are new tasks:\n\n"
        "4. Write a limerick about a forgetful robot.\n"
        "5) Explain how vaccines train the immune system,\n"
        "   using an analogy a child would follow.\n"
        "6、列出三种适合在阳台种植的蔬菜。\n"
        "（7）把这段话翻译成英文。\n"
        "Task 8: Compare renting and buying a home in 2020. Be concrete.\n"
        "**9.** Suggest a name for a chess club.\n"
        "１０．用一句话解释什么是通货膨胀。\n"
        "\n"
        "I hope these tasks are useful!"
    )
    assert parse_numbered_list(text) == [
        "Write a limerick about a forgetful robot.",
        "Explain how vaccines train the immune system, using an analogy a child would follow.",
        "列出三种适合在阳台种植的蔬菜。",
        "把这段话翻译成英文。",
        "Compare renting and buying a home in 2020. Be concrete.",
        "Suggest a name for a chess club.",
        "用一句话解释什么是通货膨胀。",
    ]
    # A number that does not follow on is text, not a new item; decimals are not markers.
    assert parse_numbered_list("1. Buy 1.5 kg of rice\n3 eggs are enough\n2. Cook it") == [
        "Buy 1.5 kg of rice 3 eggs are enough",
        "Cook it",
    ]
    assert parse_numbered_list("- first idea\n- second idea") == ["first idea", "second idea"]
    assert parse_numbered_list("no list here at all") == []


# --- filters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "language", "reason"),
    [
        ("Name three rivers.", "en", "too_short"),  # 3 words
        (" ".join(["word"] * 151), "en", "too_long"),
        ("Describe the image of a sunset over the sea.", "en", "blacklisted_word"),
        ("Plot the monthly sales figures for last year.", "en", "blacklisted_word"),
        ("Tell me how to go to the nearest train station.", "en", "blacklisted_word"),
        ("Summarize the attached files in two sentences.", "en", "blacklisted_word"),
        ("Write a program that prints the first ten primes.", "en", "write_a_program"),
        ('"Explain why leaves change colour in autumn."', "en", "starts_with_punctuation"),
        ("Éxplain why leaves change colour in autumn.", "en", "non_ascii_start"),
        ("写诗", "zh", "too_short"),
        ("请描述这张图片中的人物和背景。", "zh", "blacklisted_word"),
        ("编写一个程序计算斐波那契数列。", "zh", "write_a_program"),
        ("“解释一下为什么秋天树叶会变黄。”", "zh", "starts_with_punctuation"),
        ("Explain why autumn leaves turn yellow and red.", "zh", "wrong_language"),
        ("Explain why autumn leaves turn yellow and red.", "en", None),
        ("Paragraph structure: explain how to write a topic sentence.", "en", None),  # no "graph"
        ("解释一下为什么秋天树叶会变黄。", "zh", None),
    ],
)
def test_instruction_filters(text, language, reason):
    assert instruction_problem(text, language) == reason


def test_classification_heuristic_and_bundled_seeds():
    assert looks_like_classification("Classify the email as spam or not spam.")
    assert looks_like_classification("判断下面的句子是否通顺。")
    assert not looks_like_classification("Write a short story about a lighthouse keeper.")
    for language in ("en", "zh"):
        seeds = load_seed_tasks(language=language)
        assert len(seeds) == 20
        assert 4 <= sum(s["is_classification"] for s in seeds) <= 8
        assert all(s["instruction"] and s["output"] for s in seeds)
        # the bundled seeds pass the filters they impose on generated tasks
        assert [
            s["instruction"] for s in seeds if instruction_problem(s["instruction"], language)
        ] == []
    assert default_seed_path("zh").is_file()


def test_bad_seed_file_names_file_and_task(tmp_path):
    bad = tmp_path / "seeds.jsonl"
    bad.write_text('{"instruction": "Explain tides to a child."}\n{"input": "x"}\n')
    with pytest.raises(ConfigError, match=r"seeds.jsonl: seed task 2 has no 'instruction'"):
        load_seed_tasks(bad)
    with pytest.raises(ConfigError, match="num_examples=3 needs at least"):
        self_instruct(1, model="local", seed_tasks=[{"instruction": "Explain tides."}])


# --- the similarity filter -----------------------------------------------------------------


def test_chinese_similarity_needs_cjk_tokens_the_stock_tokenizer_scores_zero():
    a = "请用三句话解释为什么天空是蓝色的。"
    b = "请用三句话解释一下为什么天空是蓝色的。"  # the same task, one word added
    # The stock rouge_score tokenizer keeps only [a-z0-9]: a Chinese sentence has no tokens,
    # so ROUGE-L is 0 and the near-duplicate would pass a 0.7 filter.
    assert stock_rouge_tokenize(a) == [] and stock_rouge_tokenize(b) == []
    stock = RougePool(0.7, tokenizer=stock_rouge_tokenize)
    stock.add(a)
    assert stock.most_similar(b) is None  # what Alpaca's code would do: keeps both
    # Per-character tokens: LCS 16 of 16/18 characters, F1 = 32/34 = 0.94 -> filtered.
    pool = RougePool(0.7)
    assert pool.offer(a) is None
    match = pool.offer(b)
    assert match is not None and match.index == 0 and match.score == pytest.approx(32 / 34)
    assert len(pool) == 1
    # A different Chinese task stays; so does one with jieba tokens.
    assert pool.offer("列出三种适合初学者的室内植物，并说明养护要点。") is None
    jieba_pool = RougePool(0.7, tokenizer="jieba")
    jieba_pool.add(a)
    assert jieba_pool.most_similar(b).score > 0.7


def _synthetic(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(400)]
    weights = [1 / (i + 1) for i in range(400)]
    texts: list[str] = []
    for _ in range(count):
        if texts and rng.random() < 0.35:  # a near-duplicate of an earlier text
            words = rng.choice(texts).split()
            for _ in range(rng.randint(0, 4)):
                if rng.random() < 0.5 and len(words) > 1:
                    words.pop(rng.randrange(len(words)))
                else:
                    words.insert(rng.randrange(len(words) + 1), rng.choice(vocab))
            texts.append(" ".join(words))
        else:
            texts.append(" ".join(rng.choices(vocab, weights, k=rng.randint(1, 30))))
    return texts


@pytest.mark.parametrize("threshold", [0.7, 0.5, 0.9])
def test_pruned_pool_keeps_exactly_what_all_pairs_keeps(threshold):
    texts = _synthetic(400, seed=int(threshold * 10))
    pool = RougePool(threshold)
    pruned = [pool.offer(t) is None for t in texts]
    assert pruned == naive_filter(texts, threshold, lcs=lcs_length)
    assert 0 < sum(pruned) < len(texts)  # the data has duplicates to remove
    pairs = sum(range(sum(pruned)))
    assert pool.lcs_computed < pairs / 20  # pruning, not all pairs


def test_lcs_implementations_agree():
    rng = random.Random(3)
    for _ in range(200):
        a = rng.choices("abcde", k=rng.randint(0, 12))
        b = rng.choices("abcde", k=rng.randint(0, 12))
        assert lcs_table(a, b) == lcs_length(a, b)


# --- end to end on the scripted stub -------------------------------------------------------

TASK_LIST = (
    "4. Explain how a refrigerator keeps food cold.\n"
    "5. Classify the animal as a mammal, bird or reptile.\n"
    "6. Describe the picture of a cat.\n"  # blacklisted
    "7. Write a program to reverse a string.\n"  # "Write a program"
    "8. Explain how a refrigerator keeps the food cold.\n"  # ROUGE-L > 0.7 to 4.
    "9. Suggest a weekend itinerary for a first visit to Lisbon.\n"
    "10. Is the sentence sarcastic or sincere?\n"
    "11. Give three tips for writing a clear cover letter."
)


def _script(stub, task_list=TASK_LIST):
    stub.configure(
        rules=[
            {"match": r"Come up with \d+ new tasks", "content": task_list},
            # the task under judgment comes last, right before `Classification:"` (JSON)
            {
                "match": r'(mammal, bird or reptile\.|sarcastic or sincere\?)\\nClassification:"',
                "content": "Yes",
            },
            {"match": r"Classification:\"", "content": "No"},
            {
                "match": r"classification task\. Pick",
                "content": "Class label: mammal\nInput: a dolphin",
            },
            {
                "match": r"Write one example",
                "content": "Input: None\nOutput: A short, useful answer.",
            },
        ]
    )


def test_self_instruct_on_stub_filters_and_orders_instances(stub, stub_model, tmp_path):
    _script(stub)
    out = tmp_path / "si.jsonl"
    df = self_instruct(4, model=stub_model, out=out, progress=False, concurrency=1)
    info = df.attrs["forgekit"]
    assert len(df) == 4
    # The stub answers every prompt with the same list: the filters see it once per prompt;
    # item 8 is similar to item 4, and every later echo of the list is similar to the pool.
    prompts = info["pool"]["prompts"]
    assert prompts > 1
    assert info["filtered"]["blacklisted_word"] == prompts
    assert info["filtered"]["write_a_program"] == prompts
    assert info["filtered"]["similar"] == 1 + 6 * (prompts - 1)
    assert info["pool"]["kept_instructions"] == 5
    kept = [m["instruction"] for m in df["metadata"]]
    assert kept == [
        "Explain how a refrigerator keeps food cold.",
        "Classify the animal as a mammal, bird or reptile.",
        "Suggest a weekend itinerary for a first visit to Lisbon.",
        "Is the sentence sarcastic or sincere?",
    ]
    by_task = {m["instruction"]: (m, o) for m, o in zip(df["metadata"], df["output"])}
    cls_meta, cls_output = by_task["Classify the animal as a mammal, bird or reptile."]
    assert cls_meta["is_classification"] and cls_meta["generation_order"] == "output-first"
    assert cls_meta["classification_source"] == "llm"
    assert cls_output == "mammal" and cls_meta["instance_input"] == "a dolphin"
    free_meta, free_output = by_task["Explain how a refrigerator keeps food cold."]
    assert not free_meta["is_classification"] and free_meta["generation_order"] == "input-first"
    assert free_output == "A short, useful answer." and free_meta["instance_input"] == ""
    row = df.iloc[1]
    assert row["input"] == "Classify the animal as a mammal, bird or reptile.\n\na dolphin"
    assert row["lineage"]["method"] == "self_instruct" and row["lineage"]["parent_id"]
    # the generation prompt showed 3 seed tasks and asked for a numbered list
    batches = read_jsonl(tmp_path / "si.instructions.jsonl")
    shown = re.findall(r"^(\d)\. (.+)$", batches[0]["input"], re.MULTILINE)
    assert [number for number, _ in shown] == ["1", "2", "3"]
    seeds = {s["instruction"] for s in load_seed_tasks()}
    assert all(text in seeds for _, text in shown)
    assert "Come up with 8 new tasks" in batches[0]["input"]
    assert batches[0]["input"].endswith("numbered list, starting at 4.")
    # both stages were stored; a re-run resumes from them without a request
    assert batches[0]["metadata"]["candidates"][0] == "Explain how a refrigerator keeps food cold."
    assert len(read_jsonl(out)) == 4
    before = stub.stats()["requests"]
    again = self_instruct(4, model=stub_model, out=out, progress=False, cache=False)
    assert stub.stats()["requests"] == before
    assert list(again["id"]) == list(df["id"])
    # without `out`, the response cache makes the same call free too
    self_instruct(4, model=stub_model, progress=False)
    cached = stub.stats()["requests"]
    self_instruct(4, model=stub_model, progress=False)
    assert stub.stats()["requests"] == cached


def test_self_instruct_budget_covers_both_stages(stub, stub_model):
    _script(stub)
    df = self_instruct(4, model=stub_model, progress=False, max_requests=3, concurrency=1)
    info = df.attrs["forgekit"]
    assert stub.stats()["requests"] <= 3
    assert info["status"] == "stopped"


def test_self_instruct_chinese_on_stub(stub, stub_model):
    stub.configure(
        rules=[
            {
                "match": "请再想出",
                "content": "4. 请用三句话解释为什么天空是蓝色的。\n"
                "5. 请用三句话解释一下为什么天空是蓝色的。\n"  # near-duplicate: filtered
                "6. 为一次三天的杭州旅行安排行程。\n"
                "7. Explain the water cycle in simple words.",  # wrong language
            },
            {"match": '是否分类："', "content": "否"},
            {
                "match": "请为最后一个任务写一个示例",
                "content": "输入：无\n输出：这是一个示例回答。",
            },
        ]
    )
    df = self_instruct(2, model=stub_model, language="zh", progress=False, max_prompts=2)
    assert [m["instruction"] for m in df["metadata"]] == [
        "请用三句话解释为什么天空是蓝色的。",
        "为一次三天的杭州旅行安排行程。",
    ]
    assert set(df["output"]) == {"这是一个示例回答。"}
    filtered = df.attrs["forgekit"]["filtered"]
    assert filtered["similar"] >= 1 and filtered["wrong_language"] >= 1


def test_cli_help_and_run(stub, stub_model, tmp_path, capsys):
    assert cli_main(["self-instruct", "--help"]) == 0
    text = capsys.readouterr().out
    for option in (
        "--seed-tasks",
        "--language",
        "--num-examples",
        "--similarity-threshold",
        "--tokenizer",
        "--classification",
        "--max-prompts",
        "--out",
        "--max-cost",
    ):
        assert option in text
    _script(stub)
    out = tmp_path / "cli.jsonl"
    code = cli_main(
        [
            "self-instruct",
            "-n",
            "2",
            "-m",
            "stub",
            "--classification",
            "heuristic",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0 and len(read_jsonl(out)) == 2


def scripted(task_list=TASK_LIST) -> ScriptedModel:
    """The stub script above, in process."""
    return ScriptedModel(
        [
            (r"Come up with \d+ new tasks", task_list),
            (r"(mammal, bird or reptile\.|sarcastic or sincere\?)\nClassification:$", "Yes"),
            (r"Classification:$", "No"),
            (r"classification task\. Pick", "Class label: mammal\nInput: a dolphin"),
            (r"Write one example", "Input: None\nOutput: A short, useful answer."),
        ]
    )


def test_counts_describe_the_records_and_spend_covers_both_stages():
    model = scripted()
    df = self_instruct(3, model=model, progress=False)
    info = df.attrs["forgekit"]
    lists = sum("Come up with" in call["prompt"] for call in model.calls)
    assert lists == info["pool"]["prompts"] > 0
    assert info["stats"]["ok"] == len(df) == 3  # the task lists are not records of the result
    assert info["stats"]["requests"] == len(model.calls)  # ... but their requests are spent
    assert info["stats_all_stages"]["ok"] == len(df) + lists
    assert info["instructions_out"] is None and info["status"] == "completed"


def test_a_prompt_keeps_its_id_however_the_rounds_split(tmp_path):
    model = scripted()
    out = tmp_path / "si.jsonl"
    # Rounds [0, 2) and [2, 3); a later call with a larger n asks for [0, 4) in one round.
    first = self_instruct(4, model=model, out=out, max_prompts=3, progress=False)
    assert first.attrs["forgekit"]["pool"]["prompts"] == 3
    more = self_instruct(8, model=model, out=out, cache=False, progress=False)
    batches = read_jsonl(tmp_path / "si.instructions.jsonl")
    indexes = [b["metadata"]["prompt_index"] for b in batches]
    assert sorted(indexes) == list(range(more.attrs["forgekit"]["pool"]["prompts"]))
    asked = [c["prompt"] for c in model.calls if "Come up with" in c["prompt"]]
    assert len(asked) == len(indexes)  # prompts 0-2 were resumed, never asked again
    assert list(more["id"][: len(first)]) == list(first["id"])


def test_overwrite_moves_each_file_aside_once(tmp_path):
    model = scripted()
    out = tmp_path / "si.jsonl"
    first = self_instruct(3, model=model, out=out, progress=False)
    with pytest.raises(StoreError, match="different job"):
        self_instruct(3, model=model, out=out, seed=1, progress=False)
    again = self_instruct(3, model=model, out=out, seed=1, overwrite=True, progress=False)
    (old_records,) = tmp_path.glob("si.jsonl.*.bak")
    (old_lists,) = tmp_path.glob("si.instructions.jsonl.*.bak")
    assert [r["id"] for r in read_jsonl(old_records)] == list(first["id"])
    assert [r["id"] for r in read_jsonl(out)] == list(again["id"])
    prompts = again.attrs["forgekit"]["pool"]["prompts"]
    assert len(read_jsonl(tmp_path / "si.instructions.jsonl")) == prompts
    assert len(read_jsonl(old_lists)) == first.attrs["forgekit"]["pool"]["prompts"]


def test_the_seed_tasks_content_is_the_identity_not_their_path(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    tasks = ["Explain tides to a child.", "Name three uses of copper.", "Describe a sunrise."]
    seeds.write_text("".join(f'{{"instruction": "{t}"}}\n' for t in tasks))
    out = tmp_path / "si.jsonl"
    model = scripted()
    self_instruct(1, model=model, seed_tasks=str(seeds), out=out, progress=False)
    self_instruct(
        1, model=model, seed_tasks=[{"instruction": t} for t in tasks], out=out, progress=False
    )
    seeds.write_text(seeds.read_text().replace("copper", "silver"))
    with pytest.raises(StoreError, match="different job"):
        self_instruct(1, model=model, seed_tasks=str(seeds), out=out, progress=False)


# --- the embedded model --------------------------------------------------------------------


@pytest.mark.model
def test_self_instruct_on_local_model(tmp_path):
    out = tmp_path / "local.jsonl"
    df = self_instruct(
        1,
        model="local",
        classification="heuristic",
        num_tasks=3,
        max_prompts=1,
        instruction_params={"max_tokens": 64},
        instance_params={"max_tokens": 32},
        out=out,
        progress=False,
    )
    batches = read_jsonl(tmp_path / "local.instructions.jsonl")
    assert len(batches) == 1 and all(b["output"].strip() for b in batches)
    pool = df.attrs["forgekit"]["pool"]
    assert pool["prompts"] == len(batches)
    assert (
        pool["kept_instructions"]
        + sum(v for k, v in df.attrs["forgekit"]["filtered"].items() if k != "instance_unparsable")
        == pool["candidates"]
    )
    for record in read_jsonl(out):
        assert record["output"] and record["metadata"]["instruction"]
        assert record["lineage"]["model"] == "local"
