"""vote: several models (or one model at several temperatures or seeds) answer or label the
same item; answers are normalized and the majority wins, with an explicit tie policy.

Every vote (voter, model, temperature, seed, raw answer, normalized label, valid or not),
the counts, the winner and the agreement ratio stay in the record's metadata.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgekit.data.records import fingerprint, make_record
from forgekit.engine import RunContext
from forgekit.errors import ConfigError
from forgekit.methods.parsing import (
    MATCH_MODES,
    LabelSet,
    check_tie_policy,
    majority,
    parse_aliases,
)
from forgekit.methods.prompting import Prompt, render_prompts
from forgekit.methods.samplers import Sampler, build_samplers
from forgekit.methods.spec import Method, model_option, option, sampling, template
from forgekit.models import Model, SamplingParams

USER_HELP = (
    "user message template; {{ field }} is filled from each input record (or its "
    "user_prompt_kwargs); default '{{ input }}'"
)
SYSTEM_HELP = "system message template (filled from the record or its system_prompt_kwargs)"
Labels = tuple[str, ...] | Mapping[str, tuple[str, ...]] | None


@dataclass(frozen=True, kw_only=True)
class LabelOptions:
    """How answers become labels (vote and cascade)."""

    labels: Labels = option(
        None,
        help="the allowed labels (in Python also a dict label -> aliases); answers outside "
        "them count as invalid (default: free-form answers compared after normalization)",
    )
    aliases: tuple[str, ...] | Mapping[str, str] | None = option(
        None,
        flag="--alias",
        metavar="ALIAS=LABEL",
        help="other spellings of labels, e.g. --alias pos=positive (in Python also a dict)",
    )
    match: str = option(
        "word",
        choices=MATCH_MODES,
        help="exact: the whole answer must be a label; word: also accept an answer that "
        "contains exactly one label as a whole word; start: the answer opens with a label",
    )

    def label_set(self) -> LabelSet:
        aliases = self.aliases
        if aliases is not None and not isinstance(aliases, Mapping):
            aliases = parse_aliases(aliases)  # the command line's ALIAS=LABEL pairs
        return LabelSet(self.labels, aliases, self.match)


@dataclass(frozen=True, kw_only=True)
class VoteOptions(LabelOptions):
    user: str | Path = template("{{ input }}", help=USER_HELP)
    system: str | Path | None = template(None, help=SYSTEM_HELP)
    models: tuple[str | Model, ...] | None = model_option(
        help="model profiles, one voter each (instead of --model)"
    )
    temperatures: tuple[float, ...] | None = option(
        None, help="temperatures; each model x temperature is a voter"
    )
    seeds: tuple[int, ...] | None = option(None, help="seeds; each adds a voter per model")
    n_votes: int | None = option(
        None, flag="--votes", help="number of voters (cycles models/temperatures)"
    )
    tie: str = option(
        "none", help="tie policy: none (no winner; default), first, random, or prefer:<voter>"
    )
    params: SamplingParams = sampling(temperature=0.0, max_tokens=64, help="each vote")
    seed: int = option(0, help="base seed; with the item it seeds tie=random")


async def ask(
    ctx: RunContext, voter: Sampler, messages: list[dict[str, str]], labels: LabelSet
) -> dict[str, Any]:
    """One vote: the voter's answer and its normalized label (None when invalid)."""
    text, source = await voter.ask(ctx, messages)
    return {"voter": voter.name, **source, "raw": text, "label": labels.parse(text)}


class Vote(Method):
    """Multi-model voting: every voter answers the same prompt; answers are normalized (case,
    whitespace, punctuation, --labels/--alias) and the majority wins under an explicit --tie
    policy. Every vote and the agreement ratio are kept.

    Voters: `models` (one each), or one model at several `temperatures` and/or `seeds`, or
    `n_votes` samples of one model (distinct seeds); `n_votes` cycles through the
    combinations. Ties: "none" (no winner, output empty), "first" (the tied label given
    first), "random" (seeded by `seed` and the item), "prefer:<voter>" (that voter's label if
    it is among the tied). The record's `output` is the winning label (free-form answers: the
    first raw answer with the winning form)."""

    name = "vote"
    help = "several models (or temperatures/seeds) label each record; the majority wins"
    Options = VoteOptions

    def prepare(self, records: list[dict[str, Any]]) -> list[Prompt]:
        o = self.options
        self.voters = build_samplers(
            o.models or (self.model,),
            temperatures=o.temperatures,
            seeds=o.seeds,
            n=o.n_votes,
            base=o.params,
            seed=o.seed,
        )
        if len(self.voters) < 2:
            raise ConfigError(
                "vote needs at least 2 voters: pass models=[...], temperatures=[...], "
                "seeds=[...] or n_votes"
            )
        check_tie_policy(o.tie, [v.name for v in self.voters])
        self.labels = o.label_set()
        self.template_hash = fingerprint([o.user, o.system], 12)
        return render_prompts(o.user, o.system, records)

    async def produce(self, ctx: RunContext, prompt: Prompt) -> dict[str, Any]:
        o = self.options
        votes = await asyncio.gather(
            *(ask(ctx, v, prompt.messages, self.labels) for v in self.voters)
        )
        winner, tally = majority(votes, o.tie, rng_seed=[o.seed, ctx.task.id])
        output = winner or ""
        if winner is not None and not self.labels.closed:
            output = next(v["raw"] for v in votes if v["label"] == winner)
        return make_record(
            id=ctx.task.id,
            input=prompt.user,
            output=output,
            system=prompt.system,
            metadata={"votes": list(votes), "winner": winner, "tie_policy": o.tie, **tally},
            lineage=self.lineage(
                ctx,
                model=sorted({v["model"] for v in votes}),
                params={v.name: v.params.to_dict() for v in self.voters},
                parent_id=prompt.item.get("id"),
                voters=[v.name for v in self.voters],
            ),
            carry=prompt.item,
        )

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Ties, items without a winner, invalid votes, mean agreement."""
        metas = [r.get("metadata") or {} for r in records]
        agreements = [m["agreement"] for m in metas if "agreement" in m]
        return {
            "voters": [v.name for v in self.voters],
            "ties": sum(1 for m in metas if m.get("tie")),
            "no_winner": sum(1 for m in metas if m.get("winner") is None),
            "invalid_votes": sum(m.get("invalid", 0) for m in metas),
            "mean_agreement": round(sum(agreements) / len(agreements), 4) if agreements else None,
        }
