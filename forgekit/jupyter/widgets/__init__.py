"""The notebook widgets: `RunMonitor`, `DatasetViewer`, `PairReviewer`.

Each is an `anywidget.AnyWidget`: the front end is a plain ES module with its CSS in the
top-level `widgets/` folder (no build step). A wheel ships that folder as
`forgekit/_widgets`; a source checkout uses `widgets/` itself (`asset_dir`). The widgets name
their files by path, and anywidget reads a file when the first widget of its class is
created, so an edited module shows after a kernel restart, with no reinstall (and in live
widgets with ANYWIDGET_HMR=1 and `watchfiles` installed).

State the user changes in the browser (Cancel, the search box, review decisions) is a
synced traitlet, so it can be read and set from Python as well, and tests do exactly that.
One module per widget; `base` holds what they share.
"""

from __future__ import annotations

from forgekit.data.review import DECISIONS, apply_decisions, load_decisions
from forgekit.jupyter.widgets.base import asset_dir
from forgekit.jupyter.widgets.dataset_viewer import DatasetViewer
from forgekit.jupyter.widgets.pair_reviewer import PairReviewer
from forgekit.jupyter.widgets.run_monitor import RunMonitor

# The review file format lives in forgekit.data.review; its names stay importable here.
__all__ = [
    "DECISIONS",
    "DatasetViewer",
    "PairReviewer",
    "RunMonitor",
    "apply_decisions",
    "asset_dir",
    "load_decisions",
]
