"""`forge <method>` commands. Each parser is defined once and shared with `%forge`."""

from __future__ import annotations

import argparse
from typing import Any

from forgekit.commands import add_model_option, add_run_options, run_config_from_args


def _cmd_magpie(args: argparse.Namespace, ctx: Any) -> Any:
    from forgekit.methods.magpie import magpie

    instruction = {"temperature": args.temperature, "max_tokens": args.instruction_max_tokens}
    response = {"temperature": args.response_temperature, "max_tokens": args.max_tokens}
    df = magpie(
        args.n,
        model=args.model,
        response_model=args.response_model,
        template=args.template,
        system=args.system,
        n_turns=args.turns,
        newline_stop=not args.no_newline_stop,
        instruction_params=instruction,
        response_params=response,
        min_words=args.min_words,
        language=args.language,
        seed=args.seed,
        out=args.out,
        config=run_config_from_args(args, **ctx.extra.get("run_config", {})),
    )
    return df


def register(subparsers: argparse._SubParsersAction) -> None:
    from forgekit.methods.magpie import CHAT_FORMATS

    p = subparsers.add_parser(
        "magpie",
        help="instruction/response pairs from the model's own chat template",
        description="Magpie: send the chat template's pre-query text so the model writes a "
        "user query, then answer it. Needs a raw completion endpoint (local, vLLM, "
        "llama.cpp server).",
    )
    p.add_argument("-n", type=int, default=10, help="records to produce (default 10)")
    add_model_option(p)
    p.add_argument(
        "--response-model", default=None, help="answer with another model (default: the same one)"
    )
    p.add_argument(
        "--template",
        choices=sorted(CHAT_FORMATS),
        default=None,
        help="chat-template family (default: the model profile's)",
    )
    p.add_argument("--system", default=None, help="system prompt that steers the topic")
    p.add_argument("--turns", type=int, default=1, help="conversation turns per record")
    p.add_argument(
        "--no-newline-stop",
        action="store_true",
        help="let instructions run past their first newline",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="instruction sampling temperature (default 1.0)",
    )
    p.add_argument("--instruction-max-tokens", type=int, default=128)
    p.add_argument(
        "--response-temperature",
        type=float,
        default=0.0,
        help="response sampling temperature (default 0)",
    )
    p.add_argument("--max-tokens", type=int, default=256, help="response max tokens")
    p.add_argument(
        "--min-words", type=int, default=3, help="drop instructions shorter than this many words"
    )
    p.add_argument(
        "--language",
        choices=["en", "zh"],
        default=None,
        help="drop instructions not in this language",
    )
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    add_run_options(p)
    p.set_defaults(handler=_cmd_magpie)
