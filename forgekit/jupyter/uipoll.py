"""Widget messages that reach the kernel while a cell is still running.

ipykernel runs one shell message at a time on its main thread: while a cell executes, a
click on a widget (a `comm_msg` from the front end) waits in the queue until the cell has
finished, so a run monitor's Cancel button would only act after the run. The PyPI package
jupyter-ui-poll answered this by calling `kernel.do_one_iteration()` from the busy cell;
ipykernel 7 no longer has that method (jupyter-ui-poll 1.1 then silently does nothing),
and reading the main shell socket ourselves cannot keep queued cells in order ("Run All":
a cell queued behind the run could end up after the next one).

ipykernel 7 has a better way in: kernel subshells (JEP 91). Shell messages arrive in a
"shell channel" thread that routes each one to the main shell or to a subshell, a thread
with its own event loop; for a comm message it asks the comm where its replies go
(`comm._reply_subshell_for`). forgekit gives each of its widgets' comms one dedicated
subshell, created once per kernel, so the Cancel click, a search or a page change of the
viewer are handled in that thread at once, even while the main thread runs a cell, and
the main shell's queue is never touched. The handlers only set traitlets and a
`threading.Event`, which is safe across threads.

In a kernel without subshells (older ipykernel, other kernels) `route_to_subshell` does
nothing: widget messages are handled when the cell ends, and a kernel interrupt is the
way to stop a run early.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)

_lock = threading.Lock()
_subshells: dict[int, str] = {}  # id(kernel) -> forgekit's subshell id


def _kernel() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return getattr(get_ipython(), "kernel", None)


def widget_subshell(kernel: Any = None, timeout: float = 5.0) -> str | None:
    """The id of forgekit's widget subshell in `kernel` (created on first use), or None
    where the kernel has no subshells."""
    kernel = kernel if kernel is not None else _kernel()
    if kernel is None or not getattr(kernel, "_supports_kernel_subshells", False):
        return None
    with _lock:
        known = _subshells.get(id(kernel))
        thread = kernel.shell_channel_thread
        manager = thread.manager
        if known is not None and known in manager.list_subshell():
            return known
        box: dict[str, Any] = {}
        done = threading.Event()

        def create() -> None:  # runs in the shell channel thread, as ipykernel requires
            try:
                box["id"] = manager._create_subshell()
            except Exception as exc:
                box["error"] = exc
            finally:
                done.set()

        thread.io_loop.add_callback(create)
        if not done.wait(timeout) or "id" not in box:
            log.warning("forgekit: no widget subshell (%s)", box.get("error", "timed out"))
            return None
        _subshells[id(kernel)] = box["id"]
        return box["id"]


def route_to_subshell(widget: Any) -> bool:
    """Have the front end's messages for `widget` handled in forgekit's subshell, so they
    act while a cell runs. False where that is not possible (no kernel subshells)."""
    comm = getattr(widget, "comm", None)
    if comm is None or not hasattr(comm, "_reply_subshell_for"):
        return False
    try:
        subshell = widget_subshell()
    except Exception:  # an ipykernel with another layout: handled after the cell instead
        log.debug("forgekit: widget subshell unavailable", exc_info=True)
        return False
    if subshell is None:
        return False

    def reply_subshell_for(data: Any, default: Any) -> str:
        return subshell

    # The shell channel thread asks the comm where its messages go (ipykernel >= 7.4).
    comm._reply_subshell_for = reply_subshell_for
    return True
