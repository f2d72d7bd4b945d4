"""The method spec and its one runner, on the scripted in-process model: options checked and
resolved once, the resume identity, stages (whole-call budgets, overwrite once), errors,
and the layering rule that keeps the CLI out of the library."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from forgekit.cli import execute, parse
from forgekit.data.records import make_record
from forgekit.errors import ConfigError, RetryableModelError, StoreError
from forgekit.methods import evol, generate
from forgekit.methods.prompting import chat_messages
from forgekit.methods.registry import unregister
from forgekit.methods.spec import Method, option
from forgekit.models.scripted import ScriptedModel
from tests.conftest import read_jsonl

QUIET = {"progress": False}
ROOT = Path(__file__).resolve().parent.parent


def grow(text: str) -> str:
    """An evolution that always adds something: 'Explain ' + the given instruction."""
    return "Explain " + re.search(r"#Given Prompt#:\n(.+)", text).group(1)


def test_scripted_model_rules_turns_echo_and_errors():
    model = ScriptedModel(
        [
            (r"colour", ["red", "green"]),
            (r"boom", RetryableModelError("503 from the script", status=503)),
            (r"size", lambda text: f"{len(text)} chars"),
        ]
    )
    df = generate(
        [{"q": "colour?"}, {"q": "colour!"}, {"q": "colour."}, {"q": "size"}, {"q": "hi"}],
        user="{{ q }}",
        model=model,
        **QUIET,
    )
    assert list(df["output"]) == ["red", "green", "green", "10 chars", "echo: hi"]
    assert [c["kind"] for c in model.calls] == ["chat"] * 5
    failing = generate([{"q": "boom"}], user="{{ q }}", model=model, max_attempts=2, **QUIET)
    assert len(failing) == 0
    (error,) = failing.attrs["forgekit"]["errors"]
    assert "503 from the script" in error["message"] and "gave up after 2" in error["message"]


def test_options_are_checked_before_anything_runs():
    model = ScriptedModel()
    with pytest.raises(ConfigError, match="option 'user' is required"):
        generate([{"a": 1}], model=model, **QUIET)
    with pytest.raises(TypeError, match="unexpected option.*temprature"):
        generate([{"a": 1}], user="x", temprature=0.3, model=model, **QUIET)
    with pytest.raises(ConfigError, match="samples must be >= 1, got 0"):
        generate([{"a": 1}], user="x", samples=0, model=model, **QUIET)
    with pytest.raises(ValueError, match="params: unknown sampling parameter"):
        generate([{"a": 1}], user="x", params={"temp": 1}, model=model, **QUIET)
    with pytest.raises(ConfigError, match="no input data"):
        evol(None, model=model, **QUIET)
    assert model.calls == []


def test_sampling_defaults_merge_one_way_in_python_and_on_the_command_line():
    model = ScriptedModel()
    df = generate([{"a": 1}], user="{{ a }}", params={"temperature": 0.1}, model=model, **QUIET)
    assert df["lineage"].iloc[0]["params"]["temperature"] == 0.1
    assert df["lineage"].iloc[0]["params"]["max_tokens"] == 512  # the method's default stays
    args = parse(["generate", "--user", "hi", "--max-tokens", "7", "--no-progress"])
    args.model = model  # a Model object goes through the CLI handler unchanged
    cli = execute(args)
    assert cli["lineage"].iloc[0]["params"]["max_tokens"] == 7
    assert cli["lineage"].iloc[0]["params"]["temperature"] == 0.7


def test_models_are_resolved_once_and_the_engine_never_resolves_a_name(monkeypatch):
    made: dict[str, ScriptedModel] = {}

    def fake_get_model(name):
        made[name] = ScriptedModel([(r"#Given Prompt#", grow), (r"First instruction", "Not Equal")])
        made[name].name = name
        return made[name]

    def engine_must_not_resolve(name):
        raise AssertionError(f"the engine resolved {name!r} again")

    monkeypatch.setattr("forgekit.models.get_model", fake_get_model)  # via ModelPool
    monkeypatch.setattr("forgekit.engine.core.get_model", engine_must_not_resolve)
    df = evol(
        [{"input": "Name a fruit."}],
        rounds=1,
        model="main",
        response_model="helper",
        judge_model="helper",
        **QUIET,
    )
    assert sorted(made) == ["helper", "main"]  # "helper" once, for both options
    assert [c["prompt"][:40] for c in made["main"].calls] == [made["main"].calls[0]["prompt"][:40]]
    helper_prompts = [c["prompt"] for c in made["helper"].calls]
    assert helper_prompts[0] == "user: Explain Name a fruit."  # the response
    assert "First instruction" in helper_prompts[1]  # the judge
    assert df["lineage"].iloc[0]["model"] == ["helper", "main"]


def test_the_options_are_the_resume_identity(tmp_path):
    model = ScriptedModel()
    out = tmp_path / "gen.jsonl"
    generate([{"a": 1}], user="{{ a }}", model=model, out=out, **QUIET)
    with pytest.raises(StoreError, match="different job"):
        generate([{"a": 1}], user="{{ a }}", samples=2, model=model, out=out, **QUIET)
    # evol's rounds are declared identity=False: more rounds resume the same file.
    seeds = [{"id": "s1", "input": "Name a fruit."}]
    script = ScriptedModel([(r"#Given Prompt#", grow)])
    evol_out = tmp_path / "evol.jsonl"
    one = evol(seeds, rounds=1, judge=False, model=script, out=evol_out, **QUIET)
    two = evol(seeds, rounds=2, judge=False, model=script, out=evol_out, **QUIET)
    assert two.attrs["forgekit"]["stats"]["skipped"] == 1
    assert two["id"].iloc[0] == one["id"].iloc[0]
    assert [r["input"] for r in read_jsonl(evol_out)] == [
        "Explain Name a fruit.",
        "Explain Explain Name a fruit.",
    ]


def test_overwrite_moves_the_old_output_aside_once_for_all_stages(tmp_path):
    script = ScriptedModel([(r"#Given Prompt#", grow)])
    seeds = [{"id": "s1", "input": "Name a fruit."}]
    out = tmp_path / "evol.jsonl"
    first = evol(seeds, rounds=2, judge=False, model=script, out=out, **QUIET)
    # Another seed is another job: it may only replace the file with overwrite.
    again = evol(seeds, rounds=2, judge=False, seed=1, model=script, out=out, overwrite=True)
    assert len(again) == 2
    assert [r["id"] for r in read_jsonl(out)] == list(again["id"])  # both rounds kept
    (backup,) = tmp_path.glob("evol.jsonl.*.bak")  # moved aside once, not once per round
    assert [r["id"] for r in read_jsonl(backup)] == list(first["id"])


def test_budgets_cover_all_stages_of_a_call():
    script = ScriptedModel([(r"#Given Prompt#", grow)])
    df = evol([{"input": "Name a fruit."}], rounds=3, judge=False, model=script, max_requests=3)
    assert len(script.calls) == 3  # round 1: 2 requests; round 2: 1, then the budget is spent
    rounds = df.attrs["forgekit"]["rounds"]
    assert [r["status"] for r in rounds] == ["completed", "stopped"]
    assert df.attrs["forgekit"]["status"] == "stopped" and len(df) == 1


@pytest.fixture
def echo_method():
    """A method declared in a test: it refuses records without the field."""

    @dataclass(frozen=True, kw_only=True)
    class EchoOptions:
        field: str = option("input", help="the field to send")

    class Echo(Method):
        name = "test_echo"
        help = "send one field to the model"
        Options = EchoOptions

        def prepare(self, records):
            usable = []
            for index, record in enumerate(records):
                if self.options.field in record:
                    usable.append(record)
                else:
                    self.input_error({"record": index}, ConfigError(f"record {index}: no field"))
            return usable

        async def produce(self, ctx, record):
            answer = await ctx.chat(chat_messages(None, record[self.options.field]))
            return make_record(id=ctx.task.id, input=record["input"], output=answer.text)

    yield Echo
    unregister("test_echo")


def test_inputs_a_method_refuses_go_to_the_engines_errors_file(echo_method, tmp_path):
    from forgekit.methods.runner import call

    out = tmp_path / "echo.jsonl"
    df = call(echo_method, [{"input": "a"}, {"other": "b"}], {"model": ScriptedModel(), "out": out})
    assert list(df["output"]) == ["echo: a"]
    assert df.attrs["forgekit"]["stats"]["failed"] == 1
    (logged,) = read_jsonl(tmp_path / "echo.errors.jsonl")
    assert logged["task"] == {"record": 1} and logged["message"] == "record 1: no field"
    assert logged["error"] == "ConfigError"


# -- layering ----------------------------------------------------------------------------------
RANK = {"data": 1, "models": 2, "engine": 3, "methods": 4, "evaluate": 4, "cli": 6, "jupyter": 7}
# forgekit.distributed runs methods and evaluations on Ray: the layer of what it runs.
RANK["distributed"] = 4
# library entry points above
TOP = {"runfile": 5, "batch": 5, "batch_grid": 5, "background": 5, "export": 5}
# `%load_ext forgekit` needs the package root to name the magics: it imports them lazily.
ROOT_PACKAGE = "forgekit"


def _rank(module: str) -> int:
    parts = module.split(".")
    if len(parts) < 2:
        return 0
    return RANK.get(parts[1], TOP.get(parts[1], 0))


def _modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    found = {}
    for path in sorted((ROOT / "forgekit").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        found[module] = path
    return found


def _imports(path: Path) -> set[str]:
    """What a module imports, at any depth of its code (a lazy import in a function counts):
    `from forgekit.x import y` is `forgekit.x` and, when y is a module, `forgekit.x.y`."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _import_graph() -> tuple[dict[str, set[str]], set[str]]:
    """forgekit module -> the forgekit modules it imports (importing `a.b.c` runs the
    packages `a` and `a.b` too), and the forgekit modules that import argparse."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    argparse_users = set()
    for module, path in modules.items():
        names = _imports(path)
        if "argparse" in names:
            argparse_users.add(module)
        edges = set()
        for name in names:
            parts = name.split(".")
            edges.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        graph[module] = {m for m in edges if m in modules and m != module}
    graph[ROOT_PACKAGE] = set()
    return graph, argparse_users


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


# The one upward import allowed: the diversity report shows itself as a widget, imported inside
# `Report.widget()` only when a notebook displays it (evaluate works without Jupyter).
DISPLAY_HOOKS = {("forgekit.evaluate.reporting", "forgekit.jupyter.widgets.report")}


def test_layers_import_downwards():
    wrong = []
    for module, path in _modules().items():
        if module == ROOT_PACKAGE:
            continue
        for name in _imports(path):
            if any(module == m and name.startswith(h) for m, h in DISPLAY_HOOKS):
                continue
            if name.startswith("forgekit.") and _rank(name) > _rank(module):
                wrong.append(f"{module} imports {name}, a higher layer")
    assert wrong == []


def test_no_methods_module_reaches_the_cli_even_through_another_module():
    graph, argparse_users = _import_graph()
    methods = [m for m in graph if m.startswith("forgekit.methods")]
    assert len(methods) > 10  # the walk found the package
    wrong = {}
    for module in methods:
        reached = _reachable(graph, module) | {module}
        bad = sorted(m for m in reached if m.startswith("forgekit.cli") or m in argparse_users)
        if bad:
            wrong[module] = bad
    assert wrong == {}


def test_importing_every_method_loads_nothing_of_the_cli():
    """The same rule at run time, in a fresh interpreter: registry discovery imports the
    method modules by name, which no static walk can follow."""
    _, argparse_users = _import_graph()
    script = (
        "import json, pkgutil, importlib, sys, forgekit.methods as p\n"
        "for m in pkgutil.iter_modules(p.__path__):\n"
        "    importlib.import_module('forgekit.methods.' + m.name)\n"
        "print(json.dumps(sorted(n for n in sys.modules if n.startswith('forgekit'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True
    )
    loaded = set(json.loads(done.stdout))
    assert "forgekit.methods.magpie" in loaded and "forgekit.methods.runner" in loaded
    assert sorted(m for m in loaded if m.startswith("forgekit.cli") or m in argparse_users) == []


def test_modules_stay_small():
    sizes = {m: len(p.read_text().splitlines()) for m, p in _modules().items()}
    assert {module: n for module, n in sizes.items() if n > 500} == {}
    methods = sum(n for module, n in sizes.items() if module.startswith("forgekit.methods"))
    # 3800, plus the quality gate shared by every method (gate.py, issue 16), the runner's
    # dispatch to sharded runs (issue 15), and the hooks of batch mode and dry runs (their
    # machinery lives in forgekit.engine; issue 14).
    assert methods <= 4180


def test_the_manifest_lists_the_models_the_runner_resolved(tmp_path):
    model = ScriptedModel()
    out = tmp_path / "gen.jsonl"
    generate([{"a": 1}], user="{{ a }}", model=model, out=out, **QUIET)
    manifest = json.loads(out.with_name("gen.manifest.json").read_text())
    assert manifest["models"] == [model.identity]
