"""LLM-as-judge tagging: difficulty, quality (with an explanation), task category and
language for each record, as new columns.

The judge answers in fixed `Label: value` lines. A value is accepted only when it is one of
the allowed labels (after lowercasing and dropping markdown/punctuation; a label may be
followed by a dash or comma and a comment). Anything else is left empty (None) and counted
in `df.attrs['forgekit']['unparsable']` — a judgment is never guessed.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

from forgekit.cli.legacy import (
    add_input_option,
    add_model_option,
    add_run_options,
    read_input,
)
from forgekit.data.io import read_records
from forgekit.data.records import fingerprint, make_lineage, make_record
from forgekit.engine import RunContext
from forgekit.errors import ConfigError
from forgekit.methods._common import split_run_options
from forgekit.methods._text import (
    add_sampling_options,
    call_options,
    frame,
    map_records,
    parse_labeled,
    require_field,
    sampling,
    split_list,
)
from forgekit.methods.parsing import LabelSet
from forgekit.models import SamplingParams

DIFFICULTY = ("very easy", "easy", "medium", "hard", "very hard")
QUALITY = ("very poor", "poor", "average", "good", "excellent")
CATEGORIES = (
    "information seeking",
    "reasoning",
    "planning",
    "editing",
    "coding",
    "math",
    "role playing",
    "data analysis",
    "creative writing",
    "advice seeking",
    "brainstorming",
    "other",
)
ASPECTS = ("difficulty", "quality", "category", "language")
_LABELS = {
    "difficulty": ("Difficulty",),
    "quality": ("Quality",),
    "explanation": ("Explanation", "Quality explanation", "Reason"),
    "category": ("Category", "Task category"),
    "language": ("Language",),
}


def build_prompt(
    instruction: str, response: str | None, aspects: list[str], categories: list[str]
) -> str:
    parts = ["You are a strict data annotator. Judge the record below."]
    lines = []
    if "difficulty" in aspects:
        parts.append(
            "Difficulty: how hard the user's request is for a capable assistant — one of "
            + ", ".join(DIFFICULTY)
            + "."
        )
        lines.append("Difficulty: <" + " | ".join(DIFFICULTY) + ">")
    if "quality" in aspects:
        what = (
            "the response (helpful, correct, complete, well written)"
            if response
            else ("the request (clear, specific, answerable)")
        )
        parts.append(
            f"Quality: the quality of {what} — one of {', '.join(QUALITY)}; then "
            "explain the rating in one or two sentences."
        )
        lines += ["Quality: <" + " | ".join(QUALITY) + ">", "Explanation: <one or two sentences>"]
    if "category" in aspects:
        parts.append(
            "Category: the task category of the request — exactly one of "
            + ", ".join(categories)
            + "."
        )
        lines.append("Category: <one category>")
    if "language" in aspects:
        parts.append(
            "Language: the language the request is written in, as its English name "
            "(e.g. English, Chinese, French)."
        )
        lines.append("Language: <language name>")
    parts.append("Answer with exactly these lines and nothing else:\n" + "\n".join(lines))
    record = f"[Request]\n{instruction}\n[End of request]"
    if response:
        record += f"\n\n[Response]\n{response}\n[End of response]"
    return "\n".join(parts) + "\n\n" + record


def _clean(value: str) -> str:
    value = value.strip().splitlines()[0] if value.strip() else ""
    value = re.sub(r"[*_`<>\[\]\"'“”]", "", value)
    return " ".join(value.lower().replace("_", " ").split()).strip(" .。")


def match_label(value: str | None, allowed: list[str] | tuple[str, ...]) -> str | None:
    """The allowed label `value` opens with, or None (LabelSet's match="start": longest label
    first, alone or before a separator; 'medium-hard' is not 'medium')."""
    return _label_set(tuple(allowed)).parse(value)


@lru_cache(maxsize=32)
def _label_set(allowed: tuple[str, ...]) -> LabelSet:
    return LabelSet(allowed, match="start")


def match_language(value: str | None) -> str | None:
    """A language name: one to three words of letters; otherwise None."""
    if value is None:
        return None
    text = _clean(value)
    if not text or not re.fullmatch(r"[^\W\d_]+(?: [^\W\d_]+){0,2}", text):
        return None
    return text.title() if text.isascii() else text


def judge(
    data: Any,
    *,
    model: Any = None,
    aspects: list[str] | tuple[str, ...] = ASPECTS,
    categories: list[str] | tuple[str, ...] = CATEGORIES,
    field: str = "input",
    response_field: str | None = "output",
    params: SamplingParams | dict[str, Any] | None = None,
    n: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    **run_options: Any,
):
    """Tag each record with the judge's difficulty, quality (+ explanation), category and
    language; returns the records with these new columns (None where unparsable).

    - `aspects`: which tags to ask for (default all four).
    - `categories`: the allowed task categories (default: a Magpie-style list).
    - `field`: the request; `response_field`: the response judged for quality (set None,
      or leave records without it, to judge the request's quality instead).
    - `params`: sampling (default T=0, 256 tokens).
    `df.attrs['forgekit']['unparsable']` counts the judgments that could not be read.
    """
    config, rest = split_run_options(run_options)
    if rest:
        raise TypeError(f"judge() got unexpected option(s): {', '.join(sorted(rest))}")
    aspects = list(aspects)
    bad = [a for a in aspects if a not in ASPECTS]
    if bad or not aspects:
        raise ConfigError(f"aspects={bad or aspects!r}: choose from {', '.join(ASPECTS)}")
    categories = [c.strip() for c in categories if c.strip()]
    if "category" in aspects and not categories:
        raise ConfigError("categories is empty: give at least one task category")
    records = read_records(data)
    require_field(records, field, "field=")
    from forgekit.models import get_model

    main_model = get_model(model)
    sample = sampling({"temperature": 0.0, "max_tokens": 256}, params)
    job = {
        "method": "judge",
        "model": main_model.identity,
        "aspects": aspects,
        "categories": categories,
        "field": field,
        "response_field": response_field,
        "params": sample.to_dict(),
        "seed": seed,
    }
    template_hash = fingerprint([build_prompt("{i}", "{r}", aspects, categories)], 12)
    unparsable: Counter[str] = Counter()

    async def produce(ctx: RunContext, index: int, record: dict[str, Any]) -> dict:
        response = str(record.get(response_field) or "") if response_field else ""
        prompt = build_prompt(str(record[field]), response or None, aspects, categories)
        answer = await ctx.chat(
            [{"role": "user", "content": prompt}],
            params=SamplingParams.coerce(sample, seed=seed),
        )
        fields = parse_labeled(answer.text, _LABELS)
        tags: dict[str, Any] = {}
        if "difficulty" in aspects:
            tags["difficulty"] = match_label(fields.get("difficulty"), DIFFICULTY)
        if "quality" in aspects:
            tags["quality"] = match_label(fields.get("quality"), QUALITY)
            explanation = (fields.get("explanation") or "").strip()
            tags["quality_explanation"] = explanation or None
        if "category" in aspects:
            tags["category"] = match_label(fields.get("category"), categories)
        if "language" in aspects:
            tags["language"] = match_language(fields.get("language"))
        for name, value in tags.items():
            if value is None:
                unparsable[name] += 1
        carry = {k: v for k, v in record.items() if k not in tags}
        return make_record(
            id=ctx.task.id,
            input=str(record[field]) if field == "input" else str(record.get("input") or ""),
            output=str(record.get("output") or ""),
            history=record.get("history") or [],
            target=record.get("target"),
            system=record.get("system"),
            thinking=record.get("thinking"),
            chosen=record.get("chosen"),
            rejected=record.get("rejected"),
            metadata={**(record.get("metadata") or {}), "judge_raw": answer.text},
            lineage=make_lineage(
                "judge",
                main_model.name,
                template_hash=template_hash,
                params=sample.to_dict(),
                seed=seed,
                index=index,
                parent_id=record.get("id"),
                parent_lineage=record.get("lineage"),
            ),
            carry={**tags, **carry},
        )

    result = map_records(
        "judge", records, produce, job=job, model=model, out=out, config=config, limit=n
    )
    return frame(result, unparsable=dict(unparsable))


# --- the `forge judge` command -------------------------------------------------------------
def _run_command(args: argparse.Namespace, ctx: Any) -> Any:
    return judge(
        read_input(args, ctx),
        model=args.model,
        aspects=split_list(args.aspects),
        categories=split_list(args.categories) or CATEGORIES,
        field=args.field,
        response_field=None if args.no_response else args.response_field,
        **call_options(args, ctx),
    )


def add_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "judge",
        aliases=["tag"],
        help="LLM-as-judge tags: difficulty, quality, category, language",
        description="Tag records with an LLM judge: difficulty (very easy..very hard), quality "
        "(very poor..excellent) with an explanation, task category (from a list) and "
        "language, as new columns. Unparsable judgments are left empty and counted.",
    )
    add_input_option(p)
    add_model_option(p)
    p.add_argument(
        "--aspects",
        default=",".join(ASPECTS),
        help=f"comma-separated tags to ask for (default {','.join(ASPECTS)})",
    )
    p.add_argument(
        "--categories",
        default=None,
        help="comma-separated allowed task categories (default: " + ", ".join(CATEGORIES) + ")",
    )
    p.add_argument("--field", default="input", help="the request field (input)")
    p.add_argument("--response-field", default="output", help="the response field (output)")
    p.add_argument(
        "--no-response", action="store_true", help="judge the request only, not a response"
    )
    p.add_argument("-n", type=int, default=None, help="at most this many records")
    add_sampling_options(p, temperature=0.0, max_tokens=256)
    add_run_options(p)
    p.set_defaults(handler=_run_command)
