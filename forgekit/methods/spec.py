"""What a method is: its options, declared once, and its logic — prompts, parse, select.

A method is an options dataclass, each field declared with `option`, `template`,
`model_option` or `sampling` (type, default, help), and a `Method` subclass — `name`, `help`,
`Options` and `async produce(ctx, item)`: build the prompt, ask the model, parse, keep or
drop. docs/examples/summarize.py is a complete one.

Everything else — reading the input, run options, resolving models, ids, the engine, stage
budgets, resume, `df.attrs` — is the runner's (forgekit.methods.runner). The options class
is also the run's resume identity: every option with `identity=True` (the default) goes into
the job fingerprint, so a resumed output file never mixes records made with other settings.
docs/new-method.md tells the whole story.
The `forge` command, the `%forge` magics and `forge run` YAML are built from the same
declarations by forgekit.cli and forgekit.runfile; this module knows nothing about them.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from forgekit.data.records import make_lineage
from forgekit.errors import ConfigError

if TYPE_CHECKING:
    from forgekit.engine import RunContext
    from forgekit.methods.stages import Stages
    from forgekit.models import Model

# The kinds of option the runner treats specially (see OptionInfo.kind).
KINDS = ("value", "template", "model", "sampling")


@dataclass(frozen=True)
class OptionInfo:
    """How an option is documented, checked, resolved and shown on the command line.

    kind: 'value' (plain), 'template' (a Jinja2 string, or a Path to a template file: the
    runner reads the file; the CLI adds --NAME-file), 'model' (a profile name or a Model:
    the runner resolves it once), 'sampling' (SamplingParams or a dict, merged over
    `defaults` one way for every method; the CLI shows `flags`, e.g. --temperature).
    """

    help: str
    kind: str = "value"
    flag: str | None = None  # the long command-line flag; default --name (--no-name for True)
    short: str | None = None  # e.g. "-n"
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    metavar: str | None = None
    from_text: Callable[[str], Any] | None = None  # a command-line string -> the value
    # Part of the resume identity (the job fingerprint); a function: the value's identity is
    # what it returns (e.g. the content of a file the option names, not its path).
    identity: bool | Callable[[Any], Any] = True
    cli: bool = True  # offered on the command line (False: Python-only values)
    defaults: dict[str, Any] | None = None  # kind='sampling': the method's own defaults
    flags: dict[str, str] | None = None  # kind='sampling': parameter -> command-line flag

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TypeError(f"option kind {self.kind!r}: use one of {', '.join(KINDS)}")


def option(default: Any = dataclasses.MISSING, *, help: str, **info: Any) -> Any:
    """A method option: `default` (omit it for a required one) and how it is documented."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("option defaults must be immutable: use a tuple")
    meta = {"forgekit": OptionInfo(help=help, **info)}
    return dataclasses.field(default=default, metadata=meta)


def template(default: Any = dataclasses.MISSING, *, help: str, **info: Any) -> Any:
    """A prompt template option: a Jinja2 string, or a `Path` to a template file."""
    return option(default, help=help, kind="template", **info)


def model_option(*, help: str, **info: Any) -> Any:
    """A second model (besides the run's `model`), resolved once by the runner; None means
    the run's model."""
    return option(None, help=help, kind="model", **info)


def sampling(*, help: str, flags: dict[str, str] | None = None, **defaults: Any) -> Any:
    """Sampling parameters with this method's defaults, e.g. `sampling(temperature=0.7,
    max_tokens=512, help="each answer")`. Callers override any of them; after resolution
    the option holds a `SamplingParams`. `flags` names the command-line flags (default
    --temperature and --max-tokens)."""
    flags = flags or {"temperature": "--temperature", "max_tokens": "--max-tokens"}
    return option(None, help=help, kind="sampling", defaults=defaults, flags=flags)


def option_info(field: dataclasses.Field) -> OptionInfo:
    info = field.metadata.get("forgekit")
    if info is None:
        raise TypeError(f"option {field.name!r} is not declared with option()/template()/...")
    return info


def options_of(cls: type) -> list[tuple[dataclasses.Field, OptionInfo]]:
    """The declared options of an Options dataclass, in declaration order."""
    return [(f, option_info(f)) for f in dataclasses.fields(cls)]


def is_required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def require_field(records: Sequence[dict[str, Any]], field: str, option: str) -> None:
    """For `prepare`: fail before any request, naming the record and the option, when a
    record lacks the field the method reads."""
    for index, record in enumerate(records):
        if record.get(field) in (None, ""):
            available = ", ".join(sorted(record)) or "(none)"
            raise ConfigError(
                f"record {index} has no {field!r} field (set {option}); its fields: {available}"
            )


@dataclass(frozen=True)
class NoOptions:
    """For a method without options of its own."""


