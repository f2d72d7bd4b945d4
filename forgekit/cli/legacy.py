"""COMPAT (issue 12) — the command line of the methods not yet declared with
forgekit.methods.spec. Each still has a hand-written `add_command(subparsers)`; this module
registers them and holds the option helpers only they use. Delete a name from
`LEGACY_METHODS` when its module is converted; delete this module (and its line in
forgekit.cli.app.COMMAND_MODULES) with the last one.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

from forgekit.cli.options import (  # noqa: F401 - the shared groups, as legacy modules import them
    add_input_option,
    add_model_option,
    add_run_options,
    add_sampling_options,
    read_input,
    run_config_from_args,
)

# Method modules under forgekit.methods that still define `add_command(subparsers)`.
LEGACY_METHODS: tuple[str, ...] = ()
# Helper modules of forgekit.methods that still import this module (for their old callers).
LEGACY_HELPERS = ("_prompting", "_text", "_common")


def register(subparsers: argparse._SubParsersAction) -> None:
    for name in LEGACY_METHODS:
        importlib.import_module(f"forgekit.methods.{name}").add_command(subparsers)


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


def call_options(args: argparse.Namespace, ctx: Any) -> dict[str, Any]:
    """The keyword arguments every map-style method takes from its command line: sampling
    params, record limit, seed, output file and run config."""
    return {
        "params": {"temperature": args.temperature, "max_tokens": args.max_tokens},
        "n": args.n,
        "seed": args.seed,
        "out": args.out,
        "config": run_config_from_args(args, ctx),
    }


def split_list(value: str | None) -> list[str] | None:
    """A comma-separated command-line value as a list (None stays None)."""
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]
