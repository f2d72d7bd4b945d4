"""The one runner every declared method goes through (see forgekit.methods.spec).

`call(MethodClass, data, keywords)` is what `forgekit.methods.<name>(...)` does:

1. split the keywords into the method's options, `model`, `out`, and engine options
   (`config=RunConfig(...)` and/or any RunConfig field, e.g. concurrency=4);
2. check the options (required, choices, minimum) and resolve them once: template files are
   read, sampling parameters merged over the method's defaults, model names turned into
   Model objects — the engine receives objects and never resolves a name again;
3. derive the resume identity (the job) from the declared options;
4. read the input (DataFrame, list of dicts, or a JSONL/JSON/CSV/Parquet path) and let the
   method `prepare` its work items — every check happens before the first request;
5. run the method's stages on one event loop (forgekit.methods.stages): ids, tasks, budgets
   that cover the whole call, `overwrite` applied once per file (by the first stage that
   writes it), intermediate stages in side files, inputs the method could not use recorded
   as errors by the engine;
6. return a DataFrame whose `attrs['forgekit']` hold the status, stats, errors, counters and
   the method's summary.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from forgekit.data.records import jsonable
from forgekit.engine import RunConfig, run_sync
from forgekit.engine.batch_run import check_batch_models
from forgekit.engine.estimate import Estimate, Recorder, dry_config
from forgekit.errors import ConfigError
from forgekit.methods.gate import GATE_OPTIONS, Gate, GateOptions, record_in_manifest
from forgekit.methods.prompting import load_template
from forgekit.methods.samplers import model_key
from forgekit.methods.spec import Method, SeenKeys, is_required, options_of
from forgekit.methods.stages import Run
from forgekit.models import Model, ModelPool, SamplingParams

# Keywords every method accepts: for the engine (RunConfig) and for reading its input.
RUN_OPTIONS = tuple(f for f in RunConfig.__dataclass_fields__ if f != "description")
INPUT_OPTIONS = ("split", "column_map")


def call(cls: type[Method], data: Any, kwargs: dict[str, Any]):
    """Run method `cls` on `data` with `kwargs` (options + run options); a DataFrame."""
    kwargs = dict(kwargs)
    model, out = kwargs.pop("model", None), kwargs.pop("out", None)
    reading = {k: v for k in INPUT_OPTIONS if (v := kwargs.pop(k, None)) is not None}
    estimate = kwargs.pop("estimate", False)
    gate_options = GateOptions.take(cls, kwargs)
    if gate_options.target is not None and "n" in cls.Options.__dataclass_fields__:
        kwargs["n"] = gate_options.target  # the method's own count is the target
    config = run_config(cls.name, kwargs)
    if config.distributed:  # the same call, as shards on Ray
        from forgekit.distributed.shards import run_sharded

        if reading:
            data = read_input(cls, data, **reading)
        return run_sharded(
            cls, data, kwargs, model=model, out=out, config=config, gate=gate_options
        )
    records = read_input(cls, data, **reading)
    capped = {config.max_requests, config.max_total_tokens, config.max_cost} != {None}
    if estimate or capped:
        options = resolve(cls, dict(kwargs))
        job = {"method": cls.name, "model": model_key(model), **identity(cls, options)}
        if estimate:
            found = dry_run(cls, records, model, options, config, job)
            found.warn()
            return found
        try:  # a cap below the estimate warns before the run; the estimate never stops it
            found = dry_run(cls, records, model, options, config, job)
        except Exception:
            found = None
        if found is not None:
            found.warn(" (estimated before the run)")
    method, models, items, job = prepare_call(
        cls, records, kwargs, model, gate_options.target, batch=config.batch
    )
    run = Run(method, models, out, config, job, Gate(gate_options, method.score))
    result = run_sync(lambda: run.execute(items))
    details = method.summary(result.records)
    if gate_options.active:
        details["gate"] = run.gate.summary(len(result.records), result.status, result.stop_reason)
        record_in_manifest(result.out, details["gate"])
    return result.to_dataframe(method=cls.name, **details)


def prepare_call(
    cls: type[Method],
    records: list[Any],
    kwargs: dict[str, Any],
    model: Any,
    target: int | None = None,
    batch: bool = False,
    claims: Any = None,
):
    """Steps 2-4: (method, models, work items, job), every check done before a request.
    `claims`: dedup keys shared with other shards of the call (see `Method.claims`)."""
    options = resolve(cls, kwargs)
    job = {"method": cls.name, "model": model_key(model), **identity(cls, options)}
    models = Models(model, options)
    if batch:  # every model needs a batch API: fail before anything is sent
        check_batch_models([models.main, *models.pool.models()])
    method = cls(models.resolved_options)
    if claims is None and cls.dedups():  # not shared: this call's own (seeded on resume)
        claims = SeenKeys()
    method.model, method.target, method.claims = models.main, target, claims
    return method, models, method.prepare(records), job


def dry_run(
    cls: type[Method],
    records: list[Any],
    model: Any,
    options: Any,
    config: RunConfig,
    job: dict[str, Any],
) -> Estimate:
    """estimate=True: the method runs with models that send nothing (forgekit.engine.estimate).
    A `target=` is not replayed: the estimate is one attempt per item (or per `n`)."""
    models = Models(model, options)
    method = cls(models.resolved_options)
    method.model = models.main
    recorder = Recorder(config, getattr(method, "dry_reply", None))
    run = Run(method, models, None, dry_config(config), job, entry=recorder.entry)
    run_sync(lambda: run.execute(method.prepare(records)))
    return recorder.finish(cls.name)


# -- options -------------------------------------------------------------------------------
def run_config(name: str, kwargs: dict[str, Any]) -> RunConfig:
    """Take the engine options out of `kwargs`; `config=` is the base, keywords win."""
    base = kwargs.pop("config", None) or RunConfig()
    if not isinstance(base, RunConfig):
        raise TypeError(f"{name}(): config must be a RunConfig, got {type(base).__name__}")
    overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in RUN_OPTIONS}
    return replace(base, **overrides) if overrides else base


def resolve(cls: type[Method], given: dict[str, Any]) -> Any:
    """The Options instance for `given`, checked, with templates read and sampling merged."""
    declared = {field.name: (field, info) for field, info in options_of(cls.Options)}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise TypeError(
            f"{cls.name}() got unexpected option(s): {', '.join(unknown)} "
            f"(options: {', '.join(declared)}; run options: model, out, split, column_map, "
            f"config, estimate, {', '.join(RUN_OPTIONS + GATE_OPTIONS)})"
        )
    values: dict[str, Any] = {}
    for name, (field, info) in declared.items():
        if name not in given:
            if is_required(field):
                raise ConfigError(f"{cls.name}: option {name!r} is required ({info.help})")
            value = field.default
        else:
            value = given[name]
        if isinstance(value, str) and isinstance(field.default, tuple):
            value = (value,)  # one value for a list option: style="blogpost"
        if info.kind == "template" and value is not None:
            value = load_template(value, what=f"{name} template")
        elif info.kind == "sampling":
            value = merge_sampling(name, info.defaults or {}, value)
        elif info.choices is not None and value is not None:
            wrong = [v for v in _as_list(value) if v not in info.choices]
            if wrong or (isinstance(value, (list, tuple)) and not value):
                raise ConfigError(
                    f"{cls.name}: {name}: {'unknown ' + repr(wrong) if wrong else 'empty'}; "
                    f"choose from {', '.join(map(str, info.choices))}"
                )
        if info.minimum is not None and value is not None and value < info.minimum:
            raise ConfigError(f"{cls.name}: {name} must be >= {info.minimum:g}, got {value}")
        values[name] = tuple(value) if isinstance(value, list) else value
    return cls.Options(**values)


def merge_sampling(name: str, defaults: dict[str, Any], value: Any) -> SamplingParams:
    """The one way sampling parameters combine: the method's defaults, overridden by every
    parameter the caller set (None means "not set")."""
    given = value.to_dict() if isinstance(value, SamplingParams) else dict(value or {})
    try:
        return SamplingParams.coerce(defaults, **given)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def identity(cls: type[Method], options: Any) -> dict[str, Any]:
    """The declared options that make up the resume identity, as JSON-able values."""
    found = {}
    for field, info in options_of(cls.Options):
        value = getattr(options, field.name)
        if callable(info.identity):
            found[field.name] = jsonable(info.identity(value))
        elif info.identity:
            found[field.name] = jsonable(value)
    return found


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple, set)) else [value]


class Models:
    """The run's models, resolved once: the main one and every model-kind option (a tuple
    of them too). A `models` option lists models of equal rank (vote's voters): without
    `model=`, its first is the main one."""

    def __init__(self, model: str | Model | None, options: Any) -> None:
        self.pool = ModelPool()
        self._resolve = self.pool.get
        listed = getattr(options, "models", None)
        if model is not None and listed:
            raise ConfigError("give either model= or models=, not both")
        self.main = self._resolve(listed[0] if listed and model is None else model)
        changes: dict[str, Any] = {}
        for field, info in options_of(type(options)):
            value = getattr(options, field.name)
            if info.kind == "model" and isinstance(value, tuple):
                changes[field.name] = tuple(map(self._resolve, value))
            elif info.kind == "model" and value is not None:
                changes[field.name] = self._resolve(value)
        self.resolved_options = replace(options, **changes) if changes else options

    async def aclose(self) -> None:
        await self.pool.aclose()


def read_input(cls: type[Method], data: Any, **reading: Any) -> list[Any]:
    """The input records via read_records (files, folders, datasets, hf:; split, column_map)."""
    from forgekit.data.io import read_records

    if cls.inputs in ("none", "paths") and reading:  # no records to split or rename
        raise TypeError(f"{cls.name}() reads no records: {', '.join(reading)} do not apply")
    if cls.inputs == "none":
        if data is not None:
            raise TypeError(f"{cls.name}() takes no input data")
        return []
    if data is None:
        if cls.inputs == "optional":
            return [{}]
        what = "a DataFrame, a list of dicts or a JSONL path"
        raise ConfigError(
            f"{cls.name}: no input data: pass "
            + ("files or folders" if cls.inputs == "paths" else what)
        )
    if cls.inputs == "paths":  # the method reads them itself
        return list(data) if isinstance(data, (list, tuple)) else [data]
    records = read_records(data, **reading)
    if not records:
        raise ConfigError(f"{cls.name}: the input holds no records")
    return records
