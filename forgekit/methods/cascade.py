"""cascade: a two-stage pipeline. Stage 1 labels (or answers) every item; items whose stage-1
label is in `route` go through a second prompt and/or model (e.g. a stronger model
re-labels the hard categories). Both stages stay in the record."""

from __future__ import annotations

import argparse
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
    chat_messages,
    check_model_name,
    input_records,
    make_template,
    model_key,
    parse_aliases,
    prompt_args,
    render_messages,
)
from forgekit.methods.vote import ask
from forgekit.models import Model, SamplingParams

# Placeholders for the stage-1 variables when stage-2 templates are checked up front.
_STAGE1_PLACEHOLDER = {"stage1": "", "stage1_label": ""}


def cascade(
    data: Any,
    *,
    user: str | Path = "{{ input }}",
    system: str | Path | None = None,
    model: str | Model | None = None,
    params: SamplingParams | dict[str, Any] | None = None,
    route: Sequence[str],
    stage2_user: str | Path | None = None,
    stage2_system: str | Path | None = None,
    stage2_model: str | Model | None = None,
    stage2_params: SamplingParams | dict[str, Any] | None = None,
    labels: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    aliases: Mapping[str, str] | None = None,
    stage2_labels: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    match: str = "word",
    seed: int = 0,
    out: str | Path | None = None,
    **run_options: Any,
):
    """Label every item with stage 1; send items whose label is in `route` to stage 2.

    - stage 1: `user`/`system` templates, `model`, `params` (default T=0, 64 tokens).
    - `labels`/`aliases`/`match`: how stage-1 answers become labels (see `vote`);
      `route`: the labels that go to stage 2 (normalized the same way).
    - stage 2: `stage2_user`/`stage2_system` templates (default: stage 1's), which may also
      use `{{ stage1 }}` (the raw stage-1 answer) and `{{ stage1_label }}`;
      `stage2_model` (default: stage 1's), `stage2_params` (default: stage 1's),
      `stage2_labels` (default: `labels`).
    - The record's `output` is the final answer (stage 2's for routed items), and
      `metadata` holds `stage1`, `stage2` (None when not routed), `routed` and `final_stage`.
    """
    config, rest = split_run_options(run_options)
    if rest:
        raise TypeError(f"cascade() got unexpected option(s): {', '.join(sorted(rest))}")
    if isinstance(route, str):
        route = [route]
    if not route:
        raise ConfigError("cascade needs route=[labels that go to stage 2]")
    if all(v is None for v in (stage2_user, stage2_system, stage2_model, stage2_params)):
        raise ConfigError(
            "stage 2 would repeat stage 1 exactly: give stage2_model and/or a stage2_user prompt"
        )
    items = input_records(data)
    label_set = LabelSet(labels, aliases, match)
    label_set2 = LabelSet(stage2_labels, None, match) if stage2_labels else label_set
    routed_labels = []
    for name in route:
        label = label_set.parse(name)
        if label is None:
            raise ConfigError(f"route: {name!r} is not one of the labels ({label_set.labels})")
        routed_labels.append(label)
    user1 = make_template(user, what="user template")
    system1 = make_template(system, what="system template", kind="system")
    user2 = make_template(stage2_user, what="stage2_user template") or user1
    system2 = (
        make_template(stage2_system, what="stage2_system template", kind="system")
        if stage2_system is not None
        else system1
    )
    for m in (model, stage2_model):
        check_model_name(m)
    p1 = as_params(params, temperature=0.0, max_tokens=64)
    p2 = as_params(stage2_params, **p1.to_dict())
    s1 = Sampler("stage1", model, SamplingParams.coerce(p1, seed=seed))
    s2 = Sampler("stage2", stage2_model or model, SamplingParams.coerce(p2, seed=seed))
    prompts = []
    for i, item in enumerate(items):
        prompts.append(render_messages(user1, system1, item, i))
        render_messages(user2, system2, item, i, extra=_STAGE1_PLACEHOLDER)  # check only
    job = {
        "method": "cascade",
        "stage1": {"model": model_key(model), "params": p1.to_dict(), "user": user1.source},
        "system": system1.source if system1 else None,
        "stage2": {
            "model": model_key(stage2_model or model),
            "params": p2.to_dict(),
            "user": user2.source,
            "system": system2.source if system2 else None,
        },
        "route": routed_labels,
        "labels": label_set.describe(),
        "stage2_labels": label_set2.describe(),
        "seed": seed,
    }
    template_hash = fingerprint(
        [t.source if t else None for t in (user1, system1, user2, system2)], 12
    )

    async def produce(ctx: RunContext, position: int) -> dict[str, Any]:
        item = items[position]
        system_text, text = prompts[position]
        first = await ask(ctx, s1, chat_messages(system_text, text), label_set)
        second = None
        if first["label"] in routed_labels:
            extra = {"stage1": first["raw"], "stage1_label": first["label"]}
            system_text2, text2 = render_messages(user2, system2, item, position, extra=extra)
            second = await ask(ctx, s2, chat_messages(system_text2, text2), label_set2)
            second["prompt"] = text2
        final = second or first
        output = final["label"] if label_set2.closed and final["label"] else final["raw"]
        stages = [first] + ([second] if second else [])
        return make_record(
            id=ctx.task.id,
            input=text,
            output=output,
            system=system_text,
            metadata={
                "stage1": first,
                "stage2": second,
                "routed": second is not None,
                "final_stage": 2 if second else 1,
                "label": final["label"],
            },
            lineage=make_lineage(
                "cascade",
                [s["model"] for s in stages],
                template_hash=template_hash,
                params={"stage1": s1.params.to_dict(), "stage2": s2.params.to_dict()},
                seed=seed,
                parent_id=item.get("id"),
                route=routed_labels,
            ),
            carry=item,
        )

    tasks = [
        Task(
            id=record_id(
                "cascade", {"job": fingerprint(job, 16), "item": fingerprint(item, 16)}, i
            ),
            fn=lambda ctx, i=i: produce(ctx, i),
            info={"position": i},
        )
        for i, item in enumerate(items)
    ]
    result = run_method(tasks=tasks, method="cascade", model=model, out=out, config=config, job=job)
    metas = [r.get("metadata") or {} for r in result.records]
    return result_frame(
        result,
        routed=sum(1 for m in metas if m.get("routed")),
        stage1_invalid=sum(1 for m in metas if (m.get("stage1") or {}).get("label") is None),
    )


