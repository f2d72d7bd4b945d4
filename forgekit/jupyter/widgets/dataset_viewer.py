"""`DatasetViewer`: a paged, searchable table of records with a detail pane."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import traitlets

from forgekit.jupyter.widgets.base import ASSETS, ForgeWidget, clip, widget_records


class DatasetViewer(ForgeWidget):
    """A paged, searchable table of records with a detail pane (history, chosen/rejected
    side by side, lineage). Paging and search run in Python, so only one page of a large
    data set travels to the browser."""

    _esm = ASSETS / "dataset_viewer.js"
    _css = ASSETS / "dataset_viewer.css"

    title = traitlets.Unicode("").tag(sync=True)
    columns = traitlets.List([]).tag(sync=True)
    rows = traitlets.List([]).tag(sync=True)  # the current page: {"index", cells...}
    count = traitlets.Int(0).tag(sync=True)  # all records
    matches = traitlets.Int(0).tag(sync=True)  # records matching `query`
    page = traitlets.Int(0).tag(sync=True)
    page_size = traitlets.Int(10).tag(sync=True)
    query = traitlets.Unicode("").tag(sync=True)
    selected = traitlets.Int(-1).tag(sync=True)  # index into the records; -1: none
    detail = traitlets.Dict({}).tag(sync=True)

    def __init__(
        self,
        data: Any,
        *,
        columns: Iterable[str] | None = None,
        page_size: int = 10,
        title: str = "",
        **kwargs: Any,
    ) -> None:
        self.records = widget_records(data)
        if columns is None:
            present = {k for r in self.records for k in r}
            preferred = ("id", "input", "output", "chosen", "rejected", "target", "text")
            columns = [c for c in preferred if c in present] or sorted(present)[:4]
        self._haystack = [
            json.dumps(r, ensure_ascii=False, default=str).lower() for r in self.records
        ]
        self._matching: list[int] = list(range(len(self.records)))
        super().__init__(
            columns=list(columns),
            count=len(self.records),
            page_size=max(1, page_size),
            title=title or f"{len(self.records)} records",
            **kwargs,
        )
        self._refresh()

    @traitlets.observe("query")
    def _on_query(self, change: Mapping[str, Any]) -> None:
        needle = change["new"].strip().lower()
        self._matching = [
            i for i, text in enumerate(self._haystack) if not needle or needle in text
        ]
        with self.hold_sync():
            self.page = 0
            self._refresh()

    @traitlets.observe("page", "page_size")
    def _on_page(self, change: Mapping[str, Any]) -> None:
        self._refresh()

    @traitlets.observe("selected")
    def _on_selected(self, change: Mapping[str, Any]) -> None:
        index = change["new"]
        self.detail = self.records[index] if 0 <= index < len(self.records) else {}

    def _refresh(self) -> None:
        pages = max(1, -(-len(self._matching) // self.page_size))
        page = min(max(self.page, 0), pages - 1)
        if page != self.page:
            self.page = page  # observed: refreshes again with the clamped page
            return
        start = page * self.page_size
        self.matches = len(self._matching)
        self.rows = [
            {"index": i, **{c: clip(self.records[i].get(c), 160) for c in self.columns}}
            for i in self._matching[start : start + self.page_size]
        ]
