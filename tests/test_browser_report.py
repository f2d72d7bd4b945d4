"""The diversity report and the widgets in a real browser with the network cut off.

One Jupyter server for the module (JupyterLab, and Notebook 7's pages from the same server),
headless Chromium (Debian's /usr/bin/chromium through Playwright's Python driver) with every
request to a host other than loopback refused and recorded: any attempt fails the test.
The data: 3,000 one-line man page descriptions (tests/report_corpus.py), one label 70-90%.

Through the browser's mouse, the report test brushes the map, clicks a label bar and
double-clicks to clear, and checks after each step that the other charts, the record list
(the DatasetViewer) and `r.selection` in the kernel agree. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.jupyter_server import (
    CHROMIUM,
    KERNEL_PRINT,
    Outbound,
    jupyter_server,
    offline_browser,
    open_and_run,
    write_notebook,
)
from tests.report_corpus import man_page_corpus

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
RECORDS = 3000

REPORT_CELLS = [
    "import pandas as pd\n"
    "import forgekit.evaluate as ev\n"
    "df = pd.read_json('corpus.jsonl', lines=True)\n"
    "r = ev.report(df, text='output', label='tag')\n"
    "r",
    # A chart Vega cannot draw: the widget must say why and show a static image instead.
    "from forgekit.jupyter.widgets.report import ReportCharts\n"
    "broken = ReportCharts(r)\n"
    "broken.charts = [{**broken.charts[0], 'spec': {'mark': 'no-such-mark'}}]\n"
    "broken",
    # A plain Altair chart from the report: drawn by Altair's renderer, Vega inlined.
    "r.chart()",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `make system-deps` (apt-get install chromium)")
    tmp = tmp_path_factory.mktemp("jupyter")
    env = {"FORGEKIT_CACHE_DIR": str(tmp / "cache"), "FORGEKIT_NO_WIDGETS": ""}
    with jupyter_server(tmp, env=env) as srv:
        corpus = man_page_corpus(RECORDS)
        corpus.to_json(srv.root / "corpus.jsonl", orient="records", lines=True)
        yield srv
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(srv.log, ARTIFACTS / "jupyter-report.log")


@pytest.fixture
def offline_page(tmp_path):
    """A page in a browser that refuses (and records) every request leaving the machine."""
    from playwright.sync_api import sync_playwright

    outbound = Outbound()
    with sync_playwright() as pw:
        context = offline_browser(pw, tmp_path / "profile", outbound)
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        try:
            yield page, outbound, errors
        finally:
            context.close()
    assert outbound.attempts == [], f"requests left the machine: {outbound.attempts}"


def kernel(page, code: str) -> str:
    out = page.evaluate(KERNEL_PRINT, code)
    assert "ERROR" not in out, out
    return out.strip()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def drag(page, box, start, end) -> None:
    """A mouse drag inside `box` between two fractions of its width and height."""
    x0, y0 = box["x"] + start[0] * box["width"], box["y"] + start[1] * box["height"]
    x1, y1 = box["x"] + end[0] * box["width"], box["y"] + end[1] * box["height"]
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=4)
    page.mouse.move(x1, y1, steps=4)
    page.mouse.up()


SETTLED = """([charts, viewer]) => !charts.dataset.pending
  && charts.dataset.selected === viewer.dataset.subset
  && Number(charts.dataset.selected) ===
     charts.querySelectorAll(".fk-rp-map g.map_selected_marks path").length"""


def settled(page, charts, viewer) -> int:
    """Waits until the selection has reached the record list (through the kernel) and the
    map shows it; returns the number of selected records."""
    page.wait_for_function(
        SETTLED, arg=[charts.element_handle(), viewer.element_handle()], timeout=30_000
    )
    return int(charts.get_attribute("data-selected"))


def check_report(page, charts, viewer, total: int, name: str) -> None:
    """Brush the map, click a label bar, clear each; the charts, the record list and the
    kernel's `r.selection` follow every step."""
    from playwright.sync_api import expect

    def python_selection() -> tuple[int, set[str]]:
        out = json.loads(
            kernel(
                page,
                "print(__import__('json').dumps("
                "[len(r.selection), sorted(set(r.selection['tag']))]))",
            )
        )
        return out[0], set(out[1])

    expect(viewer).to_have_attribute("data-subset", str(total))
    assert python_selection()[0] == total

    # 1. Brush the map through the mouse.
    charts.locator(".fk-rp-map").scroll_into_view_if_needed()
    plot = charts.locator(".fk-rp-map g.map_all_marks").bounding_box()
    drag(page, plot, (0.02, 0.02), (0.6, 0.6))
    expect(charts).not_to_have_attribute("data-selected", str(total), timeout=15_000)
    brushed = settled(page, charts, viewer)
    assert 0 < brushed < total
    assert python_selection()[0] == brushed
    shot(page, f"{name}-brushed.png")

    # 2. Clear it (double-click on the map): everything back.
    charts.locator(".fk-rp-map").scroll_into_view_if_needed()
    plot = charts.locator(".fk-rp-map g.map_all_marks").bounding_box()
    page.mouse.dblclick(plot["x"] + 0.8 * plot["width"], plot["y"] + 0.8 * plot["height"])
    expect(charts).to_have_attribute("data-selected", str(total), timeout=15_000)
    assert settled(page, charts, viewer) == total
    assert python_selection()[0] == total

    # 3. Every label bar is wide enough to click; click the smallest named label's bar.
    bars = charts.locator(".fk-rp-labels g.labels_all_marks path")
    widths = [bars.nth(i).bounding_box()["width"] for i in range(bars.count())]
    assert len(widths) >= 5 and min(widths) >= 8, widths
    counts = {
        re.search(r"label_group: ([^;]+);", a)[1]: int(re.search(r"Records: (\d+)", a)[1])
        for a in bars.evaluate_all("ps => ps.map(p => p.getAttribute('aria-label'))")
    }
    small = min((c, name) for name, c in counts.items() if name not in ("gcloud", "other"))[1]
    # (the top layer: the bars drawn over the full-count ones)
    charts.locator(
        f'.fk-rp-labels g.labels_selected_marks path[aria-label*="label_group: {small};"]'
    ).click()
    expect(charts).not_to_have_attribute("data-selected", str(total), timeout=15_000)
    picked = settled(page, charts, viewer)
    count, tags = python_selection()
    assert count == picked and tags == {small}
    expect(viewer.locator("tr.fk-dv-row").first).to_contain_text(small)
    # The record list: a row click shows the whole record (its full key) in the detail pane.
    viewer.locator("tr.fk-dv-row").first.click()
    expect(viewer.locator(".fk-dv-detail")).to_contain_text(small, timeout=15_000)
    shot(page, f"{name}-label-picked.png")

    # 4. Clear it (double-click on the label chart, right of that short bar).
    charts.locator(".fk-rp-labels").scroll_into_view_if_needed()
    plot = charts.locator(".fk-rp-labels g.labels_all_marks").bounding_box()
    bar = charts.locator(
        f'.fk-rp-labels g.labels_all_marks path[aria-label*="label_group: {small};"]'
    )
    row = bar.bounding_box()
    page.mouse.dblclick(plot["x"] + plot["width"] - 3, row["y"] + row["height"] / 2)
    expect(charts).to_have_attribute("data-selected", str(total), timeout=15_000)
    assert settled(page, charts, viewer) == total
    assert python_selection()[0] == total


