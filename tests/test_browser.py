"""A real JupyterLab in a real browser: `jupyter lab` on a loopback port with a temporary
root, driven by headless Chromium (Debian's /usr/bin/chromium through Playwright's Python
driver). The notebook runs `%load_ext forgekit` and `%forge magpie -n 3 --model local`;
the RunMonitor and the DatasetViewer must render with the 3 records, a row click must
fill the detail pane, and the Cancel button must stop a longer run while it is running.
A screenshot goes to test-artifacts/.

Set-up on a fresh machine: `make system-deps` (apt-get install chromium); `make test`
runs it when /usr/bin/chromium is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.jupyter_server import jupyter_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

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
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

CELLS = [
    "%load_ext forgekit",
    # The embedded model for real; short answers keep it to seconds on two cores (minutes
    # when other jobs load the machine, hence the generous timeout below).
    "%forge magpie -n 3 --model local --max-tokens 24 --instruction-max-tokens 32 -o df",
    "print('ROWS', len(df))",
    # A longer run on the stub (which holds it after 2 records), cancelled from the browser.
    "%forge magpie -n 200 --model stub --template chatml --concurrency 1 -o dfc",
    "print('CANCELLED', len(dfc), dfc.attrs['forgekit']['status'])",
]


@pytest.fixture
def jupyter_lab(tmp_path, stub_model):
    """A JupyterLab server on 127.0.0.1 with a temp root, config and workspace
    (tests/jupyter_server.py); its kernels inherit this test's environment (cache dir, the
    stub's model profile)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `make system-deps` (apt-get install chromium)")
    with jupyter_server(tmp_path) as server:
        yield server.root, server.base, server.token


def _notebook(root: Path) -> str:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, root / "forge.ipynb")
    return "forge.ipynb"


def test_magics_and_widgets_in_jupyterlab(stub, jupyter_lab, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    stub.configure(
        rules=[
            {
                "match": r"<\|im_start\|>user\n$",
                "contents": [f"Question {i} about tides?" for i in range(250)],
            }
        ],
        # Two records (4 requests at concurrency 1), then every request is held: the run is
        # still busy when Cancel is clicked, on a fast machine or a slow one.
        latency_ms=50,
        hold_after=4,
    )
    root, base, token = jupyter_lab
    started = time.monotonic()

    def stage(name: str) -> None:  # shown with a failure: how far it got, and when
        print(f"[browser] {name} at {time.monotonic() - started:.0f}s", flush=True)

    name = _notebook(root)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh user-data dir
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = browser.new_page()
            page.goto(f"{base}/lab/tree/{name}?token={token}&reset")
            page.wait_for_function(
                "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                " && window.jupyterapp.shell.currentWidget.sessionContext"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session?.kernel",
                timeout=90_000,
            )
            page.wait_for_function(
                "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                ".status === 'idle'",
                timeout=90_000,
            )
            stage("kernel idle")
            # Not awaited: the command's promise resolves only when every cell has run.
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

            # The first run: RunMonitor finishes with 3 records, the DatasetViewer shows them.
            monitors = page.locator(".forgekit-run-monitor")
            first = monitors.nth(0)
            expect(first).to_have_attribute("data-status", "completed", timeout=240_000)
            expect(first).to_have_attribute("data-done", "3")
            stage("first run completed")
            expect(first.locator(".fk-rm-record")).to_have_count(3)
            viewer = page.locator(".forgekit-dataset-viewer").nth(0)
            expect(viewer).to_have_attribute("data-count", "3", timeout=30_000)
            expect(viewer.locator("tr.fk-dv-row")).to_have_count(3)
            outputs = page.locator(".jp-OutputArea-output")
            expect(outputs.filter(has_text="ROWS 3")).to_have_count(1, timeout=30_000)

            # The detail pane follows a click (a round trip through the idle-between-cells
            # kernel happens later; the click itself is served while the next run is busy).
            viewer.locator("tr.fk-dv-row").nth(1).click()
            expect(viewer.locator(".fk-dv-lineage")).to_contain_text('"magpie"', timeout=30_000)

            stage("viewer detail")
            # The second run: click Cancel once a record is in; the run stops early.
            second = monitors.nth(1)
            expect(second).to_have_attribute("data-status", "running", timeout=90_000)
            expect(second.locator(".fk-rm-record")).not_to_have_count(0, timeout=30_000)
            stage("second run has records")
            second.locator(".fk-rm-cancel").click()
            expect(second).to_have_attribute("data-status", "cancelled", timeout=30_000)
            result = outputs.filter(has_text=re.compile(r"CANCELLED \d+ \w+"))
            expect(result).to_have_count(1, timeout=30_000)
            _, kept, status = result.inner_text().split()
            assert status == "cancelled" and int(kept) == 2

            stage("cancelled")
            first.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-forge.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-forge-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    shutil.copy(tmp_path / "jupyter.log", ARTIFACTS / "jupyter.log")
