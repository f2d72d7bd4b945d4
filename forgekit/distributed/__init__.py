"""Running forgekit on Ray: one local cluster started on demand, or an existing one by address.

Import cost stays low: `ray` is imported only when a function here is called.
"""

from __future__ import annotations

from forgekit.distributed.cluster import (
    ClusterInfo,
    connect,
    is_connected,
    require_ray,
    secret_env,
    shutdown,
    worker_env,
    worker_secrets,
    working_directory,
)

__all__ = [
    "ClusterInfo",
    "connect",
    "is_connected",
    "require_ray",
    "secret_env",
    "shutdown",
    "worker_env",
    "worker_secrets",
    "working_directory",
]
