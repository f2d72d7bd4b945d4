"""The one list of methods. A `Method` subclass with a `name` registers itself when its
module is imported; `discover()` imports every method module of this package, so adding a
method is adding a file. The CLI, the magics, `forge run` and `forgekit.methods.<name>` all
read this registry.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forgekit.methods.spec import Method

_METHODS: dict[str, type[Method]] = {}
# Modules of this package that hold the machinery, not methods.
_MACHINERY = {"spec", "runner", "stages", "registry", "parsing", "prompting"}


def register(cls: type[Method]) -> type[Method]:
    from forgekit.methods.spec import options_of

    for attr in ("name", "help", "Options"):
        if not getattr(cls, attr, None):
            raise TypeError(f"method class {cls.__qualname__} needs a {attr!r}")
    if not dataclasses.is_dataclass(cls.Options):
        raise TypeError(f"{cls.__qualname__}.Options must be a dataclass")
    options_of(cls.Options)  # every field declared with option()/template()/...: or fail now
    previous = _METHODS.get(cls.name)
    if previous is not None and previous.__qualname__ != cls.__qualname__:
        raise TypeError(f"two methods named {cls.name!r}: {previous} and {cls}")
    _METHODS[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Forget a method (tests that declare one)."""
    _METHODS.pop(name, None)


@cache
def discover() -> None:
    """Import every method module of forgekit.methods (once)."""
    import forgekit.methods as package

    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_") and module.name not in _MACHINERY:
            importlib.import_module(f"forgekit.methods.{module.name}")


def methods() -> dict[str, type[Method]]:
    """Every registered method, by name, in name order."""
    discover()
    return dict(sorted(_METHODS.items()))


def get(name: str) -> type[Method] | None:
    discover()
    return _METHODS.get(name)


@cache
def public_function(cls: type[Method]) -> Any:
    """`forgekit.methods.<name>`: a plain function taking the data and the options as
    keywords (plus model, out, config and any RunConfig field); returns a DataFrame."""
    from forgekit.methods.runner import call

    slot = "data" if cls.inputs != "none" else cls.positional  # what a positional sets

    def method(*args: Any, **kwargs: Any):
        if len(args) > (1 if slot else 0):
            takes = f"{slot} as its only positional argument" if slot else "no positional argument"
            raise TypeError(f"{cls.name}() takes {takes}")
        if args and slot in kwargs:
            raise TypeError(f"{cls.name}() got {slot} twice")
        if args:
            kwargs[slot] = args[0]  # type: ignore[index]
        return call(cls, kwargs.pop("data", None), kwargs)

    method.__name__ = method.__qualname__ = cls.name
    method.__module__ = cls.__module__
    method.__doc__ = _docstring(cls)
    method.__signature__ = signature(cls)  # type: ignore[attr-defined]
    method.method_class = cls  # type: ignore[attr-defined]
    return method


def signature(cls: type[Method]) -> inspect.Signature:
    from forgekit.methods.spec import is_required, options_of

    P = inspect.Parameter
    params = []
    if cls.inputs != "none":
        default = None if cls.inputs == "optional" else P.empty
        params.append(P("data", P.POSITIONAL_OR_KEYWORD, default=default))
    for field, _ in options_of(cls.Options):
        default = P.empty if is_required(field) else field.default
        kind = P.POSITIONAL_OR_KEYWORD if field.name == cls.positional else P.KEYWORD_ONLY
        params.append(P(field.name, kind, default=default, annotation=field.type))
    params.sort(key=lambda p: p.kind)  # a positional option goes first
    for name in ("model", "out", "config"):
        params.append(P(name, P.KEYWORD_ONLY, default=None))
    params.append(P("run_options", P.VAR_KEYWORD))
    return inspect.Signature(params)


def _docstring(cls: type[Method]) -> str:
    from forgekit.methods.spec import is_required, options_of

    lines = [inspect.cleandoc(cls.__doc__ or cls.help), "", "Options:"]
    for field, info in options_of(cls.Options):
        default = "required" if is_required(field) else f"default {field.default!r}"
        if info.kind == "sampling":
            default = f"default {info.defaults}"
        lines.append(f"- {field.name} ({default}): {info.help}")
    lines += [
        "",
        "Run options: model (a profile name or a Model), out (a JSONL file a re-run resumes),",
        "config (a RunConfig) or any of its fields as keywords (concurrency, rpm, max_cost, ...).",
    ]
    return "\n".join(lines)
