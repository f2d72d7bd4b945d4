"""`forge batch`: a parameterized notebook over a parameter grid (see forgekit.batch)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from forgekit import batch, batch_report
from forgekit.errors import ConfigError


def _run_command(args: argparse.Namespace, ctx: Any) -> Any:
    if args.max_failures < 0:
        raise ConfigError(f"--max-failures must be >= 0, got {args.max_failures}")
    if args.ray is not None and args.ray.isdigit():
        raise ConfigError(f"--ray took {args.ray!r} as the cluster address; write --ray=ADDRESS")
    df = batch.run_batch(
        args.template,
        args.grid,
        out=args.out,
        jobs=args.jobs,
        kernel=args.kernel,
        timeout=args.timeout,
        rerun=args.rerun,
        engine="ray" if args.ray is not None else "local",
        ray_address=args.ray or None,
    )
    table = df[["name", "status", "duration_s", "records", "error"]].fillna({"error": ""})
    table.attrs = dict(df.attrs)
    if args.junit:
        batch_report.write_junit(df, args.junit)
    batch_report.write_summary(
        batch_report.markdown_summary(df, max_failures=args.max_failures), args.summary
    )
    failed = df.attrs["forgekit"]["failed"]
    if failed > args.max_failures:
        # Exit status 1 (like any ForgeError), after the table: a CI job running a grid
        # must be able to tell a failed combination from success.
        raise batch.BatchFailedError(batch.failure_report(df), result=table)
    if failed:
        print(
            f"{batch.failure_report(df)}\n(tolerated: --max-failures {args.max_failures})",
            file=sys.stderr,
        )
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
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run each combination as a Ray task: a local cluster started on demand, or the "
        "cluster at ADDRESS (the --out folder must be visible to every worker; the cluster's "
        "CPUs, not --jobs, set how many run at once)",
    )
    ci = p.add_argument_group("CI")
    ci.add_argument(
        "--max-failures",
        type=int,
        default=0,
        metavar="N",
        help="exit 0 when at most N combinations failed (default 0)",
    )
    ci.add_argument(
        "--junit",
        default=None,
        metavar="PATH",
        help="write a JUnit XML report (one test case "
        "per combination, the error cell as the failure)",
    )
    ci.add_argument(
        "--summary",
        default=None,
        metavar="PATH",
        help="write a Markdown summary here (it is always appended to $GITHUB_STEP_SUMMARY "
        "when that is set)",
    )
    p.set_defaults(handler=_run_command)
