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
"""

from __future__ import annotations

import argparse
import keyword
import os
import re
import shlex
import sys
import threading
import time
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand

from forgekit.cli import (
    CommandContext,
    HelpShown,
    UsageError,
    build_parser,
    execute,
    parse,
)
from forgekit.errors import ForgeError

# How long a run waits for the monitor widget to be drawn before it falls back to text.
RENDER_GRACE_S = 1.5

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


def widgets_enabled(shell: Any) -> bool:
    """Widgets only in a Jupyter kernel, and not when FORGEKIT_NO_WIDGETS is set."""
    if os.environ.get("FORGEKIT_NO_WIDGETS", "").strip() not in ("", "0"):
        return False
    return getattr(shell, "kernel", None) is not None


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
        if _command_name(argv) == "system":
            return self._system(argv, cell)
        if cell is not None:
            argv = self._cell_as_template(argv, cell)
        argv = self._with_system_template(argv)
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
        with _waiting(monitor):
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

    # -- templates from the cell body ------------------------------------------------------
    def _cell_as_template(self, argv: list[str], cell: str) -> list[str]:
        command = _command_name(argv)
        options = _command_options(command)
        if command is None:
            raise UsageError("%%forge needs a command on its first line, e.g. %%forge generate")
        if "--user" not in options:
            if cell.strip():
                raise UsageError(
                    f"%%forge {command}: this command takes no cell body; use %forge "
                    f"{command} ... on one line (template commands take the body as --user)"
                )
            return argv
        given = [o for o in ("--user", "--user-file") if _has_option(argv, o)]
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

    def _with_system_template(self, argv: list[str]) -> list[str]:
        if self.system_template is None:
            return argv
        options = _command_options(_command_name(argv))
        if "--system-file" not in options or any(
            _has_option(argv, o) for o in ("--system", "--system-file")
        ):
            return argv
        return [*argv, f"--system={self.system_template}"]

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


class TextProgress:
    """A plain tqdm bar on stderr, fed by engine events (papermill, terminals, tests).

    `when`: a condition checked from RENDER_GRACE_S seconds after the start: the bar only
    appears while it holds (used to fall back to text when no front end draws the widget).
    """

    def __init__(self, title: str, when: Any = None) -> None:
        self.title = title
        self.when = when
        self.bar: Any = None
        self.total: int | None = None
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def handle_event(self, event: str, data: dict[str, Any]) -> None:
        stats = data.get("stats")
        with self._lock:
            if event == "start":
                self.total = data.get("total")
                self.started = time.monotonic()
            if self.bar is None and self._wanted():
                from tqdm.std import tqdm

                self.bar = tqdm(
                    total=self.total, desc=self.title, unit="rec", file=sys.stderr, leave=True
                )
            if self.bar is None:
                return
            if stats is not None:
                done = stats.ok + stats.skipped
                self.bar.update(done - self.bar.n)
                batch = data.get("batches")  # batch mode: the provider's batches
                extra = {"batch": _batch_text(batch)} if event == "batch" and batch else {}
                self.bar.set_postfix(
                    failed=stats.failed,
                    retried=stats.retried,
                    cached=stats.cached,
                    refresh=bool(extra),
                    **extra,
                )
            if event == "end":
                self.bar.close()

    def _wanted(self) -> bool:
        if self.when is None:
            return True
        return time.monotonic() - self.started >= RENDER_GRACE_S and bool(self.when())


def _batch_text(overview: dict[str, Any]) -> str:
    states = ", ".join(f"{n} {s}" for s, n in sorted(overview.get("by_status", {}).items()))
    return f"{overview.get('completed', 0)}/{overview.get('total', 0)} done ({states})"


class _waiting:
    """While a run waits in the cell's thread, push progress to the monitor through the
    engine's wait hook (the monitor's Cancel click itself is handled in forgekit's widget
    subshell, see forgekit.jupyter.uipoll)."""

    def __init__(self, monitor: Any) -> None:
        self.monitor = monitor
        self.previous = None

    def __enter__(self) -> _waiting:
        from forgekit.engine.runner import set_wait_hook

        if self.monitor is not None:
            self.previous = set_wait_hook(self.monitor.flush)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.monitor is None:
            return
        from forgekit.engine.runner import set_wait_hook

        set_wait_hook(self.previous)
        self.monitor.flush(force=True)


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


def _command_name(argv: list[str]) -> str | None:
    """The subcommand: the first word that is not a global option."""
    for word in argv:
        if not word.startswith("-"):
            return word
    return None


_OPTIONS: dict[str, set[str]] = {}


def _command_options(command: str | None) -> set[str]:
    """The option strings a subcommand accepts (empty for an unknown one)."""
    if command is None:
        return set()
    if command not in _OPTIONS:  # first use, or a method declared since
        parser = build_parser("%forge")
        for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
            for name, sub in action.choices.items():
                _OPTIONS[name] = set(sub._option_string_actions)
    return _OPTIONS.get(command, set())


def _has_option(argv: list[str], option: str) -> bool:
    return any(word == option or word.startswith(option + "=") for word in argv)


def _wants_top_help(argv: list[str]) -> bool:
    return _command_name(argv) is None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text.removeprefix("%forge: ")
    if isinstance(exc, (FileNotFoundError, FileExistsError)) and exc.filename:
        text = f"{exc.filename}: {exc.strerror or text}" if exc.strerror else text
    return text


def _frame_bundle(frame: Any) -> dict[str, Any] | None:
    """Display a forgekit result DataFrame as a DatasetViewer in Jupyter; the DataFrame's
    own text and HTML stay in the output for viewers without widgets."""
    from IPython import get_ipython

    if "forgekit" not in getattr(frame, "attrs", {}) or not widgets_enabled(get_ipython()):
        return None
    from forgekit.jupyter.widgets import DatasetViewer

    try:
        info = frame.attrs["forgekit"]
        viewer = DatasetViewer(frame, title=f"{len(frame)} records · {info.get('status', '')}")
        bundle = viewer._repr_mimebundle_()
    except Exception:  # a display must never fail the cell: the plain table still shows
        return None
    if isinstance(bundle, tuple):  # (data, metadata)
        bundle = bundle[0]
    bundle = dict(bundle or {})
    bundle.pop("text/plain", None)  # the DataFrame's own text and HTML fill the rest
    return bundle or None


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext forgekit`."""
    ipython.register_magics(ForgeMagics)
    try:
        import pandas as pd

        formatter = ipython.display_formatter.mimebundle_formatter
        formatter.for_type(pd.DataFrame, _frame_bundle)
    except Exception:  # a shell without rich display: results show as plain frames
        pass


__all__ = ["ForgeMagics", "MagicError", "RunInterrupted", "load_ipython_extension"]
