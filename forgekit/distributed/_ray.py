"""Attach to Ray or start a local one.

A stand-in for `forgekit.distributed.cluster.connect` (written on another branch): when that
is merged, `connect` here becomes an import of it.
"""

from __future__ import annotations

import os

from forgekit.errors import ConfigError

# Seconds a starting local Ray waits for its agent processes. Ray's default (30 s) is too
# short on a loaded machine (a shared CI box): the node then fails to start at all.
_AGENT_TIMEOUT_MS = "180000"


def connect(address: str | None = None) -> None:
    """Use the Ray this process is already attached to; else attach to `address` (e.g.
    "ray://head:10001" or "auto"), or start a local Ray on this machine (no dashboard)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("distributed dedup needs Ray: pip install 'forgekit[ray]'") from None
    if ray.is_initialized():
        return
    if address in (None, "", "local"):
        os.environ.setdefault("RAY_agent_register_timeout_ms", _AGENT_TIMEOUT_MS)
        ray.init(include_dashboard=False, logging_level="warning")
    else:
        ray.init(address=address, logging_level="warning")
