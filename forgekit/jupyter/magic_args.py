"""From a `%forge` line and a `%%forge` cell to the argv the `forge` parser reads.

- Notebook variables go into the line (`{name}`, `$name`): `expand_variables`.
- A `%%forge` cell body becomes the `--user` template of a template command
  (`cell_as_user_template`); a `%%forge system` body is added as `--system` to later
  template commands (`with_system_template`).
- What a subcommand accepts is read from the CLI parser itself (`command_options`), so a
  newly declared method's options are known without a list kept here.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from forgekit.cli import UsageError, build_parser

# `{name}` (not `{{name}}`) or `$name`.
_PLACEHOLDER = re.compile(
    r"(?<![{$\\])\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})|\$([A-Za-z_][A-Za-z0-9_]*)"
)


def expand_variables(line: str, namespace: dict[str, Any]) -> str:
    """Put notebook variables into a magic line: `{name}` or `$name` -> the value.

    IPython's own expansion is off for `%forge` (it would mangle `{{ input }}` in Jinja2
    templates), so this narrower one applies to the line only, never to a cell body:
    a name that is not a defined variable, `{{ ... }}` and `{ spaced }` stay as written.
    Outside quotes a value is shell-quoted, so a value with spaces stays one argument.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in namespace:
            return match.group(0)
        value = str(namespace[name])
        inside_quotes = _quote_state(line[: match.start()]) is not None
        return value if inside_quotes else shlex.quote(value)

    return _PLACEHOLDER.sub(replace, line)


def _quote_state(prefix: str) -> str | None:
    """The quote character open at the end of `prefix` (shell rules), or None."""
    quote = None
    escaped = False
    for char in prefix:
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote is None and char in "'\"":
            quote = char
        elif char == quote:
            quote = None
    return quote


def command_name(argv: list[str]) -> str | None:
    """The subcommand: the first word that is not a global option."""
    for word in argv:
        if not word.startswith("-"):
            return word
    return None


_OPTIONS: dict[str, set[str]] = {}


def command_options(command: str | None) -> set[str]:
    """The option strings a subcommand accepts (empty for an unknown one)."""
    if command is None:
        return set()
    if command not in _OPTIONS:  # first use, or a method declared since
        parser = build_parser("%forge")
        for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
            for name, sub in action.choices.items():
                _OPTIONS[name] = set(sub._option_string_actions)
    return _OPTIONS.get(command, set())


def has_option(argv: list[str], option: str) -> bool:
    """Whether `option` is given in argv, as `--opt value` or `--opt=value`."""
    return any(word == option or word.startswith(option + "=") for word in argv)


def cell_as_user_template(argv: list[str], cell: str) -> list[str]:
    """`%%forge CMD ...`: the cell body as CMD's `--user` template (CMD must take one)."""
    command = command_name(argv)
    options = command_options(command)
    if command is None:
        raise UsageError("%%forge needs a command on its first line, e.g. %%forge generate")
    if "--user" not in options:
        if cell.strip():
            raise UsageError(
                f"%%forge {command}: this command takes no cell body; use %forge "
                f"{command} ... on one line (template commands take the body as --user)"
            )
        return argv
    given = [o for o in ("--user", "--user-file") if has_option(argv, o)]
    if given:
        raise UsageError(
            f"%%forge {command}: the cell body is the user template; drop {given[0]} "
            "from the first line"
        )
    body = cell.strip("\n")
    if not body.strip():
        raise UsageError(f"%%forge {command}: the cell body (the user template) is empty")
    # `--user=...` keeps a body that starts with "-" from being read as an option.
    return [*argv, f"--user={body}"]


def with_system_template(argv: list[str], system_template: str | None) -> list[str]:
    """argv with `--system=<the %%forge system template>` for a template command that
    names no system prompt of its own."""
    if system_template is None:
        return argv
    options = command_options(command_name(argv))
    if "--system-file" not in options or any(
        has_option(argv, o) for o in ("--system", "--system-file")
    ):
        return argv
    return [*argv, f"--system={system_template}"]
