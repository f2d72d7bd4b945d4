"""The diversity report's charts, and the selections that link them.

Four charts, each able to select records: the embedding map (drag a rectangle: `brush`),
the label bars (click: `pick`), the length histogram (drag along x: `span`) and the duplicate
clusters (click: `cluster`). Each chart is two layers over the plotted records: every record
in light grey, and on top, in colour, the records that pass the *other* charts' selections
(the map also fades what is outside its own brush). A double-click clears a selection.

The same chart builders serve two outputs:

* `widget_specs`: one Vega-Lite spec per chart, `width="container"`, with named data
  (`records`, `selected`) that the notebook widget fills and re-filters in the browser
  (widgets/report.js), so the charts fit the output area and the selection reaches Python;
* `linked_chart`: one composite chart whose Vega-Lite params do the linking, for the
  standalone HTML and the PNG.

`select_rows` is the selection semantics in Python (widgets/report.js has the same rules):
a record passes a chart's selection when it matches any of its entries, and is selected
when it passes every chart's non-empty selection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from forgekit.evaluate.report_data import NO_LABEL, OTHER_LABEL

# chart name -> the name of its selection param
PARAMS = {"map": "brush", "labels": "pick", "length": "span", "duplicates": "cluster"}
# A range selection on a bar's start field covers bars that overlap it (field -> end field).
RANGE_ENDS = {"len_bin_start": "len_bin_end"}
HIGHLIGHT = "#4c78a8"
MUTED = "#dcdcdc"
TABLE_ROWS = 12


def chart_names(records: pd.DataFrame) -> list[str]:
    """The charts a report has: no label chart without labels, no duplicate chart without
    duplicate clusters among the plotted records."""
    names = ["map"]
    if (records["label_group"] != NO_LABEL).any():
        names.append("labels")
    names.append("length")
    if records["cluster"].notna().any():
        names.append("duplicates")
    return names


def label_domain(records: pd.DataFrame) -> list[str]:
    """Label groups, largest first, with "other" and "(no label)" last."""
    counts = records["label_group"].value_counts()
    order = [x for x in counts.index if x not in (OTHER_LABEL, NO_LABEL)]
    return order + [x for x in (OTHER_LABEL, NO_LABEL) if x in counts.index]


def _layers(alt, name, base_data, top_data, top_filters, make):
    """The two layers of a chart: `make(chart, muted=True)` over every record, and
    `make(chart, muted=False)` over the records that pass `top_filters`. Their marks are
    named `<name>_all` and `<name>_selected` (SVG classes `<name>_all_marks`...)."""
    base = make(alt.Chart(base_data, name=f"{name}_all"), True)
    top = make(alt.Chart(top_data, name=f"{name}_selected"), False)
    for param in top_filters:
        top = top.transform_filter(param)
    return base, top


def map_chart(alt, records, base_data, top_data, top_filters, brush, width, label_title):
    domain = label_domain(records)
    labelled = domain != [NO_LABEL]
    if labelled:
        color = alt.Color(
            "label_group:N",
            title=label_title,
            scale=alt.Scale(domain=domain, scheme="tableau20"),
            legend=alt.Legend(orient="bottom", columns=4, symbolLimit=len(domain), labelLimit=240),
        )
    else:
        color = alt.Color(
            "duplicate:N",
            scale=alt.Scale(domain=["unique", "duplicate"], range=[HIGHLIGHT, "#d62728"]),
            legend=alt.Legend(orient="bottom"),
        )
    tooltip = ["key:N", "labels:N", "length:Q", "duplicate:N", "text:N"]

    def make(chart, muted):
        chart = chart.mark_circle(size=22 if muted else 26)
        chart = chart.encode(
            x=alt.X("x:Q", title="PC 1", axis=alt.Axis(labels=False, ticks=False)),
            y=alt.Y("y:Q", title="PC 2", axis=alt.Axis(labels=False, ticks=False)),
            tooltip=tooltip,
        )
        if muted:
            return chart.encode(color=alt.value(MUTED))
        # Outside the brush, points fade (the widget also drops them from this layer).
        return chart.encode(
            color=color, opacity=alt.condition(brush, alt.value(0.9), alt.value(0.12))
        )

    base, top = _layers(alt, "map", base_data, top_data, top_filters, make)
    return alt.layer(base.add_params(brush), top).properties(
        width=width, height=340, title="Embedding map (PCA) — drag to select"
    )


def label_chart(alt, records, base_data, top_data, top_filters, pick, width, label_title):
    domain = label_domain(records)
    y = alt.Y("label_group:N", sort=domain, title=None, axis=alt.Axis(labelLimit=180))
    # symlog: one dominant label does not flatten the rest; a 1-record bar stays clickable.
    x = alt.X("count():Q", scale=alt.Scale(type="symlog"), title="records (log scale)")

    def make(chart, muted):
        chart = chart.mark_bar(color=MUTED if muted else HIGHLIGHT).encode(
            y=y, x=x, tooltip=[alt.Tooltip("label_group:N", title="label"), "count():Q"]
        )
        if not muted:
            chart = chart.encode(opacity=alt.condition(pick, alt.value(1.0), alt.value(0.35)))
        return chart

    base, top = _layers(alt, "labels", base_data, top_data, top_filters, make)
    return alt.layer(base.add_params(pick), top).properties(
        width=width, height=22 * len(domain) + 10, title=f"Top {label_title} — click a bar"
    )


def length_chart(alt, base_data, top_data, top_filters, span, width):
    def make(chart, muted):
        return chart.mark_bar(color=MUTED if muted else HIGHLIGHT).encode(
            x=alt.X("len_bin_start:Q", bin="binned", title="characters"),
            x2="len_bin_end:Q",
            y=alt.Y("count():Q", title="records"),
            tooltip=[
                alt.Tooltip("len_bin_start:Q", title="from"),
                alt.Tooltip("len_bin_end:Q", title="to"),
                "count():Q",
            ],
        )

    base, top = _layers(alt, "length", base_data, top_data, top_filters, make)
    return alt.layer(base.add_params(span), top).properties(
        width=width, height=180, title="Length (characters) — drag to select"
    )


def duplicates_chart(alt, base_data, top_data, top_filters, cluster, width, n_clusters):
    def make(chart, muted):
        return (
            chart.transform_filter("datum.cluster != null")
            .mark_bar(color=MUTED if muted else "#d62728")
            .encode(
                y=alt.Y("cluster:N", sort="-x", title=None, axis=alt.Axis(labelLimit=180)),
                x=alt.X("count():Q", scale=alt.Scale(type="symlog"), title="records (log scale)"),
                detail="cluster_text:N",
                tooltip=["cluster:N", "cluster_text:N", "count():Q"],
            )
        )

    base, top = _layers(alt, "duplicates", base_data, top_data, top_filters, make)
    return alt.layer(base.add_params(cluster), top).properties(
        width=width,
        height=20 * n_clusters + 10,
        title="Largest duplicate clusters — click a bar",
    )


def _params(alt, names: Sequence[str]) -> dict[str, Any]:
    make = {
        "map": lambda: alt.selection_interval(name="brush", encodings=["x", "y"]),
        "labels": lambda: alt.selection_point(name="pick", fields=["label_group"]),
        "length": lambda: alt.selection_interval(name="span", encodings=["x"]),
        "duplicates": lambda: alt.selection_point(name="cluster", fields=["cluster"]),
    }
    return {name: make[name]() for name in names}


def _build(alt, records, names, params, width, label_title, base_data, top_data, linked):
    """Each chart by name; `linked`: the top layer filters by the other charts' params.
    (Not the map's by its own brush: Vega rejects that spec, "Duplicate signal name".)"""

    def filters(name):
        if not linked:
            return []
        return [p for other, p in params.items() if other != name]

    n_clusters = int(records["cluster"].nunique())
    build = {
        "map": lambda: map_chart(
            alt, records, base_data, top_data, filters("map"), params["map"], width, label_title
        ),
        "labels": lambda: label_chart(
            alt,
            records,
            base_data,
            top_data,
            filters("labels"),
            params.get("labels"),
            width,
            label_title,
        ),
        "length": lambda: length_chart(
            alt, base_data, top_data, filters("length"), params.get("length"), width
        ),
        "duplicates": lambda: duplicates_chart(
            alt,
            base_data,
            top_data,
            filters("duplicates"),
            params.get("duplicates"),
            width,
            n_clusters,
        ),
    }
    return {name: build[name]() for name in names}


def separate_charts(records: pd.DataFrame, label_title: str, width: int = 380) -> dict:
    """Each chart on its own (selections not linked to the other charts), by name."""
    import altair as alt

    names = chart_names(records)
    params = _params(alt, names)
    return _build(alt, records, names, params, width, label_title, records, records, False)


def widget_specs(records: pd.DataFrame, label_title: str) -> list[dict[str, Any]]:
    """One Vega-Lite spec per chart for the notebook widget (see module doc): the data is
    named, `records` (every plotted record) and `selected` (what passes the other charts'
    selections), and filled by the front end."""
    import altair as alt

    names = chart_names(records)
    params = _params(alt, names)
    charts = _build(
        alt,
        records,
        names,
        params,
        "container",
        label_title,
        alt.NamedData(name="records"),
        alt.NamedData(name="selected"),
        linked=False,
    )
    out = []
    for name, chart in charts.items():
        spec = chart.configure_view(stroke=None).configure_title(anchor="start").to_dict()
        spec["autosize"] = {"type": "fit-x", "contains": "padding"}
        out.append(
            {"name": name, "param": PARAMS[name], "filter_self": name == "map", "spec": spec}
        )
    return out


def linked_chart(records: pd.DataFrame, label_title: str, width: int = 380):
    """All charts in one composite linked by Vega-Lite params, plus a table of the first
    selected records in data order (for the standalone HTML and the PNG)."""
    import altair as alt

    names = chart_names(records)
    params = _params(alt, names)
    charts = _build(alt, records, names, params, width, label_title, records, records, linked=True)
    table = alt.Chart(records)
    for param in params.values():
        table = table.transform_filter(param)
    table = table.transform_window(
        rank="row_number()", sort=[alt.SortField("row", order="ascending")]
    ).transform_filter(alt.datum.rank <= TABLE_ROWS)
    columns = [("key", 160), ("label", 130), ("length", 50), ("text", 520)]
    table = alt.hconcat(
        *[
            table.mark_text(align="left", baseline="middle", limit=w - 6)
            .encode(
                x=alt.value(0),
                y=alt.Y("rank:O", axis=None),
                text=alt.Text(f"{c}:N"),
                tooltip=["key:N", "labels:N", "text:N"],  # a cut-off key in full
            )
            .properties(title=c, width=w, height=16 * TABLE_ROWS)
            for c, w in columns
        ],
        spacing=4,
    ).properties(title=f"Selected records (first {TABLE_ROWS} in data order)")
    # Assembled as a dict: Altair's own concat would attach each param to both layers of
    # its chart, and Vega rejects the result ("Duplicate signal name").
    params: list[dict[str, Any]] = []
    datasets: dict[str, Any] = {}

    def part(chart) -> dict[str, Any]:
        spec = chart.to_dict()
        params.extend(spec.pop("params", []))
        datasets.update(spec.pop("datasets", {}))
        for key in ("$schema", "config"):
            spec.pop(key, None)
        return spec

    side = [part(charts[n]) for n in ("labels", "length") if n in charts]
    rows = [{"hconcat": [part(charts["map"]), {"vconcat": side}]}]
    if "duplicates" in charts:
        rows.append(part(charts["duplicates"]))
    rows.append(part(table))
    spec = {
        "$schema": alt.SCHEMA_URL,
        "vconcat": rows,
        "params": params,
        "datasets": datasets,
        "config": {"view": {"stroke": None}, "title": {"anchor": "start"}},
    }
    return alt.VConcatChart.from_dict(spec)


def chart_records(records: pd.DataFrame) -> list[dict[str, Any]]:
    """The plotted records as JSON-safe dicts (NaN and None become null)."""
    frame = records.astype(object).where(records.notna(), None)
    out = frame.to_dict(orient="records")
    for row in out:
        for key, value in row.items():
            if isinstance(value, np.generic):
                row[key] = value.item()
    return out


def select_rows(records: pd.DataFrame, selection: Mapping[str, Any] | None) -> pd.Series:
    """A boolean mask over `records`: the records the selection keeps (see module doc).

    `selection` maps a param name to its entries; an entry is a list of
    `[field, kind, value]` tests, kind "E" (equal to value) or "R" (within [lo, hi])."""
    keep = pd.Series(True, index=records.index)
    for entries in (selection or {}).values():
        if not entries:
            continue
        any_entry = pd.Series(False, index=records.index)
        for entry in entries:
            match = pd.Series(True, index=records.index)
            for field, kind, value in entry:
                match &= _test(records, field, kind, value)
            any_entry |= match
        keep &= any_entry
    return keep


def _test(records: pd.DataFrame, field: str, kind: str, value: Any) -> pd.Series:
    if field not in records.columns:
        raise ValueError(f"selection names an unknown field {field!r}")
    column = records[field]
    if not kind.startswith("R"):
        return column == value if value is not None else column.isna()
    lo, hi = sorted(float(v) for v in value)
    if field in RANGE_ENDS:
        return (column <= hi) & (records[RANGE_ENDS[field]] > lo)
    return column.between(lo, hi)
