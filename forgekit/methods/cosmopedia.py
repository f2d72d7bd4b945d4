"""Cosmopedia-style pre-training text: a web extract seeds a long-form document.

Each seed extract (a DataFrame column, a JSONL/CSV file of web text, or a list of strings) is
trimmed to `max_chars` at a sentence or word boundary and put into a style prompt — a
wikiHow-style tutorial, a textbook section (narrative or academic) or a blog post —
optionally for an audience and about a topic. The output is the document itself.
"""

from __future__ import annotations

import argparse
from collections import Counter
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
    sampling,
    split_list,
    truncate_text,
    with_seed,
)
from forgekit.models import SamplingParams

STYLES: dict[str, str] = {
    "wikihow": (
        "Write a step-by-step how-to article in the style of wikiHow, inspired by the extract "
        "below. Give it a title that starts with 'How to', a short introduction, then numbered "
        "steps; explain each step in depth, with practical tips and the reasons behind them."
    ),
    "textbook_narrative": (
        "Write a textbook section inspired by the extract below, in a narrative style: tell "
        "the ideas as a story that unfolds, with concrete examples and characters or "
        "situations the reader can picture, while staying accurate and thorough."
    ),
    "textbook_academic": (
        "Write a textbook section inspired by the extract below, in a rigorous academic "
        "style: define the key concepts precisely, develop them in depth, and include worked "
        "examples, and where relevant, evidence, dates or formulas."
    ),
    "blogpost": (
        "Write an engaging blog post inspired by the extract below: a catchy title, a hook in "
        "the first paragraph, a conversational tone, personal-feeling insights and a clear "
        "takeaway at the end."
    ),
}
_COMMON = (
    "Do not mention the extract, and do not copy it: use it only as a starting point. "
    "Write only the document, in English, without a preamble."
)


def build_prompt(extract: str, style: str, audience: str | None, topic: str | None) -> str:
    lines = [STYLES[style]]
    if audience:
        lines.append(f"The intended audience is {audience}; pitch the depth and tone for them.")
    if topic:
        lines.append(f"Focus on this topic: {topic}.")
    lines.append(_COMMON)
    return " ".join(lines) + f"\n\nExtract:\n<extract>\n{extract}\n</extract>"


def _seed_records(data: Any, column: str) -> list[dict[str, Any]]:
    if isinstance(data, (list, tuple)) and all(isinstance(x, str) for x in data):
        return [{column: text} for text in data]
    records = read_records(data)
    for index, record in enumerate(records):
        value = record.get(column)
        if not isinstance(value, str) or not value.strip():
            available = ", ".join(sorted(record)) or "(none)"
            raise ConfigError(
                f"seed extract {index} has no text in column {column!r} (set column=); "
                f"its fields: {available}"
            )
    return records