class Method:
    """A synthesis method: subclass it, set `name`, `help`, `Options`, write `produce`.

    One instance serves one call: `self.options` holds the resolved options (templates as
    text, models as Model objects, sampling as SamplingParams), `self.model` the run's main
    model and `self.counts` counters that end up in `df.attrs['forgekit']['counts']`.

    Hooks, in the order the runner calls them:
    - `prepare(records)`: check and turn the input records into work items before any
      request is sent (default: the records themselves). May return an endless iterator.
    - `run(stages, items)`: the stages (default: one, `produce` once per item). A method
      with rounds calls `await stages.run(...)` several times; see forgekit.methods.evol.
    - `produce(ctx, item)`: one item -> one record (or None: filtered out).
    - `summary(records)`: extra entries for `df.attrs['forgekit']`.
    - `score(record)`: the record's score, when the method has one (see methods.gate).
    - `dedup_keys(record)`: the keys a method that drops repeats (Magpie's instructions)
      claims for a record: a resumed run claims those of the records its output already
      holds (a local run when it opens the file, a sharded run before its shards start).
    """

    name: ClassVar[str]
    help: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    # "required" | "optional" (None: one empty item) | "none" | "paths" (files and folders,
    # handed to `prepare` as given: the method reads them)
    inputs: ClassVar[str] = "required"
    command: ClassVar[str | None] = None  # the CLI name when it differs from `name`
    model: Model  # the run's main model, resolved; the runner sets it before `prepare`
    aliases: ClassVar[tuple[str, ...]] = ()  # more CLI names (judge is also `forge tag`)
    # For a method without input: the option its one positional argument sets (magpie's n).
    positional: ClassVar[str | None] = None
    target: int | None = None  # the call's `target=` (records that must pass the gate)
    # The dedup keys claimed so far, for a method that `dedups`: the runner's `SeenKeys`, or
    # in a sharded run the board's, shared with the other shards (forgekit.distributed).
    claims: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:  # a concrete method: declaring it registers it
            from forgekit.methods.registry import register

            register(cls)

    def __init__(self, options: Any) -> None:
        self.options = options
        self.counts: Counter[str] = Counter()
        self.input_errors: list[tuple[dict[str, Any], BaseException]] = []

    # -- hooks ------------------------------------------------------------------------------
    def prepare(self, records: list[dict[str, Any]]) -> Sequence[Any] | Iterable[Any]:
        return records

    def key(self, item: Any) -> Any:
        """What identifies an item for resume (with the job and its position)."""
        if isinstance(item, dict):
            return {k: v for k, v in item.items() if k != "lineage"}
        if dataclasses.is_dataclass(item):
            return dataclasses.asdict(item)
        return item

    @property
    def limit(self) -> int | None:
        """Stop after this many records: the method's `n` option, if it has one (None: when
        the items run out)."""
        return getattr(self.options, "n", None)

    async def run(self, stages: Stages, items: Sequence[Any] | Iterable[Any]) -> None:
        await stages.run(items, limit=self.limit)

    async def produce(self, ctx: RunContext, item: Any) -> dict[str, Any] | None:
        raise NotImplementedError(f"{type(self).__name__} must define produce(ctx, item)")

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {"counts": dict(self.counts)} if self.counts else {}

    def score(self, record: dict[str, Any]) -> float | None:
        """A record's score, for `min_score=` (only methods that score their records)."""
        return None

    def dedup_keys(self, record: dict[str, Any]) -> list[str]:
        """The dedup keys `record` holds (a method that drops repeats claims them)."""
        return []

    @classmethod
    def dedups(cls) -> bool:
        """Whether the method drops repeats by key (its shards then share their claims)."""
        return cls.dedup_keys is not Method.dedup_keys

    @property
    def keeps_claims(self) -> bool:
        """Whether the dedup claims are this process's own (a sharded run's are the board's,
        which its driver seeds from the part files before any shard starts)."""
        return isinstance(self.claims, SeenKeys)

    def claim_stored(self, record: dict[str, Any]) -> None:
        """A record the output already held when a resumed run opened it: its keys are
        taken, so the run never repeats one (`keeps_claims` only)."""
        self.claims.add(self.dedup_keys(record))

    @classmethod
    def has_scores(cls) -> bool:
        return cls.score is not Method.score

    # -- helpers for methods ----------------------------------------------------------------
    def lineage(self, ctx: RunContext, **fields: Any) -> dict[str, Any]:
        """A record's lineage: this method, `model` (default: the run's), the `template_hash`
        set in `prepare`, the options' `seed` and `params`, overridden or extended by
        `fields` (see forgekit.data.records.make_lineage)."""
        params = getattr(self.options, "params", None)
        fields.setdefault("template_hash", getattr(self, "template_hash", None))
        fields.setdefault("seed", getattr(self.options, "seed", None))
        fields.setdefault("params", params.to_dict() if params is not None else None)
        return make_lineage(self.name, fields.pop("model", ctx.model.name), **fields)

    def input_error(self, where: dict[str, Any], error: BaseException) -> None:
        """An input the method cannot use (e.g. an unreadable file): it is not fatal; the
        engine records it in the run's errors (and the .errors.jsonl next to `out`)."""
        self.input_errors.append((where, error))


class SeenKeys:
    """The dedup keys one process has claimed: the first claimant of a key keeps it. A
    sharded run hands the method one that claims on the run's board instead, with the same
    `claim`, so shards drop each other's repeats too."""

    def __init__(self) -> None:
        self._keys: set[str] = set()

    def add(self, keys: Iterable[str]) -> None:
        """Keys claimed before this process started: a resumed run's stored records'."""
        self._keys.update(keys)

    async def claim(self, key: str) -> bool:
        """True for the first claim of `key`, False for a repeat."""
        if key in self._keys:
            return False
        self._keys.add(key)
        return True
