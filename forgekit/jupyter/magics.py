"""`%forge` / `%%forge`: the `forge` command line inside a notebook.

The magics are a thin shell over `forgekit.cli`: the same parser (`build_parser`), the same
handlers, the same options — for methods, generated from their declarations, so a newly
declared method is a magic at once. What only a notebook has is added here:

- `--input df` names a notebook variable (`CommandContext.namespace`), and `-o NAME`
  (defined once, for every command, in `forgekit.cli.app.add_common_options`) binds the result
  to one. The result is also returned, so it displays.
- `%%forge generate ...`: the cell body is the user prompt template (any command with a
  `--user` template option). `%%forge system` keeps its body as the system template of
  later template commands until `%forge system --clear`.
- Method runs show a live `RunMonitor` in Jupyter (plain text progress elsewhere, and when
  no front end draws the widget, e.g. under papermill; FORGEKIT_NO_WIDGETS=1 forces text).
  Its Cancel button and a kernel interrupt both stop the run and keep finished records.
- Errors are one line (what was wrong, how to fix it), not a traceback, unless `--debug`.
  `%forge batch` with failed combinations shows its index table, then fails the cell
  listing each failed combination.

From line and cell to argv: forgekit.jupyter.magic_args; progress bars, the monitor's wait
hook and the DataFrame display: forgekit.jupyter.run_display.
"""

from __future__ import annotations

import argparse
import keyword
import shlex
import sys
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand

from forgekit.cli import CommandContext, HelpShown, UsageError, execute, parse
from forgekit.errors import ForgeError
from forgekit.jupyter.magic_args import (
    cell_as_user_template,
    command_name,
    expand_variables,
    with_system_template,
)
from forgekit.jupyter.run_display import (
    MonitorWaitHook,
    TextProgress,
    frame_bundle,
    widgets_enabled,
)

NOTEBOOK_HELP = """
notebook extras (%forge / %%forge):
  -o NAME               after any command: bind the result to the notebook variable NAME
  --input NAME          a DataFrame or list variable instead of a file
  %%forge generate ...  the cell body is the user prompt template ({{ field }} kept as is)
  %%forge system        the cell body becomes the system template of later template
                        commands; `%forge system` shows it, `%forge system --clear` drops it
  --background          run in a separate process; the kernel stays free. A live
                        monitor shows it; `%forge runs` lists runs, `%forge runs
                        --follow ID` reattaches (also after a kernel restart)
  --debug               show the full traceback of an error
  FORGEKIT_NO_WIDGETS=1 plain text progress instead of the run monitor widget
"""


class MagicError(Exception):
    """A magic's error, shown as one line instead of a traceback (IPython calls
    `_render_traceback_`). The cell still fails, so "Run All" and papermill stop."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31m%forge error:\x1b[0m {self}"]


class RunInterrupted(KeyboardInterrupt):
    """A kernel interrupt stopped a run; finished records were kept (one-line display)."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;33m%forge interrupted:\x1b[0m {self}"]


