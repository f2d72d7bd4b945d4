"""cascade: a two-stage pipeline. Stage 1 labels (or answers) every item; items whose stage-1
label is in `route` go through a second prompt and/or model (e.g. a stronger model
re-labels the hard categories). Both stages stay in the record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgekit.data.records import fingerprint, make_record
from forgekit.engine import RunContext
from forgekit.errors import ConfigError
from forgekit.methods.parsing import LabelSet
from forgekit.methods.prompting import (
    Prompt,
    chat_messages,
    make_template,
    render_messages,
    render_prompts,
)
from forgekit.methods.samplers import Sampler
from forgekit.methods.spec import Method, model_option, option, sampling, template
from forgekit.methods.vote import SYSTEM_HELP, USER_HELP, LabelOptions, Labels, ask
from forgekit.models import Model, SamplingParams

# Placeholders for the stage-1 variables when stage-2 templates are checked up front.
_STAGE1_PLACEHOLDER = {"stage1": "", "stage1_label": ""}


@dataclass(frozen=True, kw_only=True)
class CascadeOptions(LabelOptions):
    user: str | Path = template("{{ input }}", help="stage 1: " + USER_HELP)
    system: str | Path | None = template(None, help="stage 1: " + SYSTEM_HELP)
    params: SamplingParams = sampling(
        temperature=0.0, max_tokens=64, help="stage 1 (and stage 2, unless set for it)"
    )
    route: tuple[str, ...] = option(help="stage-1 labels that go to stage 2")
    stage2_user: str | Path | None = template(
        None,
        help="stage-2 user template (default: stage 1's); it may also use {{ stage1 }} (the "
        "raw stage-1 answer) and {{ stage1_label }}",
    )
    stage2_system: str | Path | None = template(
        None, help="stage-2 system template (default: stage 1's)"
    )
    stage2_model: str | Model | None = model_option(help="stage-2 model (default: --model)")
    stage2_params: SamplingParams = sampling(
        max_tokens=None,  # unset: stage 1's
        flags={"temperature": "--stage2-temperature"},
        help="stage 2 (default: stage 1's)",
    )
    stage2_labels: Labels = option(None, help="how stage-2 answers become labels (default: labels)")
    seed: int = option(0, help="seed of both stages")


class Cascade(Method):
    """Two-stage pipeline: stage 1 labels every record; records whose label is in --route go
    to a stage-2 prompt and/or model (templates may use {{ stage1 }} and {{ stage1_label }}).
    Both stages are kept in the record: `output` is the final answer (stage 2's for routed
    items); `metadata` holds `stage1`, `stage2` (None when not routed), `routed`,
    `final_stage` and `label`."""

    name = "cascade"
    help = "label with one model, re-label chosen labels with a second prompt/model"
    Options = CascadeOptions

    def prepare(self, records: list[dict[str, Any]]) -> list[Prompt]:
        o = self.options
        route = (o.route,) if isinstance(o.route, str) else o.route
        if not route:
            raise ConfigError("cascade needs route=[labels that go to stage 2]")
        stage2 = {k: v for k, v in o.stage2_params.to_dict().items() if v is not None}
        stage2.pop("n")  # one answer per stage, whatever params say
        if all(v is None for v in (o.stage2_user, o.stage2_system, o.stage2_model)) and not stage2:
            raise ConfigError(
                "stage 2 would repeat stage 1 exactly: give stage2_model and/or a stage2_user "
                "prompt"
            )
        self.labels = o.label_set()
        self.labels2 = LabelSet(o.stage2_labels, None, o.match) if o.stage2_labels else self.labels
        self.route = [self.labels.parse(name) for name in route]
        if None in self.route:
            wrong = route[self.route.index(None)]
            raise ConfigError(f"route: {wrong!r} is not one of the labels ({self.labels.labels})")
        self.user2 = make_template(o.stage2_user or o.user, what="stage2_user template")
        self.system2 = make_template(
            o.system if o.stage2_system is None else o.stage2_system,
            what="stage2_system template",
            kind="system",
        )
        first = SamplingParams.coerce(o.params, seed=o.seed)
        self.stages = (
            Sampler("stage1", self.model, first),
            Sampler(
                "stage2",
                o.stage2_model or self.model,
                SamplingParams.coerce(first, **{**stage2, "seed": o.seed}),
            ),
        )
        self.template_hash = fingerprint([o.user, o.system, o.stage2_user, o.stage2_system], 12)
        prompts = render_prompts(o.user, o.system, records)
        for p in prompts:  # stage 2's templates fail now, not after stage 1 was paid for
            render_messages(self.user2, self.system2, p.item, p.position, _STAGE1_PLACEHOLDER)
        return prompts

    async def produce(self, ctx: RunContext, prompt: Prompt) -> dict[str, Any]:
        first = await ask(ctx, self.stages[0], prompt.messages, self.labels)
        second = None
        if first["label"] in self.route:
            extra = {"stage1": first["raw"], "stage1_label": first["label"]}
            system, user = render_messages(
                self.user2, self.system2, prompt.item, prompt.position, extra
            )
            second = await ask(ctx, self.stages[1], chat_messages(system, user), self.labels2)
            second["prompt"] = user
        final = second or first
        output = final["label"] if self.labels2.closed and final["label"] else final["raw"]
        return make_record(
            id=ctx.task.id,
            input=prompt.user,
            output=output,
            system=prompt.system,
            metadata={
                "stage1": first,
                "stage2": second,
                "routed": second is not None,
                "final_stage": 2 if second else 1,
                "label": final["label"],
            },
            lineage=self.lineage(
                ctx,
                model=[s["model"] for s in (first, second) if s],
                params={s.name: s.params.to_dict() for s in self.stages},
                parent_id=prompt.item.get("id"),
                route=self.route,
            ),
            carry=prompt.item,
        )

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        metas = [r.get("metadata") or {} for r in records]
        return {
            "routed": sum(1 for m in metas if m.get("routed")),
            "stage1_invalid": sum(1 for m in metas if (m.get("stage1") or {}).get("label") is None),
        }
