"""`forge <method>` commands. Each method module defines `add_command(subparsers)` next to
its function; this registry collects them. The parsers are shared with `%forge`."""

from __future__ import annotations

import argparse
import importlib

# Method modules under forgekit.methods that provide `add_command(subparsers)`.
METHOD_MODULES = (
    "magpie",
    "generate",
    "vote",
    "cascade",
    "evol",
    "dpo",
    "self_instruct",
    "cosmopedia",
    "reasoning",
    "doc_qa",
    "translate",
    "judge",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    for name in METHOD_MODULES:
        importlib.import_module(f"forgekit.methods.{name}").add_command(subparsers)
