"""`forge <method>` for every declared method, generated from its options declaration
(forgekit.methods.spec): one flag per option, with the declared help, default, choices and
type; a template option gets `--NAME` and `--NAME-file`, a sampling option its declared flags
(e.g. --temperature, --max-tokens), a boolean that defaults to True a `--no-NAME` switch.
The `%forge` magics use these very parsers."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from functools import partial
from pathlib import Path
from typing import Any

from forgekit.cli.options import (
    add_gate_options,
    add_input_option,
    add_model_option,
    add_run_options,
    gate_options_from_args,
    input_reading,
    run_config_from_args,
)
from forgekit.methods.registry import methods
from forgekit.methods.runner import call
from forgekit.methods.spec import Method, OptionInfo, is_required, options_of

_SAMPLING_TYPES = {"temperature": float, "top_p": float, "max_tokens": int, "seed": int}
_SAMPLING_WORDS = {"temperature": "sampling temperature", "max_tokens": "max tokens"}


def register(subparsers: argparse._SubParsersAction) -> None:
    for cls in methods().values():
        add_method_command(subparsers, cls)


def add_method_command(subparsers: argparse._SubParsersAction, cls: type[Method]) -> None:
    doc = " ".join((cls.__doc__ or cls.help).split())
    parser = subparsers.add_parser(
        cls.command or cls.name, aliases=list(cls.aliases), help=cls.help, description=doc
    )
    if cls.inputs == "paths":
        parser.add_argument("paths", nargs="+", help="input files and/or folders")
    elif cls.inputs != "none":
        add_input_option(parser, required=cls.inputs == "required")
    add_model_option(parser)
    hints = typing.get_type_hints(cls.Options)
    templates = parser.add_argument_group("prompt templates (Jinja2)")
    group = parser.add_argument_group(f"{cls.name} options")
    for field, info in options_of(cls.Options):
        if not info.cli:
            continue
        if info.kind == "template":
            _add_template(templates, field, info)
        elif info.kind == "sampling":
            _add_sampling(group, field, info)
        else:
            _add_value(group, field, info, hints[field.name])
    add_run_options(parser)
    add_gate_options(parser)
    parser.set_defaults(handler=partial(run_command, cls))


def _flag(field: dataclasses.Field, info: OptionInfo, negate: bool = False) -> list[str]:
    long = info.flag or f"--{'no-' if negate else ''}{field.name.replace('_', '-')}"
    return [info.short, long] if info.short else [long]


def _with_default(help: str, default: Any) -> str:
    if default is None or default is False or default in ((), "") or "default" in help:
        return help
    shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
    return f"{help} (default {shown})"


def _add_template(group: Any, field: dataclasses.Field, info: OptionInfo) -> None:
    flag = info.flag or f"--{field.name.replace('_', '-')}"
    exclusive = group.add_mutually_exclusive_group(required=is_required(field))
    default = None if is_required(field) else field.default
    exclusive.add_argument(flag, dest=field.name, default=default, help=info.help)
    exclusive.add_argument(
        f"{flag}-file",
        dest=f"{field.name}_file",
        metavar="FILE",
        help=f"read the {field.name} template from a file",
    )


def _add_sampling(group: Any, field: dataclasses.Field, info: OptionInfo) -> None:
    for param, flag in (info.flags or {}).items():
        words = _SAMPLING_WORDS.get(param, param.replace("_", " "))
        group.add_argument(
            flag,
            dest=f"{field.name}.{param}",
            metavar=param.upper(),
            type=_SAMPLING_TYPES.get(param, float),
            default=None,
            help=_with_default(f"{words} for {info.help}", (info.defaults or {}).get(param)),
        )


def _add_value(group: Any, field: dataclasses.Field, info: OptionInfo, hint: Any) -> None:
    required = is_required(field)
    default = None if required else field.default
    kwargs: dict[str, Any] = {"dest": field.name, "required": required}
    if _base_type(hint) is bool:
        negate = default is True
        group.add_argument(
            *_flag(field, info, negate),
            action="store_false" if negate else "store_true",
            help=f"turn off: {info.help}" if negate else info.help,
            **kwargs,
        )
        return
    # With `from_text` one command-line string is the whole value (e.g. "input,output").
    many = _is_sequence(hint) and info.from_text is None
    element = _element_type(hint) if many else _base_type(hint)
    convert = info.from_text or (element if element in (int, float) else str)
    kwargs.update(default=default, help=_with_default(info.help, default))
    if many:  # `--style a b` or `--style a,b`: split first, then convert and check
        kwargs.update(nargs="+", action=_ListAction, convert=convert, allowed=info.choices)
        # With no default, a repeated flag adds to the list rather than replacing it.
        kwargs["extend"] = default is None
        kwargs["metavar"] = field.name.upper().removesuffix("S")
    else:
        kwargs.update(type=convert, choices=None if info.from_text else info.choices)
    if info.choices is not None and (many or info.from_text):
        kwargs["help"] += f"; choose from {', '.join(map(str, info.choices))}"
    if info.metavar:
        kwargs["metavar"] = info.metavar
    group.add_argument(*_flag(field, info), **kwargs)


class _ListAction(argparse.Action):
    """A list option's values, apart by spaces or commas, converted and checked one by one."""

    def __init__(self, *args: Any, convert: Any, allowed: Any, extend: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.convert, self.allowed, self.extend = convert, allowed, extend

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None):
        parts = [p.strip() for value in values for p in value.split(",") if p.strip()]
        if not parts:
            raise argparse.ArgumentError(self, "expected at least one value")
        try:
            items = [self.convert(part) for part in parts]
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentError(self, str(exc)) from None
        wrong = [i for i in items if self.allowed is not None and i not in self.allowed]
        if wrong:
            raise argparse.ArgumentError(
                self,
                f"invalid choice: {', '.join(map(repr, wrong))} "
                f"(choose from {', '.join(map(str, self.allowed))})",
            )
        earlier = getattr(namespace, self.dest, None) if self.extend else None
        setattr(namespace, self.dest, [*(earlier or []), *items])


