"""A real Jupyter server for the browser tests: JupyterLab and Notebook 7 (when installed)
on a loopback port with a temporary root, config, settings and workspace, and the page
helpers the tests share (launching Debian's Chromium, running code in the page's kernel,
refusing every request that would leave the machine)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass
class JupyterServer:
    root: Path
    base: str
    token: str
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def jupyter_server(tmp: Path, env: dict[str, str] | None = None) -> Iterator[JupyterServer]:
    """`python -m jupyterlab` on 127.0.0.1 (Notebook 7's /notebooks pages too, when the
    notebook package is installed); its kernels inherit this process's environment, with
    `env` on top."""
    root = tmp / "root"
    root.mkdir(parents=True, exist_ok=True)
    config = tmp / "jupyter-config"
    (config / "labconfig").mkdir(parents=True, exist_ok=True)
    # No news/update pop-ups (they would also try to reach the network).
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    # Render every cell: JupyterLab 4 otherwise detaches cells scrolled out of view.
    settings = tmp / "lab-settings"
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True, exist_ok=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
        **(env or {}),
    }
    log_path = tmp / "jupyter.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",  # CI runs as root
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={root}",
            f"--IdentityProvider.token={token}",
            f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
            f"--LabApp.user_settings_dir={settings}",
            "--LabApp.expose_app_in_browser=True",
            "--JupyterNotebookApp.expose_app_in_browser=True",
            f"--JupyterNotebookApp.user_settings_dir={settings}",
            "--LabServerApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",  # no PyPI queries
        ],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            except OSError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"jupyter server did not start:\n{log_path.read_text()}"
                    ) from exc
                time.sleep(0.3)
        yield JupyterServer(root=root, base=base, token=token, log=log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@dataclass
class Outbound:
    """Requests the page tried to send off the machine (all refused)."""

    attempts: list[str] = field(default_factory=list)

    def route(self, route) -> None:
        host = urllib.parse.urlsplit(route.request.url).hostname or ""
        if route.request.url.startswith(("data:", "blob:", "file:")) or host in LOOPBACK:
            route.continue_()
        else:
            self.attempts.append(route.request.url)
            route.abort("internetdisconnected")


def offline_browser(pw, profile: Path, outbound: Outbound):
    """Chromium with every non-loopback request refused and recorded in `outbound`."""
    context = pw.chromium.launch_persistent_context(
        str(profile),  # a fresh user-data dir
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1400, "height": 1000},
    )
    context.route("**/*", outbound.route)
    return context


# Runs `code` in the kernel of the page's current notebook (JupyterLab or Notebook 7) and
# returns what it printed (an error as "ERROR name: value").
KERNEL_PRINT = """async (code) => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const future = kernel.requestExecute({ code, store_history: false });
  let out = "";
  future.onIOPub = (msg) => {
    if (msg.header.msg_type === "stream") out += msg.content.text;
    if (msg.header.msg_type === "error") out += `ERROR ${msg.content.ename}: ${msg.content.evalue}`;
  };
  await future.done;
  return out;
}"""

WAIT_KERNEL_IDLE = (
    "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
    " && window.jupyterapp.shell.currentWidget.sessionContext"
    " && window.jupyterapp.shell.currentWidget.sessionContext.session?.kernel?.status === 'idle'"
)


def open_and_run(page, url: str, timeout_ms: int = 120_000) -> None:
    """Open a notebook page, wait for its kernel, and start running every cell (not awaited:
    the command resolves only when every cell has run)."""
    page.goto(url)
    page.wait_for_function(WAIT_KERNEL_IDLE, timeout=timeout_ms)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")


def write_notebook(path: Path, cells: list[str]) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
