"""forgekit beyond one machine, on Ray: one local cluster started on demand or an existing
one by address (`connect`), sharded method runs (shards.py, through the method runner),
batch grids (batch.py) and distributed MinHash dedup (`minhash_dedup`).

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
from forgekit.distributed.minhash import DistributedDedupResult, minhash_dedup

__all__ = [
    "ClusterInfo",
    "DistributedDedupResult",
    "connect",
    "is_connected",
    "minhash_dedup",
    "require_ray",
    "secret_env",
    "shutdown",
    "worker_env",
    "worker_secrets",
    "working_directory",
]
