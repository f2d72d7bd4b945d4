"""Prompts and what comes back: Jinja2 templates filled per data item (checked for missing
variables before any request is sent), and the `parse` hook that turns an answer into
structured fields (a regex with named groups, JSON validated against a schema, or any
callable)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgekit.data.schema import extract_json, schema_validator
from forgekit.errors import ConfigError

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


@dataclass(frozen=True)
class Prompt:
    """One input record and its rendered messages."""

    item: dict[str, Any]
    position: int
    system: str | None
    user: str

    @property
    def messages(self) -> list[dict[str, str]]:
        return chat_messages(self.system, self.user)


def render_prompts(
    user: str, system: str | None, records: Sequence[dict[str, Any]]
) -> list[Prompt]:
    """Every record's prompt from the user and system template texts, rendered before any
    request: a missing variable stops the call here, naming the variable and the item."""
    user_t = PromptTemplate(user, what="user template")
    system_t = make_template(system, what="system template", kind="system")
    return [Prompt(r, i, *render_messages(user_t, system_t, r, i)) for i, r in enumerate(records)]


# --- parsing responses ------------------------------------------------------------------
ParseResult = tuple[Any, str | None]  # (parsed value or None, error message or None)


class ResponseParser:
    """The `parse` hook: a regex with named groups, "json" (optionally validated against
    `schema`), or any callable text -> value. `__call__` never raises: it returns the parsed
    value and None, or None and why parsing failed."""

    def __init__(self, parse: str | re.Pattern | Callable[[str], Any], schema: Any = None):
        self.schema = schema
        self._validate = schema_validator(schema) if schema is not None else None
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
