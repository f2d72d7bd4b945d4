"""Shared by generate, vote, cascade, evol and dpo: Jinja2 prompt templates filled per data
item (checked for missing variables before any request is sent), label normalization,
response parsing hooks, the "several models / temperatures / seeds" sampler list, and the
CLI options these methods have in common."""

from __future__ import annotations

import argparse
import json
import random
import re
import string
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgekit.commands import add_sampling_options  # noqa: F401 - shared option group
from forgekit.data.records import fingerprint
from forgekit.errors import ConfigError
from forgekit.models import Model, SamplingParams

# --- templates --------------------------------------------------------------------------


def load_template(value: str | Path | None, *, what: str) -> str | None:
    """Template text from a string, or from a file when given a `Path`."""
    if value is None:
        return None
    if isinstance(value, Path):
        if not value.is_file():
            raise ConfigError(f"{what}: template file {value} does not exist")
        return value.read_text(encoding="utf-8")
    if not isinstance(value, str):
        raise ConfigError(
            f"{what}: expected a template string or a Path, got {type(value).__name__}"
        )
    return value


def describe_item(item: Mapping[str, Any], position: int) -> str:
    """How an error names a data-pool item: its position and, if it has one, its id."""
    ident = item.get("id")
    return f"item {position}" + (f" (id={ident})" if ident not in (None, "") else "")


def _environment():
    import jinja2

    # StrictUndefined: a missing variable is an error, never a silently empty string.
    return jinja2.Environment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False
    )


class PromptTemplate:
    """A Jinja2 template for one message (system or user) of a prompt.

    Each item fills it from its own fields, overlaid with the item's `<kind>_prompt_kwargs`
    dict (kind = "user" or "system"), overlaid with `extra` values the method supplies.
    """

    def __init__(self, source: str, *, what: str, kind: str = "user") -> None:
        import jinja2
        from jinja2 import meta

        self.source = source
        self.what = what
        self.kind = kind
        env = _environment()
        try:
            parsed = env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(
                f"{what}: Jinja2 syntax error on line {exc.lineno}: {exc.message}"
            ) from None
        self.variables = frozenset(meta.find_undeclared_variables(parsed))
        self._template = env.from_string(source)

    @property
    def hash(self) -> str:
        return fingerprint(self.source, 12)

    def context(
        self, item: Mapping[str, Any], position: int, extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        kwargs = item.get(f"{self.kind}_prompt_kwargs")
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, Mapping):
            raise ConfigError(
                f"{describe_item(item, position)}: {self.kind}_prompt_kwargs must be a dict, "
                f"got {type(kwargs).__name__}"
            )
        return {**item, **kwargs, **(extra or {})}

    def render(
        self, item: Mapping[str, Any], position: int, extra: Mapping[str, Any] | None = None
    ) -> str:
        import jinja2

        context = self.context(item, position, extra)
        try:
            return self._template.render(context).strip()
        except jinja2.UndefinedError as exc:
            missing = sorted(self.variables - set(context))
            name = ", ".join(repr(m) for m in missing) if missing else str(exc)
            fields = ", ".join(sorted(context)) or "none"
            raise ConfigError(
                f"{self.what}: variable {name} is undefined for {describe_item(item, position)}"
                f" (it has: {fields}); add the field, or pass it in {self.kind}_prompt_kwargs"
            ) from None


def make_template(
    value: str | Path | None, *, what: str, kind: str = "user"
) -> PromptTemplate | None:
    source = load_template(value, what=what)
    return None if source is None else PromptTemplate(source, what=what, kind=kind)


def render_messages(
    user: PromptTemplate,
    system: PromptTemplate | None,
    item: Mapping[str, Any],
    position: int,
    extra: Mapping[str, Any] | None = None,
) -> tuple[str | None, str]:
    """(system text or None, user text) for one item; raises ConfigError naming the variable."""
    system_text = system.render(item, position, extra) if system is not None else None
    return system_text or None, user.render(item, position, extra)


