"""dpo: preference pairs. Each prompt gets k responses (several models and/or temperatures
and seeds); a judge rates each one on a rubric in UltraFeedback style ("Rating: N" then
"Rationale: ..."); the highest-rated response is `chosen`, the lowest (or a random lower
one) is `rejected`.

Handled explicitly: ratings the judge gave in an unreadable form (dropped, or asked again
once), ties (all usable ratings equal: no pair), a minimum margin between chosen and
rejected, and prompts with fewer than two rated responses. Every response keeps its model,
sampling, rating and rationale in the record's metadata.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgekit.data.records import fingerprint, make_record
from forgekit.engine import RunContext
from forgekit.methods.parsing import item_rng, parse_rating
from forgekit.methods.prompting import Prompt, chat_messages, render_prompts
from forgekit.methods.samplers import build_samplers, model_label
from forgekit.methods.spec import Method, model_option, option, sampling, template
from forgekit.methods.vote import SYSTEM_HELP, USER_HELP
from forgekit.models import Model, SamplingParams

DEFAULT_RUBRIC = (
    "Judge the response as a whole on: helpfulness (does it do what was asked, fully and "
    "usefully), truthfulness and honesty (no invented facts; uncertainty admitted where it "
    "exists) and instruction following (the requested format, constraints and length)."
)

_JUDGE = """You grade a single response to an instruction.

{rubric}

Give a rating from 1 to {scale}: 1 means very poor and {scale} means excellent.

#Instruction#:
{instruction}

#Response#:
{response}

