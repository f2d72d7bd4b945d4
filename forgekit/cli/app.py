"""The `forge` command. The `%forge` magics use the very same parser (`build_parser`), so every
option is defined once.

Each module in `COMMAND_MODULES` has a `register(subparsers)` function that adds its
subcommands with `set_defaults(handler=...)`; the method commands are generated from the
method declarations (forgekit.cli.methods). A handler takes `(args, ctx: CommandContext)`
and returns a DataFrame, a string or a dict; it signals failure by raising a `ForgeError`
(exit status 1), which may carry a `result` to show before the error (`forge batch` with
failed combinations).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from forgekit import __version__
from forgekit.errors import ConfigError, ForgeError

COMMAND_MODULES = (
    "forgekit.cli.core",
    "forgekit.cli.methods",
    "forgekit.cli.evaluate",
    "forgekit.cli.decontaminate",
    "forgekit.cli.export",
    "forgekit.cli.run",
    "forgekit.cli.batch",
    "forgekit.cli.runs",
)


class UsageError(ForgeError):
    """Bad command-line words: an unknown command or option, a missing value."""


class HelpShown(Exception):
    """Raised instead of exiting after --help has been printed (so a magic can return)."""


class CommandParser(argparse.ArgumentParser):
    """argparse that raises instead of calling sys.exit, so the magics can use it too."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")

    def exit(self, status: int = 0, message: str | None = None):  # type: ignore[override]
        if message:
            print(message, file=sys.stderr, end="")
        if status:
            raise UsageError(message or f"{self.prog}: exited with status {status}")
        raise HelpShown()


@dataclass
class CommandContext:
    """What a command handler may use besides its options.

    `namespace` holds notebook variables when called from a magic, so `--input df` can name a
    DataFrame; `cell` is the body of a `%%forge` cell.
    """

    namespace: dict[str, Any] | None = None
    cell: str | None = None
    interactive: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def resolve_input(self, value: Any) -> Any:
        """A notebook variable of that name if there is one, else the value (a path, or a
        Hub name `hf:org/name[:split]`) itself."""
        if isinstance(value, str) and value.startswith("hf:"):
            return value
        if isinstance(value, str) and self.namespace is not None and value.isidentifier():
            if value in self.namespace:
                return self.namespace[value]
            if not os.path.exists(value):
                raise ConfigError(
                    f"--input {value}: no notebook variable and no file named {value!r}"
                )
        if isinstance(value, str) and not os.path.exists(value):
            raise ConfigError(f"--input {value}: no such file")
        return value


def build_parser(prog: str = "forge") -> CommandParser:
    parser = CommandParser(
        prog=prog,
        description="forgekit: synthesize and evaluate LLM training data.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"forgekit {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks instead of one-line errors"
    )
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=CommandParser
    )
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    # dict.fromkeys: a command with aliases appears once per name in `choices`.
    for command in dict.fromkeys(subparsers.choices.values()):
        add_common_options(command)
    return parser


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options every subcommand accepts after its name: `--debug`, and `-o NAME`, the
    notebook variable the result is bound to (the `%forge` magic; the CLI refuses it)."""
    group = parser.add_argument_group("notebook (%forge)")
    group.add_argument(
        "-o",
        "--output-var",
        dest="output_var",
        metavar="NAME",
        default=None,
        help="bind the resulting DataFrame to this notebook variable (%%forge only)",
    )
    # SUPPRESS: a subcommand's default must not undo `forge --debug <command>`.
    group.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show full tracebacks instead of one-line errors",
    )


def parse(argv: Sequence[str] | str, prog: str = "forge") -> argparse.Namespace:
    """Parse a command line (a list, or a string split with shell quoting)."""
    if isinstance(argv, str):
        argv = shlex.split(argv)
    parser = build_parser(prog)
    args = parser.parse_args(list(argv))
    if not getattr(args, "handler", None):
        parser.print_help()
        raise HelpShown()
    return args


def execute(args: argparse.Namespace, ctx: CommandContext | None = None) -> Any:
    return args.handler(args, ctx or CommandContext())


def render(result: Any) -> str:
    """How the CLI prints a handler's result."""
    if result is None:
        return ""
    if isinstance(result, str):
        return result
    if hasattr(result, "render_text"):  # a dry run's Estimate
        return result.render_text()
    if hasattr(result, "to_string"):
        info = result.attrs.get("forgekit", {}) if hasattr(result, "attrs") else {}
        table = result
        if info and "input" in result.columns:
            # A run's records: the readable columns; the full record is in the JSONL.
            # Preference data shows its pair instead of an empty output.
            pair = "chosen" in result.columns and result["chosen"].notna().any()
            wanted = ("id", "input", "chosen", "rejected") if pair else ("id", "input", "output")
            table = result[[c for c in wanted if c in result.columns]]
        text = table.map(_cell).to_string(max_rows=40) if len(table) else "(no records)"
        if info.get("summary"):
            text += "\n" + info["summary"]
        gate = info.get("gate") or {}
        if gate.get("target"):  # what the target cost (forgekit.methods.gate)
            rejected = ", ".join(f"{k} {v}" for k, v in gate["rejected"].items()) or "none"
            text += (
                f"\ntarget {gate['target']}: {gate['passed']} passed in {gate['attempts']} "
                f"attempts (rejected: {rejected})"
            )
        return text
    return json.dumps(result, indent=2, ensure_ascii=False, default=str)


def _cell(value: Any, width: int = 60) -> Any:
    """One line, at most `width` characters: a table cell a terminal can show."""
    if not isinstance(value, str):
        return value
    text = " ".join(value.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = parse(argv)
        if getattr(args, "output_var", None):
            raise UsageError(
                f"-o/--output-var {args.output_var}: binds a notebook variable and only works "
                "in the %forge magic; use --out FILE to save records from the command line"
            )
        output = render(execute(args))
    except HelpShown:
        return 0
    except KeyboardInterrupt:
        print("forge: interrupted; finished records were kept", file=sys.stderr)
        return 130
    except ForgeError as exc:
        if debug:
            raise
        # An error that comes with a result (`forge batch`: the index of a grid in which some
        # combinations failed) shows the result first, then fails.
        partial = getattr(exc, "result", None)
        if partial is not None:
            print(render(partial))
        print(f"forge: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        if debug:
            raise
        print(f"forge: error: {exc}", file=sys.stderr)
        return 1
    if output:
        print(output)
    return 0
