"""The diversity report's widget without a browser: selection rules, chart specs, the record
list following the selection, the fallback image, and no network address in anything
forgekit sends to the browser (tests/test_browser_report.py drives the real thing)."""

from __future__ import annotations

import base64
import re

import pandas as pd
import pytest

import forgekit.evaluate as ev
from forgekit.evaluate.report_charts import select_rows, widget_specs
from forgekit.evaluate.report_data import CHART_LABELS, OTHER_LABEL
from forgekit.jupyter.widgets.base import ASSETS

# URLs that are names, not addresses a browser loads: XML namespaces, Vega's schema ids, an
# issue link inside an error message, and the "Open in Vega Editor" link (an action the user
# would click; forgekit's widgets turn it off).
NOT_FETCHED = {
    "http://www.w3.org/1999/xlink",
    "http://www.w3.org/2000/svg",
    "http://www.w3.org/2000/xmlns/",
    "https://github.com/vega/vega-lite/issues/2415",
    "https://vega.github.io/editor/",
}
SCHEMA = re.compile(r"^https://vega\.github\.io/schema/vega(-lite)?/v[\d.]+\.json$")
URL = re.compile(r"https?://[^\s\"'`)<>\\]+")


def fetchable_urls(text: str) -> set[str]:
    found = set(URL.findall(text))
    return {
        u
        for u in found
        if u not in NOT_FETCHED
        and not SCHEMA.match(u)
        and not re.match(r"https?://(127\.0\.0\.1|localhost)[:/]", u)
    }


@pytest.fixture(scope="module")
def skewed():
    """One label for 88% of the records, a tail of small labels, long keys, duplicates."""
    rows = []
    for i in range(120):
        tag = "gcloud" if i < 106 else f"tail{i % 14}"
        key = f"gcloud_alpha_compute_instances_add-iam-policy-binding_{i}(1)"
        rows.append({"id": key, "output": f"describe thing number {i % 60} in {tag}", "tag": tag})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def rep(skewed):
    return ev.report(skewed, text="output", label="tag")


def test_select_rows_ranges_points_and_clearing(rep):
    records = rep.records
    assert select_rows(records, {}).all()
    assert select_rows(records, {"brush": [], "pick": []}).all()  # cleared selections
    pick = {"pick": [[["label_group", "E", "gcloud"]]]}
    assert set(records[select_rows(records, pick)]["label_group"]) == {"gcloud"}
    # A length range keeps every record whose bar overlaps it, even a range inside one bar.
    start, end = records.iloc[0][["len_bin_start", "len_bin_end"]]
    lo, hi = start + 0.25 * (end - start), start + 0.5 * (end - start)
    span = {"span": [[["len_bin_start", "R", [hi, lo]]]]}
    kept = records[select_rows(records, span)]
    assert len(kept) == (records["len_bin_start"] == start).sum() > 0
    # Params combine with AND, entries of one param with OR.
    both = {**pick, **span}
    assert (
        select_rows(records, both).sum()
        == (select_rows(records, pick) & select_rows(records, span)).sum()
    )
    two = {"pick": [[["label_group", "E", "gcloud"]], [["label_group", "E", OTHER_LABEL]]]}
    assert (
        select_rows(records, two).sum()
        == records["label_group"].isin(["gcloud", OTHER_LABEL]).sum()
    )
    with pytest.raises(ValueError, match="unknown field 'nope'"):
        select_rows(records, {"pick": [[["nope", "E", 1]]]})


