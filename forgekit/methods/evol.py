"""evol: Evol-Instruct (Xu et al., 2023, "WizardLM"). Each round rewrites every instruction
in the pool with one operation: in-depth (add a constraint, deepen, concretize, ask for
more reasoning steps, or complicate the input for instructions that carry data) or
in-breadth (a new, rarer instruction in the same domain). The evolved instruction is
answered, then an elimination step rejects evolutions that:

1. add no information over their parent (an LLM judges the two "Equal");
2. get a response that contains "sorry" and is short (under 80 words);
3. get a response made only of punctuation and stop words;
4. copy the template's own words ("given prompt", "rewritten prompt", ...).

A rejected evolution is dropped and its parent goes back to the pool for the next round;
an accepted one replaces its parent. Each record's lineage holds the evolution tree:
parent id, root id, operation and round.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from forgekit.commands import add_input_option, add_model_option, add_run_options, read_input
from forgekit.commands import run_config_from_args as _run_config
from forgekit.data.records import fingerprint, make_lineage, make_record, record_id
from forgekit.engine import RunContext, RunResult, RunStats, Task
from forgekit.errors import ConfigError
from forgekit.methods._common import (
    add_stats,
    remaining_budget,
    result_frame,
    run_method,
    split_run_options,
)
from forgekit.methods._prompting import (
    as_params,
    check_model_name,
    describe_item,
    input_records,
    item_rng,
    model_key,
    normalize_text,
)
from forgekit.models import Model, SamplingParams

# --- prompt templates (our own wording of the paper's operations) ---------------------------
_DEPTH = """You make instructions harder for capable AI assistants while keeping them \
sensible: a person must still be able to understand and answer the result.

Rewrite the instruction shown under #Given Prompt#. {how}
Keep anything in it that is not plain prose (tables, code, formulas, data) intact.
Add only 10 to 20 words to the original; do not make it long-winded.
Never write the words "given prompt", "rewritten prompt", "#Given Prompt#" or \
"#Rewritten Prompt#" in your reply. Reply with the new instruction and nothing else.

#Given Prompt#:
{instruction}
{data}
#Rewritten Prompt#:
"""

DEPTH_OPERATIONS: dict[str, str] = {
    "constraints": "Add exactly one more constraint or requirement that the answer must meet.",
    "deepen": "Where it asks about a particular matter, widen and deepen the inquiry into it.",
    "concretize": "Swap general concepts for more specific, concrete ones.",
    "reasoning": "If a few simple thoughts would solve it, restate it so that answering "
    "explicitly takes several steps of reasoning.",
    "complicate_input": "Make it operate on richer input: build the data shown under #Data# "
    "(or a more complex version of it, such as a table, JSON, XML, SQL or code) into the "
    "instruction itself.",
}

_BREADTH = """You invent fresh instructions for training AI assistants.

Use the instruction under #Given Prompt# only as inspiration: write a brand-new instruction \
in the same domain but on a rarer, less common topic. Keep it about as long and as hard as \
the original, and make sure a person could understand and answer it.
Never write the words "given prompt", "created prompt", "#Given Prompt#" or \
"#Created Prompt#" in your reply. Reply with the new instruction and nothing else.

#Given Prompt#:
{instruction}

#Created Prompt#:
"""

_EQUAL = """Compare the two instructions below and decide whether the second adds anything \
to the first.
They are "Equal" when they carry the same constraints and requirements and ask with the \
same depth and breadth; otherwise they are "Not Equal".

First instruction:
{parent}

Second instruction:
{child}

