"""generate: template synthesis. A system and a user prompt template (Jinja2, strings or
files) are filled from each item of a data pool, sent to a model, and the answer is kept
raw and, optionally, parsed into structured fields.

Every prompt is rendered before the first request, so a missing template variable stops
the call with an error naming the variable and the item, and nothing is spent.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgekit.data.records import fingerprint, make_record
from forgekit.data.schema import json_schema_of, schema_from_text
from forgekit.engine import RunContext
from forgekit.methods.prompting import Prompt, ResponseParser, chat_messages, render_prompts
from forgekit.methods.spec import Method, option, sampling, template
from forgekit.models import SamplingParams


@dataclass(frozen=True, kw_only=True)
class GenerateOptions:
    user: str | Path = template(
        help="user message template; {{ field }} is filled from each input record (or its "
        "user_prompt_kwargs)"
    )
    system: str | Path | None = template(
        None, help="system message template (filled from the record or its system_prompt_kwargs)"
    )
    parse: str | re.Pattern | Callable[[str], Any] | None = option(
        None,
        help="parse each answer: 'json', or a regular expression with named groups, e.g. "
        "'Answer: (?P<answer>.*)' (in Python also any callable text -> value); failures keep "
        "the raw text and are counted",
    )
    schema: dict[str, Any] | type | None = option(
        None,
        from_text=schema_from_text,
        help="JSON schema (file or JSON text; in Python also a pydantic model) answers must "
        "satisfy: sent to the model (OpenAI-compatible response_format, a llama.cpp grammar "
        "for the embedded model) and checked after (implies --parse json)",
    )
    samples: int = option(1, minimum=1, help="answers per record, each with seed + sample")
    params: SamplingParams = sampling(temperature=0.7, max_tokens=512, help="each answer")
    seed: int = option(0, help="base seed")


@dataclass(frozen=True)
class Sample(Prompt):
    """One request: a rendered input record, and which of its samples this is."""

    sample: int = 0


class Generate(Method):
    """Template synthesis: Jinja2 system/user templates are filled from each input record
    ({{ field }}, or the record's user_prompt_kwargs/system_prompt_kwargs), sent to the model,
    and the answers kept raw and optionally parsed. A missing variable is reported before any
    request is sent. Without input data the templates are rendered once, with no variables."""

    name = "generate"
    help = "fill prompt templates from each input record and collect (parsed) answers"
    Options = GenerateOptions
    inputs = "optional"

    def prepare(self, records: list[dict[str, Any]]) -> list[Sample]:
        o = self.options
        parse = "json" if o.schema is not None and o.parse is None else o.parse
        self.parser = ResponseParser(parse, o.schema) if parse is not None else None
        self.template_hash = fingerprint([o.user, o.system], 12)
        prompts = render_prompts(o.user, o.system, records)  # all: a bad item fails the call now
        # Sent with every request: servers and the embedded model constrain the answer to it.
        self.json_schema = json_schema_of(o.schema) if o.schema is not None else None
        if self.target is not None:  # keep sampling (new seeds) until the target is met
            rounds = itertools.count()
            return (Sample(**vars(p), sample=s) for s in rounds for p in prompts)
        return [Sample(**vars(p), sample=s) for p in prompts for s in range(o.samples)]

    def key(self, prompt: Sample) -> Any:
        return prompt.item

    async def produce(self, ctx: RunContext, prompt: Sample) -> dict[str, Any]:
        o = self.options
        params = SamplingParams.coerce(
            o.params, seed=o.seed + prompt.sample, json_schema=self.json_schema
        )
        answer = await ctx.chat(chat_messages(prompt.system, prompt.user), params=params)
        metadata: dict[str, Any] = {
            "position": prompt.position,
            "finish_reason": answer.finish_reason,
        }
        if self.parser:
            parsed, error = self.parser(answer.text)
            metadata["parse"] = {"ok": error is None, **({"error": error} if error else {})}
        record = make_record(
            id=ctx.task.id,
            input=prompt.user,
            output=answer.text.strip(),
            system=prompt.system,
            metadata=metadata,
            lineage=self.lineage(
                ctx,
                params=params.to_dict(),
                seed=params.seed,
                index=prompt.sample,
                parent_id=prompt.item.get("id"),
            ),
            carry=prompt.item,
        )
        if self.parser:
            record["parsed"] = parsed
        return record

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.parser:
            return {}
        states = [(r.get("metadata") or {}).get("parse", {}) for r in records]
        ok = sum(1 for s in states if s.get("ok"))
        return {"parse": {"ok": ok, "failed": sum(1 for s in states if s.get("ok") is False)}}
