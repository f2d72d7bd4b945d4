"""Reasoning records: a `thinking` field (the reasoning) and an `output` (the final answer).

A thinking model writes `<think>...</think>` before its answer; the tags are parsed, also
when the opening tag was part of the prompt template (only `</think>` in the text) or the
answer was cut off inside the thinking (no `</think>`). Any other model is asked to reason
step by step and end with a line `Final answer: ...`, which is parsed (also `#### 42`,
`\\boxed{42}` and `答案：`). Optionally the answer is checked: against a reference field
(normalized text, numbers within a tolerance) or by majority over k samples; the result is
recorded, never used to rewrite the answer.
"""

from __future__ import annotations

import argparse
import math
import re
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
from forgekit.data.text import split_thinking
from forgekit.engine import RunContext
from forgekit.errors import ConfigError
from forgekit.methods._common import split_run_options
from forgekit.methods._text import (
    add_sampling_options,
    call_options,
    frame,
    map_records,
    require_field,
    sampling,
    with_seed,
)
from forgekit.methods.parsing import majority
from forgekit.models import SamplingParams

MODES = ("cot", "think")
CHECKS = ("reference", "majority")

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
    """thinking, answer (None if not found) and how each was found."""
    thinking, rest, tags = split_thinking(text)
    if tags == "unclosed":
        return {"thinking": thinking, "answer": None, "think_tags": tags, "answer_from": None}
    if thinking is not None:
        answer, _ = extract_final_answer(rest)
        if answer is None and rest:
            answer = rest  # a thinking model's answer is what follows </think>
            return {
                "thinking": thinking,
                "answer": answer,
                "think_tags": tags,
                "answer_from": "after_think",
            }
        return {
            "thinking": thinking,
            "answer": answer,
            "think_tags": tags,
            "answer_from": "final_answer_line" if answer is not None else None,
        }
    answer, reasoning = extract_final_answer(rest)
    return {
        "thinking": reasoning or None,
        "answer": answer,
        "think_tags": tags,
        "answer_from": "final_answer_line" if answer is not None else None,
    }


# --- checking answers ----------------------------------------------------------------------
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")


def normalize_answer(text: str) -> str:
    """Lowercase, no \\boxed{}, $, trailing period, surrounding quotes or 'the answer is'."""
    text = text.strip()
    boxed = _BOXED.search(text)
    if boxed:
        text = boxed.group("answer")
    text = re.sub(r"^(?:the )?(?:final )?answer(?: is)?[:：]?\s*", "", text, flags=re.IGNORECASE)
    text = text.replace("$", "").replace("\\%", "%").strip().strip("\"'“”").strip()
    text = text.rstrip("。.").strip()
    return " ".join(text.lower().split())


def as_number(text: str) -> float | None:
    """The number an answer states, if it is one number (commas, %, units aside)."""
    found = _NUMBER.findall(normalize_answer(text))
    if len(found) != 1:
        return None
    try:
        return float(found[0].replace(",", ""))
    except ValueError:
        return None


