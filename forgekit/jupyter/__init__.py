"""forgekit in Jupyter: the `%forge` / `%%forge` magics (`%load_ext forgekit`), the
widgets `RunMonitor`, `DatasetViewer`, `PairReviewer`, and background runs with a live
monitor (`start_background`, `watch`).

The widgets are imported lazily, so `%load_ext forgekit` stays quick.
"""

from __future__ import annotations

from typing import Any

from forgekit.jupyter.magics import ForgeMagics, load_ipython_extension

__all__ = [
    "DatasetViewer",
    "ForgeMagics",
    "PairReviewer",
    "RunMonitor",
    "load_ipython_extension",
    "start_background",
    "watch",
]

_WIDGETS = ("DatasetViewer", "PairReviewer", "RunMonitor")


def __getattr__(name: str) -> Any:
    if name in ("start_background", "watch"):
        from forgekit.jupyter import background

        return getattr(background, name)
    if name in _WIDGETS:
        from forgekit.jupyter import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module 'forgekit.jupyter' has no attribute {name!r}")
