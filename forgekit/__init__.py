"""forgekit: synthesize and evaluate LLM training data, natively in Jupyter."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_ipython_extension"]


def load_ipython_extension(ipython) -> None:  # pragma: no cover - exercised by the Jupyter tests
    """`%load_ext forgekit`: registers the `%forge` / `%%forge` magics."""
    from forgekit.jupyter.magics import load_ipython_extension as _load

    _load(ipython)
