"""`forge run config.yaml`: run any synthesis method from a YAML file.

    method: generate                 # any public function of forgekit.methods
    model: local                     # or  models: [a, b]  for methods that take several
    prompts:
      system: You are a careful annotator.
      user_file: prompts/label.j2    # <name>_file reads the template from a file
    input: data.jsonl                # the method's `data`
    output: out/labels.jsonl         # the method's `out` (resumable)
    sampling: {temperature: 0.2, max_tokens: 64}   # the method's `params`
    params:                          # any other keyword option of the method
      parse: json
    run: {concurrency: 4, max_cost: 1.0}           # engine options (RunConfig)

The file is checked with pydantic, then against the method's signature, so methods added
later work here too; every error names the key ("config.yaml: prompts.user: field
required"). Relative paths are relative to the YAML file's folder.
"""

from __future__ import annotations

import argparse
import inspect
import typing
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forgekit.engine import RunConfig
from forgekit.errors import ConfigError

# Parameters a config file never sets through `params` (they have their own sections).
_SECTION_OF = {"data": "input", "out": "output", "model": "model", "models": "models"}


class RunSection(BaseModel):
    """Engine options (see forgekit.engine.RunConfig)."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int | None = Field(None, ge=1)
    rpm: float | None = Field(None, gt=0)
    tpm: float | None = Field(None, gt=0)
    max_requests: int | None = Field(None, ge=0)
    max_total_tokens: int | None = Field(None, ge=0)
    max_cost: float | None = Field(None, ge=0)
    max_attempts: int | None = Field(None, ge=1)
    cache: bool | None = None
    cache_path: str | None = None
    progress: bool | None = None
    overwrite: bool | None = None


class RunFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: str
    model: str | None = None
    models: list[str] | None = None
    prompts: dict[str, str] = Field(default_factory=dict)
    input: str | None = None
    output: str | None = None
    sampling: dict[str, Any] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    run: RunSection = Field(default_factory=RunSection)


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _message(msg: str) -> str:
    return msg[:1].lower() + msg[1:]


def methods() -> dict[str, Any]:
    """The public method functions, by name."""
    import forgekit.methods as registry

    return {name: getattr(registry, name) for name in registry.__all__}


def _is_prompt(name: str) -> bool:
    return any(word in name for word in ("user", "system", "prompt", "template", "rubric"))


class RunPlan:
    """A validated config: the method function and the keyword arguments to call it with."""

    def __init__(self, path: Path, method: str, fn: Any, kwargs: dict[str, Any]) -> None:
        self.path = path
        self.method = method
        self.fn = fn
        self.kwargs = kwargs

    def describe(self) -> dict[str, Any]:
        shown = {
            k: (str(v) if isinstance(v, (Path, RunConfig)) else v) for k, v in self.kwargs.items()
        }
        if isinstance(self.kwargs.get("config"), RunConfig):
            shown["config"] = self.kwargs["config"].public()
        return {"config_file": str(self.path), "method": self.method, "call": shown}

    def __call__(self, **overrides: Any) -> Any:
        kwargs = dict(self.kwargs)
        config = kwargs.pop("config")
        run_overrides = {k: v for k, v in overrides.items() if k in RunConfig.__dataclass_fields__}
        kwargs.update({k: v for k, v in overrides.items() if k not in run_overrides})
        return self.fn(**kwargs, config=replace(config, **run_overrides))


def load_plan(path: str | Path) -> RunPlan:
    """Read and check a run file; raises ConfigError naming the file and the key."""
    path = Path(path)
    label = str(path)
    if not path.is_file():
        raise ConfigError(f"{label}: no such file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{label}: invalid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{label}: expected a mapping with method, model, prompts, ... keys")
    try:
        spec = RunFile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"{label}: {_where(err['loc'])}: {_message(err['msg'])}") from None

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{label}: {key}: {message}")

    known = methods()
    if spec.method not in known:
        raise fail("method", f"unknown method {spec.method!r}; known: {', '.join(sorted(known))}")
    fn = known[spec.method]
    signature = inspect.signature(fn)
    accepted = {
        name: p
        for name, p in signature.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    base = path.parent

    def resolve(value: str) -> Path:
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else base / candidate

    kwargs: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def put(name: str, value: Any, key: str) -> None:
        if name not in accepted or name == "config":
            options = ", ".join(n for n in accepted if n not in ("config", *_SECTION_OF))
            raise fail(key, f"method {spec.method!r} has no option {name!r} (options: {options})")
        if name in kwargs:
            raise fail(key, f"{name!r} is also set by {sources[name]}")
        kwargs[name], sources[name] = value, key

    for section in ("model", "models"):
        value = getattr(spec, section)
        if value is not None:
            put(section, value, section)
    for key, value in spec.prompts.items():
        name = key[: -len("_file")] if key.endswith("_file") else key
        if key.endswith("_file"):
            file = resolve(value)
            if not file.is_file():
                raise fail(f"prompts.{key}", f"no such file {file}")
            value = file.read_text(encoding="utf-8")
        put(name, value, f"prompts.{key}")
    if spec.input is not None:
        file = resolve(spec.input)
        if not file.is_file():
            raise fail("input", f"no such file {file}")
        put("data", str(file), "input")
    if spec.output is not None:
        put("out", str(resolve(spec.output)), "output")
    if spec.sampling is not None:
        if "params" not in accepted:
            raise fail(
                "sampling",
                f"method {spec.method!r} has no single `params`; set its sampling options "
                f"under params (e.g. params.response_params)",
            )
        put("params", spec.sampling, "sampling")
    for key, value in spec.params.items():
        if key in RunConfig.__dataclass_fields__:
            raise fail(f"params.{key}", "is an engine option: put it under run:")
        if key in _SECTION_OF:
            raise fail(f"params.{key}", f"set it with the top-level {_SECTION_OF[key]!r} key")
        put(key, value, f"params.{key}")

    for name, p in accepted.items():
        if p.default is inspect.Parameter.empty and name not in kwargs:
            if name in _SECTION_OF:
                where = _SECTION_OF[name]
            else:
                where = f"{'prompts' if _is_prompt(name) else 'params'}.{name}"
            raise fail(where, "field required")
    _check_types(fn, kwargs, sources, fail)
    kwargs["config"] = RunConfig(
        **{k: v for k, v in spec.run.model_dump().items() if v is not None}
    )
    return RunPlan(path, spec.method, fn, kwargs)


def _check_types(fn: Any, kwargs: dict[str, Any], sources: dict[str, str], fail: Any) -> None:
    """Check each value against the method's type hints, where pydantic can express them
    (a hint naming a Protocol such as Model cannot be checked and is skipped)."""
    from pydantic import TypeAdapter

    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: nothing to check against
        return
    for name, value in kwargs.items():
        hint = hints.get(name)
        if hint is None or name == "data":
            continue
        try:
            adapter = TypeAdapter(hint)
        except Exception:  # pydantic cannot build a validator for this hint
            continue
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            err = exc.errors()[0]
            inner = _where(err["loc"][1:]) if len(err["loc"]) > 1 else ""
            key = sources[name] + (f".{inner}" if inner and not inner[0].isupper() else "")
            raise fail(key, f"{_message(err['msg'])} (got {value!r})") from None


def run_file(path: str | Path, **overrides: Any) -> Any:
    """Run the method a YAML file describes; `overrides` (e.g. out=, max_requests=,
    progress=) win over the file. Returns the method's DataFrame."""
    return load_plan(path)(**overrides)


