"""`report(df)`: one call for a diversity overview of a data set, with linked charts.

The numbers and tables come from `forgekit.evaluate.report_data` (computed on every record;
the charts plot a sample of at most `max_points` records so the notebook and the saved HTML
stay small); the charts and their linked selections are `forgekit.evaluate.report_charts`.

Shown in a notebook, the report is one widget (`forgekit.jupyter.widgets.report`, imported
only then): the summary, the embedding map, label bars, length histogram and duplicate
clusters — a selection on any of them filters the others and the record list (a
DatasetViewer) — and `report.selection`, the selected records as a DataFrame. Everything it
needs in the browser ships with the installed packages: nothing is fetched from the network.
`save()` writes a standalone HTML page (Vega inlined, selections work) or a PNG.
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
from forgekit.evaluate.report_charts import linked_chart, select_rows, separate_charts
from forgekit.evaluate.report_data import ReportData, compute_report

# Vega-Embed's menu without "Open in Vega Editor" (a link to a web site).
EMBED = {
    "renderer": "svg",
    "actions": {"export": True, "source": False, "compiled": False, "editor": False},
}


class DiversityReport(ReportData):
    """Summary table + linked charts for one data set (see module doc)."""

    _view: Any = None  # the last widget shown in a notebook (its selection is `selection`)

    # --- charts ---------------------------------------------------------------------------

    def _label_title(self) -> str:
        return str(self.params.get("label_title", "labels"))

    def charts(self) -> dict[str, Any]:
        """The individual charts (not linked to each other), by name."""
        charts = separate_charts(self.records, self._label_title())
        charts["embedding"] = charts.pop("map")
        return charts

    def chart(self):
        """All charts in one composite linked by Vega-Lite params (drag on the map or the
        length histogram, click a label or a duplicate cluster; double-click clears), with a
        table of the first selected records in data order. Used for the HTML and PNG."""
        return linked_chart(self.records, self._label_title())

    def widget(self):
        """The interactive report for a notebook (needs anywidget): summary, linked charts
        that fit the output area, and the record list (a DatasetViewer) following the
        selection. Its `selection` (also `report.selection`) is the selected records."""
        from forgekit.jupyter.widgets.report import ReportView

        view = ReportView(self)
        self._view = view
        return view

    @property
    def selection(self) -> pd.DataFrame:
        """The records selected in the report last shown in the notebook, as given (rows of
        the input data); every plotted record when nothing is selected or nothing shown."""
        state = getattr(self._view, "selection_state", None)
        return self.selected_frame(state)

    def selected_frame(self, selection: dict[str, Any] | None) -> pd.DataFrame:
        """The input rows of the plotted records that `selection` keeps (see
        `forgekit.evaluate.report_charts.select_rows`)."""
        rows = self.records.loc[select_rows(self.records, selection), "row"].to_numpy()
        if self.frame is None:
            return self.records[self.records["row"].isin(rows)]
        return self.frame.iloc[rows]

    def selected_records(self, widget: Any) -> pd.DataFrame:
        """The plotted records (the chart table: key, label, text, x, y...) that a report
        widget's selection keeps. Also takes an `alt.JupyterChart` of `chart()`."""
        state = getattr(widget, "selection_state", None)
        if state is None:
            state = _jupyterchart_selection(widget)
        return self.records[select_rows(self.records, state)]

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
        body = chart.to_html(
            inline=inline, fullhtml=False, output_div="forgekit-report", embed_options=EMBED
        )
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

    def static_png(self, scale: float = 1.0) -> bytes:
        """The linked chart as a PNG (vl-convert; no browser, no network)."""
        import vl_convert

        return vl_convert.vegalite_to_png(self.chart().to_dict(), scale=scale)

    def _repr_html_(self) -> str:
        return self.summary_html()

    def _repr_mimebundle_(self, include=None, exclude=None):
        """Outside a live notebook front end: the summary and a static chart."""
        bundle: dict[str, Any] = {"text/html": self.summary_html(), "text/plain": repr(self)}
        try:
            bundle["image/png"] = self.static_png()
        except Exception as exc:  # vl-convert missing or failing: say so, keep the table
            bundle["text/html"] += f"<p>Chart not drawn: {html.escape(str(exc))}</p>"
        return bundle

    def _ipython_display_(self) -> None:  # pragma: no cover - needs a notebook frontend
        from IPython.display import display

        if _widgets_wanted():
            try:
                display(self.widget())
                return
            except ImportError:  # anywidget missing: the static report still shows
                pass
        display(self._repr_mimebundle_(), raw=True)

    def __repr__(self) -> str:
        values = dict(zip(self.summary["metric"], self.summary["value"], strict=True))
        return (
            f"DiversityReport(records={values.get('records')}, "
            f"vendi_ngram_q1={_fmt(values.get('vendi_ngram_q1'))})"
        )


def _widgets_wanted() -> bool:
    """A live notebook front end can draw widgets: an IPython kernel, and FORGEKIT_NO_WIDGETS
    not set (papermill and batch runs set it: their outputs get the static report)."""
    if os.environ.get("FORGEKIT_NO_WIDGETS", "").strip() not in ("", "0"):
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _jupyterchart_selection(widget: Any) -> dict[str, Any]:
    """An `alt.JupyterChart`'s interval/point selections as `select_rows` entries."""
    out: dict[str, Any] = {}
    selections = getattr(widget, "selections", None)
    for name in ("brush", "pick", "span", "cluster"):
        value = getattr(getattr(selections, name, None), "value", None)
        if not value:
            continue
        if isinstance(value, dict):  # interval: {field: [lo, hi]}
            out[name] = [[[f, "R", v] for f, v in value.items()]]
        else:  # point: [{field: value}, ...]
            out[name] = [[[f, "E", v] for f, v in p.items()] for p in value if isinstance(p, dict)]
    return out


def use_offline_altair() -> None:
    """Make Altair charts render with no network: with Altair's default renderer (which
    loads Vega from a CDN), switch to the same renderer with the Vega libraries inlined
    from vl-convert. A renderer the user chose is left alone."""
    import altair as alt

    if alt.renderers.active == "default" and not alt.renderers.options:
        try:
            import vl_convert  # noqa: F401
        except ImportError:
            return
        alt.renderers.enable("default", template="inline", embed_options=EMBED)


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
    use_offline_altair()
    return DiversityReport(**{f.name: getattr(data, f.name) for f in dataclasses.fields(data)})
