"""`forge decontaminate` (and `%forge decontaminate`): flag or remove records that share an
n-gram with evaluation sets (forgekit.evaluate.decontaminate)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from forgekit.errors import ConfigError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "decontaminate",
        help="flag (or --remove) records sharing an n-gram with evaluation sets",
        description="Find records that share an n-gram (13 words by default; characters for "
        "Chinese, Japanese, Korean) with a benchmark's prompt or answer, after normalizing "
        "case, punctuation, whitespace and Unicode (NFKC).",
    )
    parser.add_argument(
        "-i",
        "--input",
        required=True,
        help="records: a .jsonl/.json/.csv/.parquet file, or a notebook DataFrame variable",
    )
    parser.add_argument(
        "--against",
        action="append",
        required=True,
        metavar="BENCHMARK",
        help="an evaluation set: a .jsonl/.json/.csv/.parquet file or a notebook variable; "
        "repeatable; NAME=PATH names it",
    )
    parser.add_argument(
        "--fields",
        default=None,
        help="benchmark fields to match, joined with '+' (default: the prompt and answer "
        "fields each has: question, prompt, input, ... answer, output, solution, ...)",
    )
    parser.add_argument(
        "--text",
        default=None,
        help="record fields to search, joined with '+' (default: input, history, output, "
        "target, thinking, chosen, rejected — those present)",
    )
    parser.add_argument("-n", "--ngram", type=int, default=13, help="n-gram length (default 13)")
    parser.add_argument("--remove", action="store_true", help="drop the flagged records")
    parser.add_argument("--id-field", default="id")
    parser.add_argument("--out", default=None, help="write the kept records here")
    parser.add_argument(
        "--report-out", default=None, help="write the flagged records with what they matched"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.set_defaults(handler=_decontaminate)


def _decontaminate(args: argparse.Namespace, ctx: Any) -> Any:
    from forgekit.data.io import write_records
    from forgekit.engine.store import sidecar, write_json_atomic
    from forgekit.evaluate.contamination import Benchmark, decontaminate

    benchmarks = []
    for value in args.against:
        name, sep, source = value.partition("=")
        if not sep or not name.isidentifier():
            name, source = None, value
        try:
            data = ctx.resolve_input(source)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("--input", "--against", 1)) from None
        if name is None and not isinstance(data, (str, Path)):
            name = source  # a notebook variable: its name
        benchmarks.append(Benchmark(data, name=name))
    result = decontaminate(
        ctx.resolve_input(args.input),
        benchmarks,
        n=args.ngram,
        text=args.text,
        fields=args.fields,
        remove=args.remove,
        id_field=args.id_field,
    )
    summary = result.summary()
    if args.report_out:
        write_records(result.flagged, args.report_out, overwrite=args.overwrite)
        summary["report_out"] = args.report_out
    if args.out is None:
        return result.kept if args.remove else result.flagged
    write_records(result.kept, args.out, overwrite=args.overwrite)
    # The counts beside the data, for a dataset card: "decontaminated: N removed".
    write_json_atomic(sidecar(Path(args.out), "manifest"), {"decontaminate": summary})
    summary["out"] = args.out
    return summary
