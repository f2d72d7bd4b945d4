"""forgekit beyond one machine, on Ray: distributed MinHash dedup (`minhash_dedup`).

Ray is imported only when a distributed function runs (`pip install 'forgekit[ray]'`).
"""

from __future__ import annotations

from forgekit.distributed.minhash import DistributedDedupResult, minhash_dedup

__all__ = ["DistributedDedupResult", "minhash_dedup"]