def cosmopedia(
    data: Any,
    *,
    model: Any = None,
    column: str = "text",
    style: str | list[str] = "textbook_narrative",
    audience: str | None = None,
    topic: str | None = None,
    max_chars: int = 1000,
    min_words: int = 20,
    params: SamplingParams | dict[str, Any] | None = None,
    n: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    **run_options: Any,
):
    """Long-form documents seeded by web extracts; returns a DataFrame.

    - `data`: seed texts: a list of strings, or records (path, DataFrame, list of dicts)
      with the text in `column` (default 'text').
    - `style`: one of wikihow, textbook_narrative, textbook_academic, blogpost, or a list of
      them (each extract is written once per style).
    - `audience`, `topic`: optional steering, e.g. 'high school students', 'gardening'; a
      record's own `audience`/`topic` fields win over these.
    - `max_chars`: trim each extract to this many characters, at a sentence/word boundary.
    - `min_words`: drop documents shorter than this (degenerate or refused outputs).
    - `params`: sampling (default T=0.8, 1024 tokens).
    The document is in `output`; the prompt in `input`; style, audience, topic and the
    trimmed extract in `metadata`.
    """
    config, rest = split_run_options(run_options)
    if rest:
        raise TypeError(f"cosmopedia() got unexpected option(s): {', '.join(sorted(rest))}")
    styles = [style] if isinstance(style, str) else list(style)
    unknown = [s for s in styles if s not in STYLES]
    if unknown or not styles:
        raise ConfigError(f"style={unknown or style!r}: choose from {', '.join(STYLES)}")
    if max_chars < 50:
        raise ConfigError(f"max_chars must be >= 50, got {max_chars}")
    seeds = _seed_records(data, column)
    items = [{**record, "_style": s} for record in seeds for s in styles]
    from forgekit.models import get_model

    main_model = get_model(model)
    sample = sampling({"temperature": 0.8, "max_tokens": 1024}, params)
    job = {
        "method": "cosmopedia",
        "model": main_model.identity,
        "column": column,
        "styles": styles,
        "audience": audience,
        "topic": topic,
        "max_chars": max_chars,
        "min_words": min_words,
        "params": sample.to_dict(),
        "seed": seed,
        "template": fingerprint([STYLES, _COMMON], 12),
    }
    filtered: Counter[str] = Counter()

    async def produce(ctx: RunContext, index: int, item: dict[str, Any]) -> dict | None:
        extract = truncate_text(item[column], max_chars)
        who = item.get("audience") or audience
        about = item.get("topic") or topic
        prompt = build_prompt(extract, item["_style"], who, about)
        answer = await ctx.chat(
            [{"role": "user", "content": prompt}], params=with_seed(sample, seed, index)
        )
        text = answer.text.strip()
        if len(text.split()) < min_words:
            filtered["too_short"] += 1
            return None
        carry = {k: v for k, v in item.items() if k not in ("_style", column)}
        return make_record(
            id=ctx.task.id,
            input=prompt,
            output=text,
            metadata={
                "style": item["_style"],
                "audience": who,
                "topic": about,
                "seed_extract": extract,
                "seed_chars": len(item[column]),
                "truncated_output": answer.finish_reason == "length",
                "words": len(text.split()),
            },
            lineage=make_lineage(
                "cosmopedia",
                main_model.name,
                template_hash=job["template"],
                params=sample.to_dict(),
                seed=seed,
                index=index,
                parent_id=item.get("id"),
            ),
            carry=carry,
        )

    result = map_records(
        "cosmopedia", items, produce, job=job, model=model, out=out, config=config, limit=n
    )
    return frame(result, filtered=dict(filtered))


# --- the `forge cosmopedia` command --------------------------------------------------------
def _run_command(args: argparse.Namespace, ctx: Any) -> Any:
    return cosmopedia(
        read_input(args, ctx),
        model=args.model,
        column=args.column,
        style=split_list(args.style),
        audience=args.audience,
        topic=args.topic,
        max_chars=args.max_chars,
        min_words=args.min_words,
        **call_options(args, ctx),
    )


def add_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "cosmopedia",
        help="long-form pre-training text seeded by web extracts",
        description="Cosmopedia: put each (trimmed) web extract into a style prompt — wikihow, "
        "textbook_narrative, textbook_academic, blogpost — optionally for an audience and "
        "about a topic, and keep the long-form document.",
    )
    add_input_option(p)
    add_model_option(p)
    p.add_argument("--column", default="text", help="field holding the extract (text)")
    p.add_argument(
        "--style",
        default="textbook_narrative",
        help=f"one or more (comma-separated) of {', '.join(STYLES)} (textbook_narrative)",
    )
    p.add_argument("--audience", default=None, help="e.g. 'young children', 'professionals'")
    p.add_argument("--topic", default=None, help="a topic to focus on")
    p.add_argument("--max-chars", type=int, default=1000, help="trim extracts to this (1000)")
    p.add_argument("--min-words", type=int, default=20, help="drop shorter documents (20)")
    p.add_argument("-n", type=int, default=None, help="at most this many documents")
    add_sampling_options(p, temperature=0.8, max_tokens=1024)
    add_run_options(p)
    p.set_defaults(handler=_run_command)
