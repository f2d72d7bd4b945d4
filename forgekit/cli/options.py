"""The option groups every method command shares: the model, the input, output and run
control (engine options), sampling; and turning them back into library arguments."""

from __future__ import annotations

import argparse
from typing import Any

from forgekit.engine import RunConfig
from forgekit.engine.cache import default_cache_path
from forgekit.errors import ConfigError


def add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-m",
        "--model",
        default=None,
        help="model profile name (default: $FORGEKIT_MODEL, the config's default_model, or "
        "'local', the embedded SmolLM2); see `forge models`",
    )


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Output, resume and engine options shared by every method command."""
    group = parser.add_argument_group("output and run control")
    # Long form only: `-o NAME` is the notebook-variable option every command shares
    # (forgekit.cli.add_common_options).
    group.add_argument(
        "--out",
        default=None,
        help="JSONL file the records are appended to; a re-run resumes it",
    )
    group.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh: move an existing --out aside (kept as .bak)",
    )
    group.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="requests in flight at once (default: 1 for local, 32 for HTTP); with adaptive "
        "concurrency, the most each endpoint gets",
    )
    group.add_argument(
        "--no-adaptive",
        action="store_true",
        help="keep --concurrency fixed instead of adapting it per endpoint to 429s, "
        "timeouts and rising latency",
    )
    group.add_argument("--rpm", type=float, default=None, help="requests-per-minute limit")
    group.add_argument("--tpm", type=float, default=None, help="tokens-per-minute limit")
    group.add_argument(
        "--max-requests", type=int, default=None, help="stop after this many requests"
    )
    group.add_argument(
        "--max-total-tokens",
        dest="max_total_tokens",
        type=int,
        default=None,
        help="stop after this many tokens (prompt + completion)",
    )
    group.add_argument("--max-cost", type=float, default=None, help="stop after this many USD")
    group.add_argument(
        "--retries", type=int, default=5, help="retries per request on 429/5xx/timeouts (default 5)"
    )
    group.add_argument(
        "--no-cache", action="store_true", help="do not read or write the response cache"
    )
    group.add_argument(
        "--cache-path", default=None, help=f"response cache file (default {default_cache_path()})"
    )
    group.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    group.add_argument(
        "--background",
        action="store_true",
        help="run in a separate process and return at once with its run id (see `forge runs`)",
    )

    group.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run as shards on Ray: a local cluster started on demand, or the cluster at "
        "ADDRESS (auto, ray://host:10001); put it after positional arguments",
    )
    group.add_argument(
        "--shards",
        type=int,
        default=None,
        metavar="N",
        help="split the run into N shards on Ray (default with --ray: the cluster's CPUs)",
    )
    group.add_argument(
        "--shard-retries",
        type=int,
        default=2,
        metavar="N",
        help="relaunch a shard whose Ray worker or node died up to N times, resuming from its "
        "part (default 2; an error the method raised is not retried)",
    )
    group.add_argument(
        "--dry-run",
        action="store_true",
        help="send nothing: show the requests, prompt and completion tokens and the cost "
        "range (online and batch price) each stage would need",
    )
    add_batch_options(parser)


def add_batch_options(parser: argparse.ArgumentParser) -> None:
    """--batch and its settings (forgekit.engine.batch_api)."""
    group = parser.add_argument_group("provider batch API")
    group.add_argument(
        "--batch",
        action="store_true",
        help="send the requests through the provider's batch API (/v1/files + /v1/batches): "
        "about half the price, results within 24 h; a re-run collects batches already "
        "submitted (needs --out to resume after a crash across machines)",
    )
    group.add_argument(
        "--batch-poll",
        dest="batch_poll_s",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds between polls of a running batch (default 30)",
    )
    group.add_argument(
        "--batch-failed",
        choices=("resubmit", "online"),
        default="resubmit",
        help="items that failed or expired in a batch: submit them in a new batch "
        "(default) or send them online",
    )


def add_gate_options(parser: argparse.ArgumentParser) -> None:
    """The quality gate every method command shares (forgekit.methods.gate)."""
    group = parser.add_argument_group("quality gate")
    group.add_argument(
        "--target",
        type=int,
        default=None,
        metavar="N",
        help="keep producing until N records pass every check (schema, --accept, "
        "--min-score), within the budgets and --target-factor x N attempts",
    )
    group.add_argument(
        "--target-factor",
        type=float,
        default=None,
        help="give up after this many attempts per target record (default 10)",
    )
    group.add_argument(
        "--accept",
        default=None,
        metavar="FUNCTION",
        help="keep only records for which this Python function returns true: "
        "file.py:name or package.module:name (in a notebook, a variable)",
    )
    group.add_argument(
        "--min-score",
        type=float,
        default=None,
        help="keep only records scored at least this (judge: quality 1-5; dpo: the chosen "
        "response's rating)",
    )


def gate_options_from_args(args: argparse.Namespace, ctx: Any = None) -> dict[str, Any]:
    accept = getattr(args, "accept", None)
    if isinstance(accept, str):
        accept = _load_function(accept, getattr(ctx, "namespace", None))
    given = {
        "target": getattr(args, "target", None),
        "target_factor": getattr(args, "target_factor", None),
        "accept": accept,
        "min_score": getattr(args, "min_score", None),
    }
    return {k: v for k, v in given.items() if v is not None}


def _load_function(spec: str, namespace: dict[str, Any] | None) -> Any:
    """`--accept`: a notebook variable, `file.py:name` or `package.module:name`."""
    import importlib
    import importlib.util
    from pathlib import Path

    from forgekit.errors import ConfigError

    if namespace is not None and spec in namespace:
        return namespace[spec]
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise ConfigError(f"--accept {spec}: use file.py:function or package.module:function")
    try:
        if where.endswith(".py"):
            module_spec = importlib.util.spec_from_file_location("forge_accept", where)
            if module_spec is None or not Path(where).is_file():
                raise ConfigError(f"--accept {spec}: no such file {where}")
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(where)
    except ImportError as exc:
        raise ConfigError(f"--accept {spec}: cannot import {where} ({exc})") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ConfigError(f"--accept {spec}: {where} has no function {name!r}")
    return function


def add_sampling_options(
    parser: argparse.ArgumentParser, *, temperature: float | None, max_tokens: int
) -> None:
    """--temperature, --max-tokens (per answer) and --seed, with a command's own defaults."""
    parser.add_argument(
        "--temperature",
        type=float,
        default=temperature,
        help=f"sampling temperature (default {temperature if temperature is not None else 0})",
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=max_tokens,
        help=f"max tokens per model answer (default {max_tokens})",
    )
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")


