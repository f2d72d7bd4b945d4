"""forgekit: synthesize and evaluate LLM training data, natively in Jupyter."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "export", "load_ipython_extension"]


def __getattr__(name: str):
    # `forgekit.export(...)`: the export package, callable like its function; loaded on use.
    if name == "export":
        import importlib

        return importlib.import_module("forgekit.export")
    raise AttributeError(f"module 'forgekit' has no attribute {name!r}")


def load_ipython_extension(ipython) -> None:  # pragma: no cover - exercised by the Jupyter tests
    """`%load_ext forgekit`: registers the `%forge` / `%%forge` magics."""
    from forgekit.jupyter.magics import load_ipython_extension as _load

    _load(ipython)