def _base_type(hint: Any) -> Any:
    """What the command line gives: X for `X | None`, the first of a union's types
    (`tuple[str, ...] | Mapping[...]`: a list of strings; Python may pass the others)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _is_sequence(hint: Any) -> bool:
    return typing.get_origin(_base_type(hint)) in (tuple, list)


def _element_type(hint: Any) -> Any:
    args = typing.get_args(_base_type(hint))
    return args[0] if args else str


def run_command(cls: type[Method], args: argparse.Namespace, ctx: Any) -> Any:
    """Call the method with what the command line gave (`--background`: the same call in
    a child process, see forgekit.background)."""
    kwargs: dict[str, Any] = {}
    for field, info in options_of(cls.Options):
        if not info.cli:
            continue
        if info.kind == "template":
            path = getattr(args, f"{field.name}_file", None)
            kwargs[field.name] = Path(path) if path else getattr(args, field.name)
        elif info.kind == "sampling":
            given = {p: getattr(args, f"{field.name}.{p}") for p in info.flags or {}}
            kwargs[field.name] = {p: v for p, v in given.items() if v is not None}
        else:
            kwargs[field.name] = getattr(args, field.name)
    input_name = getattr(args, "input", None)
    data = ctx.resolve_input(input_name) if input_name is not None else None
    if cls.inputs == "paths":
        data = args.paths
    run = {"model": args.model, "out": args.out, "config": run_config_from_args(args, ctx)}
    if cls.inputs not in ("none", "paths"):
        run.update(input_reading(args))
    run.update(gate_options_from_args(args, ctx))
    if getattr(args, "dry_run", False):
        run["estimate"] = True
    if getattr(args, "background", False):
        return _start_background(cls, data, {**kwargs, **run}, ctx)
    return call(cls, data, {**kwargs, **run})


def _start_background(cls: type[Method], data: Any, kwargs: dict[str, Any], ctx: Any) -> Any:
    from forgekit.background import start

    run = start(cls.name, data, **kwargs)
    if ctx is not None and ctx.interactive:
        return run  # the magic shows its live monitor
    return (
        f"started background run {run.id} (pid {run.info['pid']}) -> {run.out}\n"
        f"follow it: forge runs --follow {run.id}   cancel it: forge runs --cancel {run.id}"
    )
