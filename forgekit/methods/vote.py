"""vote: several models (or one model at several temperatures or seeds) answer or label the
same item; answers are normalized and the majority wins, with an explicit tie policy.

Every vote (voter, model, temperature, seed, raw answer, normalized label, valid or not),
the counts, the winner and the agreement ratio stay in the record's metadata.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from forgekit.cli.legacy import add_input_option, add_model_option, add_run_options, read_input
from forgekit.cli.legacy import run_config_from_args as _run_config
from forgekit.data.records import fingerprint, make_lineage, make_record, record_id
from forgekit.engine import RunContext, Task
from forgekit.errors import ConfigError
from forgekit.methods._common import result_frame, run_method, split_run_options
from forgekit.methods._prompting import (
    LabelSet,
    Sampler,
    add_label_options,
    add_prompt_options,
    add_sampling_options,
    as_params,
    build_samplers,
    chat_messages,
    input_records,
    make_template,
    model_key,
    parse_aliases,
    prompt_args,
    render_messages,
)
from forgekit.methods.parsing import TIE_POLICIES, check_tie_policy, majority  # noqa: F401
from forgekit.models import Model, SamplingParams


async def ask(
    ctx: RunContext, sampler: Sampler, messages: list[dict[str, str]], labels: LabelSet
) -> dict[str, Any]:
    """One answer from one sampler, with its normalized label (None when invalid)."""
    answer = await ctx.chat(messages, model=sampler.model, params=sampler.params)
    return {
        "voter": sampler.name,
        "model": sampler.describe()["model"] or ctx.model.name,
        "temperature": sampler.params.temperature,
        "seed": sampler.params.seed,
        "raw": answer.text.strip(),
        "label": labels.parse(answer.text),
    }


def vote(
    data: Any,
    *,
    user: str | Path = "{{ input }}",
    system: str | Path | None = None,
    models: Sequence[str | Model] | None = None,
    model: str | Model | None = None,
    temperatures: Sequence[float] | None = None,
    seeds: Sequence[int] | None = None,
    n_votes: int | None = None,
    labels: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    aliases: Mapping[str, str] | None = None,
    match: str = "word",
    tie: str = "none",
    params: SamplingParams | dict[str, Any] | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    **run_options: Any,
):
    """Ask several voters the same prompt per item and keep the normalized majority answer.

    - voters: `models=[...]` (one voter each), or one `model` at several `temperatures`
      and/or `seeds`, or `n_votes` samples of one model (distinct seeds). Combinations of
      models x temperatures x seeds are all used; `n_votes` cycles through them.
    - `labels`: allowed labels (list, or dict label -> aliases); `aliases`: alias -> label.
      Answers are normalized (case, whitespace, punctuation) before counting; answers
      outside the label set are invalid and not counted. `match`: "word" (default) also
      accepts an answer holding exactly one label as a whole word; "exact" does not.
    - `tie`: "none" (no winner, output empty), "first" (the tied label given first, in voter
      order), "random" (seeded by `seed` and the item), or "prefer:<voter>" (that voter's
      label if it is among the tied, else no winner).
    - The record's `output` is the winning label (for free-form answers: the first raw
      answer with the winning normalized form); `metadata` keeps votes, counts, winner,
      agreement and the tie policy.
    """
    config, rest = split_run_options(run_options)
    if rest:
        raise TypeError(f"vote() got unexpected option(s): {', '.join(sorted(rest))}")
    items = input_records(data)
    user_t = make_template(user, what="user template")
    system_t = make_template(system, what="system template", kind="system")
    base = as_params(params, temperature=0.0, max_tokens=64)
    samplers = build_samplers(
        model=model,
        models=models,
        temperatures=temperatures,
        seeds=seeds,
        n=n_votes,
        base=base,
        seed=seed,
    )
    if len(samplers) < 2:
        raise ConfigError(
            "vote needs at least 2 voters: pass models=[...], temperatures=[...], seeds=[...] "
            "or n_votes"
        )
    check_tie_policy(tie, [s.name for s in samplers])
    label_set = LabelSet(labels, aliases, match)
    prompts = [render_messages(user_t, system_t, item, i) for i, item in enumerate(items)]
    job = {
        "method": "vote",
        "voters": [{**s.describe(), "model": model_key(s.model)} for s in samplers],
        "user": user_t.source,
        "system": system_t.source if system_t else None,
        "params": base.to_dict(),
        "labels": label_set.describe(),
        "tie": tie,
        "seed": seed,
    }
    template_hash = fingerprint([user_t.source, system_t.source if system_t else None], 12)

    async def produce(ctx: RunContext, position: int) -> dict[str, Any]:
        item = items[position]
        system_text, text = prompts[position]
        messages = chat_messages(system_text, text)
        votes = await asyncio.gather(*(ask(ctx, s, messages, label_set) for s in samplers))
        winner, tally = majority(votes, tie, rng_seed=[seed, ctx.task.id])
        output = winner or ""
        if winner is not None and not label_set.closed:
            output = next(v["raw"] for v in votes if v["label"] == winner)
        return make_record(
            id=ctx.task.id,
            input=text,
            output=output,
            system=system_text,
            metadata={
                "votes": list(votes),
                "winner": winner,
                "tie_policy": tie,
                **tally,
            },
            lineage=make_lineage(
                "vote",
                sorted({v["model"] for v in votes}),
                template_hash=template_hash,
                params={s.name: s.params.to_dict() for s in samplers},
                seed=seed,
                parent_id=item.get("id"),
                voters=[s.name for s in samplers],
            ),
            carry=item,
        )

    tasks = [
        Task(
            id=record_id("vote", {"job": fingerprint(job, 16), "item": fingerprint(item, 16)}, i),
            fn=lambda ctx, i=i: produce(ctx, i),
            info={"position": i},
        )
        for i, item in enumerate(items)
    ]
    result = run_method(
        tasks=tasks,
        method="vote",
        model=samplers[0].model,
        out=out,
        config=config,
        job=job,
    )
    return result_frame(result, voters=[s.name for s in samplers], **summarize(result.records))


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Run-level numbers for df.attrs: ties, items without a winner, invalid votes,
    mean agreement."""
    metas = [r.get("metadata") or {} for r in records]
    agreements = [m["agreement"] for m in metas if "agreement" in m]
    return {
        "ties": sum(1 for m in metas if m.get("tie")),
        "no_winner": sum(1 for m in metas if m.get("winner") is None),
        "invalid_votes": sum(m.get("invalid", 0) for m in metas),
        "mean_agreement": round(sum(agreements) / len(agreements), 4) if agreements else None,
    }