def test_labels_are_top_n_plus_other_and_the_legend_lists_the_largest_first(rep):
    groups = rep.records["label_group"].value_counts()
    assert len(groups) <= CHART_LABELS + 1 and OTHER_LABEL in groups.index
    specs = {s["name"]: s for s in widget_specs(rep.records, rep._label_title())}
    assert set(specs) == {"map", "labels", "length", "duplicates"}
    map_layer = specs["map"]["spec"]["layer"][1]
    domain = map_layer["encoding"]["color"]["scale"]["domain"]
    assert domain[0] == "gcloud" and domain[-1] == OTHER_LABEL
    assert map_layer["encoding"]["color"]["legend"]["orient"] == "bottom"
    labels = specs["labels"]["spec"]["layer"][0]["encoding"]["x"]
    assert labels["scale"]["type"] == "symlog"  # a 1-record bar is still a clickable width
    for spec in specs.values():
        assert spec["spec"]["width"] == "container"
        names = {layer["data"]["name"] for layer in spec["spec"]["layer"]}
        assert names == {"records", "selected"}


def test_the_record_list_and_python_follow_the_selection(rep, skewed):
    from forgekit.jupyter.widgets.report import ReportView

    view = rep.widget()
    assert isinstance(view, ReportView) and rep._view is view
    # Where widgets cannot be drawn (a notebook saved without widget state), the summary is.
    bundle = view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "vendi_ngram_q1" in bundle["text/html"]
    total = len(skewed)
    assert len(rep.selection) == total and view.viewer.subset == total
    view.charts.selection = {"pick": [[["label_group", "E", "tail3"]]]}
    picked = rep.selection
    assert set(picked["tag"]) == {"tail3"} and list(picked.columns) == list(skewed.columns)
    assert view.viewer.subset == len(picked) == view.viewer.matches
    assert {r["tag"] for r in view.viewer.rows} == {"tail3"}
    assert view.viewer.title == f"{len(picked)} of {total} records selected"
    # The full key is in the detail pane of a listed record.
    view.viewer.selected = view.viewer.rows[0]["index"]
    assert view.viewer.detail["id"] in set(skewed["id"])
    view.charts.selection = {"pick": []}  # cleared (a double-click in the browser)
    assert len(rep.selection) == total and view.viewer.subset == total


def test_the_record_list_sorts_and_keeps_data_order_by_default(rep):
    view = rep.widget()
    viewer = view.viewer
    assert [r["index"] for r in viewer.rows] == list(range(viewer.page_size))
    viewer.sort_by = "id"
    ids = [r["id"] for r in viewer.rows]
    assert ids == sorted(ids) and ids != [r["id"] for r in viewer.records[: len(ids)]]
    viewer.descending = True
    assert viewer.rows[0]["id"] == max(r["id"] for r in viewer.records)
    viewer.sort_by, viewer.descending = "", False
    assert [r["index"] for r in viewer.rows] == list(range(viewer.page_size))


def test_a_front_end_failure_gets_a_static_image(rep):
    from forgekit.jupyter.widgets.report import ReportCharts

    charts = ReportCharts(rep)
    assert charts.fallback == ""  # no image unless the browser asks for one
    charts.render_error = "Cannot read properties of undefined"
    prefix = "data:image/png;base64,"
    assert charts.fallback.startswith(prefix)
    assert base64.b64decode(charts.fallback[len(prefix) :])[:8] == b"\x89PNG\r\n\x1a\n"


def test_nothing_forgekit_sends_to_the_browser_names_a_network_address(rep, tmp_path):
    from forgekit.jupyter.widgets.report import report_esm

    esm = report_esm()
    assert "vegaEmbed" in esm or "vega-embed" in esm
    assert fetchable_urls(esm) == set()
    for path in sorted(ASSETS.glob("*.js")) + sorted(ASSETS.glob("*.css")):
        assert fetchable_urls(path.read_text()) == set(), path.name
    specs = str(widget_specs(rep.records, rep._label_title()))
    assert fetchable_urls(specs) == set()
    # Altair's own rendering of the report's charts: Vega inlined, no CDN.
    bundle = rep.chart()._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    assert fetchable_urls(bundle["text/html"]) == set()
    page = rep.save(tmp_path / "report.html").read_text(encoding="utf-8")
    assert fetchable_urls(page) == set()
    assert "cdn.jsdelivr" not in page and "esm.sh" not in page
