"""`forge export` (and `%forge export`): records -> a trainer's format, with a dataset card."""

from __future__ import annotations

import argparse
from typing import Any

from forgekit.cli.options import INPUT_HELP, add_input_reading_options, input_reading


def register(subparsers: Any) -> None:
    from forgekit.export.formats import FORMATS

    parser = subparsers.add_parser(
        "export",
        help="write records for a trainer (TRL, LLaMA-Factory, OpenAI, VeRL, Parquet) + card",
        description="Write records in a trainer's format into a folder, with a README.md "
        "dataset card (Hub YAML + how the data was made), a LLaMA-Factory dataset_info.json "
        "entry for alpaca/sharegpt, and rejects.jsonl for records the format cannot hold. "
        "Formats: " + "; ".join(f"{f.name}: {f.description}" for f in FORMATS.values()),
    )
    parser.add_argument("-i", "--input", required=True, help=INPUT_HELP)
    add_input_reading_options(parser)
    parser.add_argument(
        "-f", "--format", required=True, choices=list(FORMATS), help="the format to write"
    )
    parser.add_argument("--out", required=True, help="the folder to write")
    parser.add_argument("--name", default=None, help="data set name (default: the folder's)")
    parser.add_argument(
        "--out-split", default="train", help="the split name of the written data (default train)"
    )
    parser.add_argument(
        "--thinking",
        choices=["inline", "drop"],
        default=None,
        help="thinking traces: inline as <think>...</think> before the answer, or drop "
        "(counted); default per format (drop for openai and verl)",
    )
    parser.add_argument(
        "--stage",
        action="append",
        default=None,
        metavar="RUN",
        help="a pipeline step for the card, in order: a run's .jsonl or .manifest.json (forge "
        "dedup --out writes one), or a notebook variable (a result DataFrame); repeatable",
    )
    parser.add_argument("--no-card", action="store_true", help="do not write README.md")
    parser.add_argument(
        "--diversity",
        action="store_true",
        help="measure the Vendi score of the exported inputs for the card",
    )
    parser.add_argument("--license", default=None, help="the card's license (default: unknown)")
    parser.add_argument(
        "--language", action="append", default=None, help="card language code(s); repeatable"
    )
    parser.add_argument(
        "--ground-truth", default="target", help="verl: the field with the reference answer"
    )
    parser.add_argument("--ability", default="general", help="verl: the ability column")
    parser.add_argument("--data-source", default=None, help="verl: data_source (default: name)")
    parser.add_argument("--push-to-hub", default=None, metavar="ORG/NAME", help="upload after")
    parser.add_argument("--public", action="store_true", help="with --push-to-hub: public repo")
    parser.add_argument("--overwrite", action="store_true", help="replace files in --out")
    parser.set_defaults(handler=_export)


def _export(args: argparse.Namespace, ctx: Any) -> dict[str, Any]:
    from forgekit.export import export

    reading = input_reading(args)
    stages = [_stage(value, ctx) for value in args.stage] if args.stage else None
    result = export(
        ctx.resolve_input(args.input),
        format=args.format,
        out=args.out,
        name=args.name,
        split=args.out_split,
        thinking=args.thinking,
        overwrite=args.overwrite,
        card=not args.no_card,
        stages=stages,
        diversity=True if args.diversity else None,
        license=args.license,
        language=args.language,
        ground_truth=args.ground_truth,
        ability=args.ability,
        data_source=args.data_source,
        column_map=reading.get("column_map"),
        input_split=reading.get("split"),
        push_to_hub=args.push_to_hub,
        private=not args.public,
    )
    summary = result.summary()
    if result.notes:
        summary["pushed"] = result.notes
    return summary


def _stage(value: str, ctx: Any) -> Any:
    namespace = getattr(ctx, "namespace", None)
    if namespace is not None and value.isidentifier() and value in namespace:
        return namespace[value]
    return value
