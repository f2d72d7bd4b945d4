"""`forge run config.yaml`: run any synthesis method from a YAML file.

    method: generate                 # any method of forgekit.methods
    model: local                     # or  models: [a, b]  for methods that take several
    prompts:
      system: You are a careful annotator.
      user_file: prompts/label.j2    # <name>_file reads the template from a file
    input: data.jsonl                # the method's `data` (a file, a folder, hf:org/name)
    column_map: {question: input}    # optional: read column question as the field input
    output: out/labels.jsonl         # the method's `out` (resumable)
    sampling: {temperature: 0.2, max_tokens: 64}   # the method's `params`
    params:                          # any other option of the method
      parse: json
    run: {concurrency: 4, max_cost: 1.0}           # engine options (RunConfig)

The keys come from each method's options declaration (forgekit.methods.spec): template
options go under `prompts`, the `params` sampling option under `sampling`, the rest under
`params`; `forge run --example METHOD` prints a commented skeleton with every option's help.
The file is checked with pydantic, then against the declaration; every error names the key
("config.yaml: prompts.user: field required"). Relative paths are relative to the file.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forgekit.engine import RunConfig
from forgekit.errors import ConfigError

# Keyword arguments a config file sets through its own top-level keys, never `params`.
_SECTION_OF = {"data": "input", "out": "output", "model": "model", "models": "models"}


class RunSection(BaseModel):
    """Engine options (see forgekit.engine.RunConfig)."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int | None = Field(None, ge=1)
    adaptive: bool | None = None
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
    engine: Literal["local", "ray"] | None = None
    shards: int | None = Field(None, ge=1)
    ray_address: str | None = None
    shard_retries: int | None = Field(None, ge=0)
    batch: bool | None = None  # the provider's batch API (forgekit.engine.batch_api)
    batch_poll_s: float | None = Field(None, gt=0)
    batch_failed: Literal["resubmit", "online"] | None = None
    batch_max_submits: int | None = Field(None, ge=1)
    batch_max_requests: int | None = Field(None, ge=1, le=50_000)
    batch_max_bytes: int | None = Field(None, ge=1)
    batch_discount: float | None = Field(None, ge=0)


class RunFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: str
    model: str | None = None
    models: list[str] | None = None
    prompts: dict[str, str] = Field(default_factory=dict)
    input: str | None = None
    split: str | None = None  # of a DatasetDict folder or hf: input
    column_map: dict[str, str] | None = None  # input column -> record field
    output: str | None = None
    sampling: dict[str, Any] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    run: RunSection = Field(default_factory=RunSection)


@dataclass(frozen=True)
class Param:
    """One keyword argument of a method, and where a config file sets it."""

    name: str
    section: str  # input | output | model | models | prompts | sampling | params
    required: bool
    help: str = ""
    default: Any = None
    hint: Any = None  # the type a value is checked against (None: not checked)
    from_text: Any = None  # how a string becomes the value (e.g. a schema file)


def methods() -> dict[str, Any]:
    """The public method functions, by name: every registered method (also one declared
    after import)."""
    from forgekit.methods.registry import methods as registered
    from forgekit.methods.registry import public_function

    return {name: public_function(cls) for name, cls in registered().items()}