def answers_match(a: str, b: str, *, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> bool:
    x, y = as_number(a), as_number(b)
    if x is not None and y is not None:
        return math.isclose(x, y, rel_tol=rel_tol, abs_tol=abs_tol)
    return normalize_answer(a) == normalize_answer(b)


def answer_key(answer: str) -> str:
    """What majority voting compares: the number if there is one, else the normal form."""
    number = as_number(answer)
    return repr(round(number, 9)) if number is not None else normalize_answer(answer)


def reasoning(
    data: Any,
    *,
    model: Any = None,
    field: str = "input",
    mode: str = "cot",
    system: str | None = None,
    check: str | None = None,
    reference: str = "target",
    samples: int = 3,
    rel_tol: float = 1e-6,
    keep: str = "all",
    params: SamplingParams | dict[str, Any] | None = None,
    n: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    **run_options: Any,
):
    """Reasoning records (`thinking` + `output`) for the problems in `data`; a DataFrame.

    - `data`: records (JSONL/CSV/... path, DataFrame, list); the problem is `field`.
    - `mode`: 'cot' asks for step-by-step reasoning and a `Final answer:` line; 'think' sends
      the problem as is to a thinking model and parses `<think>...</think>`. Think tags are
      parsed in either mode.
    - `check`: None, 'reference' (compare with the `reference` field: normalized text, or
      numbers within `rel_tol`) or 'majority' (`samples` answers, the most common wins;
      the record keeps the first sample that gave it; `correct` is True when more than
      half of the samples agree). The result is in `correct` and `metadata['check']`.
    - `keep`: 'all' or 'correct' (drop records whose check failed or found no answer).
    - `params`: sampling (default T=0.7, 512 tokens; majority needs T > 0).
    """
    config, rest = split_run_options(run_options)
    if rest:
        raise TypeError(f"reasoning() got unexpected option(s): {', '.join(sorted(rest))}")
    if mode not in MODES:
        raise ConfigError(f"mode={mode!r}: choose one of {', '.join(MODES)}")
    if check not in (None, *CHECKS):
        raise ConfigError(f"check={check!r}: choose None, 'reference' or 'majority'")
    if keep not in ("all", "correct"):
        raise ConfigError(f"keep={keep!r}: use 'all' or 'correct'")
    if keep == "correct" and check is None:
        raise ConfigError("keep='correct' needs check='reference' or check='majority'")
    if check == "majority" and samples < 2:
        raise ConfigError(f"check='majority' needs samples >= 2, got {samples}")
    records = read_records(data)
    require_field(records, field, "field=")
    if check == "reference":
        require_field(records, reference, "reference=")
    from forgekit.models import get_model

    main_model = get_model(model)
    sample = sampling({"temperature": 0.7, "max_tokens": 512}, params)
    if check == "majority" and not sample.temperature:
        raise ConfigError("check='majority' needs a temperature > 0: the samples would agree")
    system_text = system if system is not None else (COT_SYSTEM if mode == "cot" else None)
    k = samples if check == "majority" else 1
    job = {
        "method": "reasoning",
        "model": main_model.identity,
        "field": field,
        "mode": mode,
        "system": system_text,
        "check": check,
        "reference": reference if check == "reference" else None,
        "samples": k,
        "rel_tol": rel_tol,
        "keep": keep,
        "params": sample.to_dict(),
        "seed": seed,
    }
    counts: Counter[str] = Counter()

    async def produce(ctx: RunContext, index: int, record: dict[str, Any]) -> dict | None:
        problem = str(record[field])
        messages = ([{"role": "system", "content": system_text}] if system_text else []) + [
            {"role": "user", "content": problem}
        ]
        parsed = []
        for s in range(k):
            answer = await ctx.chat(messages, params=with_seed(sample, seed, index, s))
            result = parse_reasoning(answer.text)
            result["raw"] = answer.text
            result["truncated"] = answer.finish_reason == "length"
            parsed.append(result)
        chosen = parsed[0]
        check_info: dict[str, Any] | None = None
        correct: bool | None = None
        if check == "reference":
            ref = str(record[reference])
            if chosen["answer"] is not None:
                correct = answers_match(chosen["answer"], ref, rel_tol=rel_tol)
            check_info = {"method": "reference", "reference": ref, "correct": correct}
        elif check == "majority":
            keys = [answer_key(p["answer"]) if p["answer"] is not None else None for p in parsed]
            votes = [{"voter": f"sample {i}", "label": key} for i, key in enumerate(keys)]
            # A tie goes to the answer given first; `correct` needs a strict majority of all
            # samples, so a tied winner is never called correct.
            top, tally = majority(votes, "first")
            if top is not None:
                chosen = parsed[keys.index(top)]
                correct = tally["counts"][top] * 2 > k
            check_info = {
                "method": "majority",
                "samples": k,
                "votes": tally["counts"],
                "majority": top,
                "agreement": tally["agreement"],
                "tie": tally["tie"],
                "tie_policy": "first",
                "answers": [p["answer"] for p in parsed],
            }
        if chosen["answer"] is None:
            counts["no_answer"] += 1
        if chosen["think_tags"] == "unclosed":
            counts["unclosed_think"] += 1
        if keep == "correct" and correct is not True:
            counts["dropped_by_check"] += 1
            return None
        return make_record(
            id=ctx.task.id,
            input=problem,
            output=chosen["answer"] or "",
            thinking=chosen["thinking"] or "",
            history=record.get("history") or [],
            system=record.get("system"),
            metadata={
                **(record.get("metadata") or {}),
                "think_tags": chosen["think_tags"],
                "answer_found": chosen["answer"] is not None,
                "answer_from": chosen["answer_from"],
                "truncated": chosen["truncated"],
                "raw": chosen["raw"],
                **({"check": check_info} if check_info else {}),
            },
            lineage=make_lineage(
                "reasoning",
                main_model.name,
                template_hash=fingerprint({"system": system_text, "mode": mode}, 12),
                params=sample.to_dict(),
                seed=seed,
                index=index,
                parent_id=record.get("id"),
            ),
            carry={**record, "correct": correct} if check else record,
        )

    result = map_records(
        "reasoning", records, produce, job=job, model=model, out=out, config=config, limit=n
    )
    return frame(result, counts=dict(counts))


# --- the `forge reasoning` command ---------------------------------------------------------
def _run_command(args: argparse.Namespace, ctx: Any) -> Any:
    return reasoning(
        read_input(args, ctx),
        model=args.model,
        field=args.field,
        mode=args.mode,
        system=args.system,
        check=args.check,
        reference=args.reference,
        samples=args.samples,
        rel_tol=args.rel_tol,
        keep=args.keep,
        **call_options(args, ctx),
    )


def add_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reasoning",
        help="thinking + answer records, with optional answer checks",
        description="Reasoning records: parse <think>...</think> from thinking models, or ask "
        "for step-by-step reasoning and a 'Final answer:' line; optionally check the answer "
        "against a reference field or by majority over samples.",
    )
    add_input_option(p)
    add_model_option(p)
    p.add_argument("--field", default="input", help="the field holding the problem (input)")
    p.add_argument(
        "--mode",
        choices=MODES,
        default="cot",
        help="cot: ask for steps and a final answer (default); think: a thinking model",
    )
    p.add_argument("--system", default=None, help="system prompt (default: the cot instruction)")
    p.add_argument("--check", choices=CHECKS, default=None, help="check answers (default: no)")
    p.add_argument("--reference", default="target", help="reference answer field (target)")
    p.add_argument("--samples", type=int, default=3, help="samples for --check majority (3)")
    p.add_argument("--rel-tol", type=float, default=1e-6, help="numeric tolerance (1e-6)")
    p.add_argument(
        "--keep",
        choices=["all", "correct"],
        default="all",
        help="keep all records (default) or only those whose check passed",
    )
    p.add_argument("-n", type=int, default=None, help="at most this many records")
    add_sampling_options(p, temperature=0.7, max_tokens=512)
    add_run_options(p)
    p.set_defaults(handler=_run_command)