@magics_class
class ForgeMagics(Magics):
    """`%forge <command> ...` and `%%forge <command> ...`; see `%forge --help`."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.system_template: str | None = None

    @no_var_expand
    @line_cell_magic
    def forge(self, line: str, cell: str | None = None) -> Any:
        """Run a forgekit command: `%forge --help` lists them, `%forge <cmd> --help` tells
        each one's options."""
        try:
            argv = shlex.split(expand_variables(line, self.shell.user_ns))
        except ValueError as exc:
            raise MagicError(f"cannot split the line: {exc} (check the quotes)") from None
        debug = "--debug" in argv
        try:
            return self._run(argv, cell)
        except HelpShown:
            if _wants_top_help(argv):
                print(NOTEBOOK_HELP)
            return None
        except RunInterrupted:
            raise
        except KeyboardInterrupt:
            raise RunInterrupted("stopped before the run started") from None
        except (ForgeError, FileNotFoundError, FileExistsError, ValueError) as exc:
            if debug:
                raise
            # An error with a result (`%forge batch` with failed combinations) lists one
            # failure per line; the result itself was displayed by `_run`.
            shown = getattr(exc, "result", None) is not None
            raise MagicError(str(exc) if shown else _one_line(exc)) from None

    # -- the command ---------------------------------------------------------------------
    def _run(self, argv: list[str], cell: str | None) -> Any:
        if command_name(argv) == "system":
            return self._system(argv, cell)
        if cell is not None:
            argv = cell_as_user_template(argv, cell)
        argv = with_system_template(argv, self.system_template)
        args = parse(argv, prog="%forge")
        target = getattr(args, "output_var", None)
        if target is not None and (not target.isidentifier() or keyword.iskeyword(target)):
            raise UsageError(f"-o {target}: not a valid Python variable name")
        ctx = CommandContext(namespace=self.shell.user_ns, cell=cell, interactive=True)
        if hasattr(args, "no_progress") and not getattr(args, "background", False):
            result = self._run_with_progress(args, ctx)  # a command that runs the engine
        else:
            try:
                result = execute(args, ctx)
            except ForgeError as exc:
                # `%forge batch` with failed combinations: bind and show the index table,
                # then fail the cell with the list of failures.
                partial = getattr(exc, "result", None)
                if partial is None:
                    raise
                if target is not None:
                    self.shell.user_ns[target] = partial
                from IPython.display import display

                display(partial)
                raise
        if target is not None:
            self.shell.user_ns[target] = result
        if type(result).__name__ == "BackgroundRun":
            return self._show_background(result)
        if isinstance(result, str):
            print(result)
            return None
        return result

    def _run_with_progress(self, args: argparse.Namespace, ctx: CommandContext) -> Any:
        """Run a method command with a live RunMonitor (Jupyter) or text progress."""
        show = not args.no_progress
        args.no_progress = True  # the engine's own bar is replaced by ours
        title = args.command
        handlers: list[Any] = []
        cancel = None
        monitor = None
        if show and widgets_enabled(self.shell):
            from IPython.display import display

            from forgekit.jupyter.widgets import RunMonitor

            monitor = RunMonitor(title=title)
            display(monitor)
            handlers.append(monitor.handle_event)
            cancel = monitor.cancel_event
            # Text progress only if no front end draws the monitor (papermill, nbclient).
            handlers.append(TextProgress(title, when=lambda: not monitor.rendered).handle_event)
        elif show:
            handlers.append(TextProgress(title).handle_event)
        ended: dict[str, Any] = {}
        handlers.append(lambda event, data: ended.update(data) if event == "end" else None)
        ctx.extra["run_config"] = {"on_event": handlers, "cancel_event": cancel}
        with MonitorWaitHook(monitor):
            try:
                result = execute(args, ctx)
            except KeyboardInterrupt:
                if monitor is not None:
                    monitor.mark_interrupted()
                raise self._interrupted(args, ended.get("result")) from None
        if monitor is None and hasattr(result, "attrs"):
            summary = result.attrs.get("forgekit", {}).get("summary")
            if summary:
                print(summary, file=sys.stderr)
        return result

    def _show_background(self, run: Any) -> Any:
        """A background run (`--background`, `%forge runs --follow ID`): its live monitor,
        or one line where no front end draws widgets; the kernel is free at once."""
        if widgets_enabled(self.shell):
            from forgekit.jupyter.background import watch

            run.live_monitor = watch(run)  # also reachable from `-o NAME`
            return run.live_monitor
        print(f"forgekit: {run!r}; `%forge runs` lists runs, `%forge runs --cancel {run.id}`")
        return None

    def _interrupted(self, args: argparse.Namespace, run: Any) -> RunInterrupted:
        """Keep what finished: bind it to -o NAME, and say where it is."""
        records = list(getattr(run, "records", None) or [])
        where = []
        if records and getattr(args, "output_var", None):
            self.shell.user_ns[args.output_var] = run.to_dataframe()
            where.append(f"variable {args.output_var}")
        if getattr(run, "out", None):
            where.append(str(run.out))
        kept = f"{len(records)} finished record(s) kept"
        if where:
            kept += " in " + " and ".join(where)
        return RunInterrupted(f"{args.command}: {kept}")

    # -- `%%forge system` ----------------------------------------------------------------
    def _system(self, argv: list[str], cell: str | None) -> None:
        rest = argv[argv.index("system") + 1 :]
        if rest not in ([], ["--clear"]):
            raise UsageError(
                "usage: %%forge system (cell body = system template), %forge system, "
                "%forge system --clear"
            )
        if rest == ["--clear"]:
            self.system_template = None
            print("forgekit: system template cleared")
        elif cell is not None:
            body = cell.strip("\n")
            self.system_template = body if body.strip() else None
            print(
                f"forgekit: system template set ({len(body)} characters); template commands "
                "use it until `%forge system --clear`"
                if self.system_template
                else "forgekit: empty cell: system template cleared"
            )
        else:
            print(self.system_template or "forgekit: no system template set")
        return None


# --- helpers ------------------------------------------------------------------------------


def _wants_top_help(argv: list[str]) -> bool:
    return command_name(argv) is None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text.removeprefix("%forge: ")
    if isinstance(exc, (FileNotFoundError, FileExistsError)) and exc.filename:
        text = f"{exc.filename}: {exc.strerror or text}" if exc.strerror else text
    return text


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext forgekit`."""
    ipython.register_magics(ForgeMagics)
    try:
        import pandas as pd

        formatter = ipython.display_formatter.mimebundle_formatter
        formatter.for_type(pd.DataFrame, frame_bundle)
    except Exception:  # a shell without rich display: results show as plain frames
        pass


__all__ = ["ForgeMagics", "MagicError", "RunInterrupted", "load_ipython_extension"]