def test_report_in_jupyterlab_offline(server, offline_page):
    from playwright.sync_api import expect

    page, outbound, errors = offline_page
    write_notebook(server.root / "report.ipynb", REPORT_CELLS)
    try:
        open_and_run(page, f"{server.base}/lab/tree/report.ipynb?token={server.token}&reset")
        charts = page.locator(".forgekit-report-charts").nth(0)
        expect(charts).to_have_attribute("data-rendered", "true", timeout=240_000)
        total = 2000  # max_points: the plotted sample
        expect(charts).to_have_attribute("data-selected", str(total), timeout=30_000)

        # Charts fit the output area; the map's legend is inside it and starts with the
        # largest label.
        area = charts.bounding_box()
        for name in ("map", "labels", "length", "duplicates"):
            chart = charts.locator(f".fk-rp-{name} svg").first.bounding_box()
            assert chart["x"] + chart["width"] <= area["x"] + area["width"] + 1, name
        legend = charts.locator(".fk-rp-map g.role-legend").bounding_box()
        assert legend["x"] + legend["width"] <= area["x"] + area["width"] + 1
        first_entry = charts.locator(".fk-rp-map g.role-legend-label text").first
        expect(first_entry).to_have_text("gcloud")

        viewer = page.locator(".forgekit-report .forgekit-dataset-viewer").nth(0)
        check_report(page, charts, viewer, total, "jupyterlab-report")

        # The broken chart: one line saying why, and the static image.
        broken = page.locator(".forgekit-report-charts").nth(1)
        expect(broken).to_have_attribute("data-failed", "true", timeout=60_000)
        expect(broken.locator(".fk-rp-status")).to_contain_text("Interactive charts unavailable")
        expect(broken.locator("img.fk-rp-fallback")).to_be_visible(timeout=120_000)
        # Altair's own rendering of r.chart(): drawn, with no CDN.
        expect(
            page.locator(
                ".jp-OutputArea-output .vega-embed svg, .jp-OutputArea-output .vega-embed canvas"
            ).last
        ).to_be_visible(timeout=120_000)
        shot(page, "jupyterlab-report.png")
    except Exception:
        shot(page, "jupyterlab-report-failure.png")
        raise
    assert outbound.attempts == []
    assert not [e for e in errors if "anywidget" in e or "Failed to" in e], errors


WIDGET_CELLS = [
    "import pandas as pd\n"
    "from forgekit.jupyter.widgets import DatasetViewer, PairReviewer, RunMonitor\n"
    "df = pd.read_json('corpus.jsonl', lines=True).head(40)\n"
    "monitor = RunMonitor('offline check')\n"
    "monitor.handle_event('start', {'total': 2, 'out': 'x.jsonl'})\n"
    "monitor.handle_event('record', {'record': {'id': 'a', 'input': 'q', 'output': 'o'}})\n"
    "monitor.flush(force=True)\n"
    "monitor",
    "viewer = DatasetViewer(df)\nviewer",
    "pairs = [{'id': f'p{i}', 'input': f'q{i}', 'chosen': 'good', 'rejected': 'bad'}"
    " for i in range(3)]\n"
    "reviewer = PairReviewer(pairs, decisions_path='review.jsonl')\nreviewer",
]


