"""`forge batch`: a parameterized notebook over a parameter grid (see forgekit.batch)."""

from __future__ import annotations

import argparse
from typing import Any

from forgekit import batch


def _run_command(args: argparse.Namespace, ctx: Any) -> Any:
    df = batch.run_batch(
        args.template,
        args.grid,
        out=args.out,
        jobs=args.jobs,
        kernel=args.kernel,
        timeout=args.timeout,
        rerun=args.rerun,
    )
    table = df[["name", "status", "duration_s", "records", "error"]].fillna({"error": ""})
    table.attrs = dict(df.attrs)
    if df.attrs["forgekit"]["failed"]:
        # Exit status 1 (like any ForgeError), after the table: a CI job running a grid
        # must be able to tell a failed combination from success.
        raise batch.BatchFailedError(batch.failure_report(df), result=table)
    return table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "batch",
        help="run a parameterized notebook over a parameter grid with papermill",
        description=(batch.__doc__ or "").split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("template", help="the notebook to run (a file in templates/, or your own)")
    p.add_argument("--grid", required=True, help="YAML grid: product / cases / fixed")
    p.add_argument("--jobs", type=int, default=1, help="notebooks run in parallel (default 1)")
    p.add_argument(
        "--out",
        default="batch-runs",
        help="folder for executed notebooks, data and the index (default batch-runs)",
    )
    p.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")
    p.add_argument("--timeout", type=float, default=None, help="seconds allowed per cell")
    p.add_argument("--rerun", action="store_true", help="run finished combinations again too")
    p.set_defaults(handler=_run_command)