def chat_messages(system: str | None, user: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": user}]


# --- labels -----------------------------------------------------------------------------
# ASCII punctuation plus the full-width and typographic marks models like to add.
_PUNCT = string.punctuation + "“”‘’«»。，、！？：；（）【】《》…·—–"
_NON_WORD = re.compile(r"[^\w\s]+")


def normalize_text(text: str) -> str:
    """Case-folded, NFKC, whitespace collapsed, surrounding punctuation/markdown stripped."""
    text = unicodedata.normalize("NFKC", text or "").casefold()
    text = " ".join(text.split())
    return text.strip(_PUNCT + " ")


def answer_key(text: str) -> str:
    """The comparison key for free-form answers: normalized, inner punctuation removed too."""
    return " ".join(_NON_WORD.sub(" ", normalize_text(text)).split())


class LabelSet:
    """Turns a model's answer into a label, or None when it is not a valid one.

    `labels`: the allowed labels (a list), or a dict label -> aliases; `aliases`: more
    alias -> label pairs. Matching is on normalized text (case, whitespace, punctuation).
    `match="exact"`: the whole answer must be a label or alias. `match="word"` (default):
    an exact answer wins; otherwise the answer is valid when exactly one label (or alias)
    occurs in it as a whole word, e.g. "The sentiment is Positive." -> "positive"'s label.
    Without labels every non-empty answer is valid and answers compare by `answer_key`.
    """

    def __init__(
        self,
        labels: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
        aliases: Mapping[str, str] | None = None,
        match: str = "word",
    ) -> None:
        if match not in ("exact", "word"):
            raise ConfigError(f"match must be 'exact' or 'word', got {match!r}")
        self.match = match
        self.labels: list[str] = []
        self._lookup: dict[str, str] = {}
        if isinstance(labels, Mapping):
            pairs = [(label, [label, *(labels[label] or [])]) for label in labels]
        else:
            pairs = [(label, [label]) for label in (labels or [])]
        for label, names in pairs:
            self.labels.append(str(label))
            for name in names:
                self._add(str(name), str(label))
        for alias, label in (aliases or {}).items():
            if self.labels and str(label) not in self.labels:
                raise ConfigError(
                    f"alias {alias!r} points to {label!r}, which is not one of the labels "
                    f"({', '.join(self.labels)})"
                )
            self._add(str(alias), str(label))
        # Longest names first, so "very hard" is tried before "hard".
        self._patterns = [
            (re.compile(rf"(?<!\w){re.escape(key)}(?!\w)"), label)
            for key, label in sorted(self._lookup.items(), key=lambda kv: -len(kv[0]))
        ]

    def _add(self, name: str, label: str) -> None:
        key = answer_key(name)
        if not key:
            raise ConfigError(f"label or alias {name!r} is empty after normalization")
        previous = self._lookup.get(key)
        if previous is not None and previous != label:
            raise ConfigError(f"{name!r} would mean both {previous!r} and {label!r}")
        self._lookup[key] = label

    @property
    def closed(self) -> bool:
        return bool(self._lookup)

    def parse(self, text: str) -> str | None:
        key = answer_key(text)
        if not key:
            return None
        if not self.closed:
            return key
        if key in self._lookup:
            return self._lookup[key]
        if self.match == "exact":
            return None
        found: set[str] = set()
        rest = key
        for pattern, label in self._patterns:
            if pattern.search(rest):
                found.add(label)
                rest = pattern.sub(" ", rest)  # "very hard" must not also count as "hard"
        return found.pop() if len(found) == 1 else None

    def describe(self) -> dict[str, Any]:
        return {"labels": self.labels, "aliases": dict(self._lookup), "match": self.match}


def parse_aliases(pairs: Sequence[str] | None) -> dict[str, str]:
    """CLI `--alias pos=positive` pairs as a dict."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        alias, sep, label = pair.partition("=")
        if not sep or not alias.strip() or not label.strip():
            raise ConfigError(f"--alias {pair!r}: expected ALIAS=LABEL")
        out[alias.strip()] = label.strip()
    return out


# --- parsing responses ------------------------------------------------------------------
ParseResult = tuple[Any, str | None]  # (parsed value or None, error message or None)
_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


def extract_json(text: str) -> Any:
    """The JSON value in a response: the whole text, a ```json fence, or the first balanced
    {...} / [...] span. Raises ValueError when there is none."""
    candidates = [text.strip()]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            pass
    for start, char in enumerate(text):
        if char in "{[":
            try:
                value, _ = decoder.raw_decode(text[start:])
                return value
            except ValueError:
                continue
    raise ValueError("no JSON object or array in the response")


def _schema_validator(schema: Any) -> Callable[[Any], Any]:
    """A validator for a JSON-schema dict or a pydantic model class."""
    try:
        from pydantic import BaseModel
    except ImportError:  # pragma: no cover - pydantic is a dependency
        BaseModel = None  # type: ignore[assignment]
    if BaseModel is not None and isinstance(schema, type) and issubclass(schema, BaseModel):

        def check_model(value: Any) -> Any:
            from pydantic import ValidationError

            try:
                return schema.model_validate(value).model_dump(mode="json")
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"]) or "(root)"
                raise ValueError(f"schema: {where}: {err['msg']}") from None

        return check_model
    if isinstance(schema, Mapping):
        import jsonschema

        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ConfigError(f"schema is not a valid JSON schema: {exc.message}") from None
        validator = jsonschema.validators.validator_for(schema)(schema)

        def check_schema(value: Any) -> Any:
            error = next(iter(sorted(validator.iter_errors(value), key=str)), None)
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "(root)"
                raise ValueError(f"schema: {where}: {error.message}")
            return value

        return check_schema
    raise ConfigError(
        f"schema must be a JSON-schema dict or a pydantic model class, got {type(schema).__name__}"
    )


class ResponseParser:
    """The `parse` hook: a regex with named groups, "json" (optionally validated against
    `schema`), or any callable text -> value. `__call__` never raises: it returns the parsed
    value and None, or None and why parsing failed."""

    def __init__(self, parse: str | re.Pattern | Callable[[str], Any], schema: Any = None):
        self.schema = schema
        self._validate = _schema_validator(schema) if schema is not None else None
        if isinstance(parse, str) and parse.lower() == "json":
            self.kind, self.spec = "json", "json"
        elif isinstance(parse, (str, re.Pattern)):
            try:
                pattern = re.compile(parse, re.DOTALL) if isinstance(parse, str) else parse
            except re.error as exc:
                raise ConfigError(f"parse: invalid regular expression {parse!r}: {exc}") from None
            if not pattern.groupindex:
                raise ConfigError(
                    f"parse: the regular expression {pattern.pattern!r} has no named group; "
                    f"name the fields to extract, e.g. (?P<answer>.*)"
                )
            self.kind, self.spec, self._pattern = "regex", pattern.pattern, pattern
        elif callable(parse):
            name = getattr(parse, "__qualname__", type(parse).__name__)
            self.kind, self.spec, self._fn = "callable", f"{parse.__module__}.{name}", parse
        else:
            raise ConfigError(
                f"parse must be a regex string, 'json' or a callable, got {type(parse).__name__}"
            )

    def describe(self) -> dict[str, Any]:
        schema = self.schema
        if isinstance(schema, type):
            schema = f"{schema.__module__}.{schema.__qualname__}"
        return {"kind": self.kind, "spec": self.spec, "schema": schema}

    def __call__(self, text: str) -> ParseResult:
        try:
            if self.kind == "json":
                value = extract_json(text)
            elif self.kind == "regex":
                match = self._pattern.search(text)
                if match is None:
                    return None, f"regex {self.spec!r} did not match"
                value = match.groupdict()
                value = {k: (v.strip() if isinstance(v, str) else v) for k, v in value.items()}
            else:
                value = self._fn(text)
            if self._validate is not None:
                value = self._validate(value)
            return value, None
        except Exception as exc:  # a user's parser may raise anything: it is a failed parse
            return None, f"{type(exc).__name__}: {exc}" if self.kind == "callable" else str(exc)


# --- several models / temperatures / seeds ------------------------------------------------


@dataclass(frozen=True)
class Sampler:
    """One source of answers: a model with its own sampling parameters."""

    name: str
    model: str | Model | None
    params: SamplingParams

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": model_label(self.model),
            "temperature": self.params.temperature,
            "seed": self.params.seed,
        }


def model_label(model: str | Model | None) -> str | None:
    return model if model is None or isinstance(model, str) else model.name


def model_key(model: str | Model | None) -> str | None:
    """What identifies a model in a job dict (resume safety): its name or identity."""
    return model if model is None or isinstance(model, str) else model.identity


def check_model_name(model: str | Model | None) -> None:
    """Fail before any request on a model name no profile defines. Only the profile is
    looked up: HTTP clients are created inside the run's event loop, by the engine."""
    if model is None or not isinstance(model, str):
        return
    from forgekit.config import get_profile

    get_profile(model)


def build_samplers(
    *,
    model: str | Model | None,
    models: Sequence[str | Model] | None,
    temperatures: Sequence[float] | None,
    seeds: Sequence[int] | None,
    n: int | None,
    base: SamplingParams,
    seed: int,
) -> list[Sampler]:
    """Every combination of models x temperatures (x seeds), cycled up to `n` samplers.

    Repeats of one combination get distinct seeds, so one model at one temperature still
    gives `n` different samples (and `n` different cache keys).
    """
    if models and model is not None:
        raise ConfigError("give either model= or models=, not both")
    chosen_models = list(models) if models else [model]
    temps: list[float | None] = list(temperatures) if temperatures else [base.temperature]
    combos = [(m, t, s) for m in chosen_models for t in temps for s in (seeds or [None])]
    count = len(combos) if n is None else n
    if count < 1:
        raise ConfigError(f"the number of samples must be >= 1, got {count}")
    for m in chosen_models:
        check_model_name(m)
    samplers: list[Sampler] = []
    used: set[str] = set()
    for j in range(count):
        m, t, s = combos[j % len(combos)]
        if s is None or j >= len(combos):
            s = (seed if s is None else s) + j
        name = model_label(m) or "default"
        if len(temps) > 1:
            name += f"@T{t:g}" if t is not None else "@T-"
        if seeds and len(seeds) > 1:
            name += f"#s{s}"
        if name in used:
            name += f"#{j}"
        used.add(name)
        samplers.append(Sampler(name, m, SamplingParams.coerce(base, temperature=t, seed=s)))
    return samplers


def item_rng(seed: int, *parts: Any) -> random.Random:
    """A random generator that depends only on the seed and the item: resumable choices."""
    return random.Random(int(fingerprint([seed, *parts], 16), 16))


def as_params(value: SamplingParams | Mapping[str, Any] | None, **defaults: Any) -> SamplingParams:
    """Defaults overlaid with the caller's sampling parameters."""
    data = value.to_dict() if isinstance(value, SamplingParams) else dict(value or {})
    merged = {**defaults, **{k: v for k, v in data.items() if v is not None}}
    return SamplingParams.coerce(merged)


def input_records(data: Any) -> list[dict[str, Any]]:
    from forgekit.data.io import read_records

    if data is None:
        raise ConfigError("no input data: pass a DataFrame, a list of dicts or a JSONL path")
    records = read_records(data)
    if not records:
        raise ConfigError("the input holds no records")
    return records


# --- shared CLI options ---------------------------------------------------------------------


def add_prompt_options(
    parser: argparse.ArgumentParser,
    *,
    prefix: str = "",
    required: bool = True,
    default_user: str | None = None,
    what: str = "",
) -> None:
    """--user/--user-file and --system/--system-file (optionally with a prefix)."""
    dest = prefix.replace("-", "_")
    group = parser.add_argument_group(f"{what or 'prompt'} templates (Jinja2)")
    users = group.add_mutually_exclusive_group(required=required and default_user is None)
    users.add_argument(
        f"--{prefix}user",
        dest=f"{dest}user",
        default=default_user,
        help="user message template; {{ field }} is filled from each input record (or its "
        "user_prompt_kwargs)" + (f" (default {default_user!r})" if default_user else ""),
    )
    users.add_argument(
        f"--{prefix}user-file", dest=f"{dest}user_file", help="read the user template from a file"
    )
    systems = group.add_mutually_exclusive_group()
    systems.add_argument(
        f"--{prefix}system",
        dest=f"{dest}system",
        default=None,
        help="system message template (filled from the record or its system_prompt_kwargs)",
    )
    systems.add_argument(
        f"--{prefix}system-file",
        dest=f"{dest}system_file",
        help="read the system template from a file",
    )


def prompt_args(args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """{'user': str | Path, 'system': str | Path | None} from add_prompt_options' flags."""
    out = {}
    for kind in ("user", "system"):
        path = getattr(args, f"{prefix}{kind}_file", None)
        out[kind] = Path(path) if path else getattr(args, f"{prefix}{kind}", None)
    return out


def add_label_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--labels",
        nargs="+",
        default=None,
        help="the allowed labels; answers outside them count as invalid (default: free-form "
        "answers compared after normalization)",
    )
    parser.add_argument(
        "--alias",
        action="append",
        default=None,
        metavar="ALIAS=LABEL",
        help="another spelling of a label, e.g. --alias pos=positive (repeatable)",
    )
    parser.add_argument(
        "--match",
        choices=["word", "exact"],
        default="word",
        help="exact: the whole answer must be a label; word (default): also accept an answer "
        "that contains exactly one label as a whole word",
    )
