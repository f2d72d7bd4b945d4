"""`forge runs`: the background runs on this machine (see forgekit.background)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "runs",
        help="list, follow, cancel background runs (started with --background)",
        description="Background runs on this machine, newest first. A run started with "
        "`forge <method> ... --background` (or %forge ... --background) runs in its own "
        "process; its records and events live in a folder under $FORGEKIT_RUNS_DIR "
        "(default: the forgekit cache's runs/).",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--follow",
        "--attach",
        dest="follow",
        metavar="ID",
        help="show a run's progress until it ends (in a notebook: its live monitor); "
        "ID may be a unique prefix or 'last'",
    )
    which.add_argument("--cancel", metavar="ID", help="stop a run; finished records are kept")
    which.add_argument("--records", metavar="ID", help="the records a run has written so far")
    parser.add_argument("--running", action="store_true", help="list only running runs")
    parser.set_defaults(handler=_cmd_runs)


def _cmd_runs(args: argparse.Namespace, ctx: Any) -> Any:
    from forgekit import background

    interactive = ctx is not None and ctx.interactive
    if args.cancel:
        run = background.get(args.cancel)
        run.cancel()
        state = run.wait()
        return f"{run.id}: {state['status']} ({state['done']} records kept in {run.out})"
    if args.records:
        return background.get(args.records).result()
    if args.follow:
        run = background.get(args.follow)
        if interactive:
            return run  # the magic shows its live monitor
        return _follow_in_terminal(run)
    return background.list_runs(include_finished=not args.running)


def _follow_in_terminal(run: Any) -> str:
    """A tqdm bar fed from the run's event log until it finishes (Ctrl-C stops following,
    not the run)."""
    from tqdm.std import tqdm

    bar = tqdm(desc=f"{run.command} {run.id}", unit="rec", file=sys.stderr)
    final: dict[str, Any] = {}
    try:
        for event, data in run.follow():
            if event == "start" and data.get("total"):
                bar.total = data["total"]
            stats = data.get("stats")
            if stats is not None:
                bar.update(stats.ok + stats.skipped - bar.n)
                bar.set_postfix(failed=stats.failed, refresh=False)
            if event == "finished":
                final = data
    except KeyboardInterrupt:
        return f"{run.id}: still running (stopped following); cancel: forge runs --cancel {run.id}"
    finally:
        bar.close()
    detail = final.get("summary") or final.get("error") or ""
    return f"{run.id}: {final.get('status', '?')}" + (f" — {detail}" if detail else "")
