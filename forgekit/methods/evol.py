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

import re
from collections import Counter
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from forgekit.data.records import fingerprint, make_record, record_id
from forgekit.data.text import STOP_WORDS
from forgekit.engine import RunContext
from forgekit.errors import ConfigError
from forgekit.methods.parsing import item_rng, normalize_text
from forgekit.methods.prompting import chat_messages, describe_item
from forgekit.methods.spec import Method, model_option, option, sampling
from forgekit.methods.stages import Stages
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


# --- elimination rules ------------------------------------------------------------------------
def copies_template(instruction: str) -> bool:
    text = instruction.lower()
    return any(word in text for word in TEMPLATE_WORDS)


def is_sorry_response(response: str, max_words: int = 80) -> bool:
    return "sorry" in response.lower() and len(response.split()) < max_words


def is_empty_response(response: str) -> bool:
    """Only punctuation and stop words (or nothing at all)."""
    return all(word in STOP_WORDS for word in re.findall(r"\w+", response.lower()))


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
@dataclass(frozen=True, kw_only=True)
class EvolOptions:
    rounds: int = option(
        3,
        minimum=1,
        identity=False,  # a later call with more rounds resumes the same output file
        help="evolution rounds; a later run with more rounds resumes the same output",
    )
    operations: tuple[str, ...] = option(
        OPERATIONS, choices=OPERATIONS, help="operations to choose from (default: all)"
    )
    field: str = option("input", help="field holding the instruction")
    data_field: str | None = option(
        None, help="field holding input data for complicate_input (items without data skip it)"
    )
    response_model: str | Model | None = model_option(help="model that answers (default --model)")
    judge_model: str | Model | None = model_option(help="elimination judge (default --model)")
    judge: bool = option(True, help="the LLM 'no new information' elimination check")
    evolve_params: SamplingParams = sampling(
        temperature=0.7,
        max_tokens=256,
        flags={"temperature": "--temperature", "max_tokens": "--evolve-max-tokens"},
        help="the evolution requests",
    )
    response_params: SamplingParams = sampling(
        temperature=0.0,
        max_tokens=512,
        flags={"temperature": "--response-temperature", "max_tokens": "--max-tokens"},
        help="the responses",
    )
    seed: int = option(0, help="base seed; each round picks operations with it")


@dataclass
class _Entry:
    """One line of evolution in the pool: the current instruction and where it came from."""

    root_id: str
    parent_id: str
    instruction: str
    data: str | None
    item: dict[str, Any]
    depth: int = 0


class Evol(Method):
    """Evol-Instruct (WizardLM): each round rewrites every instruction with one operation
    (constraints, deepen, concretize, reasoning, complicate_input, breadth), answers it, and
    eliminates failed evolutions (no new information per an LLM judge, short 'sorry'
    responses, stop-word-only responses, copied template words); failed items go back to the
    pool. Records: `input` the evolved instruction, `output` its response; lineage holds the
    evolution tree (parent_id, root_id, operation, round, depth). `df.attrs['forgekit']`
    lists per round how many evolved and what each elimination rule removed."""

    name = "evol"
    help = "Evol-Instruct: make instructions harder (in-depth) or broader (in-breadth)"
    Options = EvolOptions

    def prepare(self, records: list[dict[str, Any]]) -> list[_Entry]:
        o = self.options
        pool = [_seed_entry(item, i, o.field, o.data_field) for i, item in enumerate(records)]
        for position, entry in enumerate(pool):
            if not self._usable(entry):
                raise ConfigError(
                    f"operations {list(o.operations)}: complicate_input needs input data "
                    f"(data_field=), and {describe_item(entry.item, position)} has none"
                )
        self.judge_params = SamplingParams(temperature=0.0, max_tokens=8, seed=o.seed)
        self.template_hash = fingerprint([_DEPTH, DEPTH_OPERATIONS, _BREADTH, _EQUAL], 12)
        self.rounds: list[dict[str, Any]] = []
        return pool

    def key(self, entry: _Entry) -> Any:
        return {"root": entry.root_id, "parent": entry.parent_id}

    async def run(self, stages: Stages, pool: list[_Entry]) -> None:
        rounds = self.options.rounds
        for round_no in range(1, rounds + 1):
            eliminated: Counter[str] = Counter()
            done = await stages.run(
                pool,
                produce=partial(self.evolve, round_no=round_no, eliminated=eliminated),
                stage=round_no,
                label=f"evol round {round_no}/{rounds}",
            )
            self.rounds.append(
                {
                    "round": round_no,
                    "attempted": len(pool),
                    "evolved": sum(1 for record in done.outputs if record is not None),
                    "eliminated": dict(eliminated),
                    "status": done.result.status,
                }
            )
            pool = [_advance(entry, record) for entry, record in zip(pool, done.outputs)]
            if not done.completed:
                break  # a budget or a cancel stopped this round: later rounds would too

    def _usable(self, entry: _Entry) -> list[str]:
        return [op for op in self.options.operations if op != "complicate_input" or entry.data]

    async def evolve(
        self, ctx: RunContext, entry: _Entry, *, round_no: int, eliminated: Counter
    ) -> dict[str, Any] | None:
        o = self.options
        rng = item_rng(o.seed, entry.root_id, entry.parent_id, round_no)
        operation = rng.choice(self._usable(entry))
        params = SamplingParams.coerce(o.evolve_params, seed=o.seed + round_no)
        prompt = evolve_prompt(operation, entry.instruction, entry.data)
        evolved = await ctx.chat(chat_messages(None, prompt), params=params)
        instruction = evolved.text.strip()
        reason = elimination_reason(instruction)
        response = verdict = None
        if reason is None:
            answer = await ctx.chat(
                chat_messages(None, instruction), model=o.response_model, params=o.response_params
            )
            response = answer.text.strip()
            reason = elimination_reason(instruction, response)
        if reason is None and o.judge:
            check = _EQUAL.format(parent=entry.instruction, child=instruction)
            judged = await ctx.chat(
                chat_messages(None, check), model=o.judge_model, params=self.judge_params
            )
            verdict = judge_verdict(judged.text)
            if verdict == "equal":
                reason = "no_new_information"
        if reason is not None:
            eliminated[reason] += 1
            return None
        models = {ctx.model.name, *(m.name for m in (o.response_model, o.judge_model) if m)}
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
            lineage=self.lineage(
                ctx,
                model=sorted(models),
                params={"evolve": params.to_dict(), "response": o.response_params.to_dict()},
                parent_id=entry.parent_id,
                root_id=entry.root_id,
                operation=operation,
                round=round_no,
                depth=entry.depth + 1,
            ),
            carry=entry.item,
        )

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        total: Counter[str] = Counter()
        for entry in self.rounds:
            total.update(entry["eliminated"])
        return {"rounds": self.rounds, "eliminated": dict(total)}


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
        entry, parent_id=record["id"], instruction=record["input"], depth=entry.depth + 1
    )
