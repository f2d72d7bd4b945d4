"""vote and cascade: label normalization, tie policies, every vote kept, routing to stage 2.

Voters that must disagree are separate stub servers (one OpenAI-compatible endpoint per
profile), each scripted with its own answers."""

import pytest

from forgekit.cli import execute, parse
from forgekit.errors import ConfigError
from forgekit.methods import cascade, vote
from forgekit.methods.parsing import LabelSet, majority
from forgekit.models.scripted import ScriptedModel
from tests.conftest import StubServer, write_profile

QUIET = {"progress": False}


@pytest.fixture(scope="module")
def extra_servers():
    servers = [StubServer(), StubServer()]
    yield servers
    for server in servers:
        server.close()


@pytest.fixture
def voters(stub, extra_servers, tmp_path, monkeypatch):
    """Profiles a, b, c on three different stub servers; returns {name: server}."""
    servers = {"a": stub, "b": extra_servers[0], "c": extra_servers[1]}
    for name, server in servers.items():
        server.configure()
        write_profile(tmp_path, monkeypatch, server.url, name=name, timeout=2.0)
    return servers


def script(server, answers):
    server.configure(rules=[{"match": match, "content": content} for match, content in answers])


def total_requests(servers):
    return sum(s.stats().get("requests", 0) for s in servers.values())


def test_label_normalization_aliases_and_match_modes():
    labels = LabelSet(["positive", "negative", "very hard", "hard"], aliases={"pos": "positive"})
    assert labels.parse("  Positive. ") == "positive"
    assert labels.parse("**NEGATIVE**") == "negative"
    assert labels.parse("pos") == "positive"
    assert labels.parse("The sentiment is positive!") == "positive"  # one label as a word
    assert labels.parse("positive or negative") is None  # two labels: invalid
    assert labels.parse("Very  Hard") == "very hard"
    assert labels.parse("it is very hard") == "very hard"  # not also "hard"
    assert labels.parse("neutral") is None
    assert labels.parse("") is None
    exact = LabelSet(["positive", "negative"], match="exact")
    assert exact.parse("Positive.") == "positive"
    assert exact.parse("It is positive") is None
    mapped = LabelSet({"yes": ["y", "yeah"], "no": ["n"]})
    assert mapped.parse("Yeah") == "yes" and mapped.parse("N.") == "no"
    free = LabelSet()
    assert free.parse("Paris, France.") == free.parse("paris france") == "paris france"
    with pytest.raises(ConfigError, match="not one of the labels"):
        LabelSet(["a"], aliases={"x": "b"})
    with pytest.raises(ConfigError, match="would mean both"):
        LabelSet({"a": ["z"], "b": ["z"]})


def votes_of(*labels):
    return [{"voter": name, "label": label} for name, label in zip("abcd", labels)]


def test_majority_and_every_tie_policy():
    winner, tally = majority(votes_of("x", "x", "y"), "none")
    assert winner == "x" and tally["agreement"] == 0.6667 and not tally["tie"]
    tied = votes_of("x", "y", None)
    assert majority(tied, "none")[0] is None
    assert majority(tied, "none")[1] == {
        "counts": {"x": 1, "y": 1},
        "valid": 2,
        "invalid": 1,
        "tie": True,
        "tied": ["x", "y"],
        "agreement": 0.3333,
        "decided_by": "tie: none (no winner)",
    }
    assert majority(tied, "first")[0] == "x"
    assert majority(tied, "prefer:b")[0] == "y"
    assert majority(tied, "prefer:c")[0] is None  # c's vote was invalid, not among the tied
    picks = {majority(tied, "random", rng_seed=s)[0] for s in range(20)}
    assert picks == {"x", "y"}  # both can win a random tie-break ...
    assert majority(tied, "random", rng_seed=7) == majority(
        tied, "random", rng_seed=7
    )  # ... reproducibly
    assert majority(votes_of(None, None), "first")[0] is None


