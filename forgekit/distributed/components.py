"""Connected components of an edge list, vectorized, and the per-block compaction that lets a
cluster do most of that work before anything reaches the driver.

`components` is min-label propagation with pointer jumping over numpy arrays: every node
starts as its own label, each round every edge pulls both ends down to the smaller label and
labels then jump to their label's label until stable. At the fixed point every node carries
the smallest node of its component (that node's label can never go lower). Rounds grow with
the log of a component's diameter, each a few passes over the edges.

`compact` replaces a block's edges by a star forest with the same connectivity (one edge per
non-root node, to its component's smallest node): the union of the compacted blocks has the
components of the union of the blocks, with at most one edge per node per block.
"""

from __future__ import annotations

import numpy as np


def components(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nodes, labels): every node touched by an edge (sorted) and the smallest node of its
    component."""
    u = np.asarray(u, dtype=np.int64)
    v = np.asarray(v, dtype=np.int64)
    nodes = np.unique(np.concatenate([u, v]))
    if not len(nodes):
        return nodes, nodes.copy()
    ui = np.searchsorted(nodes, u)
    vi = np.searchsorted(nodes, v)
    label = np.arange(len(nodes), dtype=np.int64)
    while True:
        low = np.minimum(label[ui], label[vi])
        np.minimum.at(label, ui, low)
        np.minimum.at(label, vi, low)
        while True:  # pointer jumping: a label's label is at most the label
            jumped = label[label]
            if np.array_equal(jumped, label):
                break
            label = jumped
        if np.array_equal(label[ui], label[vi]):
            break
    return nodes, nodes[label]


def compact(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The star forest of (u, v)'s components: (node, its component's smallest node) for every
    node that is not that smallest node."""
    nodes, labels = components(u, v)
    linked = nodes != labels
    return nodes[linked], labels[linked]
