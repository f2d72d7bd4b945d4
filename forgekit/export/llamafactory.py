"""LLaMA-Factory's `dataset_info.json`: the entry that describes an exported file, merged into
an existing file without touching the other data sets in it.

Keys (LLaMA-Factory data/README): `file_name`, `formatting` (alpaca | sharegpt), `ranking`
(preference data), `columns` (alpaca: prompt, query, response | chosen, rejected, system,
history; sharegpt: messages, system | chosen, rejected) and, for sharegpt, `tags` (role_tag,
content_tag, user_tag, assistant_tag, system_tag).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from forgekit.errors import ConfigError

SHAREGPT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "system_tag": "system",
}


def dataset_info_entry(formatting: str, file_name: str, preference: bool) -> dict[str, Any]:
    """The dataset_info.json entry for a file written in `formatting`."""
    entry: dict[str, Any] = {"file_name": file_name, "formatting": formatting}
    if preference:
        entry["ranking"] = True
    if formatting == "alpaca":
        columns = {"prompt": "instruction", "query": "input"}
        if preference:
            columns.update(chosen="chosen", rejected="rejected")
        else:
            columns["response"] = "output"
        columns.update(system="system", history="history")
        entry["columns"] = columns
    elif formatting == "sharegpt":
        columns = {"messages": "conversations", "system": "system"}
        if preference:
            columns.update(chosen="chosen", rejected="rejected")
        entry["columns"] = columns
        entry["tags"] = dict(SHAREGPT_TAGS)
    else:
        raise ValueError(f"formatting {formatting!r}: alpaca or sharegpt")
    return entry


def merged_dataset_info(
    path: Path, name: str, entry: dict[str, Any], *, overwrite: bool
) -> dict[str, Any]:
    """The content of `path` (if any) with `name` set to `entry`; other entries are kept.
    An existing, different entry of that name is replaced only with overwrite."""
    info: dict[str, Any] = {}
    if path.exists():
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); fix it or remove it"
            ) from None
        if not isinstance(info, dict):
            raise ConfigError(f"{path}: expected a JSON object of data set entries")
    if name in info and info[name] != entry and not overwrite:
        raise FileExistsError(
            f"{path}: already has an entry {name!r}; pass overwrite to replace it "
            "(or choose another name)"
        )
    info[name] = entry
    return info
