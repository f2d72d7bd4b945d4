"""LLM-as-judge tagging: difficulty, quality (with an explanation), task category and
language for each record, as new columns. The judge answers in fixed `Label: value` lines; a
value is kept only when it opens with an allowed label (see parsing.LabelSet, match="start"),
anything else is left empty (None) and counted — a judgment is never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from forgekit.data.records import fingerprint, make_record
from forgekit.engine import RunContext
from forgekit.errors import ConfigError
from forgekit.methods.parsing import LabelSet, parse_labeled
from forgekit.methods.prompting import chat_messages
from forgekit.methods.spec import Method, option, require_field, sampling
from forgekit.models import SamplingParams

DIFFICULTY = ("very easy", "easy", "medium", "hard", "very hard")
QUALITY = ("very poor", "poor", "average", "good", "excellent")
# fmt: off
CATEGORIES = (
    "information seeking", "reasoning", "planning", "editing", "coding", "math",
    "role playing", "data analysis", "creative writing", "advice seeking", "brainstorming",
    "other",
)
# fmt: on
ASPECTS = ("difficulty", "quality", "category", "language")
_PASSED_ON = ("target", "system", "thinking", "chosen", "rejected")  # record fields kept as is
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
            f"{', '.join(DIFFICULTY)}."
        )
        lines.append("Difficulty: <" + " | ".join(DIFFICULTY) + ">")
    if "quality" in aspects:
        what = "the response (helpful, correct, complete, well written)"
        what = what if response else "the request (clear, specific, answerable)"
        parts.append(
            f"Quality: the quality of {what} — one of {', '.join(QUALITY)}; then "
            "explain the rating in one or two sentences."
        )
        lines += ["Quality: <" + " | ".join(QUALITY) + ">", "Explanation: <one or two sentences>"]
    if "category" in aspects:
        parts.append(
            f"Category: the task category of the request — exactly one of {', '.join(categories)}."
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


def match_label(value: str | None, allowed: list[str] | tuple[str, ...]) -> str | None:
    """The allowed label `value` opens with, or None (LabelSet's match="start": longest label
    first, alone or before a separator; 'medium-hard' is not 'medium')."""
    return _label_set(tuple(allowed)).parse(value)


@lru_cache(maxsize=32)
def _label_set(allowed: tuple[str, ...]) -> LabelSet:
    return LabelSet(allowed, match="start")


def match_language(value: str | None) -> str | None:
    """A language name: one to three words of letters (markup and case aside); else None."""
    line = ((value or "").strip().splitlines() or [""])[0]
    text = " ".join(re.sub(r"[*_`<>\[\]\"'“”]", "", line).lower().replace("_", " ").split())
    text = text.strip(" .。")
    if not re.fullmatch(r"[^\W\d_]+(?: [^\W\d_]+){0,2}", text):
        return None
    return text.title() if text.isascii() else text


@dataclass(frozen=True, kw_only=True)
class JudgeOptions:
    aspects: tuple[str, ...] = option(ASPECTS, choices=ASPECTS, help="the tags to ask for")
    categories: tuple[str, ...] = option(
        CATEGORIES, metavar="CATEGORY", help=f"task categories (default: {', '.join(CATEGORIES)})"
    )
    field: str = option("input", help="the request field")
    response_field: str | None = option("output", help="the response field judged for quality")
    response: bool = option(True, help="judge the response as well as the request")
    n: int | None = option(None, flag="-n", identity=False, help="at most this many records")
    params: SamplingParams = sampling(temperature=0.0, max_tokens=256, help="each judgment")
    seed: int = option(0, help="seed of every request")


class Judge(Method):
    """Tag records with an LLM judge: difficulty (very easy..very hard), quality (very
    poor..excellent) with an explanation, task category (from a list) and language, as new
    columns. Unparsable judgments are left empty (None) and counted in
    df.attrs['forgekit']['unparsable']."""

    name = "judge"
    aliases = ("tag",)
    help = "LLM-as-judge tags: difficulty, quality, category, language"
    Options = JudgeOptions

    def prepare(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        o = self.options
        self.categories = [c.strip() for c in o.categories if c.strip()]
        if "category" in o.aspects and not self.categories:
            raise ConfigError("categories is empty: give at least one task category")
        require_field(records, o.field, "field=")
        self.response_field = o.response_field if o.response else None
        prompt = build_prompt("{i}", "{r}", list(o.aspects), self.categories)
        self.template_hash = fingerprint([prompt], 12)
        return records

    async def produce(self, ctx: RunContext, record: dict[str, Any]) -> dict[str, Any]:
        o = self.options
        response = str(record.get(self.response_field) or "") if self.response_field else ""
        prompt = build_prompt(str(record[o.field]), response or None, o.aspects, self.categories)
        params = SamplingParams.coerce(o.params, seed=o.seed)
        answer = await ctx.chat(chat_messages(None, prompt), params=params)
        fields = parse_labeled(answer.text, _LABELS)
        tags: dict[str, Any] = {}
        if "difficulty" in o.aspects:
            tags["difficulty"] = match_label(fields.get("difficulty"), DIFFICULTY)
        if "quality" in o.aspects:
            tags["quality"] = match_label(fields.get("quality"), QUALITY)
            tags["quality_explanation"] = (fields.get("explanation") or "").strip() or None
        if "category" in o.aspects:
            tags["category"] = match_label(fields.get("category"), self.categories)
        if "language" in o.aspects:
            tags["language"] = match_language(fields.get("language"))
        self.counts.update(name for name, value in tags.items() if value is None)
        return make_record(
            id=ctx.task.id,
            input=str(record[o.field]) if o.field == "input" else str(record.get("input") or ""),
            output=str(record.get("output") or ""),
            history=record.get("history") or [],
            **{key: record.get(key) for key in _PASSED_ON},
            metadata={**(record.get("metadata") or {}), "judge_raw": answer.text},
            lineage=self.lineage(
                ctx,
                index=ctx.task.info["index"],
                parent_id=record.get("id"),
                parent_lineage=record.get("lineage"),
            ),
            carry={**tags, **{k: v for k, v in record.items() if k not in tags}},
        )

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {"unparsable": dict(self.counts)}

    def score(self, record: dict[str, Any]) -> float | None:
        """Quality as 1 (very poor) .. 5 (excellent); None when not judged."""
        quality = record.get("quality")
        return QUALITY.index(quality) + 1.0 if quality in QUALITY else None
