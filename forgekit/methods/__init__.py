"""Synthesis methods. Each is a public function: DataFrame/JSONL/list in, DataFrame out,
with an optional `out=` JSONL path that a re-run resumes.

A method is declared in one module of this package (see forgekit.methods.spec): declaring
it registers it, and this package binds `forgekit.methods.<name>` for every registered one.
"""

from typing import Any as _Any

from forgekit.methods.registry import discover as _discover
from forgekit.methods.registry import get as _get
from forgekit.methods.registry import methods as _methods
from forgekit.methods.registry import public_function as _public_function

_discover()
globals().update({name: _public_function(cls) for name, cls in _methods().items()})


def __getattr__(name: str) -> _Any:
    """A method declared after this package was imported (e.g. in a notebook)."""
    cls = _get(name)
    if cls is None:
        raise AttributeError(f"module 'forgekit.methods' has no attribute {name!r}")
    return _public_function(cls)


__all__ = sorted(_methods())