def test_vote_across_three_models_keeps_every_vote(voters):
    script(voters["a"], [("film", "Positive."), ("soup", "positive")])
    script(voters["b"], [("film", "positive"), ("soup", "NEGATIVE")])
    script(voters["c"], [("film", "negative"), ("soup", "I cannot tell")])
    data = [{"id": "r1", "text": "Great film"}, {"id": "r2", "text": "Cold soup"}]
    common = dict(
        user="Sentiment of: {{ text }}",
        models=["a", "b", "c"],
        labels=["positive", "negative"],
        **QUIET,
    )
    df = vote(data, **common)
    film, soup = df.to_dict("records")
    assert film["output"] == "positive"
    meta = film["metadata"]
    assert meta["counts"] == {"positive": 2, "negative": 1}
    assert meta["agreement"] == 0.6667 and meta["tie_policy"] == "none"
    assert [(v["voter"], v["raw"], v["label"]) for v in meta["votes"]] == [
        ("a", "Positive.", "positive"),
        ("b", "positive", "positive"),
        ("c", "negative", "negative"),
    ]
    assert soup["output"] == "" and soup["metadata"]["winner"] is None
    assert soup["metadata"]["tie"] and soup["metadata"]["invalid"] == 1
    assert film["lineage"]["voters"] == ["a", "b", "c"]
    assert film["lineage"]["parent_id"] == "r1"
    assert df.attrs["forgekit"]["ties"] == 1 and df.attrs["forgekit"]["invalid_votes"] == 1
    # Another tie policy is another job: it resolves the tie; the answers come from the cache.
    before = total_requests(voters)
    preferred = vote(data, tie="prefer:b", **common)
    assert list(preferred["output"]) == ["positive", "negative"]
    assert total_requests(voters) == before


def test_vote_one_model_at_several_temperatures(stub, stub_model):
    df = vote(
        [{"input": "Capital of France?"}], model=stub_model, temperatures=[0.0, 0.5, 1.0], **QUIET
    )
    meta = df["metadata"].iloc[0]
    assert [v["voter"] for v in meta["votes"]] == ["stub@T0", "stub@T0.5", "stub@T1"]
    assert [v["temperature"] for v in meta["votes"]] == [0.0, 0.5, 1.0]
    assert meta["agreement"] == 1.0  # free-form answers, all the same after normalization
    assert df["output"].iloc[0] == "echo: Capital of France?"
    seeds = vote([{"input": "x"}], model=stub_model, n_votes=3, **QUIET)
    assert [v["seed"] for v in seeds["metadata"].iloc[0]["votes"]] == [0, 1, 2]


def test_vote_configuration_errors_send_nothing(stub, stub_model):
    with pytest.raises(ConfigError, match="at least 2 voters"):
        vote([{"input": "x"}], model=stub_model, **QUIET)
    with pytest.raises(ConfigError, match="no voter named 'zed'"):
        vote([{"input": "x"}], model=stub_model, n_votes=2, tie="prefer:zed", **QUIET)
    with pytest.raises(ConfigError, match="tie must be one of"):
        vote([{"input": "x"}], model=stub_model, n_votes=2, tie="coin", **QUIET)
    with pytest.raises(ConfigError, match="variable 'text'"):
        vote([{"input": "x"}], user="{{ text }}", model=stub_model, n_votes=2, **QUIET)
    assert stub.stats().get("requests", 0) == 0


def test_cascade_routes_only_the_configured_labels(voters):
    script(voters["a"], [("Rate: integrals", "Hard."), ("Rate: addition", "easy")])
    script(voters["b"], [("Second look", "medium")])
    data = [{"id": "q1", "q": "integrals"}, {"id": "q2", "q": "addition"}]
    df = cascade(
        data,
        user="Rate: {{ q }}",
        model="a",
        labels=["easy", "medium", "hard"],
        route=["hard"],
        stage2_user="Second look at {{ q }} (first said {{ stage1_label }})",
        stage2_model="b",
        **QUIET,
    )
    hard, easy = df.to_dict("records")
    assert hard["output"] == "medium"
    assert hard["metadata"]["routed"] and hard["metadata"]["final_stage"] == 2
    assert (
        hard["metadata"]["stage1"]["raw"] == "Hard."
        and hard["metadata"]["stage1"]["label"] == "hard"
    )
    assert hard["metadata"]["stage2"]["model"] == "b"
    assert hard["metadata"]["stage2"]["prompt"] == "Second look at integrals (first said hard)"
    assert hard["lineage"]["model"] == ["a", "b"] and hard["lineage"]["route"] == ["hard"]
    assert easy["output"] == "easy" and easy["metadata"]["stage2"] is None
    assert easy["lineage"]["model"] == ["a"]
    assert df.attrs["forgekit"]["routed"] == 1
    assert voters["b"].stats()["requests"] == 1  # only the routed item reached stage 2


def test_cascade_errors(stub, stub_model):
    with pytest.raises(ConfigError, match="route: 'hardest' is not one of the labels"):
        cascade(
            [{"input": "x"}],
            model=stub_model,
            labels=["easy", "hard"],
            route=["hardest"],
            stage2_model=stub_model,
            **QUIET,
        )
    with pytest.raises(ConfigError, match="repeat stage 1"):
        cascade([{"input": "x"}], model=stub_model, route=["x"], **QUIET)
    with pytest.raises(ConfigError, match="stage2_user template: variable 'missing'"):
        cascade(
            [{"input": "x"}],
            model=stub_model,
            route=["x"],
            stage2_user="{{ stage1 }} {{ missing }}",
            **QUIET,
        )
    assert stub.stats().get("requests", 0) == 0


