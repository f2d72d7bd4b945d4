"""Attach to Ray or start a local one.

A stand-in for `forgekit.distributed.cluster.connect` (written on another branch): when that
is merged, `connect` here becomes an import of it.
"""

from __future__ import annotations

import os
from typing import Any

from forgekit.errors import ConfigError

# Seconds a starting local Ray waits for its agent processes. Ray's default (30 s) is too
# short on a loaded machine (a shared CI box): the node then fails to start at all.
_AGENT_TIMEOUT_MS = "180000"
# A local start on a loaded machine sometimes times out while the raylet waits for its
# agents to come up (they are Python processes); a second try usually finds them faster.
_LOCAL_START_TRIES = 3


def connect(address: str | None = None, **init_options: Any) -> None:
    """Use the Ray this process is already attached to; else attach to `address` (e.g.
    "auto" or "ray://head:10001"), or start a local Ray on this machine (no dashboard,
    loopback only). `init_options` go to `ray.init` (e.g. num_cpus=2)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("distributed dedup needs Ray: pip install 'forgekit[ray]'") from None
    if ray.is_initialized():
        return
    if address not in (None, "", "local"):
        ray.init(address=address, logging_level="warning", **init_options)
        return
    os.environ.setdefault("RAY_agent_register_timeout_ms", _AGENT_TIMEOUT_MS)
    options = {
        "include_dashboard": False,
        "logging_level": "warning",
        "_node_ip_address": "127.0.0.1",
        **init_options,
    }
    for attempt in range(1, _LOCAL_START_TRIES + 1):
        try:
            ray.init(**options)
            return
        except Exception as exc:  # Ray raises a bare Exception for a node that did not start
            if "timed out during startup" not in str(exc) or attempt == _LOCAL_START_TRIES:
                raise
            ray.shutdown()