def test_widgets_in_jupyterlab_offline(server, offline_page):
    from playwright.sync_api import expect

    page, outbound, _ = offline_page
    write_notebook(server.root / "widgets.ipynb", WIDGET_CELLS)
    try:
        open_and_run(page, f"{server.base}/lab/tree/widgets.ipynb?token={server.token}&reset")
        monitor = page.locator(".forgekit-run-monitor")
        expect(monitor).to_have_attribute("data-status", "running", timeout=120_000)
        expect(monitor.locator(".fk-rm-record")).to_have_count(1)
        monitor.locator(".fk-rm-cancel").click()
        viewer = page.locator(".forgekit-dataset-viewer")
        expect(viewer).to_have_attribute("data-count", "40", timeout=60_000)
        viewer.locator(".fk-dv-search").fill("git")
        expect(viewer).not_to_have_attribute("data-matches", "40", timeout=15_000)
        reviewer = page.locator(".forgekit-pair-reviewer")
        expect(reviewer).to_have_attribute("data-index", "0", timeout=60_000)
        reviewer.locator(".fk-pr-accept").click()
        expect(reviewer).to_have_attribute("data-index", "1", timeout=15_000)
        assert kernel(page, "print(monitor.cancel_requested, reviewer.decisions)") == (
            "True {'p0': 'accept'}"
        )
        matches = int(viewer.get_attribute("data-matches"))
        assert matches == int(kernel(page, "print(viewer.matches)"))
        shot(page, "jupyterlab-widgets.png")
    except Exception:
        shot(page, "jupyterlab-widgets-failure.png")
        raise
    assert outbound.attempts == []


@pytest.mark.skipif(
    importlib.util.find_spec("notebook") is None, reason="Notebook 7 (notebook>=7) missing"
)
def test_report_in_notebook7_offline(server, offline_page):
    from playwright.sync_api import expect

    page, outbound, _ = offline_page
    # Fewer records than in JupyterLab (the same code; the kernel's share of the time halves).
    cell = REPORT_CELLS[0].replace("lines=True)", "lines=True).head(1200)")
    write_notebook(server.root / "report7.ipynb", [cell])
    try:
        open_and_run(page, f"{server.base}/notebooks/report7.ipynb?token={server.token}")
        charts = page.locator(".forgekit-report-charts").nth(0)
        expect(charts).to_have_attribute("data-rendered", "true", timeout=240_000)
        viewer = page.locator(".forgekit-report .forgekit-dataset-viewer").nth(0)
        check_report(page, charts, viewer, 1200, "notebook7-report")
        shot(page, "notebook7-report.png")
    except Exception:
        shot(page, "notebook7-report-failure.png")
        raise
    assert outbound.attempts == []


def label_counts(page) -> int:
    """Records in the label chart's top layer (the bars that follow the other selections)."""
    labels = page.locator("g.labels_selected_marks path").evaluate_all(
        "paths => paths.map(p => p.getAttribute('aria-label'))"
    )
    return sum(int(re.search(r"Count of Records: (\d+)", a)[1]) for a in labels)


def test_saved_html_report_is_offline_and_linked(tmp_path, offline_page):
    """`report.save("x.html")` opened from disk with the network cut off: the charts draw, a
    brush on the map narrows the label bars, a double-click restores them."""
    import forgekit.evaluate as ev

    page, outbound, _ = offline_page
    records = man_page_corpus(600)
    path = ev.report(records, text="output", label="tag").save(tmp_path / "report.html")
    try:
        page.goto(path.as_uri())
        plot = page.locator("g.map_all_marks")
        plot.wait_for(timeout=60_000)
        total = label_counts(page)
        assert total == len(records)
        box = plot.bounding_box()
        drag(page, box, (0.02, 0.02), (0.6, 0.6))
        page.wait_for_function(
            "n => [...document.querySelectorAll('g.labels_selected_marks path')]"
            ".reduce((s, p) => s + Number(/Count of Records: (\\d+)/"
            ".exec(p.getAttribute('aria-label'))[1]), 0) !== n",
            arg=total,
            timeout=15_000,
        )
        brushed = label_counts(page)
        assert 0 < brushed < total
        shot(page, "saved-html-brushed.png")
        page.mouse.dblclick(box["x"] + 0.8 * box["width"], box["y"] + 0.8 * box["height"])
        page.wait_for_function(
            "n => [...document.querySelectorAll('g.labels_selected_marks path')]"
            ".reduce((s, p) => s + Number(/Count of Records: (\\d+)/"
            ".exec(p.getAttribute('aria-label'))[1]), 0) === n",
            arg=total,
            timeout=15_000,
        )
    except Exception:
        shot(page, "saved-html-failure.png")
        raise
    assert outbound.attempts == []
