"""The numbers and tables of a diversity report, as data (no charts here).

`compute_report` runs on every record: length statistics, exact and MinHash duplicates and
their largest clusters, Vendi scores (n-gram kernel and an embedding kernel), label
diversity, and a 2-D embedding map (PCA of TF-IDF character n-grams, or of a model's
embeddings) for a random sample of at most `max_points` records, so that the charts drawn
from it (`forgekit.evaluate.reporting`) stay small.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from forgekit.evaluate.common import DataLike, DedupResult, load_frame
from forgekit.evaluate.dedup import exact_dedup
from forgekit.evaluate.diversity import (
    EntityDiversity,
    entity_diversity,
    ngram_features,
    vendi_score_embeddings,
)
from forgekit.evaluate.embed import Embedder, embed_texts, to_dense
from forgekit.evaluate.minhash import minhash_dedup
from forgekit.evaluate.text import column_texts, is_cjk, words

TOP_LABELS = 25
TOP_CLUSTERS = 15
# The label chart and the map's colours show this many labels; the rest are "other".
CHART_LABELS = 12
OTHER_LABEL = "other"
NO_LABEL = "(no label)"
# Label diversity indices that go into the summary table (as label_<name>).
LABEL_INDICES = (
    "richness",
    "shannon_entropy_nats",
    "shannon_evenness",
    "effective_number_shannon",
    "simpson_dominance",
    "gini_simpson",
    "inverse_simpson",
)


@dataclass
class ReportData:
    """Everything a diversity report shows, as DataFrames."""

    summary: pd.DataFrame  # metric, value
    # One row per plotted record: row (position in `frame`), key, text, length, label,
    # label_group (top labels, else "other"), len_bin_start/len_bin_end (its length bar),
    # cluster (its duplicate cluster among the largest, else None), duplicate, x, y.
    records: pd.DataFrame
    lengths: pd.DataFrame  # pre-binned character lengths over all records
    labels: pd.DataFrame  # label/entity counts (top)
    clusters: pd.DataFrame  # duplicate clusters, largest first
    label_diversity: EntityDiversity | None = None
    params: dict[str, Any] = field(default_factory=dict)
    frame: pd.DataFrame | None = None  # the records as given (for the record list)


def _short(text: str, width: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _pca_2d(x: Any, seed: int = 0) -> np.ndarray:
    """2-D PCA coordinates (sparse input goes through TruncatedSVD to 50 dims first)."""
    n = x.shape[0]
    if n == 0:
        return np.zeros((0, 2))
    dense = to_dense(x, max_dim=50, seed=seed)
    if n < 3 or dense.shape[1] < 2:
        out = np.zeros((n, 2))
        out[:, : min(2, dense.shape[1])] = dense[:, :2]
        return out
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(dense)


def compute_report(
    data: DataLike,
    text: str | Sequence[str] = "input",
    label: str | None = "tag",
    *,
    embedder: str | Embedder | None = "tfidf",
    embeddings: Any = None,
    max_points: int = 2000,
    minhash_threshold: float = 0.7,
    cache_dir: str | os.PathLike | bool | None = None,
    id_field: str | None = "id",
    seed: int = 0,
) -> ReportData:
    """The report's data for the records' `text` with labels from `label`.

    `label` may be a field of strings or of lists of labels (e.g. "tag", "task_label"); if the
    field is missing the report says so and plots without labels (label=None: no labels).
    Vendi scores are computed on all records (n-gram kernel, and the embedding kernel of
    `embedder`); `records` (the map and table) is a random sample of `max_points` records.
    """
    df = load_frame(data)
    texts = column_texts(df, text)
    n = len(texts)
    rng = np.random.default_rng(seed)
    keys = (
        df[id_field].astype(str).tolist()
        if id_field and id_field in df.columns
        else [str(i) for i in range(n)]
    )

    label_values: list[str | None] = [None] * n
    label_div = None
    notes = []
    if label is not None:
        if label in df.columns:
            label_div = entity_diversity(df, field=label)
            label_values = [", ".join(items) if items else None for items in label_div.per_item]
        else:
            notes.append(f"label field {label!r} not in data")

    exact = exact_dedup(df, text, id_field=id_field)
    near = minhash_dedup(df, text, threshold=minhash_threshold, id_field=id_field)
    duplicate = np.zeros(n, dtype=bool)
    duplicate[near.removed["row"].to_numpy()] = True
    duplicate[exact.removed["row"].to_numpy()] = True

    if embeddings is None:
        x = embed_texts(texts, embedder, cache_dir=cache_dir)
    else:
        x = embeddings
    coords = _pca_2d(x, seed=seed)

    char_len = np.array([len(t) for t in texts], dtype=np.int64)
    tok_len = np.array([len(words(t)) for t in texts], dtype=np.int64)
    cjk_share = float(np.mean([is_cjk(t) for t in texts])) if n else 0.0

    # One eigendecomposition for both orders (a sparse x is projected once, not twice).
    vendi_embedding = _safe_vendi(x, [1, 2])
    metrics: list[tuple[str, Any]] = [
        ("records", n),
        ("mean_length_chars", float(char_len.mean()) if n else float("nan")),
        ("median_length_chars", float(np.median(char_len)) if n else float("nan")),
        ("mean_length_tokens", float(tok_len.mean()) if n else float("nan")),
        ("empty_texts", int((char_len == 0).sum())),
        ("cjk_share", cjk_share),
        ("exact_duplicates", exact.n_removed),
        (f"minhash_near_duplicates_j{minhash_threshold:g}", near.n_removed),
        ("vendi_ngram_q1", _safe_vendi(ngram_features(texts), [1])["q=1"]),
        ("vendi_embedding_q1", vendi_embedding["q=1"]),
        ("vendi_embedding_q2", vendi_embedding["q=2"]),
    ]
    if label_div is not None:
        for name in LABEL_INDICES:
            metrics.append((f"label_{name}", label_div.indices[name]))
    for note in notes:
        metrics.append(("note", note))
    summary = pd.DataFrame(
        {
            "metric": [m for m, _ in metrics],
            "value": pd.Series([v for _, v in metrics], dtype=object),
        }
    )

    # Lengths: binned over all records so the chart is exact whatever the sample.
    if n:
        top = max(int(char_len.max()), 1)
        counts, edges = np.histogram(char_len, bins=min(40, max(top, 1)))
        edges = edges.round(1)
        lengths = pd.DataFrame({"bin_start": edges[:-1], "bin_end": edges[1:], "count": counts})
        # Each record's bar: the last bin includes its right edge, as np.histogram's does.
        bin_of = np.clip(np.searchsorted(edges, char_len, side="right") - 1, 0, len(counts) - 1)
    else:
        lengths = pd.DataFrame(columns=["bin_start", "bin_end", "count"])
        edges, bin_of = np.zeros(1), np.zeros(0, dtype=np.int64)

    labels = (
        label_div.to_frame().head(TOP_LABELS).rename(columns={"entity": "label"})
        if label_div is not None
        else pd.DataFrame(columns=["label", "count"])
    )
    # A record with several labels is plotted under its first one so that clicking a label
    # bar filters the map by a single value.
    first_label = [
        (label_div.per_item[i][0] if label_div and label_div.per_item[i] else None)
        for i in range(n)
    ]

    groups = _label_groups(first_label)
    clusters = _clusters_frame(exact, near, texts)
    cluster_of = _cluster_members(exact, near, clusters, n)
    cluster_text = dict(zip(clusters["representative"], clusters.get("text", [])))

    sample = np.sort(rng.choice(n, size=min(max_points, n), replace=False)) if n else []
    records = pd.DataFrame(
        {
            "row": np.asarray(sample, dtype=np.int64),
            "key": [keys[i] for i in sample],
            "text": [_short(texts[i]) for i in sample],
            "length": char_len[sample] if n else [],
            "label": [first_label[i] for i in sample],
            "labels": [label_values[i] for i in sample],
            "label_group": [groups[i] for i in sample],
            "len_bin_start": edges[bin_of[sample]] if n else [],
            "len_bin_end": edges[bin_of[sample] + 1] if n else [],
            "cluster": [cluster_of[i] for i in sample],
            "cluster_text": [cluster_text.get(cluster_of[i]) for i in sample],
            "duplicate": ["duplicate" if duplicate[i] else "unique" for i in sample],
            "x": coords[sample, 0] if n else [],
            "y": coords[sample, 1] if n else [],
        }
    )
    return ReportData(
        summary=summary,
        records=records,
        lengths=lengths,
        labels=labels,
        clusters=clusters,
        label_diversity=label_div,
        params={
            "text": text,
            "label": label,
            "label_title": f"labels ({label})" if label else "labels",
            "embedder": embedder if isinstance(embedder, str) else getattr(embedder, "name", ""),
            "max_points": max_points,
            "total_records": n,
            "id_field": id_field,
        },
        frame=df,
    )


def _safe_vendi(x: Any, orders: list[float]) -> dict[str, float]:
    if x.shape[0] == 0:
        return {f"q={q}": float("nan") for q in orders}
    return {k: float(v) for k, v in vendi_score_embeddings(x, orders).items()}


def _clusters_frame(exact: DedupResult, near: DedupResult, texts: Sequence[str]) -> pd.DataFrame:
    frames = []
    for kind, result in (("exact", exact), ("near (MinHash)", near)):
        table = result.clusters(top=TOP_CLUSTERS)
        if table.empty:
            continue
        table = table.assign(
            kind=kind,
            text=[_short(texts[int(r)], 60) for r in table["representative_row"]],
        )
        frames.append(table)
    if not frames:
        return pd.DataFrame(columns=["representative", "representative_row", "size", "kind"])
    out = pd.concat(frames, ignore_index=True)
    out["representative"] = out["kind"].str[0] + ":" + out["representative"].astype(str)
    return out.sort_values("size", ascending=False).head(TOP_CLUSTERS).reset_index(drop=True)


def _label_groups(first_label: Sequence[str | None]) -> list[str]:
    """Each record's label for the charts: one of the CHART_LABELS most frequent (first)
    labels, "other" for the rest, "(no label)" for none."""
    counts = pd.Series([x for x in first_label if x is not None], dtype=object).value_counts()
    top = set(counts.index[:CHART_LABELS])
    return [NO_LABEL if x is None else (x if x in top else OTHER_LABEL) for x in first_label]


def _cluster_members(
    exact: DedupResult, near: DedupResult, clusters: pd.DataFrame, n: int
) -> list[str | None]:
    """Each record's cluster among `clusters` (its `representative` name), or None: the
    representative itself and every record removed as its duplicate."""
    out: list[str | None] = [None] * n
    for kind, result in (("e", exact), ("n", near)):
        names = {
            int(row): name
            for row, name in zip(clusters["representative_row"], clusters["representative"])
            if str(name).startswith(kind + ":")
        }
        if not names:
            continue
        for row, name in names.items():
            out[row] = out[row] or name
        removed = result.removed
        for row, parent in zip(removed["row"], removed["duplicate_of_row"]):
            name = names.get(int(parent))
            if name is not None and out[int(row)] is None:
                out[int(row)] = name
    return out
