"""Magpie: instruction data from an aligned model's own chat template (Xu et al., 2024).

Stage 1 sends only the left side of the chat template, up to where the user's text would
begin (the pre-query template); the model, trained to see a user query there, writes one.
Stage 2 answers that query with the normal chat template. Stage 1 needs a raw completion
endpoint: a chat-only provider cannot be given a bare template. The families' templates are
in forgekit.models.chat_formats.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from forgekit.data.records import fingerprint, make_record
from forgekit.data.text import detect_script, length_units
from forgekit.engine import RunContext
from forgekit.errors import ConfigError, UnsupportedOperationError
from forgekit.methods.prompting import chat_messages
from forgekit.methods.samplers import with_seed
from forgekit.methods.spec import Method, SeenKeys, model_option, option, sampling
from forgekit.methods.stages import Stages
from forgekit.models import Model, SamplingParams
from forgekit.models.chat_formats import CHAT_FORMATS, pre_query_text

# --- filters ---------------------------------------------------------------------------
_TEMPLATE_MARKERS = re.compile(
    r"<\|[a-z_]+\|>|<start_of_turn>|<end_of_turn>|\[/?INST\]|<</?SYS>>|"
    r"^(user|assistant|system|model)\s*[:\n]",
    re.IGNORECASE,
)


def query_problem(text: str, *, min_words: int, language: str | None) -> str | None:
    """Why a generated query is dropped (the name of the filter), or None to keep it (the
    duplicate check comes after: `instruction_key`, claimed in the run's `SeenKeys`)."""
    if not text:
        return "empty"
    if length_units(text) < min_words:
        return "too_short"
    if _TEMPLATE_MARKERS.search(text):
        return "template_echo"
    if language and detect_script(text) != language:
        return "wrong_language"
    return None


def instruction_key(text: str) -> str:
    """What makes two instructions the same: case and whitespace aside."""
    return " ".join(text.lower().split())


# --- the method ------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class MagpieOptions:
    n: int = option(10, flag="-n", minimum=1, identity=False, help="records to produce")
    response_model: str | Model | None = model_option(help="model that answers (default: the same)")
    template: str | None = option(
        None, help=f"chat-template family: {', '.join(CHAT_FORMATS)} (default: the profile's)"
    )
    system: str | None = option(None, help="system prompt that steers the topic")
    n_turns: int = option(1, flag="--turns", minimum=1, help="conversation turns per record")
    newline_stop: bool = option(True, help="stop each instruction at its first newline")
    instruction_params: SamplingParams = sampling(
        temperature=1.0,
        top_p=1.0,
        max_tokens=128,
        flags={"temperature": "--temperature", "max_tokens": "--instruction-max-tokens"},
        help="the instructions",
    )
    response_params: SamplingParams = sampling(
        temperature=0.0,
        max_tokens=256,
        flags={"temperature": "--response-temperature", "max_tokens": "--max-tokens"},
        help="the responses",
    )
    min_words: int = option(3, help="drop instructions shorter than this many words")
    language: str | None = option(None, choices=("en", "zh"), help="keep only this language")
    max_generations: int | None = option(
        None, minimum=1, identity=False, help="give up after this many attempts (default 20 * n)"
    )
    seed: int = option(0, help="base seed")


class Magpie(Method):
    """Magpie: send the chat template's pre-query text so the model writes a user query,
    then answer it. Needs a raw completion endpoint (local, vLLM, llama.cpp server).
    Instructions that are empty, too short, echo the template, are in the wrong language or
    repeat an earlier one are dropped; `df.attrs['forgekit']` counts each filter's drops
    (`filtered`) and the attempts made (`generations`)."""

    name = "magpie"
    help = "instruction/response pairs from the model's own chat template"
    Options = MagpieOptions
    inputs = "none"
    positional = "n"

    def prepare(self, records: list[dict[str, Any]]) -> Iterator[int]:
        o = self.options
        name = o.template or getattr(self.model, "template", None)
        if not name:
            raise ConfigError(
                f"model {self.model.name!r} has no chat-template family configured; pass "
                f"template= (one of {', '.join(CHAT_FORMATS)}) or set `template:` in its profile"
            )
        self.format = CHAT_FORMATS.get(name.lower())
        if self.format is None:
            known = ", ".join(CHAT_FORMATS)
            raise ConfigError(f"unknown chat template {name!r}; known: {known}")
        if not self.model.supports_completion:
            raise UnsupportedOperationError(
                f"Magpie needs a raw completion endpoint, but model {self.model.name!r} is "
                f"chat-only. Use the embedded 'local' model, a vLLM or llama.cpp server "
                f"(set `completions: true` in its profile)."
            )
        stops = [*(o.instruction_params.stop or ()), *self.format.stops]
        stops += ["\n"] if o.newline_stop else []
        self.instruction_params = SamplingParams.coerce(
            o.instruction_params, stop=tuple(dict.fromkeys(stops))
        )
        self.template_hash = fingerprint({"format": self.format.name, "system": o.system}, 12)
        self.lineage_params = {
            "instruction": self.instruction_params.to_dict(),
            "response": o.response_params.to_dict(),
        }
        # The runner's (holding a resumed output's instructions), or in a sharded run the
        # board's, shared with the other shards; an estimate's dry run keeps its own.
        self.seen = self.claims or SeenKeys()
        self.generations = 0
        return iter(range(o.max_generations or 20 * o.n))  # an iterator: the engine's total is n

    async def run(self, stages: Stages, items: Iterator[int]) -> None:
        done = await stages.run(items, limit=self.options.n)
        stats = done.result.stats
        self.generations = stats.filtered + stats.ok + stats.failed

    async def produce(self, ctx: RunContext, index: int) -> dict[str, Any] | None:
        o, fmt = self.options, self.format
        turns: list[tuple[str, str]] = []
        raw_instructions = []
        for turn in range(o.n_turns):
            prompt = pre_query_text(fmt, o.system, turns)
            params = with_seed(self.instruction_params, o.seed, index, salt=turn)
            generated = await ctx.complete(prompt, params=params)
            raw_instructions.append(generated.text)
            instruction = fmt.cut(generated.text)
            problem = query_problem(instruction, min_words=o.min_words, language=o.language)
            if problem is None and not await self.seen.claim(instruction_key(instruction)):
                problem = "duplicate"
            if problem:
                self.counts[problem] += 1
                return None
            messages = chat_messages(o.system, instruction)
            messages[-1:-1] = [
                {"role": role, "content": text}
                for pair in turns
                for role, text in zip(("user", "assistant"), pair)
            ]
            answer = await ctx.chat(messages, model=o.response_model, params=o.response_params)
            response = answer.text.strip()
            if not response:
                self.counts["empty_response"] += 1
                return None
            turns.append((instruction, response))
        *history, (last_user, last_answer) = turns
        models = [ctx.model.name] + ([o.response_model.name] if o.response_model else [])
        return make_record(
            id=ctx.task.id,
            input=last_user,
            output=last_answer,
            history=[list(t) for t in history],
            system=o.system,
            metadata={"template": fmt.name, "raw_instructions": raw_instructions},
            lineage=self.lineage(ctx, model=models, params=self.lineage_params, index=index),
        )

    def dedup_keys(self, record: dict[str, Any]) -> list[str]:
        """Every user turn of a record (each was claimed when it was generated)."""
        turns = [turn[0] for turn in record.get("history") or [] if turn]
        return [instruction_key(text) for text in [*turns, record.get("input") or ""] if text]

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {"filtered": dict(self.counts), "generations": self.generations}