# --- the `forge run` command --------------------------------------------------------------
def _run_command(args: argparse.Namespace, ctx: Any) -> Any:
    plan = load_plan(args.config)
    if args.dry_run:
        return plan.describe()
    overrides: dict[str, Any] = {}
    if args.out:
        overrides["out"] = args.out
    if args.max_requests is not None:
        overrides["max_requests"] = args.max_requests
    if args.overwrite:
        overrides["overwrite"] = True
    if args.no_cache:
        overrides["cache"] = False
    if args.no_progress:
        overrides["progress"] = False
    extra = dict(getattr(ctx, "extra", {}).get("run_config", {})) if ctx is not None else {}
    return plan(**overrides, **extra)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="run a synthesis method described by a YAML config file",
        description="Run any method (generate, vote, cascade, evol, dpo, magpie, ...) from a "
        "YAML file with the keys method, model/models, prompts (name or name_file), input, "
        "output, sampling, params and run (engine options). The file is validated against "
        "the method's options; errors name the key. Relative paths are relative to the file.",
    )
    p.add_argument("config", help="the YAML config file")
    p.add_argument(
        "--dry-run", action="store_true", help="validate and show the call; send nothing"
    )
    p.add_argument("--out", default=None, help="write records here instead of `output`")
    p.add_argument("--max-requests", type=int, default=None, help="stop after this many requests")
    p.add_argument(
        "--overwrite", action="store_true", help="move an existing output aside and start afresh"
    )
    p.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=_run_command)
