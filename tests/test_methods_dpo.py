"""dpo: rating parsing, pair selection (ties, margins, random rejected), unparsable ratings
dropped or re-asked, everything kept in the record."""

import pytest

from forgekit.errors import ConfigError
from forgekit.methods import dpo
from forgekit.methods.dpo import select_pair
from forgekit.methods.parsing import item_rng, parse_rating
from forgekit.models.scripted import ScriptedModel
from tests.conftest import StubServer, write_profile

QUIET = {"progress": False}


def test_parse_rating_variants():
    assert parse_rating("Rating: 4\nRationale: clear and correct.", 5) == (
        4.0,
        "clear and correct.",
        None,
    )
    assert parse_rating("**Rating:** 3/5\n**Rationale:** partly right", 5)[:2] == (
        3.0,
        "partly right",
    )
    assert parse_rating("Score - 2 out of 5. Too short.", 5)[0] == 2.0
    assert parse_rating("5", 5)[0] == 5.0
    rating, rationale, problem = parse_rating("Rating: 8/10\nRationale: good", 5)
    assert rating is None and "not on the 1-5 scale" in problem and rationale == "good"
    assert "outside 1-5" in parse_rating("Rating: 7", 5)[2]
    assert parse_rating("Rating (1-5): 4", 5)[0] is None  # the scale is not the rating
    assert parse_rating("I liked it a lot", 5) == (
        None,
        None,
        "no 'Rating: N' in the judge's reply",
    )
    assert parse_rating("Rating: 2 - wrong facts", 5)[:2] == (2.0, "wrong facts")


def test_select_pair_rules():
    assert select_pair([5, 2, 3]) == (0, 1, "pair")
    assert select_pair([3, 5, 5, 1]) == (1, 3, "pair")  # earliest of the tied best
    assert select_pair([4, 4, 4]) == (None, None, "tie")
    assert select_pair([4, None, 4]) == (None, None, "tie")
    assert select_pair([4, 3.5], min_margin=1) == (None, None, "margin")
    assert select_pair([4, 3.5], min_margin=0.5) == (0, 1, "pair")
    assert select_pair([5, None, None]) == (None, None, "too_few_rated")
    # random: any response rated lower by at least the margin, reproducibly.
    picks = {
        select_pair([5, 1, 2, 4], rejected="random", min_margin=2, rng=item_rng(s))[1]
        for s in range(30)
    }
    assert picks == {1, 2}
    assert select_pair([5, 4.5], rejected="random", min_margin=1) == (None, None, "margin")


@pytest.fixture(scope="module")
def extra_servers():
    servers = [StubServer(), StubServer()]
    yield servers
    for server in servers:
        server.close()


@pytest.fixture
def responders(stub, extra_servers, tmp_path, monkeypatch):
    """Responders a, b, c on three stub servers; the judge is profile a."""
    servers = {"a": stub, "b": extra_servers[0], "c": extra_servers[1]}
    for name, server in servers.items():
        write_profile(tmp_path, monkeypatch, server.url, name=name, timeout=2.0)
    # Each server answers "<server>-<question>"; the judge (server a) rates by answer.
    ratings = {
        "q1": {
            "a": "Rating: 5\nRationale: complete",
            "b": "Rating: 2\nRationale: wrong",
            "c": "Rating: 3\nRationale: thin",
        },
        "q2": {"a": "Rating: 4", "b": "Rating: 4", "c": "Rating: 4"},  # a tie
        "q3": {"a": "Rating: 4", "b": "Rating: 3", "c": "Rating: 4"},  # margin 1 < 2
        "q4": {"a": "Rating: 5", "b": "It is fine I guess", "c": "Rating: 1"},
    }
    judge_rules = [
        {"match": r"could not be read", "content": "Rating: 3\nRationale: second try"},
        *(
            {"match": rf"#Response#:.{{0,6}}{s}-{q}", "content": text}
            for q, by_server in ratings.items()
            for s, text in by_server.items()
        ),
    ]
    for name, server in servers.items():
        answers = [{"match": rf"Question {q}\b", "content": f"{name}-{q}"} for q in ratings]
        server.configure(rules=(judge_rules if name == "a" else []) + answers)
    return servers


DATA = [{"id": q, "input": f"Question {q}"} for q in ("q1", "q2", "q3", "q4")]


