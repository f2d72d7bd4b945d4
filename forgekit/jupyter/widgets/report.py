"""The diversity report as one notebook widget: `ReportView`.

`ReportView` (an ipywidgets VBox, so JupyterLab and Notebook 7 draw it with what they ship)
holds the summary table, `ReportCharts` and a `DatasetViewer` of the plotted records. A
selection on any chart filters the other charts in the browser and reaches Python as
`ReportCharts.selection`; the viewer then shows only the selected records, and
`ReportView.selection` (also `report.selection`) is them as a DataFrame.

`ReportCharts` is an anywidget whose front end (widgets/report.js) is bundled with Vega,
Vega-Lite and Vega-Embed by vl-convert (an installed dependency) when the first report is
shown: the browser fetches nothing from the network. The bundle is cached on disk, keyed by
the module's text and vl-convert's version. If the charts fail to draw in the browser
anyway, the front end says why in one line and Python sends a static PNG in their place.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ipywidgets
import numpy as np
import pandas as pd
import traitlets

from forgekit.evaluate.report_charts import chart_records, select_rows, widget_specs
from forgekit.jupyter.widgets.base import ASSETS, ForgeWidget
from forgekit.jupyter.widgets.dataset_viewer import DatasetViewer

SOURCE = ASSETS / "report.js"


def _bundle_cache_dir() -> Path:
    root = os.environ.get("FORGEKIT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "forgekit"
    )
    return Path(root) / "widgets"


@functools.lru_cache(maxsize=2)
def _bundled(source: str) -> str:
    import vl_convert
    from altair.utils._importers import vl_version_for_vl_convert

    version = vl_version_for_vl_convert()
    key = hashlib.sha256(f"{vl_convert.__version__}|{version}|{source}".encode()).hexdigest()
    cached = _bundle_cache_dir() / f"report-{key[:16]}.js"
    if cached.is_file():
        return cached.read_text(encoding="utf-8")
    text = vl_convert.javascript_bundle(source, vl_version=version)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, cached)
    except OSError:  # a read-only cache: bundle again next time
        pass
    return text


def report_esm() -> str:
    """widgets/report.js with Vega, Vega-Lite and Vega-Embed inlined (vl-convert)."""
    return _bundled(SOURCE.read_text(encoding="utf-8"))


class ReportCharts(ForgeWidget):
    """The report's linked charts (see module doc). `selection` maps a chart's selection
    param to its entries (`forgekit.evaluate.report_charts.select_rows`)."""

    _css = ASSETS / "report.css"

    charts = traitlets.List([]).tag(sync=True)  # [{name, param, filter_self, spec}]
    records = traitlets.List([]).tag(sync=True)  # the plotted records
    selection = traitlets.Dict({}).tag(sync=True)  # set by the front end
    selected_count = traitlets.Int(-1).tag(sync=True)  # set by the front end; -1: none yet
    rendered = traitlets.Bool(False).tag(sync=True)  # set by the front end once drawn
    render_error = traitlets.Unicode("").tag(sync=True)  # set by the front end on failure
    fallback = traitlets.Unicode("").tag(sync=True)  # a data: URL PNG, sent on failure

    def __init__(self, report: Any, **kwargs: Any) -> None:
        if "_esm" not in type(self).__dict__:
            type(self)._esm = report_esm()
        self.report = report
        super().__init__(
            charts=widget_specs(report.records, report._label_title()),
            records=chart_records(report.records),
            **kwargs,
        )

    @traitlets.observe("render_error")
    def _on_error(self, change: Mapping[str, Any]) -> None:
        if change["new"] and not self.fallback:
            png = self.report.static_png()
            self.fallback = "data:image/png;base64," + base64.b64encode(png).decode("ascii")


class ReportView(ipywidgets.VBox):
    """Summary, linked charts and the record list of a diversity report (module doc)."""

    def __init__(self, report: Any, *, page_size: int = 10) -> None:
        self.report = report
        records = report.records
        frame = report.frame
        listed = frame.iloc[records["row"].to_numpy()] if frame is not None else records
        self.charts = ReportCharts(report)
        self.viewer = DatasetViewer(
            listed.reset_index(drop=True),
            columns=_list_columns(listed, report.params),
            page_size=page_size,
        )
        summary = ipywidgets.HTML(report.summary_html())
        note = _sample_note(report)
        parts = [summary, *([ipywidgets.HTML(note)] if note else []), self.charts, self.viewer]
        super().__init__(parts)
        self.add_class("forgekit-report")
        self.charts.observe(self._on_selection, "selection")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget, plus the summary table as HTML for whatever cannot draw widgets (a
        notebook saved without widget state, nbconvert): the summary still shows there."""
        bundle = super()._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):
            bundle = {**bundle, "text/html": self.report.summary_html()}
        return bundle

    @property
    def selection_state(self) -> dict[str, Any]:
        return dict(self.charts.selection)

    @property
    def selection(self) -> pd.DataFrame:
        """The selected records as given (rows of the input data); every plotted record
        when nothing is selected."""
        return self.report.selected_frame(self.selection_state)

    def _on_selection(self, change: Mapping[str, Any]) -> None:
        mask = select_rows(self.report.records, change["new"])
        self.viewer.show_only(None if mask.all() else np.flatnonzero(mask.to_numpy()))


def _list_columns(frame: pd.DataFrame, params: Mapping[str, Any]) -> list[str]:
    """The record list's columns: the key, the text field(s), the label field."""
    text = params.get("text")
    texts = [text] if isinstance(text, str) else list(text or [])
    wanted = [params.get("id_field") or "id", *texts, params.get("label")]
    columns = [c for c in dict.fromkeys(wanted) if c and c in frame.columns]
    return columns or [str(c) for c in frame.columns[:4]]


def _sample_note(report: Any) -> str:
    total = report.params.get("total_records")
    shown = len(report.records)
    if total is None or shown >= total:
        return ""
    return (
        f"<p class='forgekit-report-note'>The charts and the record list show a random "
        f"sample of {shown:,} of {total:,} records (max_points); the summary counts all.</p>"
    )
