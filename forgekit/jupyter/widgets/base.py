"""What forgekit's widgets share: where their front-end files are, the base class, and
turning records into JSON the front end can take."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anywidget

# forgekit/ (this file is forgekit/jupyter/widgets/base.py)
_PACKAGE = Path(__file__).resolve().parents[2]


def asset_dir(package: Path = _PACKAGE) -> Path:
    """Where the widgets' .js/.css files are: `_widgets` inside an installed package, or
    the top-level `widgets/` folder beside the package in a source checkout."""
    for candidate in (package / "_widgets", package.parent / "widgets"):
        if (candidate / "run_monitor.js").is_file():
            return candidate
    raise FileNotFoundError(
        f"forgekit widget files not found in {package / '_widgets'} or "
        f"{package.parent / 'widgets'}; reinstall forgekit"
    )


ASSETS = asset_dir()


def clip(value: Any, width: int) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def jsonable(value: Any) -> Any:
    """A value that survives JSON (numpy scalars and arrays, timestamps, NaN become plain)."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=_default))


def _default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def widget_records(data: Any) -> list[dict[str, Any]]:
    """Records from a DataFrame, list of dicts or a file, with NaN cells dropped."""
    from forgekit.data.io import read_records

    records = read_records(data)
    out = []
    for record in records:
        clean = {}
        for key, value in record.items():
            if isinstance(value, float) and value != value:  # NaN from a DataFrame
                continue
            clean[key] = value
        out.append(jsonable(clean))
    return out


class ForgeWidget(anywidget.AnyWidget):
    """forgekit's widgets: the front end's messages are handled even while a cell runs
    (in a kernel subshell, where the kernel has them; see forgekit.jupyter.uipoll)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from forgekit.jupyter.uipoll import route_to_subshell

        self.live = route_to_subshell(self)
