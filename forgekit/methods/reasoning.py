"""Reasoning records: a `thinking` field (the reasoning) and an `output` (the final answer).

`<think>...</think>` is parsed, also when the chat template opened the tag (only `</think>`
in the text) or the answer was cut off while thinking; otherwise the answer is the last
`Final answer: ...` line (also `#### 42`, `\\boxed{42}`, `答案：`). A check (reference or
majority) is recorded, never used to rewrite the answer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgekit.data.records import fingerprint, make_record
from forgekit.data.text import split_thinking
from forgekit.engine import RunContext
from forgekit.errors import ConfigError
from forgekit.methods.parsing import majority
from forgekit.methods.prompting import chat_messages
from forgekit.methods.samplers import with_seed
from forgekit.methods.spec import Method, option, require_field, sampling, template
from forgekit.models import SamplingParams

MODES = ("cot", "think")
CHECKS = ("reference", "majority")
KEEP = ("all", "correct")

COT_SYSTEM = (
    "Solve the problem. Think step by step and show your reasoning. Then, on the last line, "
    "write the result alone after 'Final answer:', for example:\nFinal answer: 42"
)

_FINAL = re.compile(
    r"(?:^|\n)[ \t>*#]*(?:final answer|the final answer is|answer|最终答案|答案)[ \t*]*[:：]"
    r"[ \t*]*(?P<answer>.+?)\s*$",
    re.IGNORECASE | re.DOTALL,
)
_HASHES = re.compile(r"(?:^|\n)####\s*(?P<answer>.+?)\s*$", re.DOTALL)
_BOXED = re.compile(r"\\boxed\{(?P<answer>(?:[^{}]|\{[^{}]*\})*)\}")


def extract_final_answer(text: str) -> tuple[str | None, str]:
    """The delimited final answer and the reasoning before it; (None, text) when the model
    wrote no recognizable final answer."""
    for pattern in (_FINAL, _HASHES):
        matches = list(pattern.finditer(text))
        if matches:
            last = matches[-1]
            answer = last.group("answer").strip().strip("*").strip()
            boxed = _BOXED.search(answer)
            return (boxed.group("answer") if boxed else answer), text[: last.start()].strip()
    boxed = list(_BOXED.finditer(text))
    if boxed:
        return boxed[-1].group("answer").strip(), text.strip()
    return None, text.strip()


def parse_reasoning(text: str) -> dict[str, Any]:
    """thinking, answer (None if not found), the think tags found and where the answer came
    from: a final-answer line, the text after </think> ('after_think'), or None."""
    thinking, rest, tags = split_thinking(text)
    answer, before = (None, rest) if tags == "unclosed" else extract_final_answer(rest)
    found = "final_answer_line" if answer is not None else None
    if thinking is None:
        thinking = before or None
    elif answer is None and rest and tags != "unclosed":
        answer, found = rest, "after_think"  # a thinking model's answer follows </think>
    return {"thinking": thinking, "answer": answer, "think_tags": tags, "answer_from": found}


# --- checking answers ----------------------------------------------------------------------
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")


def normalize_answer(text: str) -> str:
    """Lowercase, no \\boxed{}, $, trailing period, surrounding quotes or 'the answer is'."""
    boxed = _BOXED.search(text)
    text = boxed.group("answer") if boxed else text.strip()
    text = re.sub(r"^(?:the )?(?:final )?answer(?: is)?[:：]?\s*", "", text, flags=re.IGNORECASE)
    text = text.replace("$", "").replace("\\%", "%").strip().strip("\"'“”").strip()
    text = text.rstrip("。.").strip()
    return " ".join(text.lower().split())


def as_number(text: str) -> float | None:
    """The number an answer states, if it is one number (commas, %, units aside)."""
    found = _NUMBER.findall(normalize_answer(text))
    return float(found[0].replace(",", "")) if len(found) == 1 else None


def answers_match(a: str, b: str, *, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> bool:
    x, y = as_number(a), as_number(b)
    if x is not None and y is not None:
        return math.isclose(x, y, rel_tol=rel_tol, abs_tol=abs_tol)
    return normalize_answer(a) == normalize_answer(b)


def answer_key(answer: str) -> str:
    """What majority voting compares: the number if there is one, else the normal form."""
    number = as_number(answer)
    return repr(round(number, 9)) if number is not None else normalize_answer(answer)


@dataclass(frozen=True, kw_only=True)
class ReasoningOptions:
    field: str = option("input", help="the field holding the problem")
    mode: str = option(
        "cot",
        choices=MODES,
        help="cot: ask for steps and a final answer; think: a thinking model, prompted as is",
    )
    system: str | Path | None = template(None, help="system prompt (default: the cot one)")
    check: str | None = option(None, choices=CHECKS, help="check answers (default: no)")
    reference: str = option("target", help="reference answer field")
    samples: int = option(3, help="samples for check=majority (a strict majority is correct)")
    rel_tol: float = option(1e-6, help="numeric tolerance")
    keep: str = option("all", choices=KEEP, help="all records, or those whose check passed")
    n: int | None = option(None, flag="-n", identity=False, help="at most this many records")
    params: SamplingParams = sampling(temperature=0.7, max_tokens=512, help="each answer")
    seed: int = option(0, help="base seed")


class Reasoning(Method):
    """Reasoning records: parse <think>...</think> from thinking models, or ask for
    step-by-step reasoning and a 'Final answer:' line; optionally check the answer against a
    reference field or by majority over samples. The result is in `correct` (None: no
    answer found) and metadata['check']."""

    name = "reasoning"
    help = "thinking + answer records, with optional answer checks"
    Options = ReasoningOptions

    def prepare(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        o = self.options
        if o.keep == "correct" and o.check is None:
            raise ConfigError("keep='correct' needs check='reference' or check='majority'")
        if o.check == "majority" and o.samples < 2:
            raise ConfigError(f"check='majority' needs samples >= 2, got {o.samples}")
        if o.check == "majority" and not o.params.temperature:
            raise ConfigError("check='majority' needs a temperature > 0: the samples would agree")
        require_field(records, o.field, "field=")
        if o.check == "reference":
            require_field(records, o.reference, "reference=")
        self.system = COT_SYSTEM if o.system is None and o.mode == "cot" else o.system
        self.template_hash = fingerprint({"system": self.system, "mode": o.mode}, 12)
        return records

    async def produce(self, ctx: RunContext, record: dict[str, Any]) -> dict[str, Any] | None:
        o = self.options
        problem, index = str(record[o.field]), ctx.task.info["index"]
        parsed = []
        for s in range(o.samples if o.check == "majority" else 1):
            params = with_seed(o.params, o.seed, index, s)
            answer = await ctx.chat(chat_messages(self.system, problem), params=params)
            parsed.append(parse_reasoning(answer.text))
            parsed[-1].update(raw=answer.text, truncated=answer.finish_reason == "length")
        chosen, correct, check = self.check(record, parsed)
        self.counts.update(
            no_answer=chosen["answer"] is None, unclosed_think=chosen["think_tags"] == "unclosed"
        )
        if o.keep == "correct" and correct is not True:
            self.counts["dropped_by_check"] += 1
            return None
        return make_record(
            id=ctx.task.id,
            input=problem,
            output=chosen["answer"] or "",
            thinking=chosen["thinking"] or "",
            history=record.get("history") or [],
            system=record.get("system"),
            target=record.get("target"),  # the user's reference answer stays a column
            metadata={
                **(record.get("metadata") or {}),
                "think_tags": chosen["think_tags"],
                "answer_found": chosen["answer"] is not None,
                **{key: chosen[key] for key in ("answer_from", "truncated", "raw")},
                **({"check": check} if check else {}),
            },
            lineage=self.lineage(ctx, index=index, parent_id=record.get("id")),
            carry={**record, "correct": correct} if o.check else record,
        )

    def check(self, record: dict[str, Any], parsed: list[dict[str, Any]]) -> tuple[Any, ...]:
        """The sample kept, whether its answer is correct (None: unknown) and the details."""
        o = self.options
        if o.check == "reference":
            answer, ref = parsed[0]["answer"], str(record[o.reference])
            correct = None if answer is None else answers_match(answer, ref, rel_tol=o.rel_tol)
            return parsed[0], correct, {"method": "reference", "reference": ref, "correct": correct}
        if o.check != "majority":
            return parsed[0], None, None
        keys = [answer_key(p["answer"]) if p["answer"] is not None else None for p in parsed]
        # A tie goes to the answer given first; `correct` needs a strict majority of all
        # samples, so a tied winner is never called correct.
        top, tally = majority([{"voter": i, "label": key} for i, key in enumerate(keys)], "first")
        if top is None:
            chosen, correct = parsed[0], None
        else:
            chosen, correct = parsed[keys.index(top)], tally["counts"][top] * 2 > len(parsed)
        info = {"method": "majority", "samples": len(parsed), "votes": tally["counts"]}
        info.update(majority=top, agreement=tally["agreement"], tie=tally["tie"])
        info.update(tie_policy="first", answers=[p["answer"] for p in parsed])
        return chosen, correct, info

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {"counts": {k: v for k, v in self.counts.items() if v}}
