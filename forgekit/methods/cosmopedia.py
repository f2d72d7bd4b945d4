"""Cosmopedia-style pre-training text: a web extract, trimmed at a sentence or word boundary,
seeds a long-form document in a style (a wikiHow tutorial, a narrative or academic textbook
section, a blog post), optionally for an audience and about a topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from forgekit.data.records import fingerprint, make_record
from forgekit.data.text import truncate_text
from forgekit.engine import RunContext
from forgekit.errors import ConfigError
from forgekit.methods.prompting import chat_messages
from forgekit.methods.samplers import with_seed
from forgekit.methods.spec import Method, option, sampling
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


@dataclass(frozen=True, kw_only=True)
class CosmopediaOptions:
    column: str = option("text", help="field holding the extract")
    style: tuple[str, ...] = option(
        ("textbook_narrative",),
        choices=tuple(STYLES),
        help="one or more styles; each extract is written once per style",
    )
    audience: str | None = option(None, help="e.g. 'professionals' (a record's own wins)")
    topic: str | None = option(None, help="a topic to focus on (a record's own wins)")
    max_chars: int = option(1000, minimum=50, help="trim extracts to this, at a boundary")
    min_words: int = option(20, help="drop shorter documents (degenerate or refused outputs)")
    n: int | None = option(None, flag="-n", identity=False, help="at most this many documents")
    params: SamplingParams = sampling(temperature=0.8, max_tokens=1024, help="each document")
    seed: int = option(0, help="base seed")


@dataclass(frozen=True)
class Seed:  # one document to write
    record: dict[str, Any]
    text: str
    style: str


class Cosmopedia(Method):
    """Cosmopedia: put each (trimmed) web extract into a style prompt — wikihow,
    textbook_narrative, textbook_academic, blogpost — optionally for an audience and about a
    topic, and keep the long-form document (in `output`; the prompt in `input`). Documents
    under min_words are dropped and counted in df.attrs['forgekit']['filtered']."""

    name = "cosmopedia"
    help = "long-form pre-training text seeded by web extracts"
    Options = CosmopediaOptions

    def prepare(self, records: list[dict[str, Any]]) -> list[Seed]:
        column = self.options.column
        seeds = []
        for index, record in enumerate(records):
            text = record.get(column)
            if text is None and list(record) == ["input"]:  # a plain string in a list
                text, record = record["input"], {}
            if not isinstance(text, str) or not text.strip():
                raise ConfigError(
                    f"seed extract {index} has no text in column {column!r} (set column=); "
                    f"its fields: {', '.join(sorted(record)) or '(none)'}"
                )
            seeds += [Seed(record, text, style) for style in self.options.style]
        self.template_hash = fingerprint([STYLES, _COMMON], 12)
        return seeds

    async def produce(self, ctx: RunContext, seed: Seed) -> dict[str, Any] | None:
        o = self.options
        extract = truncate_text(seed.text, o.max_chars)
        audience = seed.record.get("audience") or o.audience
        topic = seed.record.get("topic") or o.topic
        prompt = build_prompt(extract, seed.style, audience, topic)
        index = ctx.task.info["index"]
        params = with_seed(o.params, o.seed, index)
        answer = await ctx.chat(chat_messages(None, prompt), params=params)
        text = answer.text.strip()
        if (words := len(text.split())) < o.min_words:
            self.counts["too_short"] += 1
            return None
        return make_record(
            id=ctx.task.id,
            input=prompt,
            output=text,
            metadata={
                "style": seed.style,
                "audience": audience,
                "topic": topic,
                "seed_extract": extract,
                "seed_chars": len(seed.text),
                "truncated_output": answer.finish_reason == "length",
                "words": words,
            },
            lineage=self.lineage(ctx, index=index, parent_id=seed.record.get("id")),
            carry={k: v for k, v in seed.record.items() if k != o.column},
        )

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {"filtered": dict(self.counts)}