Answer with "Equal" or "Not Equal" only."""

OPERATIONS = (*DEPTH_OPERATIONS, "breadth")
# The template's own words; an evolved instruction that repeats them copied the prompt.
TEMPLATE_WORDS = (
    "given prompt",
    "rewritten prompt",
    "created prompt",
    "#given prompt#",
    "#rewritten prompt#",
    "#created prompt#",
)
# Words that carry no content: a response made only of these says nothing.
_STOP_WORDS_TEXT = (
    "a an the and or but if then so of to in on at by for with from as is are was were "
    "be been being am do does did done have has had it its this that these those there "
    "here i me my we our you your he him his she her they them their what which who whom "
    "whose why how when where not no yes ok okay all any some such only just very too "
    "also than can could will would shall should may might must about into over under "
    "again out up down off oh ah um uh well hmm "
)
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())
_WORD = re.compile(r"\w+")


# --- elimination rules ------------------------------------------------------------------------
def copies_template(instruction: str) -> bool:
    text = instruction.lower()
    return any(word in text for word in TEMPLATE_WORDS)


def is_sorry_response(response: str, max_words: int = 80) -> bool:
    return "sorry" in response.lower() and len(response.split()) < max_words


def is_empty_response(response: str) -> bool:
    """Only punctuation and stop words (or nothing at all)."""
    return all(word in STOP_WORDS for word in _WORD.findall(response.lower()))


def judge_verdict(text: str) -> str:
    """'not_equal' (new information), 'equal' (none) or 'unclear' (an answer we cannot
    read, which does not eliminate)."""
    answer = normalize_text(text)
    if re.search(r"\bnot\s+equal\b|\bunequal\b|\bdifferent\b", answer):
        return "not_equal"
    if re.search(r"\bequal\b|\bsame\b|\bidentical\b", answer):
        return "equal"
    return "unclear"


def elimination_reason(instruction: str, response: str | None = None) -> str | None:
    """The rule an evolution breaks before the LLM judgment (None: it passes)."""
    if not instruction.strip():
        return "empty_instruction"
    if copies_template(instruction):
        return "copied_template"
    if response is None:
        return None
    if is_sorry_response(response):
        return "sorry_response"
    if is_empty_response(response):
        return "stopwords_response"
    return None


def evolve_prompt(operation: str, instruction: str, data: str | None) -> str:
    if operation == "breadth":
        return _BREADTH.format(instruction=instruction)
    block = f"\n#Data#:\n{data}\n" if operation == "complicate_input" and data else ""
    return _DEPTH.format(how=DEPTH_OPERATIONS[operation], instruction=instruction, data=block)


# --- the method ---------------------------------------------------------------------------------
@dataclass
class _Entry:
    """One line of evolution in the pool: the current instruction and where it came from."""

    root_id: str
    parent_id: str
    instruction: str
    data: str | None
    item: dict[str, Any]
    depth: int = 0


def evol(
    data: Any,
    *,
    rounds: int = 3,
    operations: Sequence[str] = OPERATIONS,
    model: str | Model | None = None,
    response_model: str | Model | None = None,
    judge_model: str | Model | None = None,
    judge: bool = True,
    field: str = "input",
    data_field: str | None = None,
    evolve_params: SamplingParams | dict[str, Any] | None = None,
    response_params: SamplingParams | dict[str, Any] | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    **run_options: Any,
):
    """Evolve each instruction over `rounds` rounds; returns the accepted evolutions.

    - `data`: records whose `field` (default "input") holds the seed instruction;
      `data_field` names a field with accompanying input data (needed by
      "complicate_input", which only applies to items that have data).
    - `operations`: any of constraints, deepen, concretize, reasoning, complicate_input,
      breadth (default: all); each round picks one per item, seeded by `seed` and the item.
    - `model` evolves, `response_model` answers, `judge_model` runs the "Equal / Not
      Equal" elimination check (both default to `model`; `judge=False` skips it).
    - `evolve_params` (default T=0.7, 256 tokens), `response_params` (T=0, 512 tokens).
    - Each record: `input` = evolved instruction, `output` = its response, lineage with
      parent_id (the previous evolution, or the seed item's id), root_id, operation, round.
      `df.attrs['forgekit']['rounds']` lists per round how many evolved and what the
      elimination rules removed. Changing `rounds` keeps the same job: a later call with
      more rounds resumes the same `out` file.
    """
    config, rest = split_run_options(run_options)
    if rest:
        raise TypeError(f"evol() got unexpected option(s): {', '.join(sorted(rest))}")
    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1, got {rounds}")
    unknown = [op for op in operations if op not in OPERATIONS]
    if unknown or not operations:
        raise ConfigError(
            f"operations: unknown {unknown or 'empty list'}; choose from {', '.join(OPERATIONS)}"
        )
    for m in (model, response_model, judge_model):
        check_model_name(m)
    items = input_records(data)
    pool = [_seed_entry(item, i, field, data_field) for i, item in enumerate(items)]
    evolve_p = as_params(evolve_params, temperature=0.7, max_tokens=256)
    respond_p = as_params(response_params, temperature=0.0, max_tokens=512)
    judge_p = SamplingParams(temperature=0.0, max_tokens=8, seed=seed)
    job = {
        "method": "evol",
        "model": model_key(model),
        "response_model": model_key(response_model),
        "judge_model": model_key(judge_model) if judge else None,
        "operations": list(operations),
        "field": field,
        "data_field": data_field,
        "evolve_params": evolve_p.to_dict(),
        "response_params": respond_p.to_dict(),
        "seed": seed,
    }
    job_key = fingerprint(job, 16)
    template_hash = fingerprint([_DEPTH, DEPTH_OPERATIONS, _BREADTH, _EQUAL], 12)

    def usable(entry: _Entry) -> list[str]:
        return [op for op in operations if op != "complicate_input" or entry.data]

    for position, entry in enumerate(pool):
        if not usable(entry):
            raise ConfigError(
                f"operations {list(operations)}: complicate_input needs input data "
                f"(data_field=), and {describe_item(entry.item, position)} has none"
            )

    def pick(entry: _Entry, round_no: int) -> str:
        return item_rng(seed, entry.root_id, entry.parent_id, round_no).choice(usable(entry))

    async def evolve_one(
        ctx: RunContext, entry: _Entry, round_no: int, eliminated: Counter
    ) -> dict[str, Any] | None:
        operation = pick(entry, round_no)
        params = SamplingParams.coerce(evolve_p, seed=seed + round_no)
        prompt = evolve_prompt(operation, entry.instruction, entry.data)
        evolved = await ctx.chat([{"role": "user", "content": prompt}], params=params)
        instruction = evolved.text.strip()
        reason = elimination_reason(instruction)
        response = None
        verdict = None
        if reason is None:
            answer = await ctx.chat(
                [{"role": "user", "content": instruction}], model=response_model, params=respond_p
            )
            response = answer.text.strip()
            reason = elimination_reason(instruction, response)
        if reason is None and judge:
            check = _EQUAL.format(parent=entry.instruction, child=instruction)
            judged = await ctx.chat(
                [{"role": "user", "content": check}], model=judge_model, params=judge_p
            )
            verdict = judge_verdict(judged.text)
            if verdict == "equal":
                reason = "no_new_information"
        if reason is not None:
            eliminated[reason] += 1
            return None
        return make_record(
            id=ctx.task.id,
            input=instruction,
            output=response or "",
            metadata={
                "operation": operation,
                "round": round_no,
                "parent_instruction": entry.instruction,
                "judge": verdict,
            },
            lineage=make_lineage(
                "evol",
                sorted({ctx.model.name, *(m for m in (response_model, judge_model) if m)}),
                template_hash=template_hash,
                params={"evolve": params.to_dict(), "response": respond_p.to_dict()},
                seed=seed,
                parent_id=entry.parent_id,
                root_id=entry.root_id,
                operation=operation,
                round=round_no,
                depth=entry.depth + 1,
            ),
            carry=entry.item,
        )

    all_records: list[dict[str, Any]] = []
    results: list[RunResult] = []
    per_round: list[dict[str, Any]] = []
    for round_no in range(1, rounds + 1):
        eliminated: Counter[str] = Counter()
        ids = [
            record_id("evol", {"job": job_key, "root": e.root_id, "parent": e.parent_id}, round_no)
            for e in pool
        ]
        tasks = [
            Task(
                id=task_id,
                fn=lambda ctx, e=entry, r=round_no, c=eliminated: evolve_one(ctx, e, r, c),
                info={"round": round_no, "root_id": entry.root_id},
            )
            for task_id, entry in zip(ids, pool)
        ]
        round_config = replace(
            remaining_budget(config, _spent(results)), description=f"evol round {round_no}/{rounds}"
        )
        result = run_method(
            tasks=tasks, method="evol", model=model, out=out, config=round_config, job=job
        )
        results.append(result)
        by_id = {r["id"]: r for r in result.records}
        pool = [_advance(entry, by_id.get(task_id)) for entry, task_id in zip(pool, ids)]
        all_records += [by_id[i] for i in ids if i in by_id]
        per_round.append(
            {
                "round": round_no,
                "attempted": len(tasks),
                "evolved": sum(1 for i in ids if i in by_id),
                "eliminated": dict(eliminated),
                "status": result.status,
            }
        )
        if result.status != "completed":
            break  # a budget or a cancel stopped this round: later rounds would too
    combined = _combine(results, all_records)
    eliminated_total: Counter[str] = Counter()
    for entry in per_round:
        eliminated_total.update(entry["eliminated"])
    return result_frame(combined, rounds=per_round, eliminated=dict(eliminated_total))


def _seed_entry(item: dict[str, Any], position: int, field: str, data_field: str | None) -> _Entry:
    instruction = item.get(field)
    if not isinstance(instruction, str) or not instruction.strip():
        raise ConfigError(
            f"{describe_item(item, position)}: field {field!r} must hold the instruction text "
            f"(it has: {', '.join(sorted(item)) or 'no fields'}); choose it with field="
        )
    data = item.get(data_field) if data_field else None
    root = str(item.get("id") or record_id("evol-seed", {field: instruction}, position))
    return _Entry(root, root, instruction, str(data) if data else None, item)


def _advance(entry: _Entry, record: dict[str, Any] | None) -> _Entry:
    """The pool entry after a round: the accepted child, or the parent again."""
    if record is None:
        return entry
    return replace(
        entry,
        parent_id=record["id"],
        instruction=record["input"],
        depth=entry.depth + 1,
    )


def _spent(results: list[RunResult]) -> RunStats:
    total = RunStats()
    for result in results:
        add_stats(total, result.stats)
    return total


def _combine(results: list[RunResult], records: list[dict[str, Any]]) -> RunResult:
    last = results[-1]
    return RunResult(
        records=records,
        stats=_spent(results),
        status=last.status,
        stop_reason=last.stop_reason,
        out=last.out,
        errors=[e for r in results for e in r.errors],
    )


# --- the `forge evol` command -------------------------------------------------------------------
def _run_command(args: argparse.Namespace, ctx: Any) -> Any:
    return evol(
        read_input(args, ctx),
        rounds=args.rounds,
        operations=args.operations,
        model=args.model,
        response_model=args.response_model,
        judge_model=args.judge_model,
        judge=not args.no_judge,
        field=args.field,
        data_field=args.data_field,
        evolve_params={"temperature": args.temperature, "max_tokens": args.evolve_max_tokens},
        response_params={"temperature": args.response_temperature, "max_tokens": args.max_tokens},
        seed=args.seed,
        out=args.out,
        config=_run_config(args, ctx),
    )


def add_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evol",
        help="Evol-Instruct: make instructions harder (in-depth) or broader (in-breadth)",
        description="Evol-Instruct (WizardLM): each round rewrites every instruction with one "
        "operation (constraints, deepen, concretize, reasoning, complicate_input, breadth), "
        "answers it, and eliminates failed evolutions (no new information per an LLM judge, "
        "short 'sorry' responses, stop-word-only responses, copied template words); failed "
        "items go back to the pool. Lineage keeps the evolution tree.",
    )
    add_input_option(p)
    add_model_option(p)
    p.add_argument("--rounds", type=int, default=3, help="evolution rounds (default 3)")
    p.add_argument(
        "--operations",
        nargs="+",
        choices=OPERATIONS,
        default=list(OPERATIONS),
        help="operations to choose from (default: all)",
    )
    p.add_argument("--field", default="input", help="field holding the instruction (default input)")
    p.add_argument(
        "--data-field",
        default=None,
        help="field holding input data for complicate_input (items without data skip it)",
    )
    p.add_argument("--response-model", default=None, help="model that answers (default --model)")
    p.add_argument("--judge-model", default=None, help="elimination judge (default --model)")
    p.add_argument(
        "--no-judge", action="store_true", help="skip the LLM 'no new information' check"
    )
    p.add_argument(
        "--temperature", type=float, default=0.7, help="evolution temperature (default 0.7)"
    )
    p.add_argument("--evolve-max-tokens", type=int, default=256, help="evolution max tokens")
    p.add_argument(
        "--response-temperature", type=float, default=0.0, help="response temperature (default 0)"
    )
    p.add_argument("--max-tokens", type=int, default=512, help="response max tokens (default 512)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    add_run_options(p)
    p.set_defaults(handler=_run_command)