# --- the `forge cascade` command --------------------------------------------------------------
def _run_command(args: argparse.Namespace, ctx: Any) -> Any:
    stage2 = prompt_args(args, prefix="stage2_")
    return cascade(
        read_input(args, ctx),
        **prompt_args(args),
        model=args.model,
        params={"temperature": args.temperature, "max_tokens": args.max_tokens},
        route=args.route,
        stage2_user=stage2["user"],
        stage2_system=stage2["system"],
        stage2_model=args.stage2_model,
        stage2_params=(
            {"temperature": args.stage2_temperature}
            if args.stage2_temperature is not None
            else None
        ),
        labels=args.labels,
        aliases=parse_aliases(args.alias),
        match=args.match,
        seed=args.seed,
        out=args.out,
        config=_run_config(args, ctx),
    )


def add_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "cascade",
        help="label with one model, re-label chosen labels with a second prompt/model",
        description="Two-stage pipeline: stage 1 labels every record; records whose label is "
        "in --route go to a stage-2 prompt and/or model (templates may use {{ stage1 }} and "
        "{{ stage1_label }}). Both stages are kept in the record.",
    )
    add_input_option(p)
    add_model_option(p)
    add_prompt_options(p, default_user="{{ input }}", what="stage 1")
    add_label_options(p)
    p.add_argument("--route", nargs="+", required=True, help="stage-1 labels that go to stage 2")
    p.add_argument("--stage2-model", default=None, help="stage-2 model (default: --model)")
    add_prompt_options(p, prefix="stage2-", required=False, what="stage 2")
    p.add_argument("--stage2-temperature", type=float, default=None, help="stage-2 temperature")
    add_sampling_options(p, temperature=0.0, max_tokens=64)
    add_run_options(p)
    p.set_defaults(handler=_run_command)