def test_vote_models_are_resolved_once_and_exclude_model(monkeypatch):
    made = {}

    def fake_get_model(name):
        made[name] = ScriptedModel([(r"sky", "Blue." if name == "a" else "grey")], name=name)
        return made[name]

    def engine_must_not_resolve(name):
        raise AssertionError(f"the engine resolved {name!r} again")

    monkeypatch.setattr("forgekit.models.get_model", fake_get_model)  # via ModelPool
    monkeypatch.setattr("forgekit.engine.core.get_model", engine_must_not_resolve)
    df = vote([{"input": "The sky?"}], models=["a", "b", "a"], tie="first", **QUIET)
    assert sorted(made) == ["a", "b"]  # one object per name; the first is the main model
    votes = df["metadata"].iloc[0]["votes"]
    assert [(v["voter"], v["model"], v["label"]) for v in votes] == [
        ("a", "a", "blue"),
        ("b", "b", "grey"),
        ("a#2", "a", "blue"),
    ]
    assert df["output"].iloc[0] == "Blue."  # free-form: the first raw answer of the winner
    with pytest.raises(ConfigError, match="either model= or models=, not both"):
        vote([{"input": "x"}], model="a", models=["b", "c"], **QUIET)


def test_vote_command_line_aliases_add_up_when_repeated(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text('{"input": "a great film"}\n{"input": "an awful soup"}\n')
    model = ScriptedModel([(r"great", "pos"), (r"awful", "NEG!")])
    flags = "--votes 2 --labels positive negative --alias pos=positive --alias neg=negative"
    args = parse(["vote", "-i", str(data), "--no-progress", *flags.split()])
    assert args.aliases == ["pos=positive", "neg=negative"]
    args.model = model  # a Model object goes through the CLI handler unchanged
    df = execute(args)
    assert list(df["output"]) == ["positive", "negative"]
    assert len(model.calls) == 4
    with pytest.raises(ConfigError, match="--alias 'pos': expected ALIAS=LABEL"):
        vote([{"input": "x"}], n_votes=2, aliases=["pos"], model=model, **QUIET)
    assert len(model.calls) == 4


def test_cascade_stage2_params_default_to_stage_1s():
    model = ScriptedModel([(r"Rate", "hard"), (r"Again", "medium")])
    df = cascade(
        [{"input": "x"}],
        user="Rate {{ input }}",
        labels=["easy", "medium", "hard"],
        route=["hard"],
        stage2_user="Again {{ input }}",
        params={"max_tokens": 9},
        stage2_params={"temperature": 0.5},
        seed=3,
        model=model,
        **QUIET,
    )
    first, second = (call["params"] for call in model.calls)
    assert (first["max_tokens"], first["temperature"], first["seed"]) == (9, 0.0, 3)
    assert (second["max_tokens"], second["temperature"], second["seed"]) == (9, 0.5, 3)
    assert df["output"].iloc[0] == "medium" and df["metadata"].iloc[0]["final_stage"] == 2


@pytest.mark.model
def test_vote_and_cascade_on_the_embedded_model():
    data = [{"id": "e1", "input": "Is the sun hot? Answer yes or no."}]
    df = vote(
        data,
        model="local",
        temperatures=[0.0, 0.9],
        labels=["yes", "no"],
        params={"max_tokens": 8},
        tie="first",
        **QUIET,
    )
    meta = df["metadata"].iloc[0]
    assert len(meta["votes"]) == 2 and all(v["model"] == "local" for v in meta["votes"])
    assert all(v["raw"] for v in meta["votes"])
    assert meta["valid"] + meta["invalid"] == 2
    assert df["output"].iloc[0] in ("yes", "no", "")
    out = cascade(
        data,
        model="local",
        labels=["yes", "no"],
        route=["yes", "no"],
        stage2_user="Answer again with yes or no: {{ input }}",
        params={"max_tokens": 8},
        **QUIET,
    )
    record = out.to_dict("records")[0]
    assert record["metadata"]["stage1"]["raw"]
    assert record["metadata"]["routed"] == (record["metadata"]["stage1"]["label"] is not None)
    assert record["lineage"]["method"] == "cascade" and record["lineage"]["parent_id"] == "e1"
