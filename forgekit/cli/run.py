"""`forge run config.yaml`: a method described by a YAML file (see forgekit.runfile)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from forgekit.cli.app import UsageError
from forgekit.runfile import example, load_plan


def _run_command(args: argparse.Namespace, ctx: Any) -> Any:
    if args.example:
        return example(args.example)
    if args.config is None:
        raise UsageError("forge run: give a config file (or --example METHOD)")
    plan = load_plan(args.config)
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
    if args.dry_run:  # the call, and what it would send, stage by stage (nothing is sent)
        estimate = plan(**overrides, progress=False, estimate=True)
        return json.dumps(plan.describe(), indent=2, default=str) + "\n\n" + str(estimate)
    extra = dict(getattr(ctx, "extra", {}).get("run_config", {})) if ctx is not None else {}
    return plan(**overrides, **extra)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="run a synthesis method described by a YAML config file",
        description="Run any method (generate, vote, cascade, evol, dpo, magpie, ...) from a "
        "YAML file with the keys method, model/models, prompts (name or name_file), input, "
        "output, sampling, params and run (engine options). The file is validated against "
        "the method's options; errors name the key. Relative paths are relative to the file. "
        "`forge run --example METHOD` prints a commented skeleton of every key.",
    )
    p.add_argument("config", nargs="?", help="the YAML config file")
    p.add_argument(
        "--example",
        metavar="METHOD",
        default=None,
        help="print a YAML skeleton for METHOD, every option with its default and help",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate, show the call and estimate it (requests, tokens and cost per stage); "
        "send nothing",
    )
    p.add_argument("--out", default=None, help="write records here instead of `output`")
    p.add_argument("--max-requests", type=int, default=None, help="stop after this many requests")
    p.add_argument(
        "--overwrite", action="store_true", help="move an existing output aside and start afresh"
    )
    p.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=_run_command)