# --- the `forge vote` command ---------------------------------------------------------------
def add_voter_options(parser: argparse.ArgumentParser, noun: str = "voter") -> None:
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        help=f"model profiles, one {noun} each (instead of --model)",
    )
    parser.add_argument(
        "--temperatures",
        nargs="+",
        type=float,
        default=None,
        help=f"temperatures; each model x temperature is a {noun}",
    )
    parser.add_argument(
        "--seeds", nargs="+", type=int, default=None, help=f"seeds; each adds a {noun} per model"
    )


def _run_command(args: argparse.Namespace, ctx: Any) -> Any:
    return vote(
        read_input(args, ctx),
        **prompt_args(args),
        models=args.models,
        model=args.model,
        temperatures=args.temperatures,
        seeds=args.seeds,
        n_votes=args.votes,
        labels=args.labels,
        aliases=parse_aliases(args.alias),
        match=args.match,
        tie=args.tie,
        params={"temperature": args.temperature, "max_tokens": args.max_tokens},
        seed=args.seed,
        out=args.out,
        config=_run_config(args, ctx),
    )


def add_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "vote",
        help="several models (or temperatures/seeds) label each record; the majority wins",
        description="Multi-model voting: every voter answers the same prompt; answers are "
        "normalized (case, whitespace, punctuation, --labels/--alias) and the majority wins "
        "under an explicit --tie policy. Every vote and the agreement ratio are kept.",
    )
    add_input_option(p)
    add_model_option(p)
    add_voter_options(p)
    p.add_argument(
        "--votes", type=int, default=None, help="number of voters (cycles models/temperatures)"
    )
    add_prompt_options(p, default_user="{{ input }}")
    add_label_options(p)
    p.add_argument(
        "--tie",
        default="none",
        help="tie policy: none (no winner; default), first, random, or prefer:<voter>",
    )
    add_sampling_options(p, temperature=0.0, max_tokens=64)
    add_run_options(p)
    p.set_defaults(handler=_run_command)
