"""`PairReviewer`: accept, swap or reject preference pairs; the decisions go to a review
file (its format: `forgekit.data.review`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import traitlets

from forgekit.data.review import (
    DECISIONS,
    append_decisions,
    apply_decisions,
    decisions_path_for,
    load_decisions,
)
from forgekit.errors import ConfigError
from forgekit.jupyter.widgets.base import ASSETS, ForgeWidget, widget_records


class PairReviewer(ForgeWidget):
    """Step through preference pairs (records with `chosen` and `rejected`) and accept,
    swap or reject each. Every decision is appended to a JSONL file next to the data
    (`<data>.review.jsonl`, see `forgekit.data.review`), which a new reviewer reloads;
    `reviewed()` applies them."""

    _esm = ASSETS / "pair_reviewer.js"
    _css = ASSETS / "pair_reviewer.css"

    index = traitlets.Int(0).tag(sync=True)
    total = traitlets.Int(0).tag(sync=True)
    pair = traitlets.Dict({}).tag(sync=True)
    # {record id: "accept" | "swap" | "reject"}: set by the buttons or from Python.
    decisions = traitlets.Dict({}).tag(sync=True)
    path = traitlets.Unicode("").tag(sync=True)

    def __init__(
        self, data: Any, *, decisions_path: str | Path | None = None, **kwargs: Any
    ) -> None:
        self.pairs = [r for r in widget_records(data) if r.get("chosen") and r.get("rejected")]
        if not self.pairs:
            raise ConfigError(
                "no preference pairs: the data has no records with both chosen and rejected"
            )
        for position, record in enumerate(self.pairs):
            record.setdefault("id", f"pair-{position}")
        self.decisions_path = Path(decisions_path or decisions_path_for(data))
        saved = load_decisions(self.decisions_path)
        known = {r["id"] for r in self.pairs}
        super().__init__(
            total=len(self.pairs),
            decisions={k: v for k, v in saved.items() if k in known},
            path=str(self.decisions_path),
            **kwargs,
        )
        undecided = [i for i, r in enumerate(self.pairs) if r["id"] not in self.decisions]
        self.index = undecided[0] if undecided else 0
        self._show()

    @traitlets.validate("decisions")
    def _check(self, proposal: Mapping[str, Any]) -> dict[str, str]:
        value = dict(proposal["value"])
        bad = {k: v for k, v in value.items() if v not in DECISIONS}
        if bad:
            raise traitlets.TraitError(f"decisions must be one of {DECISIONS}, got {bad}")
        return value

    @traitlets.observe("decisions")
    def _on_decisions(self, change: Mapping[str, Any]) -> None:
        old, new = change["old"] or {}, change["new"] or {}
        changed = {k: v for k, v in new.items() if old.get(k) != v}
        if changed:
            append_decisions(self.decisions_path, changed)
        self._show()

    @traitlets.observe("index")
    def _on_index(self, change: Mapping[str, Any]) -> None:
        clamped = min(max(change["new"], 0), len(self.pairs) - 1)
        if clamped != change["new"]:
            self.index = clamped
            return
        self._show()

    def _show(self) -> None:
        record = self.pairs[self.index]
        self.pair = {
            "id": record["id"],
            "input": record.get("input", ""),
            "system": record.get("system") or "",
            "history": record.get("history") or [],
            "chosen": record["chosen"],
            "rejected": record["rejected"],
            "decision": self.decisions.get(record["id"], ""),
        }

    def decide(self, decision: str, *, advance: bool = True) -> None:
        """Record a decision for the current pair (as a button click does)."""
        if decision not in DECISIONS:
            raise ConfigError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
        self.decisions = {**self.decisions, self.pairs[self.index]["id"]: decision}
        if advance and self.index < len(self.pairs) - 1:
            self.index += 1

    def reviewed(self):
        """The pairs with decisions applied: accepted as they are, swapped with chosen and
        rejected exchanged, rejected dropped, undecided left out. A DataFrame."""
        from forgekit.data.io import records_to_dataframe

        return records_to_dataframe(apply_decisions(self.pairs, self.decisions))
