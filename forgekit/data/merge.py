"""Merge public data sets into one file, and unify them into forgekit's SFT / CoT / preference
formats (DESIGN.md §3).

Unified formats (one JSON object per line):

* sft:        all_prompt_id, source_prompt_id, prompt, answer, metadata
* cot:        the same plus thinking. When a source does not separate reasoning from the answer
              (no reasoning field, no <think>...</think>), all of the response goes to
              `thinking` and `answer` is empty: never guess where reasoning ends.
* preference: all_prompt_id, source_prompt_id, prompt, chosen, rejected, metadata. Multi-turn
              sources keep lists (of {"role", "content"} messages) in prompt/chosen/rejected.

HelpSteer3-style scores in [-3, 3] (`overall_preference`): -3..-1 -> response1 chosen and
response2 rejected; 0 -> a tie, chosen and rejected both empty; 1..3 -> response2 chosen and
response1 rejected.

`source_prompt_id` is "<index in its source>_<dataset name>"; `all_prompt_id` numbers the
records of the output 0..n-1. Merging drops records whose prompt (normalized: NFKC, case,
whitespace) already appeared, keeping the first.
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from forgekit.data.io import read_records, records_to_dataframe, write_records
from forgekit.data.text import split_thinking
from forgekit.errors import ConfigError

FORMATS = ("sft", "cot", "preference")

# Field names seen in public data sets, in order of preference.
PROMPT_FIELDS = ("prompt", "instruction", "input", "question", "query", "problem", "context")
ANSWER_FIELDS = ("answer", "output", "response", "target", "completion", "solution")
THINKING_FIELDS = ("thinking", "reasoning", "reasoning_content", "cot", "rationale", "think")
MESSAGE_FIELDS = ("messages", "conversations", "conversation", "dialog")
SCORE_FIELDS = ("overall_preference", "score", "preference")
_ROLE_ALIASES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant"}


# --- helpers --------------------------------------------------------------------------------


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and value != value:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, (list, tuple, dict)):
        return len(value) > 0
    return True


def _messages(value: Any) -> list[dict[str, str]] | None:
    """A list of {"role", "content"} messages (also ShareGPT's {"from", "value"}), or None."""
    if not isinstance(value, (list, tuple)) or not value:
        return None
    out = []
    for item in value:
        if not isinstance(item, Mapping):
            return None
        role = item.get("role", item.get("from"))
        content = item.get("content", item.get("value"))
        if role is None or content is None:
            return None
        role = _ROLE_ALIASES.get(str(role).lower(), str(role).lower())
        out.append({"role": role, "content": content if isinstance(content, str) else str(content)})
    return out


def prompt_key(prompt: Any) -> str:
    """What "the same prompt" means when merging: normalized text (lists: their contents)."""
    if isinstance(prompt, (list, tuple)):
        msgs = _messages(prompt)
        text = (
            "\n".join(f"{m['role']}: {m['content']}" for m in msgs)
            if msgs
            else json.dumps(prompt, ensure_ascii=False, sort_keys=True, default=str)
        )
    else:
        text = "" if prompt is None else str(prompt)
    text = " ".join(unicodedata.normalize("NFKC", text).lower().split())
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _pick(record: Mapping[str, Any], names: Sequence[str]) -> tuple[str | None, Any]:
    for name in names:
        if name in record and _present(record[name]):
            return name, record[name]
    return None, None


# --- unify ----------------------------------------------------------------------------------


def _source_name(data: Any, dataset: str | None) -> str:
    if dataset:
        return dataset
    if isinstance(data, (str, os.PathLike)):
        return Path(data).stem
    return "data"


def _field_map(fields: Mapping[str, str] | None) -> dict[str, str]:
    known = {"prompt", "answer", "thinking", "chosen", "rejected", "response1", "response2"}
    known |= {"score", "messages", "system"}
    fields = dict(fields or {})
    for key in fields:
        if key not in known:
            raise ConfigError(
                f"fields: unknown target {key!r}; map one of {', '.join(sorted(known))}"
            )
    return fields


def _get(record, fields, target, defaults):
    if target in fields:
        name = fields[target]
        return name, record.get(name)
    return _pick(record, defaults)


def _prompt_and_turns(record, fields, where) -> tuple[Any, Any, list[str]]:
    """(prompt, answer-from-messages or None, consumed field names)."""
    name, msgs_value = _get(record, fields, "messages", MESSAGE_FIELDS)
    msgs = _messages(msgs_value) if name else None
    if msgs:
        # Prompt: the conversation up to the last user turn (a string for a single turn);
        # answer: the last assistant turn after it.
        last_user = max((i for i, m in enumerate(msgs) if m["role"] == "user"), default=None)
        if last_user is None:
            raise ConfigError(f"{where}: field {name!r} has no user message")
        answer = next((m["content"] for m in msgs[last_user + 1 :] if m["role"] == "assistant"), "")
        head = [m for m in msgs[: last_user + 1] if m["role"] != "system"]
        prompt = head[0]["content"] if len(head) == 1 else head
        return prompt, answer, [name]
    name, prompt = _get(record, fields, "prompt", PROMPT_FIELDS)
    if name is None or not _present(prompt):
        available = ", ".join(sorted(record)) or "(none)"
        raise ConfigError(
            f"{where}: no prompt field found (looked for {', '.join(PROMPT_FIELDS)} and "
            f"message lists {', '.join(MESSAGE_FIELDS)}); fields present: {available}. "
            "Name it with fields={'prompt': '<field>'} (CLI: --map prompt=<field>)"
        )
    consumed = [name]
    if isinstance(prompt, (list, tuple)):
        msgs = _messages(prompt)
        if msgs is not None:
            prompt = msgs[0]["content"] if len(msgs) == 1 else msgs
    elif name == "instruction" and _present(record.get("input")):
        # Alpaca: the instruction plus its optional input.
        prompt = f"{prompt}\n\n{record['input']}"
        consumed.append("input")
    return prompt, None, consumed


def _score(value: Any, where: str, name: str) -> int:
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {name}={value!r} is not a number") from None
    if not -3 <= score <= 3:
        raise ConfigError(f"{where}: {name}={value!r} is outside the HelpSteer3 range [-3, 3]")
    return round(score)


def _metadata(record, consumed, dataset, extra=None) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if isinstance(record.get("metadata"), Mapping):
        meta.update(record["metadata"])
    for key, value in record.items():
        if key not in consumed and key not in ("metadata", "all_prompt_id", "source_prompt_id"):
            meta.setdefault(key, value)
    meta["dataset"] = dataset
    meta.update(extra or {})
    return meta


def unify_record(
    record: Mapping[str, Any],
    to: str,
    *,
    dataset: str = "data",
    index: int = 0,
    fields: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One source record in the `to` format (without all_prompt_id)."""
    where = f"{dataset} record {index}"
    fields = _field_map(fields)
    out: dict[str, Any] = {"source_prompt_id": f"{index}_{dataset}"}
    if to == "preference":
        prompt, _, consumed = _prompt_and_turns(record, fields, where)
        c_name, chosen = _get(record, fields, "chosen", ("chosen",))
        r_name, rejected = _get(record, fields, "rejected", ("rejected",))
        extra: dict[str, Any] = {}
        if c_name and r_name:
            consumed += [c_name, r_name]
        else:
            s_name, score = _get(record, fields, "score", SCORE_FIELDS)
            r1_name, r1 = _get(record, fields, "response1", ("response1", "response_a"))
            r2_name, r2 = _get(record, fields, "response2", ("response2", "response_b"))
            if s_name is None or r1_name is None or r2_name is None:
                raise ConfigError(
                    f"{where}: a preference record needs chosen/rejected, or response1/"
                    f"response2 with a score ({', '.join(SCORE_FIELDS)}); fields present: "
                    + ", ".join(sorted(record))
                )
            value = _score(score, where, s_name)
            if value < 0:
                chosen, rejected = r1, r2
            elif value > 0:
                chosen, rejected = r2, r1
            else:
                chosen, rejected = "", ""  # a tie: no preference to learn from
            consumed += [s_name, r1_name, r2_name]
            extra = {"score": value, "tie": value == 0}
        out.update(prompt=prompt, chosen=chosen, rejected=rejected)
        out["metadata"] = _metadata(record, consumed, dataset, extra)
        return out

    prompt, answer, consumed = _prompt_and_turns(record, fields, where)
    if answer is None:
        a_name, answer = _get(record, fields, "answer", ANSWER_FIELDS)
        if a_name:
            consumed.append(a_name)
    answer = "" if answer is None else answer
    out.update(prompt=prompt, answer=answer)
    if to == "cot":
        t_name, thinking = _get(record, fields, "thinking", THINKING_FIELDS)
        if t_name:
            consumed.append(t_name)
        else:
            thinking, rest, _ = split_thinking(str(answer))
            if thinking is None:
                # Reasoning and answer cannot be told apart: all of it is reasoning.
                thinking, rest = str(answer), ""
            out["answer"] = rest
        out["thinking"] = thinking if thinking is not None else ""
    out["metadata"] = _metadata(record, consumed, dataset)
    return out


def unify(
    data: Any,
    to: str = "sft",
    *,
    dataset: str | None = None,
    fields: Mapping[str, str] | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Convert records (a file, DataFrame or list) to the `to` format ("sft", "cot",
    "preference"). `fields` maps targets to source fields when auto-detection is not enough,
    e.g. {"prompt": "question", "answer": "solution"}. Writes `out` when given."""
    if to not in FORMATS:
        raise ConfigError(f"to={to!r}: choose one of {', '.join(FORMATS)}")
    name = _source_name(data, dataset)
    records = read_records(data)
    rows = [
        unify_record(r, to, dataset=name, index=i, fields=fields) for i, r in enumerate(records)
    ]
    for i, row in enumerate(rows):
        row["all_prompt_id"] = i
    rows = [_ordered(r) for r in rows]
    if out is not None:
        write_records(rows, out, overwrite=overwrite)
    return records_to_dataframe(rows)


def _ordered(row: dict[str, Any]) -> dict[str, Any]:
    order = ["all_prompt_id", "source_prompt_id", "prompt", "thinking", "answer"]
    order += ["chosen", "rejected", "metadata"]
    return {k: row[k] for k in order if k in row} | {k: v for k, v in row.items() if k not in order}


# --- merge ----------------------------------------------------------------------------------


@dataclass
class MergeResult:
    """The merged records plus per-source counts (read, kept, duplicate prompts dropped)."""

    records: pd.DataFrame
    per_source: list[dict[str, Any]] = field(default_factory=list)
    path: Path | None = None

    @property
    def dropped(self) -> int:
        return sum(s["dropped_duplicates"] for s in self.per_source)

    def summary(self) -> dict[str, Any]:
        return {
            "records": len(self.records),
            "dropped_duplicates": self.dropped,
            "per_source": self.per_source,
            "out": str(self.path) if self.path else None,
        }

    def __repr__(self) -> str:
        return f"MergeResult(records={len(self.records)}, dropped_duplicates={self.dropped})"


def _named_sources(sources: Any, names: Sequence[str] | None) -> list[tuple[str, Any]]:
    if isinstance(sources, Mapping):
        items = list(sources.items())
    elif isinstance(sources, (str, os.PathLike, pd.DataFrame)):
        items = [(None, sources)]
    else:
        items = [(None, s) for s in sources]
    if names is not None:
        if len(names) != len(items):
            raise ConfigError(f"names: got {len(names)} names for {len(items)} sources")
        items = [(n, s) for n, (_, s) in zip(names, items, strict=True)]
    out, seen = [], set()
    for i, (name, source) in enumerate(items):
        name = name or _source_name(
            source, None if isinstance(source, (str, os.PathLike)) else f"source{i}"
        )
        if name in seen:
            raise ConfigError(f"two sources are named {name!r}; pass distinct names")
        seen.add(name)
        out.append((name, source))
    if not out:
        raise ConfigError("merge: no sources given")
    return out


def merge(
    sources: Iterable[Any] | Mapping[str, Any],
    out: str | os.PathLike | None = None,
    *,
    names: Sequence[str] | None = None,
    to: str | None = None,
    prompt_field: str | None = None,
    fields: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> MergeResult:
    """Merge many JSONL/JSON/Parquet/CSV sources (or DataFrames) into one.

    Each record gets `source_prompt_id` ("<index>_<dataset>") and `all_prompt_id` (its
    position in the output); records whose prompt already appeared (in any source) are
    dropped. With `to` ("sft", "cot", "preference") every source is unified first; otherwise
    records keep their fields and the prompt is `prompt_field` or the first of
    prompt/input/instruction/question/query/problem/context (or a message list).
    """
    if to is not None and to not in FORMATS:
        raise ConfigError(f"to={to!r}: choose one of {', '.join(FORMATS)}")
    seen: set[str] = set()
    rows: list[dict[str, Any]] = []
    per_source = []
    for name, source in _named_sources(sources, names):
        records = read_records(source)
        kept = dropped = 0
        for index, record in enumerate(records):
            where = f"{name} record {index}"
            if to is not None:
                row = unify_record(record, to, dataset=name, index=index, fields=fields)
                prompt = row["prompt"]
            else:
                row = dict(record)
                row["source_prompt_id"] = f"{index}_{name}"
                row.setdefault("source", name)
                if prompt_field is not None:
                    if prompt_field not in record:
                        raise ConfigError(
                            f"{where}: no field {prompt_field!r}; fields present: "
                            + ", ".join(sorted(record))
                        )
                    prompt = record[prompt_field]
                else:
                    prompt, _, _ = _prompt_and_turns(record, {}, where)
            key = prompt_key(prompt)
            if key in seen:
                dropped += 1
                continue
            seen.add(key)
            row["all_prompt_id"] = len(rows)
            rows.append(_ordered(row) if to is not None else _front(row))
            kept += 1
        per_source.append(
            {"source": name, "read": len(records), "kept": kept, "dropped_duplicates": dropped}
        )
    path = write_records(rows, out, overwrite=overwrite) if out is not None else None
    return MergeResult(records=records_to_dataframe(rows), per_source=per_source, path=path)


def _front(row: dict[str, Any]) -> dict[str, Any]:
    ids = {"all_prompt_id": row["all_prompt_id"], "source_prompt_id": row["source_prompt_id"]}
    return ids | {k: v for k, v in row.items() if k not in ids}
