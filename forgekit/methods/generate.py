"""generate: template synthesis. A system and a user prompt template (Jinja2, strings or
files) are filled from each item of a data pool, sent to a model, and the answer is kept
raw and, optionally, parsed into structured fields.

Every prompt is rendered before the first request, so a missing template variable stops
the call with an error naming the variable and the item, and nothing is spent.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from forgekit.commands import add_input_option, add_model_option, add_run_options, read_input
from forgekit.commands import run_config_from_args as _run_config
from forgekit.data.records import fingerprint, make_lineage, make_record, record_id
from forgekit.engine import RunContext, Task
from forgekit.errors import ConfigError
from forgekit.methods._common import result_frame, run_method, split_run_options
from forgekit.methods._prompting import (
    ResponseParser,
    add_prompt_options,
    add_sampling_options,
    as_params,
    chat_messages,
    check_model_name,
    make_template,
    model_key,
    prompt_args,
    render_messages,
)
from forgekit.models import Model, SamplingParams


def generate(
    data: Any = None,
    *,
    user: str | Path,
    system: str | Path | None = None,
    model: str | Model | None = None,
    params: SamplingParams | dict[str, Any] | None = None,
    samples: int = 1,
    parse: str | re.Pattern | Callable[[str], Any] | None = None,
    schema: dict[str, Any] | type | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    **run_options: Any,
):
    """Fill prompt templates from each data item, ask the model, keep (and parse) the answer.

    - `data`: DataFrame, list of dicts, or a JSONL/JSON/CSV/Parquet path (None: one empty
      item, for templates without variables). An item fills the templates from its own
      fields, overlaid with its `user_prompt_kwargs` / `system_prompt_kwargs` dicts.
    - `user`, `system`: Jinja2 templates, as strings or `Path`s to template files.
    - `params`: sampling (default T=0.7, 512 tokens); `samples`: answers per item, each
      with its own seed (`seed + sample`).
    - `parse`: a regex with named groups, "json" (validated against `schema`, a JSON-schema
      dict or a pydantic model class, when given), or any callable text -> value. The
      parsed value goes to the record's `parsed` field; on failure the raw text stays in
      `output`, `parsed` is None and `metadata.parse.error` says why. Counts are in
      `df.attrs['forgekit']['parse']`.
    - run options (concurrency, rpm, max_requests, max_cost, cache, ...) go to the engine;
      `out` is a JSONL file that a re-run resumes.
    """
    config, rest = split_run_options(run_options)
    if rest:
        raise TypeError(f"generate() got unexpected option(s): {', '.join(sorted(rest))}")
    if samples < 1:
        raise ConfigError(f"samples must be >= 1, got {samples}")
    if schema is not None and parse is None:
        parse = "json"
    parser = ResponseParser(parse, schema) if parse is not None else None
    user_t = make_template(user, what="user template")
    system_t = make_template(system, what="system template", kind="system")
    if user_t is None:
        raise ConfigError("generate needs a user template (user=)")
    check_model_name(model)
    from forgekit.data.io import read_records

    items = read_records(data) if data is not None else [{}]
    sampling = as_params(params, temperature=0.7, max_tokens=512)
    # Render everything first: a bad item must fail the call before any request is sent.
    prompts = [
        (item, *render_messages(user_t, system_t, item, position))
        for position, item in enumerate(items)
    ]
    job = {
        "method": "generate",
        "model": model_key(model),
        "user": user_t.source,
        "system": system_t.source if system_t else None,
        "params": sampling.to_dict(),
        "samples": samples,
        "parse": parser.describe() if parser else None,
        "seed": seed,
    }
    template_hash = fingerprint([user_t.source, system_t.source if system_t else None], 12)

    async def produce(
        ctx: RunContext, item: dict, position: int, sample: int, system_text: str | None, text: str
    ) -> dict[str, Any]:
        params_i = SamplingParams.coerce(sampling, seed=seed + sample)
        answer = await ctx.chat(chat_messages(system_text, text), params=params_i)
        raw = answer.text
        parsed, error = parser(raw) if parser else (None, None)
        metadata: dict[str, Any] = {"position": position, "finish_reason": answer.finish_reason}
        if parser:
            metadata["parse"] = {"ok": error is None, **({"error": error} if error else {})}
        record = make_record(
            id=ctx.task.id,
            input=text,
            output=raw.strip(),
            system=system_text,
            metadata=metadata,
            lineage=make_lineage(
                "generate",
                ctx.model.name,
                template_hash=template_hash,
                params=params_i.to_dict(),
                seed=params_i.seed,
                index=sample,
                parent_id=item.get("id"),
            ),
            carry=item,
        )
        if parser:
            record["parsed"] = parsed
        return record

    def tasks() -> Iterator[Task]:
        for position, (item, system_text, text) in enumerate(prompts):
            inputs = {"job": fingerprint(job, 16), "item": fingerprint(item, 16)}
            for sample in range(samples):
                yield Task(
                    id=record_id("generate", inputs, position * samples + sample),
                    fn=lambda ctx, a=(item, position, sample, system_text, text): produce(ctx, *a),
                    info={"position": position, "sample": sample},
                )

    result = run_method(
        tasks=list(tasks()), method="generate", model=model, out=out, config=config, job=job
    )
    details: dict[str, Any] = {}
    if parser:
        states = [(r.get("metadata") or {}).get("parse", {}) for r in result.records]
        details["parse"] = {
            "ok": sum(1 for s in states if s.get("ok")),
            "failed": sum(1 for s in states if s.get("ok") is False),
        }
    return result_frame(result, **details)


# --- the `forge generate` command ---------------------------------------------------------
def _load_schema(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    path = Path(value)
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else value
        schema = json.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"--schema {value}: not a JSON-schema file or JSON text ({exc})"
        ) from None
    if not isinstance(schema, dict):
        raise ConfigError(f"--schema {value}: a JSON schema must be an object")
    return schema


def _run_command(args: argparse.Namespace, ctx: Any) -> Any:
    data = read_input(args, ctx) if args.input else None
    return generate(
        data,
        **prompt_args(args),
        model=args.model,
        params={"temperature": args.temperature, "max_tokens": args.max_tokens},
        samples=args.samples,
        parse=args.parse,
        schema=_load_schema(args.schema),
        seed=args.seed,
        out=args.out,
        config=_run_config(args, ctx),
    )


def add_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate",
        help="fill prompt templates from each input record and collect (parsed) answers",
        description="Template synthesis: Jinja2 system/user templates are filled from each "
        "input record ({{ field }}, or the record's user_prompt_kwargs/system_prompt_kwargs), "
        "sent to the model, and the answers kept raw and optionally parsed. A missing "
        "variable is reported before any request is sent.",
    )
    add_input_option(p, required=False)
    add_model_option(p)
    add_prompt_options(p)
    p.add_argument(
        "--parse",
        default=None,
        help="parse each answer: 'json', or a regular expression with named groups, e.g. "
        "'Answer: (?P<answer>.*)'; failures keep the raw text and are counted",
    )
    p.add_argument(
        "--schema",
        default=None,
        help="JSON schema (file or JSON text) parsed answers must satisfy (implies --parse json)",
    )
    p.add_argument("--samples", type=int, default=1, help="answers per record (default 1)")
    add_sampling_options(p, temperature=0.7, max_tokens=512)
    add_run_options(p)
    p.set_defaults(handler=_run_command)
