"""Handling widget messages while a cell is still running.

ipykernel handles one shell message at a time: while a cell executes, a click on a widget
(a `comm_msg` from the front end) waits in a queue until the cell has finished. A run
monitor's Cancel button would be useless. The PyPI package jupyter-ui-poll solved this by
calling `kernel.do_one_iteration()` from the busy cell, but ipykernel 7 no longer has that
method (jupyter-ui-poll 1.1 then silently does nothing), so forgekit does the same job
against ipykernel 7's own message path:

- ipykernel 7 receives shell messages in a "shell channel" thread and forwards each one,
  unchanged, to the main thread over an inproc ZMQ socket (without subshell support: the
  main thread reads the shell socket itself). The main thread is the one waiting in our
  cell, so nobody reads that socket until the cell ends.
- `UIPoller.poll()`, called from the waiting loop (`forgekit.engine.runner.set_wait_hook`),
  reads whatever is pending there without blocking. Comm messages are dispatched at once,
  exactly as ipykernel 7.4 itself dispatches comms during an `await`ing async cell
  (`dispatch_shell(..., concurrent=True)`: no busy/idle status, the cell's parent restored
  afterwards so its output stays in its cell).
- Every other message (the next cell's `execute_request` under "Run All", completions,
  inspections) is kept, in order, and handed back to the kernel's own handler
  (`kernel.shell_main`) when the wait ends; the tasks queue on the kernel's per-shell lock
  in that order, so cells still run one after another, in order.

Where a kernel does not look like this (another kernel, an older ipykernel) the poller
is inactive and a kernel interrupt is still the way to stop a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

_COMM_MESSAGES = frozenset({"comm_open", "comm_msg", "comm_close"})
# Replay tasks, referenced until done (the loop keeps only weak references to tasks).
_REPLAYS: set[asyncio.Task[Any]] = set()


class UIPoller:
    """Dispatch pending front-end comm messages from inside a running cell."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.socket = _main_shell_socket(kernel)
        self.held: list[Any] = []  # non-comm messages, replayed in order by `close()`
        self.dispatched = 0

    @property
    def active(self) -> bool:
        return self.socket is not None

    def poll(self, limit: int = 20) -> int:
        """Handle up to `limit` pending messages without blocking; returns how many."""
        if self.socket is None:
            return 0
        import zmq

        handled = 0
        while handled < limit:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            handled += 1
            # Comm messages run now even when a queued cell is held before them (as
            # ipykernel runs comms during an awaiting cell): a Cancel click must not
            # wait behind the cells of "Run All". The others keep their order.
            if not self._dispatch_comm(frames):
                self.held.append(frames)
        return handled

    def _dispatch_comm(self, frames: list[Any]) -> bool:
        """Run the comm handler for `frames` now; False if it is not a comm message."""
        kernel = self.kernel
        session = kernel.session
        idents, rest = session.feed_identities(frames, copy=False)
        try:
            header = session.deserialize(rest, content=False, copy=False)["header"]
        except Exception:
            return False
        msg_type = header.get("msg_type")
        if msg_type not in _COMM_MESSAGES:
            return False
        msg = session.deserialize(rest, content=True, copy=False)
        handler = kernel.shell_handlers.get(msg_type)
        if handler is None:
            return True
        with _parent_kept(kernel):
            kernel.set_parent(idents, msg, channel="shell")
            try:
                handler(_reply_stream(kernel), idents, msg)
            except Exception:  # the kernel logs and goes on; so do we
                log.exception("forgekit: error while handling a widget message")
        self.dispatched += 1
        return True

    def close(self) -> None:
        """Hand every held message back to the kernel, in the order they arrived."""
        held, self.held = self.held, []
        if not held:
            return
        loop = asyncio.get_event_loop()
        for frames in held:
            # Each becomes a task now, before the loop reads newer messages, so they
            # queue on the kernel's shell lock ahead of anything that arrives later.
            task = loop.create_task(self.kernel.shell_main(None, frames))
            _REPLAYS.add(task)
            task.add_done_callback(_REPLAYS.discard)


def _main_shell_socket(kernel: Any) -> Any:
    """The socket the main thread reads shell messages from, if this kernel has one."""
    if kernel is None or not hasattr(kernel, "shell_main"):
        return None
    try:
        if getattr(kernel, "_supports_kernel_subshells", False):
            manager = kernel.shell_channel_thread.manager
            return manager.get_shell_channel_to_subshell_pair(None).to_socket
        stream = getattr(kernel, "shell_stream", None)
        return getattr(stream, "socket", None)
    except Exception:  # a different ipykernel layout: stay inactive
        return None


def _reply_stream(kernel: Any) -> Any:
    if getattr(kernel, "_supports_kernel_subshells", False):
        return kernel.shell_channel_thread.manager.get_subshell_to_shell_channel_socket(None)
    return kernel.shell_stream


@contextlib.contextmanager
def _parent_kept(kernel: Any) -> Iterator[None]:
    """Restore the running cell's parent message, so its output stays in its cell."""
    parent = kernel.get_parent("shell")
    ident_var = getattr(kernel, "_shell_parent_ident", None)
    getter = getattr(kernel, "_get_shell_context_var", None)
    ident = getter(ident_var) if getter and ident_var is not None else None
    try:
        yield
    finally:
        kernel.set_parent(ident, parent, channel="shell")


def kernel_poller() -> UIPoller | None:
    """A poller for the current IPython kernel, or None outside one."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    poller = UIPoller(kernel)
    return poller if poller.active else None
