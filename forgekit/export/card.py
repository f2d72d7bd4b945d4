"""The dataset card: README.md with YAML front matter the Hugging Face Hub reads (license,
language, task_categories, size_categories, configs with data_files, tags, pretty_name), then
prose from the provenance: how the data was made, counts at every stage, models, prompt
template hashes, diversity figures, how the format holds system prompts, history and
thinking traces, and what the export could not represent.

The license is the user's to choose: the card says `license: unknown` with a comment and a
line in the prose asking for it, rather than guessing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

import yaml

from forgekit.data.text import detect_script
from forgekit.export.provenance import Provenance, Stage

_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))
_SIZES += ((10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))


def size_category(n: int) -> str:
    return next((label for limit, label in _SIZES if n < limit), "n>1T")


def languages(records: list[dict[str, Any]], sample: int = 2000) -> list[str]:
    """ISO codes of the scripts the inputs are in (zh for mostly-CJK text, en for Latin),
    each that covers at least 5 % of a sample; a coarse guess the user can correct. Empty
    when neither is found (the card then asks the user to fill it in)."""
    texts = [r.get("input") for r in records[:sample]]
    scripts = Counter(detect_script(t) for t in texts if isinstance(t, str) and t.strip())
    total = sum(scripts.values())
    return [s for s, n in scripts.most_common() if s != "other" and n >= 0.05 * total]


def front_matter(
    *,
    name: str,
    n_records: int,
    data_path: str,
    split: str,
    tags: list[str],
    language: list[str],
    license: str | None,
    preference: bool,
) -> dict[str, Any]:
    return {
        "license": license or "unknown",
        "language": language,
        "task_categories": ["text-generation"],
        "size_categories": [size_category(n_records)],
        "pretty_name": name,
        "tags": ["synthetic", "forgekit", *tags, *(["preference"] if preference else [])],
        "configs": [
            {"config_name": "default", "data_files": [{"split": split, "path": data_path}]}
        ],
    }


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def render(
    meta: dict[str, Any],
    *,
    provenance: Provenance,
    format_name: str,
    format_description: str,
    load_snippet: str,
    written: int,
    rejected: Mapping[str, int],
    thinking: Mapping[str, int],
    thinking_policy: str,
    version: str,
    rejects_file: str = "rejects.jsonl",
) -> str:
    meta = {**meta, "tags": _dedupe(meta["tags"])}
    head = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    if not meta.get("license") or meta["license"] == "unknown":
        head = head.replace(
            "license: unknown\n",
            "license: unknown  # TODO: the license of this data (e.g. cc-by-4.0, apache-2.0)\n",
            1,
        )
    lines = [f"---\n{head}---", "", f"# {meta['pretty_name']}", ""]
    lines += [
        f"Synthetic data made with [forgekit](https://pypi.org/project/forgekit/) {version}, "
        f"exported as **{format_name}**: {format_description}.",
        "",
        "> **License**: not set yet. Choose the license of this data and set `license:` above "
        "(respect the terms of the models and sources used to make it)."
        if meta["license"] == "unknown"
        else f"License: {meta['license']}.",
        "",
    ]
    if not meta.get("language"):
        lines += ["> **Language**: not detected; set `language:` above (ISO 639-1 codes).", ""]
    lines += [
        "## Loading",
        "",
        "```python",
        load_snippet,
        "```",
        "",
    ]
    lines += _pipeline(provenance.stages, written, rejected)
    lines += _lineage(provenance)
    lines += _diversity(provenance.diversity)
    lines += _format_notes(rejected, thinking, thinking_policy, rejects_file)
    lines += [
        "## Limitations",
        "",
        "Every record was written by a language model and may be wrong, biased or "
        "repetitive; review samples before training on it.",
        "",
    ]
    return "\n".join(lines)


def _num(value: int | None) -> str:
    return "" if value is None else str(value)


def _pipeline(stages: list[Stage], written: int, rejected: Mapping[str, int]) -> list[str]:
    lines = ["## How it was made", ""]
    if stages:
        lines += [
            "| # | step | models | records in | removed | failed | records out |",
            "|---|------|--------|-----------:|--------:|-------:|------------:|",
        ]
        for i, stage in enumerate(stages, 1):
            models = ", ".join(f"`{m}`" for m in stage.models)
            step = stage.step.replace("|", "\\|")  # a pipe would end the table cell
            lines.append(
                f"| {i} | {step} | {models} | {_num(stage.records_in)} | "
                f"{_num(stage.removed)} | {_num(stage.failed)} | {_num(stage.records_out)} |"
            )
        lines += ["", "Counts at each stage:", ""]
        for stage in stages:
            lines.append(f"- {_stage_sentence(stage)}")
    else:
        lines.append("No pipeline stages were given to the export (pass `stages=`).")
    total_rejected = sum(rejected.values())
    lines.append(
        f"- exported: {written} records; not representable in the format: {total_rejected}"
    )
    return [*lines, ""]


def _stage_sentence(stage: Stage) -> str:
    if stage.kind == "method" and stage.step in ("judge", "tag"):
        failed = f" ({stage.failed} failed)" if stage.failed else ""
        return f"{stage.step}: {stage.records_out} records judged{failed}"
    if stage.kind == "method":
        made = stage.details.get("generated")
        if not isinstance(made, int):
            made = (stage.records_out or 0) + (stage.removed or 0)
        text = f"{stage.step}: {made} generated, {stage.removed or 0} filtered, "
        text += f"{stage.records_out} kept"
        if stage.failed:
            text += f" ({stage.failed} failed requests/records)"
        return text
    verb = {"dedup": "deduplicated: ", "decontaminate": "decontaminated: "}.get(stage.kind, "")
    text = (
        f"{stage.step}: {_num(stage.records_in)} in, {verb}{_num(stage.removed)} removed, "
        f"{_num(stage.records_out)} kept"
    )
    flagged = stage.details.get("flagged")
    if isinstance(flagged, int) and flagged != stage.removed:
        text += f" ({flagged} flagged)"
    hits = [
        f"{b['benchmark']}: {b['records_hit']}"
        for b in stage.details.get("per_benchmark") or []
        if isinstance(b, Mapping) and "benchmark" in b and "records_hit" in b
    ]
    return text + (f"; records matching each benchmark: {', '.join(hits)}" if hits else "")


def _lineage(provenance: Provenance) -> list[str]:
    if not provenance.lineage:
        return ["## Methods and models", "", "The records carry no forgekit lineage.", ""]
    lines = [
        "## Methods and models",
        "",
        "From the records' lineage (earliest step first):",
        "",
        "| method | records | models | prompt template hashes | seeds |",
        "|--------|--------:|--------|------------------------|-------|",
    ]
    for item in provenance.lineage:
        models = ", ".join(f"`{m}`" for m in sorted(item.models))
        hashes = ", ".join(f"`{h}`" for h in sorted(item.template_hashes))
        seeds = ", ".join(map(str, sorted(item.seeds, key=str)[:5]))
        lines.append(f"| {item.method} | {item.records} | {models} | {hashes} | {seeds} |")
    params = [(item.method, p) for item in provenance.lineage for p in item.params[:3]]
    if params:
        lines += ["", "Sampling parameters:", ""]
        lines += [f"- {method}: `{json.dumps(p, ensure_ascii=False)}`" for method, p in params]
    versions = sorted({v for item in provenance.lineage for v in item.versions})
    if versions:
        lines += ["", f"forgekit version(s): {', '.join(versions)}"]
    return [*lines, ""]


def _diversity(diversity: Mapping[str, Any] | None) -> list[str]:
    if not diversity:
        return []
    lines = ["## Diversity", ""]
    for key, value in diversity.items():
        if isinstance(value, Mapping):
            inner = ", ".join(f"{k}={_fmt(v)}" for k, v in value.items() if _scalar(v))
            lines.append(f"- {key}: {inner}")
        elif _scalar(value):
            lines.append(f"- {key}: {_fmt(value)}")
    return [*lines, ""]


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _format_notes(
    rejected: Mapping[str, int], thinking: Mapping[str, int], policy: str, rejects_file: str
) -> list[str]:
    lines = ["## Format notes", ""]
    if thinking.get("inlined"):
        lines.append(
            f"- {thinking['inlined']} thinking traces are inside the assistant answer as "
            "`<think>\\n...\\n</think>\\n\\n` before it."
        )
    if thinking.get("dropped"):
        lines.append(
            f"- {thinking['dropped']} thinking traces were left out: the format has no place "
            f"for them (policy: {policy})."
        )
    for reason, count in rejected.items():
        lines.append(f"- {count} records not exported: {reason} (see {rejects_file})")
    if len(lines) == 2:
        lines.append("- Every record was exported as it is.")
    return [*lines, ""]