INPUT_HELP = (
    "input records: a .jsonl/.json/.csv/.parquet/.arrow file, a folder of them or a "
    "save_to_disk folder, hf:org/name[:split] (online), or (in a notebook) the name of a "
    "DataFrame, list or datasets variable"
)


def add_input_option(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("-i", "--input", required=required, help=INPUT_HELP)
    add_input_reading_options(parser)


def add_input_reading_options(parser: argparse.ArgumentParser) -> None:
    """--split and --map: which split of a DatasetDict / Hub data set, and column renames."""
    parser.add_argument(
        "--split", default=None, help="the split of a DatasetDict, save_to_disk folder or hf: input"
    )
    parser.add_argument(
        "--map",
        dest="column_map",
        action="append",
        default=None,
        metavar="COLUMN=FIELD",
        help="read input column COLUMN as record field FIELD, e.g. --map instruction=input "
        "(repeatable)",
    )


def input_reading(args: argparse.Namespace) -> dict[str, Any]:
    """`split` and `column_map` keywords from --split / --map (only those given)."""
    from forgekit.errors import ConfigError

    reading: dict[str, Any] = {}
    if getattr(args, "split", None):
        reading["split"] = args.split
    pairs = getattr(args, "column_map", None) or []
    if pairs:
        mapping = {}
        for pair in pairs:
            column, sep, name = pair.partition("=")
            if not sep or not column.strip() or not name.strip():
                raise ConfigError(f"--map {pair!r}: use COLUMN=FIELD, e.g. --map instruction=input")
            mapping[column.strip()] = name.strip()
        reading["column_map"] = mapping
    return reading


def input_source(args: argparse.Namespace, ctx: Any, value: Any = None) -> Any:
    """The data named by --input (or `value`), wrapped with --split / --map when given."""
    data = ctx.resolve_input(args.input if value is None else value)
    reading = input_reading(args)
    if not reading:
        return data
    from forgekit.data.sources import source

    return source(data, **reading)


def read_input(args: argparse.Namespace, ctx: Any) -> list[dict[str, Any]]:
    """The records named by --input: a notebook variable (magics) or a file."""
    from forgekit.data.io import read_records

    return read_records(ctx.resolve_input(args.input), **input_reading(args))


def run_config_from_args(args: argparse.Namespace, ctx: Any = None) -> RunConfig:
    """Engine options from the shared option group; a magic adds live hooks (progress
    events, a cancel flag) through `ctx.extra['run_config']`."""
    extra = dict(getattr(ctx, "extra", {}).get("run_config", {})) if ctx is not None else {}
    address = getattr(args, "ray", None)
    shards = getattr(args, "shards", None)
    if address and address.isdigit():
        raise ConfigError(
            f"--ray took {address!r} as the cluster address: put --ray after the positional "
            f"arguments, or write --ray=ADDRESS"
        )
    if shards is not None and shards < 1:
        raise ConfigError(f"--shards must be >= 1, got {shards}")
    retries = getattr(args, "shard_retries", 2)
    if retries < 0:
        raise ConfigError(f"--shard-retries must be >= 0, got {retries}")
    return RunConfig(
        engine="ray" if address is not None or shards is not None else "local",
        shards=shards,
        ray_address=address or None,
        shard_retries=retries,
        concurrency=args.concurrency,
        adaptive=not getattr(args, "no_adaptive", False),
        rpm=args.rpm,
        tpm=args.tpm,
        max_requests=args.max_requests,
        max_total_tokens=args.max_total_tokens,
        max_cost=args.max_cost,
        max_attempts=max(1, args.retries + 1),
        cache=not args.no_cache,
        cache_path=args.cache_path,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        batch=getattr(args, "batch", False),
        batch_poll_s=getattr(args, "batch_poll_s", 30.0),
        batch_failed=getattr(args, "batch_failed", "resubmit"),
        **extra,
    )
