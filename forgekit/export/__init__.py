"""Export records to the formats trainers load, with a dataset card.

    import forgekit
    forgekit.export(df, format="trl-messages", out="my-set")

Formats (forgekit.export.FORMATS): trl-messages, trl-prompt-completion, trl-preference, alpaca,
alpaca-preference, sharegpt, sharegpt-preference (with a dataset_info.json entry), openai,
openai-preference, verl (RL Parquet), parquet and save_to_disk (plain records). How system
prompts, history and thinking traces map: forgekit.export.convert. The card:
forgekit.export.card; what it is made from: forgekit.export.provenance.

`forgekit.export` is this package and can also be called like the function, so both
`forgekit.export(...)` and `forgekit.export.export(...)` work.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from forgekit.export.core import ExportResult, export
from forgekit.export.formats import FORMATS, Format, get_format
from forgekit.export.hub import push_folder

__all__ = ["FORMATS", "ExportResult", "Format", "export", "get_format", "push_folder"]


class _CallableModule(types.ModuleType):
    """`forgekit.export(...)` calls `export` (the package shadows the function's name)."""

    def __call__(self, *args: Any, **kwargs: Any) -> ExportResult:
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
