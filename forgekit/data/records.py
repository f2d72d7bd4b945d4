"""The one record shape every method produces (DESIGN.md §3).

A record is a plain dict, flat enough to be a DataFrame row:

    id, input, history, output, target, system, thinking, chosen, rejected, metadata, lineage

Fields of an input record that forgekit does not know are carried through untouched.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESERVED_FIELDS = (
    "id",
    "input",
    "history",
    "output",
    "target",
    "system",
    "thinking",
    "chosen",
    "rejected",
    "metadata",
    "lineage",
)


def canonical_json(value: Any) -> str:
    """Deterministic JSON used for hashing: sorted keys, no whitespace, unicode kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def fingerprint(value: Any, length: int = 64) -> str:
    """sha256 of the canonical JSON of `value`, hex, truncated to `length`."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:length]


def jsonable(value: Any) -> Any:
    """`value` as plain JSON for a resume identity: containers recursively, paths and regexes
    as text, objects by what identifies them — `to_dict()` (sampling parameters), `identity`
    (a model), a pydantic class's JSON schema, a function's dotted name — else `repr`."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (Path, re.Pattern)):
        return str(value.pattern if isinstance(value, re.Pattern) else value)
    if callable(getattr(value, "to_dict", None)) and not isinstance(value, type):
        return value.to_dict()
    if isinstance(getattr(value, "identity", None), str):
        return value.identity
    if isinstance(value, type) and hasattr(value, "model_json_schema"):  # a pydantic model
        return {"class": value.__qualname__, "schema": value.model_json_schema()}
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', value)}"
    return repr(value)


def record_id(method: str, inputs: Any, index: int = 0) -> str:
    """A stable id: the same method, inputs and index always give the same id, so a resumed
    run can recognise records it already wrote."""
    return fingerprint({"method": method, "inputs": inputs, "index": index}, length=20)


def make_lineage(
    method: str,
    model: str | list[str] | None = None,
    *,
    template_hash: str | None = None,
    params: Mapping[str, Any] | None = None,
    seed: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Where a record came from: method, model(s), template hash, sampling params, seed, time,
    forgekit version, plus any method-specific keys (e.g. parent id for Evol-Instruct)."""
    from forgekit import __version__

    lineage: dict[str, Any] = {
        "method": method,
        "model": model,
        "template_hash": template_hash,
        "params": dict(params or {}),
        "seed": seed,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "forgekit_version": __version__,
    }
    lineage.update(extra)
    return lineage


def make_record(
    *,
    id: str,
    input: str = "",
    output: str = "",
    history: list | None = None,
    target: str | None = None,
    system: str | None = None,
    thinking: str | None = None,
    chosen: Any = None,
    rejected: Any = None,
    metadata: Mapping[str, Any] | None = None,
    lineage: Mapping[str, Any] | None = None,
    carry: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a record. `carry` holds the input record's other fields, kept untouched; a
    carried field never overrides one of the record's own fields."""
    record: dict[str, Any] = {
        "id": id,
        "input": input,
        "history": list(history or []),
        "output": output,
    }
    for key, value in (
        ("target", target),
        ("system", system),
        ("thinking", thinking),
        ("chosen", chosen),
        ("rejected", rejected),
    ):
        if value is not None:
            record[key] = value
    record["metadata"] = dict(metadata or {})
    record["lineage"] = dict(lineage or {})
    for key, value in (carry or {}).items():
        if key not in RESERVED_FIELDS:
            record.setdefault(key, value)
    return record


def text_leaves(value: Any, path: tuple = ()) -> list[tuple[tuple, str]]:
    """(path, text) of every non-empty string inside a record field's value (a string,
    history's [user, assistant] pairs, chosen/rejected's {role, content} messages); in a dict
    only `content` (or else `text`) is text: roles, names and other keys are structure."""
    if isinstance(value, str):
        return [(path, value)] if value.strip() else []
    if isinstance(value, dict):
        keys = [k for k in ("content", "text") if k in value][:1]
        return [leaf for k in keys for leaf in text_leaves(value[k], (*path, k))]
    if isinstance(value, (list, tuple)):
        return [leaf for i, v in enumerate(value) for leaf in text_leaves(v, (*path, i))]
    return []


def replace_leaf(value: Any, path: tuple, text: str) -> Any:
    """`value` with the leaf at `path` replaced (containers are copied, never mutated)."""
    if not path:
        return text
    head, *rest = path
    clone = list(value) if isinstance(value, tuple) else copy.copy(value)
    clone[head] = replace_leaf(value[head], tuple(rest), text)
    return tuple(clone) if isinstance(value, tuple) else clone
