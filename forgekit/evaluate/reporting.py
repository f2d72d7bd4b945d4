"""`report(df)`: one call for a diversity overview of a data set, with linked Altair charts.

The numbers and tables come from `forgekit.evaluate.report_data` (computed on every record,
plotted for a sample of at most `max_points` records so the notebook and the saved HTML stay
small); this module draws them. Charts:

* length distribution (characters; pre-binned over all records),
* label/entity distribution (the top labels; click a bar to filter the map and the table),
* duplicate clusters (exact + MinHash near-duplicates, largest first),
* a 2-D embedding map (PCA of TF-IDF character n-grams, or of a model's embeddings); drag a
  rectangle to select records,
* a record table showing the selected records.

In Jupyter, `DiversityReport.widget()` returns an `alt.JupyterChart` whose selections are
readable from Python; `selected_records()` turns the current selection into a DataFrame.
"""

from __future__ import annotations

import dataclasses
import html
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from forgekit.errors import ConfigError
from forgekit.evaluate.common import DataLike
from forgekit.evaluate.embed import Embedder
from forgekit.evaluate.report_data import ReportData, compute_report

TABLE_ROWS = 12


class DiversityReport(ReportData):
    """Summary table + linked Altair charts for one data set (see module doc)."""

    # --- charts ---------------------------------------------------------------------------

    def charts(self) -> dict[str, Any]:
        """The individual charts (not linked to each other), by name."""
        import altair as alt

        out = {"length": self._length_chart(alt), "embedding": self._map_chart(alt, None, None)}
        if not self.labels.empty:
            out["labels"] = self._label_chart(alt, None)
        if not self.clusters.empty:
            out["duplicates"] = self._cluster_chart(alt)
        return out

    def _length_chart(self, alt):
        return (
            alt.Chart(self.lengths, title="Length (characters)")
            .mark_bar()
            .encode(
                x=alt.X("bin_start:Q", bin="binned", title="characters"),
                x2="bin_end:Q",
                y=alt.Y("count:Q", title="records"),
                tooltip=["bin_start", "bin_end", "count"],
            )
            .properties(width=320, height=180)
        )

    def _label_chart(self, alt, pick):
        chart = (
            alt.Chart(self.labels, title=f"Top {self.params.get('label_title', 'labels')}")
            .mark_bar()
            .encode(
                y=alt.Y("label:N", sort="-x", title=None),
                x=alt.X("count:Q", title="records"),
                tooltip=["label", "count"],
            )
            .properties(width=320, height=min(18 * len(self.labels) + 20, 420))
        )
        if pick is not None:
            chart = chart.encode(
                opacity=alt.condition(pick, alt.value(1.0), alt.value(0.35))
            ).add_params(pick)
        return chart

    def _cluster_chart(self, alt):
        return (
            alt.Chart(self.clusters, title="Largest duplicate clusters")
            .mark_bar(color="#d62728")
            .encode(
                y=alt.Y("representative:N", sort="-x", title=None),
                x=alt.X("size:Q", title="records in cluster"),
                tooltip=["representative", "size", "kind", "text"],
            )
            .properties(width=320, height=min(18 * len(self.clusters) + 20, 320))
        )

    def _map_chart(self, alt, brush, pick):
        color = (
            alt.Color("label:N", legend=alt.Legend(columns=1, symbolLimit=12))
            if self.records["label"].notna().any()
            else alt.Color("duplicate:N", scale=alt.Scale(range=["#1f77b4", "#d62728"]))
        )
        chart = (
            alt.Chart(self.records, title="Embedding map (PCA)")
            .mark_circle(size=28)
            .encode(
                x=alt.X("x:Q", title="PC 1"),
                y=alt.Y("y:Q", title="PC 2"),
                tooltip=["key:N", "label:N", "length:Q", "duplicate:N", "text:N"],
            )
            .properties(width=420, height=320)
        )
        if brush is not None:
            chart = chart.add_params(brush).encode(
                color=alt.condition(brush, color, alt.value("lightgray"))
            )
        else:
            chart = chart.encode(color=color)
        if pick is not None:
            chart = chart.transform_filter(pick)
        return chart

    def _table_chart(self, alt, brush, pick):
        base = alt.Chart(self.records)
        if pick is not None:
            base = base.transform_filter(pick)
        if brush is not None:
            base = base.transform_filter(brush)
        ranked = base.transform_window(rank="row_number()").transform_filter(
            alt.datum.rank <= TABLE_ROWS
        )
        columns = [("key", 70), ("label", 130), ("length", 50), ("text", 520)]
        parts = []
        for name, width in columns:
            parts.append(
                ranked.mark_text(align="left", baseline="middle", limit=width - 6)
                .encode(
                    x=alt.value(0),  # left edge of the column (text is centered otherwise)
                    y=alt.Y("rank:O", axis=None),
                    text=alt.Text(f"{name}:N"),
                )
                .properties(title=name, width=width, height=16 * TABLE_ROWS)
            )
        return alt.hconcat(*parts, spacing=4).properties(
            title=f"Selected records (first {TABLE_ROWS})"
        )

    def chart(self):
        """All charts in one linked composite: drag on the map, click a label bar; the record
        table follows both selections."""
        import altair as alt

        brush = alt.selection_interval(name="brush", encodings=["x", "y"])
        pick = None
        if not self.labels.empty:
            pick = alt.selection_point(name="pick", fields=["label"])
        top_left = self._map_chart(alt, brush, pick)
        right = [self._length_chart(alt)]
        if not self.labels.empty:
            right.append(self._label_chart(alt, pick))
        top = alt.hconcat(top_left, alt.vconcat(*right))
        bottom_parts = [self._table_chart(alt, brush, pick)]
        rows = [top]
        if not self.clusters.empty:
            rows.append(self._cluster_chart(alt))
        rows.extend(bottom_parts)
        return alt.vconcat(*rows).configure_view(stroke=None).configure_title(anchor="start")

    def widget(self):
        """An `alt.JupyterChart` (needs anywidget): selections are readable in Python via
        `.selections`; pass it to `selected_records()`."""
        import altair as alt

        return alt.JupyterChart(self.chart())

    def selected_records(self, widget: Any) -> pd.DataFrame:
        """The plotted records inside a JupyterChart's current brush and label selection."""
        out = self.records
        selections = getattr(widget, "selections", None)
        brush = getattr(selections, "brush", None) if selections is not None else None
        value = getattr(brush, "value", None) if brush is not None else None
        if value:
            (x0, x1), (y0, y1) = sorted(value["x"]), sorted(value["y"])
            out = out[out["x"].between(x0, x1) & out["y"].between(y0, y1)]
        pick = getattr(selections, "pick", None) if selections is not None else None
        picked = getattr(pick, "value", None) if pick is not None else None
        if picked:
            labels = {p.get("label") for p in picked if isinstance(p, dict)}
            out = out[out["label"].isin(labels)]
        return out

    # --- output ---------------------------------------------------------------------------

    def summary_html(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(r.metric))}</th>"
            f"<td style='text-align:right'>{html.escape(_fmt(r.value))}</td></tr>"
            for r in self.summary.itertuples(index=False)
        )
        return f"<table class='forgekit-summary'>{rows}</table>"

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the report: `.html` (standalone: summary + interactive charts, Vega libraries
        inlined when vl-convert-python is installed, else loaded from a CDN) or `.png`
        (the charts, needs vl-convert-python). Refuses to replace a file unless overwrite."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path}: exists; pass overwrite=True to replace it")
        suffix = path.suffix.lower()
        chart = self.chart()
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".png":
            try:
                import vl_convert
            except ImportError:
                raise ConfigError(
                    f"{path}: PNG output needs vl-convert-python (pip install vl-convert-python)"
                ) from None
            chart.save(str(path), format="png")
            return path
        if suffix not in (".html", ".htm"):
            raise ConfigError(f"{path}: save as .html or .png")
        try:
            import vl_convert  # noqa: F401

            inline = True
        except ImportError:
            inline = False
        body = chart.to_html(inline=inline, fullhtml=False, output_div="forgekit-report")
        page = (
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>forgekit diversity report"
            "</title><style>body{font-family:sans-serif;margin:24px}"
            ".forgekit-summary td,.forgekit-summary th{padding:2px 12px}</style></head><body>"
            "<h2>Diversity report</h2>" + self.summary_html() + body + "</body></html>"
        )
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, path)
        return path

    def _repr_html_(self) -> str:
        return self.summary_html()

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = self.chart()._repr_mimebundle_(include, exclude)
        if isinstance(bundle, tuple):
            bundle = bundle[0]
        bundle = dict(bundle or {})
        bundle["text/plain"] = repr(self)
        return bundle

    def _ipython_display_(self) -> None:  # pragma: no cover - needs a notebook frontend
        from IPython.display import HTML, display

        display(HTML(self.summary_html()))
        try:
            display(self.widget())
        except Exception:  # anywidget missing or an old frontend: a static chart still works
            display(self.chart())

    def __repr__(self) -> str:
        values = dict(zip(self.summary["metric"], self.summary["value"], strict=True))
        return (
            f"DiversityReport(records={values.get('records')}, "
            f"vendi_ngram_q1={_fmt(values.get('vendi_ngram_q1'))})"
        )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return str(value)


def report(
    data: DataLike,
    text: str | Sequence[str] = "input",
    label: str | None = "tag",
    *,
    embedder: str | Embedder | None = "tfidf",
    embeddings: Any = None,
    max_points: int = 2000,
    minhash_threshold: float = 0.7,
    cache_dir: str | os.PathLike | bool | None = None,
    id_field: str | None = "id",
    seed: int = 0,
) -> DiversityReport:
    """Build a DiversityReport for the records' `text` with labels from `label`.

    `label` may be a field of strings or of lists of labels (e.g. "tag", "task_label"); if the
    field is missing the report says so and plots without labels (label=None: no labels).
    Vendi scores are computed on all records (n-gram kernel, and the embedding kernel of
    `embedder`); charts show a random sample of `max_points` records.
    """
    data = compute_report(
        data,
        text,
        label,
        embedder=embedder,
        embeddings=embeddings,
        max_points=max_points,
        minhash_threshold=minhash_threshold,
        cache_dir=cache_dir,
        id_field=id_field,
        seed=seed,
    )
    return DiversityReport(**{f.name: getattr(data, f.name) for f in dataclasses.fields(data)})
