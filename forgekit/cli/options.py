"""The option groups every method command shares: the model, the input, output and run
control (engine options), sampling; and turning them back into library arguments."""

from __future__ import annotations

import argparse
from typing import Any

from forgekit.engine import RunConfig
from forgekit.engine.cache import default_cache_path


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
        help="requests in flight at once (default: 1 for local, 32 for HTTP)",
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


def add_input_option(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "-i",
        "--input",
        required=required,
        help="input records: a .jsonl/.json/.csv/.parquet file, or (in a notebook) the name "
        "of a DataFrame or list variable",
    )


def read_input(args: argparse.Namespace, ctx: Any) -> list[dict[str, Any]]:
    """The records named by --input: a notebook variable (magics) or a file."""
    from forgekit.data.io import read_records

    return read_records(ctx.resolve_input(args.input))


def run_config_from_args(args: argparse.Namespace, ctx: Any = None) -> RunConfig:
    """Engine options from the shared option group; a magic adds live hooks (progress
    events, a cancel flag) through `ctx.extra['run_config']`."""
    extra = dict(getattr(ctx, "extra", {}).get("run_config", {})) if ctx is not None else {}
    return RunConfig(
        concurrency=args.concurrency,
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
