"""`DatasetViewer`: a paged, searchable, sortable table of records with a detail pane."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import traitlets

from forgekit.jupyter.widgets.base import ASSETS, ForgeWidget, clip, widget_records


class DatasetViewer(ForgeWidget):
    """A paged, searchable table of records with a detail pane (history, chosen/rejected
    side by side, lineage). Paging, search and sorting run in Python, so only one page of a
    large data set travels to the browser. `show_only(indices)` narrows it to a subset (the
    diversity report's selection); `sort_by` a column name ("" keeps data order)."""

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
    subset = traitlets.Int(0).tag(sync=True)  # records in the subset shown (all: count)
    sort_by = traitlets.Unicode("").tag(sync=True)  # a column; "": data order
    descending = traitlets.Bool(False).tag(sync=True)

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
        self._subset: list[int] | None = None  # None: every record
        self._title = title
        super().__init__(
            columns=list(columns),
            count=len(self.records),
            subset=len(self.records),
            page_size=max(1, page_size),
            title=title or f"{len(self.records)} records",
            **kwargs,
        )
        self._refresh()

    def show_only(self, indices: Sequence[int] | None) -> None:
        """Show only these records (positions in the data; None: all of them), in the
        current order, still searchable; back to the first page."""
        if indices is None:
            self._subset = None
        else:
            wanted = {int(i) for i in indices if 0 <= int(i) < len(self.records)}
            self._subset = sorted(wanted)
        self._rematch()

    @traitlets.observe("query", "sort_by", "descending")
    def _on_query(self, change: Mapping[str, Any]) -> None:
        self._rematch()

    def _rematch(self) -> None:
        needle = self.query.strip().lower()
        candidates = range(len(self.records)) if self._subset is None else self._subset
        matching = [i for i in candidates if not needle or needle in self._haystack[i]]
        if self.sort_by:
            column = self.sort_by
            matching.sort(key=lambda i: _sort_key(self.records[i].get(column)))
            if self.descending:
                matching.reverse()
        elif self.descending:
            matching.reverse()
        self._matching = matching
        with self.hold_sync():
            self.subset = len(self.records) if self._subset is None else len(self._subset)
            if self._title:
                self.title = self._title
            elif self._subset is None:
                self.title = f"{len(self.records)} records"
            else:
                self.title = f"{self.subset} of {len(self.records)} records selected"
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


def _sort_key(value: Any) -> tuple[int, Any]:
    """Numbers before text, missing values last; mixed types never compare."""
    if value is None or value == "":
        return (2, "")
    if isinstance(value, bool):
        return (1, str(value))
    if isinstance(value, (int, float)):
        return (0, value) if value == value else (2, "")
    return (1, value if isinstance(value, str) else json.dumps(value, default=str))
