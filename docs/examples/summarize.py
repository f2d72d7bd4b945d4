"""summarize: one short summary per record — a complete forgekit method in one file.

Import this file (or drop it into forgekit/methods/) and it is everywhere at once:

    forgekit.methods.summarize(df, max_words=20)                   # Python
    forge summarize -i docs.jsonl --max-words 20 --style bullets   # command line
    %forge summarize --input df --max-words 20 -o summaries        # notebook
    forge run summarize.yaml          # YAML; `forge run --example summarize` shows the keys
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from forgekit.data.records import make_lineage, make_record
from forgekit.data.text import length_units
from forgekit.engine import RunContext
from forgekit.errors import ConfigError
from forgekit.methods.prompting import chat_messages
from forgekit.methods.spec import Method, option, sampling
from forgekit.models import SamplingParams

STYLES = {
    "plain": "Summarize the text below in at most {n} words. Reply with the summary only.",
    "bullets": "Summarize the text below as at most three bullet points, {n} words in all.",
}


@dataclass(frozen=True, kw_only=True)
class SummarizeOptions:
    # Each option: its type, default and help; they make the --flags, the YAML keys, the
    # keyword arguments and the resume identity (change one and a resumed file refuses).
    field: str = option("input", help="field holding the text to summarize")
    max_words: int = option(30, minimum=1, help="longest summary kept; longer ones are dropped")
    style: str = option("plain", choices=tuple(STYLES), help="plain prose or bullet points")
    params: SamplingParams = sampling(temperature=0.3, max_tokens=128, help="each summary")


class Summarize(Method):
    """Summarize the text of each record in a few words. Summaries longer than --max-words
    are dropped and counted (df.attrs['forgekit']['counts'])."""

    name = "summarize"
    help = "one short summary per record"
    Options = SummarizeOptions

    def prepare(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Runs before any request: a bad input fails the call while nothing is spent.
        for index, record in enumerate(records):
            if not str(record.get(self.options.field) or "").strip():
                raise ConfigError(f"record {index} has no text in {self.options.field!r}")
        return records

    async def produce(self, ctx: RunContext, record: dict[str, Any]) -> dict[str, Any] | None:
        o = self.options
        text = str(record[o.field])
        instruction = STYLES[o.style].format(n=o.max_words)
        answer = await ctx.chat(chat_messages(instruction, text), params=o.params)
        summary = answer.text.strip()
        if not summary or length_units(summary) > o.max_words:
            self.counts["too_long" if summary else "empty"] += 1
            return None  # filtered out: no record
        return make_record(
            id=ctx.task.id,
            input=text,
            output=summary,
            system=instruction,
            lineage=make_lineage(
                self.name, ctx.model.name, params=o.params.to_dict(), parent_id=record.get("id")
            ),
            carry=record,
        )