def test_dpo_pairs_ties_margin_and_dropped_unparsable(responders):
    df = dpo(
        DATA,
        k=3,
        models=["a", "b", "c"],
        judge_model="a",
        min_margin=2,
        keep_unpaired=True,
        **QUIET,
    )
    by_id = {r["lineage"]["parent_id"]: r for r in df.to_dict("records")}
    q1 = by_id["q1"]
    assert (q1["chosen"], q1["rejected"]) == ("a-q1", "b-q1")
    meta = q1["metadata"]
    assert (meta["chosen_rating"], meta["rejected_rating"], meta["margin"]) == (5.0, 2.0, 3.0)
    assert (meta["chosen_model"], meta["rejected_model"]) == ("a", "b")
    assert [(r["model"], r["rating"], r["rationale"]) for r in meta["responses"]] == [
        ("a", 5.0, "complete"),
        ("b", 2.0, "wrong"),
        ("c", 3.0, "thin"),
    ]
    assert q1["lineage"]["judge"] == "a" and q1["lineage"]["model"] == ["a", "b", "c"]
    assert by_id["q2"]["metadata"]["pair"] == "tie"
    assert not isinstance(by_id["q2"].get("chosen"), str)  # no pair: the cell is empty (NaN)
    assert by_id["q3"]["metadata"]["pair"] == "margin"
    # q4: b's rating is unreadable and dropped; a (5) vs c (1) still make a pair.
    q4 = by_id["q4"]
    assert (q4["chosen"], q4["rejected"]) == ("a-q4", "c-q4")
    assert q4["metadata"]["responses"][1]["rating"] is None
    assert q4["metadata"]["responses"][1]["problem"].startswith("no 'Rating")
    info = df.attrs["forgekit"]
    assert info["pairs"] == 2 and info["unparsable"] == 1 and info["reasked"] == 0
    assert info["no_pair"] == {"tie": 1, "margin": 1}
    # Without keep_unpaired the tie and the margin case are left out.
    lean = dpo(DATA, k=3, models=["a", "b", "c"], judge_model="a", min_margin=2, **QUIET)
    assert sorted(lean["lineage"].map(lambda lin: lin["parent_id"])) == ["q1", "q4"]


def test_dpo_reasks_unparsable_ratings_once(responders):
    df = dpo(DATA[3:], k=3, models=["a", "b", "c"], judge_model="a", unparsable="reask", **QUIET)
    responses = df["metadata"].iloc[0]["responses"]
    assert [r["reasked"] for r in responses] == [False, True, False]
    assert responses[1]["rating"] == 3.0 and responses[1]["rationale"] == "second try"
    assert df.attrs["forgekit"]["reasked"] == 1 and df.attrs["forgekit"]["unparsable"] == 0


def test_dpo_random_rejected_is_reproducible(responders):
    runs = [
        dpo(
            DATA[:1],
            k=3,
            models=["a", "b", "c"],
            judge_model="a",
            rejected="random",
            min_margin=1,
            **QUIET,
        )
        for _ in range(2)
    ]
    assert runs[0]["rejected"].iloc[0] in ("b-q1", "c-q1")
    assert runs[0]["rejected"].iloc[0] == runs[1]["rejected"].iloc[0]


def test_dpo_option_errors(stub, stub_model):
    for kwargs, message in [
        ({"k": 1}, "k must be >= 2"),
        ({"rejected": "worst"}, r"rejected: unknown \['worst'\]; choose from lowest"),
        ({"unparsable": "ignore"}, r"unparsable: unknown \['ignore'\]; choose from"),
        ({"min_margin": -1}, "min_margin"),
        ({"user": "{{ prompt }}"}, "variable 'prompt'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            dpo([{"input": "x"}], model=stub_model, **kwargs, **QUIET)
    assert stub.stats().get("requests", 0) == 0


def test_dpo_seeds_choose_the_responders_and_seed_the_judge():
    model = ScriptedModel(
        [
            (r"Response#:\s*apple", "Rating: 5"),
            (r"Response#:\s*pear", "Rating: 2"),
            (r"^user: Name", ["apple", "pear"]),
        ]
    )
    df = dpo(
        [{"input": "Name a fruit."}], k=2, seeds=[7, 11], seed=3, model=model, cache=False, **QUIET
    )
    record = df.to_dict("records")[0]
    responses = record["metadata"]["responses"]
    assert [(r["sampler"], r["seed"]) for r in responses] == [
        ("scripted#s7", 7),
        ("scripted#s11", 11),
    ]
    assert (record["chosen"], record["rejected"]) == ("apple", "pear")
    judged = [c["params"] for c in model.calls if "You grade" in c["prompt"]]
    assert [(p["seed"], p["temperature"], p["max_tokens"]) for p in judged] == [(3, 0.0, 256)] * 2


@pytest.mark.model
def test_dpo_on_the_embedded_model():
    df = dpo(
        [{"id": "d1", "input": "Name a fruit."}],
        model="local",
        k=2,
        response_params={"max_tokens": 16},
        judge_params={"max_tokens": 24},
        keep_unpaired=True,
        **QUIET,
    )
    record = df.to_dict("records")[0]
    responses = record["metadata"]["responses"]
    assert len(responses) == 2 and [r["seed"] for r in responses] == [0, 1]
    assert all(r["text"] and r["judge_raw"] and r["model"] == "local" for r in responses)
    assert all(r["rating"] is None or 1 <= r["rating"] <= 5 for r in responses)
    assert record["metadata"]["pair"] in ("pair", "tie", "margin", "too_few_rated")
    assert isinstance(record.get("chosen"), str) == (record["metadata"]["pair"] == "pair")
    assert record["lineage"]["method"] == "dpo" and record["lineage"]["parent_id"] == "d1"