Reply in exactly this format:
Rating: <a whole number from 1 to {scale}>
Rationale: <one or two sentences on why>"""

_REASK = (
    "\n\nYour previous reply could not be read. Start your reply with a line of the form "
    "'Rating: N' where N is a number from 1 to {scale}, then a line 'Rationale: ...'."
)


def select_pair(
    ratings: Sequence[float | None],
    *,
    rejected: str = "lowest",
    min_margin: float = 1.0,
    rng: Any = None,
) -> tuple[int | None, int | None, str]:
    """(chosen index, rejected index, outcome) from per-response ratings (None: unusable).

    chosen = the highest rating (the earliest response on equal ratings); rejected = the
    lowest (the earliest among equals) or, with rejected="random", a random response rated
    lower by at least `min_margin`. Outcomes: "pair", "too_few_rated", "tie" (all usable
    ratings equal), "margin" (no candidate at least `min_margin` below chosen)."""
    rated = [(i, r) for i, r in enumerate(ratings) if r is not None]
    if len(rated) < 2:
        return None, None, "too_few_rated"
    best = max(r for _, r in rated)
    chosen = next(i for i, r in rated if r == best)
    if all(r == best for _, r in rated):
        return None, None, "tie"
    if rejected == "random":
        candidates = [i for i, r in rated if best - r >= min_margin]
        if not candidates:
            return None, None, "margin"
        return chosen, (rng or item_rng(0)).choice(candidates), "pair"
    worst = min(r for _, r in rated)
    if best - worst < min_margin:
        return None, None, "margin"
    return chosen, next(i for i, r in rated if r == worst), "pair"


@dataclass(frozen=True, kw_only=True)
class DpoOptions:
    k: int = option(4, flag="-k", minimum=2, help="responses per prompt (a pair needs two)")
    user: str | Path = template("{{ input }}", help=USER_HELP)
    system: str | Path | None = template(None, help=SYSTEM_HELP)
    models: tuple[str | Model, ...] | None = model_option(
        help="model profiles, one responder each (instead of --model)"
    )
    temperatures: tuple[float, ...] | None = option(
        None, help="temperatures; each model x temperature is a responder"
    )
    seeds: tuple[int, ...] | None = option(None, help="seeds; each adds a responder per model")
    response_params: SamplingParams = sampling(temperature=0.8, max_tokens=512, help="answers")
    judge_model: str | Model | None = model_option(
        help="judge model (default --model, or the first of --models)"
    )
    judge_params: SamplingParams = sampling(
        temperature=0.0,
        max_tokens=256,
        flags={"max_tokens": "--judge-max-tokens"},
        help="the judge",
    )
    rubric: str | Path = template(DEFAULT_RUBRIC, help="what the judge rates (text)")
    scale: int = option(5, minimum=2, help="ratings run from 1 to this")
    rejected: str = option(
        "lowest",
        choices=("lowest", "random"),
        help="rejected = the lowest-rated response, or a random one rated lower by >= min-margin",
    )
    min_margin: float = option(1.0, minimum=0, help="least rating gap of chosen over rejected")
    unparsable: str = option(
        "drop",
        choices=("drop", "reask"),
        help="unreadable ratings: drop the response, or re-ask the judge once (then drop)",
    )
    keep_unpaired: bool = option(
        False, help="keep prompts without a pair (no chosen/rejected) instead of dropping them"
    )
    seed: int = option(0, help="base seed: response i gets seed + i")


class Dpo(Method):
    """DPO pairs: k responses per prompt (several models/temperatures/seeds), a judge rates
    each ('Rating: N' / 'Rationale: ...'); chosen = highest, rejected = lowest or a random
    lower one. Ties, small margins and unparsable ratings are handled explicitly and counted
    in `df.attrs['forgekit']` (pairs, no_pair reasons, unparsable, reasked)."""

    name = "dpo"
    help = "preference pairs: k responses per prompt, judged, best vs worst"
    Options = DpoOptions

    def prepare(self, records: list[dict[str, Any]]) -> list[Prompt]:
        o = self.options
        self.responders = build_samplers(
            o.models or (self.model,),
            temperatures=o.temperatures,
            seeds=o.seeds,
            n=o.k,
            base=o.response_params,
            seed=o.seed,
        )
        self.judge = o.judge_model or self.model
        self.judge_params = SamplingParams.coerce({"seed": o.seed}, **o.judge_params.to_dict())
        self.rubric = o.rubric or DEFAULT_RUBRIC
        self.no_pair: Counter[str] = Counter()  # why prompts gave no pair
        self.template_hash = fingerprint([o.user, o.system, _JUDGE], 12)
        return render_prompts(o.user, o.system, records)

    async def rate(self, ctx: RunContext, instruction: str, response: dict[str, Any]) -> None:
        """The judge's rating of one response (asked once more on an unreadable reply when
        unparsable='reask'), written into the response."""
        scale = self.options.scale

        async def judge(text: str) -> tuple[str, tuple[float | None, str | None, str | None]]:
            reply = await ctx.chat(
                chat_messages(None, text), model=self.judge, params=self.judge_params
            )
            return reply.text.strip(), parse_rating(reply.text, scale)

        prompt = _JUDGE.format(
            rubric=self.rubric, scale=scale, instruction=instruction, response=response["text"]
        )
        raw, (rating, rationale, problem) = await judge(prompt)
        response["reasked"] = bool(problem) and self.options.unparsable == "reask"
        if response["reasked"]:
            self.counts["reasked"] += 1
            raw, (rating, rationale, problem) = await judge(prompt + _REASK.format(scale=scale))
        if problem:
            self.counts["unparsable"] += 1
        response.update(rating=rating, rationale=rationale, judge_raw=raw, problem=problem)

    async def produce(self, ctx: RunContext, prompt: Prompt) -> dict[str, Any] | None:
        o = self.options
        answers = await asyncio.gather(*(s.ask(ctx, prompt.messages) for s in self.responders))
        responses = [
            {"text": text, **source, "sampler": s.name}
            for s, (text, source) in zip(self.responders, answers)
        ]
        await asyncio.gather(*(self.rate(ctx, prompt.user, r) for r in responses))
        chosen_i, rejected_i, outcome = select_pair(
            [r["rating"] for r in responses],
            rejected=o.rejected,
            min_margin=o.min_margin,
            rng=item_rng(o.seed, ctx.task.id),
        )
        metadata: dict[str, Any] = {
            "responses": responses,
            "pair": outcome,
            "chosen_index": chosen_i,
            "rejected_index": rejected_i,
            "rejected_policy": o.rejected,
            "min_margin": o.min_margin,
            "scale": o.scale,
        }
        pair: dict[str, Any] = {}
        if outcome == "pair":
            good, bad = responses[chosen_i], responses[rejected_i]
            pair = {"chosen": good["text"], "rejected": bad["text"]}
            metadata.update(
                chosen_rating=good["rating"],
                rejected_rating=bad["rating"],
                margin=good["rating"] - bad["rating"],
                chosen_model=good["model"],
                rejected_model=bad["model"],
            )
        else:
            self.no_pair[outcome] += 1
            if not o.keep_unpaired:
                return None
        return make_record(
            id=ctx.task.id,
            input=prompt.user,
            system=prompt.system,
            metadata=metadata,
            lineage=self.lineage(
                ctx,
                model=sorted({r["model"] for r in responses}),
                params={s.name: s.params.to_dict() for s in self.responders},
                parent_id=prompt.item.get("id"),
                judge=model_label(self.judge),
                judge_params=self.judge_params.to_dict(),
            ),
            carry=prompt.item,
            **pair,
        )

    def score(self, record: dict[str, Any]) -> float | None:
        return (record.get("metadata") or {}).get("chosen_rating")  # the chosen's rating

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "pairs": sum(1 for r in records if r.get("chosen") is not None),
            "no_pair": dict(self.no_pair),
            "unparsable": self.counts["unparsable"],
            "reasked": self.counts["reasked"],
        }
