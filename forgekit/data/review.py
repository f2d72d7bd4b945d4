"""Review decisions on preference pairs: the file the pair reviewer writes, and applying it.

A review file is JSONL beside the data (`<data>.review.jsonl`), one line per decision:
`{"id": <record id>, "decision": "accept" | "swap" | "reject", "time": <UTC ISO time>}`.
Lines are only ever appended, so a change of mind is a new line and the latest line per id
wins; nothing a reviewer decided is rewritten or lost.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from forgekit.errors import ConfigError

DECISIONS = ("accept", "swap", "reject")


def decisions_path_for(data: Any) -> Path:
    """`<data>.review.jsonl` beside a data file, or beside the output file of the run that
    made a DataFrame (`df.attrs["forgekit"]["out"]`)."""
    if isinstance(data, (str, Path)):
        source = Path(data)
    else:
        out = getattr(data, "attrs", {}).get("forgekit", {}).get("out")
        if not out:
            raise ConfigError(
                "PairReviewer: pass decisions_path= (the data is not a file, and the "
                "DataFrame does not come from a run with out=)"
            )
        source = Path(out)
    return source.with_name(source.stem + ".review.jsonl")


def load_decisions(path: str | Path) -> dict[str, str]:
    """The latest decision per record id in a review file (missing file: none)."""
    path = Path(path)
    if not path.exists():
        return {}
    decisions: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            decision = entry["decision"]
            ident = str(entry["id"])
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                f"{path}:{number}: not a review decision (want {{'id', 'decision'}})"
            ) from None
        if decision not in DECISIONS:
            raise ConfigError(f"{path}:{number}: unknown decision {decision!r}")
        decisions[ident] = decision
    return decisions


def append_decisions(path: str | Path, decisions: Mapping[str, str]) -> None:
    """Append one line per decision (creating the file and its folder if needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with path.open("a", encoding="utf-8") as handle:
        for ident, decision in decisions.items():
            handle.write(json.dumps({"id": ident, "decision": decision, "time": stamp}) + "\n")
        handle.flush()


def apply_decisions(
    pairs: Iterable[Mapping[str, Any]], decisions: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The pairs with decisions applied: accepted as they are, swapped with chosen and
    rejected exchanged; rejected and undecided pairs are left out."""
    out = []
    for record in pairs:
        decision = decisions.get(str(record.get("id")))
        if decision == "accept":
            out.append(dict(record))
        elif decision == "swap":
            out.append({**record, "chosen": record["rejected"], "rejected": record["chosen"]})
    return out
