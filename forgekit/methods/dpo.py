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

import argparse
import asyncio
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from forgekit.cli.legacy import add_input_option, add_model_option, add_run_options, read_input
from forgekit.cli.legacy import run_config_from_args as _run_config
from forgekit.data.records import fingerprint, make_lineage, make_record, record_id
from forgekit.engine import RunContext, Task
from forgekit.errors import ConfigError
from forgekit.methods._common import result_frame, run_method, split_run_options
from forgekit.methods._prompting import (
    Sampler,
    add_prompt_options,
    as_params,
    build_samplers,
    chat_messages,
    check_model_name,
    input_records,
    item_rng,
    load_template,
    make_template,
    model_key,
    prompt_args,
    render_messages,
)
from forgekit.methods.parsing import parse_rating
from forgekit.methods.vote import add_voter_options
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


def dpo(
    data: Any,
    *,
    k: int = 4,
    user: str | Path = "{{ input }}",
    system: str | Path | None = None,
    model: str | Model | None = None,
    models: Sequence[str | Model] | None = None,
    temperatures: Sequence[float] | None = None,
    response_params: SamplingParams | dict[str, Any] | None = None,
    judge_model: str | Model | None = None,
    judge_params: SamplingParams | dict[str, Any] | None = None,
    rubric: str | Path = DEFAULT_RUBRIC,
    scale: int = 5,
    rejected: str = "lowest",
    min_margin: float = 1.0,
    unparsable: str = "drop",
    keep_unpaired: bool = False,
    seed: int = 0,
    out: str | Path | None = None,
    **run_options: Any,
):
    """Build chosen/rejected pairs: k responses per prompt, each rated by a judge.

    - responses: `k` per prompt from `model` (or cycling through `models` x
      `temperatures`), each with its own seed; `response_params` default T=0.8, 512 tokens.
    - judge: `judge_model` (default `model`/the first of `models`), T=0 by default; `rubric`
      (text or a Path) says what to judge; ratings are 1..`scale`.
    - `rejected`: "lowest" or "random" (a random response rated lower by >= `min_margin`).
      Ties (all usable ratings equal) and gaps under `min_margin` give no pair.
    - `unparsable`: "drop" (the response takes no part) or "reask" (ask the judge once
      more, then drop).
    - Prompts without a pair are left out, or kept without chosen/rejected when
      `keep_unpaired`; `df.attrs['forgekit']` counts pairs, reasons for no pair, unparsable
      ratings and re-asks.
    """
    config, rest = split_run_options(run_options)
    if rest:
        raise TypeError(f"dpo() got unexpected option(s): {', '.join(sorted(rest))}")
    if k < 2:
        raise ConfigError(f"k must be >= 2 (a pair needs two responses), got {k}")
    if rejected not in ("lowest", "random"):
        raise ConfigError(f"rejected must be 'lowest' or 'random', got {rejected!r}")
    if unparsable not in ("drop", "reask"):
        raise ConfigError(f"unparsable must be 'drop' or 'reask', got {unparsable!r}")
    if scale < 2:
        raise ConfigError(f"scale must be >= 2, got {scale}")
    if min_margin < 0:
        raise ConfigError(f"min_margin must be >= 0, got {min_margin}")
    items = input_records(data)
    user_t = make_template(user, what="user template")
    system_t = make_template(system, what="system template", kind="system")
    rubric_text = load_template(rubric, what="rubric") or DEFAULT_RUBRIC
    samplers = build_samplers(
        model=model,
        models=models,
        temperatures=temperatures,
        seeds=None,
        n=k,
        base=as_params(response_params, temperature=0.8, max_tokens=512),
        seed=seed,
    )
    judge = judge_model or model or (models[0] if models else None)
    check_model_name(judge)
    judge_p = as_params(judge_params, temperature=0.0, max_tokens=256, seed=seed)
    prompts = [render_messages(user_t, system_t, item, i) for i, item in enumerate(items)]
    job = {
        "method": "dpo",
        "responders": [{**s.describe(), "model": model_key(s.model)} for s in samplers],
        "judge": model_key(judge),
        "judge_params": judge_p.to_dict(),
        "user": user_t.source,
        "system": system_t.source if system_t else None,
        "rubric": rubric_text,
        "scale": scale,
        "rejected": rejected,
        "min_margin": min_margin,
        "unparsable": unparsable,
        "keep_unpaired": keep_unpaired,
        "seed": seed,
    }
    template_hash = fingerprint([user_t.source, system_t.source if system_t else None, _JUDGE], 12)
    counts: Counter[str] = Counter()

    async def respond(ctx: RunContext, sampler: Sampler, messages: list) -> dict[str, Any]:
        answer = await ctx.chat(messages, model=sampler.model, params=sampler.params)
        return {
            "text": answer.text.strip(),
            "model": sampler.describe()["model"] or ctx.model.name,
            "sampler": sampler.name,
            "temperature": sampler.params.temperature,
            "seed": sampler.params.seed,
        }

    async def rate(ctx: RunContext, instruction: str, response: dict[str, Any]) -> None:
        prompt = _JUDGE.format(
            rubric=rubric_text, scale=scale, instruction=instruction, response=response["text"]
        )
        reply = await ctx.chat([{"role": "user", "content": prompt}], model=judge, params=judge_p)
        rating, rationale, problem = parse_rating(reply.text, scale)
        response["reasked"] = False
        if problem and unparsable == "reask":
            counts["reasked"] += 1
            response["reasked"] = True
            again = prompt + _REASK.format(scale=scale)
            reply = await ctx.chat(
                [{"role": "user", "content": again}], model=judge, params=judge_p
            )
            rating, rationale, problem = parse_rating(reply.text, scale)
        if problem:
            counts["unparsable"] += 1
        response.update(
            rating=rating, rationale=rationale, judge_raw=reply.text.strip(), problem=problem
        )

    async def produce(ctx: RunContext, position: int) -> dict[str, Any] | None:
        item = items[position]
        system_text, text = prompts[position]
        messages = chat_messages(system_text, text)
        responses = list(await asyncio.gather(*(respond(ctx, s, messages) for s in samplers)))
        await asyncio.gather(*(rate(ctx, text, r) for r in responses))
        chosen_i, rejected_i, outcome = select_pair(
            [r["rating"] for r in responses],
            rejected=rejected,
            min_margin=min_margin,
            rng=item_rng(seed, ctx.task.id),
        )
        if outcome != "pair":
            counts[f"no_pair_{outcome}"] += 1
            if not keep_unpaired:
                return None
        metadata: dict[str, Any] = {
            "responses": responses,
            "pair": outcome,
            "chosen_index": chosen_i,
            "rejected_index": rejected_i,
            "rejected_policy": rejected,
            "min_margin": min_margin,
            "scale": scale,
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
        return make_record(
            id=ctx.task.id,
            input=text,
            system=system_text,
            metadata=metadata,
            lineage=make_lineage(
                "dpo",
                sorted({r["model"] for r in responses}),
                template_hash=template_hash,
                params={s.name: s.params.to_dict() for s in samplers},
                seed=seed,
                parent_id=item.get("id"),
                judge=model_key(judge) or ctx.model.name,
                judge_params=judge_p.to_dict(),
            ),
            carry=item,
            **pair,
        )

    tasks = [
        Task(
            id=record_id("dpo", {"job": fingerprint(job, 16), "item": fingerprint(item, 16)}, i),
            fn=lambda ctx, i=i: produce(ctx, i),
            info={"position": i},
        )
        for i, item in enumerate(items)
    ]
    result = run_method(
        tasks=tasks, method="dpo", model=samplers[0].model, out=out, config=config, job=job
    )
    pairs = sum(1 for r in result.records if r.get("chosen") is not None)
    return result_frame(
        result,
        pairs=pairs,
        no_pair={key[len("no_pair_") :]: n for key, n in counts.items() if key.startswith("no_")},
        unparsable=counts["unparsable"],
        reasked=counts["reasked"],
    )


# --- the `forge dpo` command --------------------------------------------------------------------
def _run_command(args: argparse.Namespace, ctx: Any) -> Any:
    return dpo(
        read_input(args, ctx),
        k=args.k,
        **prompt_args(args),
        model=args.model,
        models=args.models,
        temperatures=args.temperatures,
        response_params={"temperature": args.temperature, "max_tokens": args.max_tokens},
        judge_model=args.judge_model,
        judge_params={"max_tokens": args.judge_max_tokens},
        rubric=Path(args.rubric_file) if args.rubric_file else (args.rubric or DEFAULT_RUBRIC),
        scale=args.scale,
        rejected=args.rejected,
        min_margin=args.min_margin,
        unparsable=args.unparsable,
        keep_unpaired=args.keep_unpaired,
        seed=args.seed,
        out=args.out,
        config=_run_config(args, ctx),
    )


def add_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "dpo",
        help="preference pairs: k responses per prompt, judged, best vs worst",
        description="DPO pairs: k responses per prompt (several models/temperatures/seeds), a "
        "judge rates each ('Rating: N' / 'Rationale: ...'); chosen = highest, rejected = lowest "
        "or a random lower one. Ties, small margins and unparsable ratings are handled "
        "explicitly and counted.",
    )
    add_input_option(p)
    add_model_option(p)
    p.add_argument("-k", type=int, default=4, help="responses per prompt (default 4)")
    add_voter_options(p, noun="responder")
    add_prompt_options(p, default_user="{{ input }}")
    p.add_argument(
        "--temperature", type=float, default=0.8, help="response temperature (default 0.8)"
    )
    p.add_argument("--max-tokens", type=int, default=512, help="response max tokens (default 512)")
    p.add_argument("--judge-model", default=None, help="judge model (default --model)")
    p.add_argument("--judge-max-tokens", type=int, default=256, help="judge max tokens")
    rubric = p.add_mutually_exclusive_group()
    rubric.add_argument("--rubric", default=None, help="what the judge rates (text)")
    rubric.add_argument("--rubric-file", default=None, help="read the rubric from a file")
    p.add_argument("--scale", type=int, default=5, help="ratings run from 1 to this (default 5)")
    p.add_argument(
        "--rejected",
        choices=["lowest", "random"],
        default="lowest",
        help="rejected = the lowest-rated response, or a random lower-rated one",
    )
    p.add_argument(
        "--min-margin",
        type=float,
        default=1.0,
        help="minimum rating gap between chosen and rejected (default 1)",
    )
    p.add_argument(
        "--unparsable",
        choices=["drop", "reask"],
        default="drop",
        help="unreadable ratings: drop the response, or re-ask the judge once",
    )
    p.add_argument(
        "--keep-unpaired",
        action="store_true",
        help="keep prompts without a pair (no chosen/rejected) instead of dropping them",
    )
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    add_run_options(p)
    p.set_defaults(handler=_run_command)