def parameters(method: str) -> dict[str, Param]:
    """A method's keyword arguments as config-file keys, from its declaration."""
    from forgekit.methods.registry import get
    from forgekit.methods.spec import is_required, options_of

    cls = get(method)
    if cls is None:
        raise ConfigError(f"unknown method {method!r}; known: {', '.join(methods())}")
    params = [
        Param("model", "model", False, "model profile name"),
        Param("out", "output", False, "JSONL file the records go to; a re-run resumes it"),
    ]
    if cls.inputs == "paths":
        params.append(Param("data", "input", True, "a file or folder to read"))
    elif cls.inputs != "none":
        params.append(Param("data", "input", cls.inputs == "required", "input records"))
    hints = typing.get_type_hints(cls.Options)
    for field, info in options_of(cls.Options):
        section = "prompts" if info.kind == "template" else "params"
        if info.kind == "sampling" and field.name == "params":
            section = "sampling"
        elif field.name in _SECTION_OF:
            section = _SECTION_OF[field.name]
        default = info.defaults if info.kind == "sampling" else field.default
        hint = None if info.kind == "sampling" else hints[field.name]
        required = is_required(field)
        params.append(
            Param(field.name, section, required, info.help, default, hint, info.from_text)
        )
    # The quality gate every method has (forgekit.methods.gate); `accept` is Python-only.
    target_help = "keep producing until this many records pass every check"
    params.append(Param("target", "params", False, target_help, None, int | None))
    factor_help = "give up after this many attempts per target record"
    params.append(Param("target_factor", "params", False, factor_help, 10.0, float))
    if cls.has_scores():
        score_help = "keep only records scored at least this (judge: quality 1-5)"
        params.append(Param("min_score", "params", False, score_help, None, float | None))
    return {p.name: p for p in params}


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
    accepted = parameters(spec.method)
    base = path.parent

    def resolve(value: str) -> Path:
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else base / candidate

    kwargs: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def put(name: str, value: Any, key: str) -> None:
        param = accepted.get(name)
        if param is None or param.section in ("input", "output"):
            options = ", ".join(n for n, p in accepted.items() if n not in _SECTION_OF)
            raise fail(key, f"method {spec.method!r} has no option {name!r} (options: {options})")
        if name in kwargs:
            raise fail(key, f"{name!r} is also set by {sources[name]}")
        if param.from_text is not None and isinstance(value, str):
            file = resolve(value)
            value = param.from_text(str(file) if file.is_file() else value)
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
    from forgekit.methods.registry import get

    if spec.input is not None:
        kwargs["data"], sources["data"] = spec.input, "input"
        if not spec.input.startswith("hf:"):  # files and folders (parquet, save_to_disk)
            file = resolve(spec.input)
            if not file.exists():
                raise fail("input", f"no such file {file}")
            kwargs["data"] = str(file)
    for key in ("split", "column_map"):  # how the input is read (forgekit.data.sources)
        if getattr(spec, key) is not None:
            if getattr(get(spec.method), "inputs", None) in ("none", "paths"):
                raise fail(key, f"method {spec.method!r} reads no records")
            kwargs[key], sources[key] = getattr(spec, key), key
    if spec.output is not None:
        kwargs["out"], sources["out"] = str(resolve(spec.output)), "output"
    if spec.sampling is not None:
        if accepted.get("params", Param("", "", False)).section != "sampling":
            names = [n for n in accepted if n.endswith("params")]
            example = f" (e.g. params.{names[-1]})" if names else ""
            raise fail(
                "sampling",
                f"method {spec.method!r} has no single `params`; set its sampling options "
                f"under params{example}",
            )
        put("params", spec.sampling, "sampling")
    for key, value in spec.params.items():
        if key in RunConfig.__dataclass_fields__:
            raise fail(f"params.{key}", "is an engine option: put it under run:")
        if key in _SECTION_OF:
            raise fail(f"params.{key}", f"set it with the top-level {_SECTION_OF[key]!r} key")
        put(key, value, f"params.{key}")

    for name, param in accepted.items():
        if param.required and name not in kwargs:
            top = param.section in _SECTION_OF.values()
            where = param.section if top else f"{param.section}.{name}"
            raise fail(where, "field required")
    _check_types(accepted, kwargs, sources, fail)
    kwargs["config"] = RunConfig(
        **{k: v for k, v in spec.run.model_dump().items() if v is not None}
    )
    return RunPlan(path, spec.method, known[spec.method], kwargs)


def _check_types(
    accepted: dict[str, Param], kwargs: dict[str, Any], sources: dict[str, str], fail: Any
) -> None:
    """Check each value against its declared type, where pydantic can express it (a type
    naming a Protocol such as Model cannot be checked and is skipped)."""
    from pydantic import TypeAdapter

    for name, value in kwargs.items():
        hint = accepted[name].hint if name in accepted else None  # split/column_map: pydantic's
        if hint is None or name == "data":
            continue
        try:
            adapter = TypeAdapter(hint)
        except Exception:  # pydantic cannot build a validator for this type
            continue
        if isinstance(value, str) and isinstance(accepted[name].default, tuple):
            value = [value]  # one value for a list option, as in Python (style: blogpost)
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


def example(method: str) -> str:
    """A commented YAML skeleton for `method`: every key, its default and its help."""
    if method not in methods():
        raise ConfigError(f"unknown method {method!r}; known: {', '.join(sorted(methods()))}")
    lines = [f"method: {method}"]
    params = parameters(method)
    for section in ("model", "models", "input", "output", "prompts", "sampling", "params"):
        chosen = [p for p in params.values() if p.section == section]
        if section in ("model", "models", "input", "output", "sampling"):
            for p in chosen:
                need = "required" if p.required else "optional"
                lines.append(f"{section}: {_yaml_value(p.default)}  # {need}; {p.help}".rstrip())
            continue
        if not chosen:
            continue
        lines.append(f"{section}:")
        for p in chosen:
            value = "" if p.required else f" {_yaml_value(p.default)}"
            note = "required; " if p.required else ""
            lines.append(f"  {p.name}:{value}  # {note}{p.help}".rstrip())
    lines.append("run: {}  # engine options: concurrency, rpm, max_requests, max_cost, ...")
    return "\n".join(lines)


def _yaml_value(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=1000)
    return text.strip().removesuffix("...").strip()


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _message(msg: str) -> str:
    return msg[:1].lower() + msg[1:]
