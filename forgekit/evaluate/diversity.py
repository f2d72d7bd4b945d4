"""Diversity of a data set: entity (label) diversity indices here, the Vendi score in
`forgekit.evaluate.vendi`, entity extraction in `forgekit.evaluate.entities`.

Entity diversity (from labels or extracted entities): Shannon entropy H = -sum p ln p in nats,
its normalized form H / ln S (Pielou's evenness; S = number of distinct entities), the effective
number exp(H), Simpson's dominance lambda = sum p^2 (the probability that two draws with
replacement agree), Gini-Simpson 1 - lambda and inverse Simpson 1 / lambda. "Simpson index"
means different things in different libraries, so every output names its variant.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from forgekit.errors import ConfigError
from forgekit.evaluate.common import DataLike, load_frame
from forgekit.evaluate.entities import (
    JIEBA_ENTITY_TAGS,
    chinese_entities,
    english_entities,
    extract_entities,
)
from forgekit.evaluate.text import column_texts
from forgekit.evaluate.vendi import (
    MAX_EXACT_DIM,
    PROJECTED_DIM,
    QS,
    ngram_features,
    vendi_eigenvalues,
    vendi_from_eigenvalues,
    vendi_score,
    vendi_score_embeddings,
    vendi_score_kernel,
    vendi_score_pairwise,
)

__all__ = [
    "JIEBA_ENTITY_TAGS",
    "MAX_EXACT_DIM",
    "PROJECTED_DIM",
    "QS",
    "EntityDiversity",
    "chinese_entities",
    "diversity_indices",
    "english_entities",
    "entity_diversity",
    "extract_entities",
    "ngram_features",
    "vendi_eigenvalues",
    "vendi_from_eigenvalues",
    "vendi_score",
    "vendi_score_embeddings",
    "vendi_score_kernel",
    "vendi_score_pairwise",
]


def diversity_indices(counts: Counter | dict[Any, int] | pd.Series) -> dict[str, float]:
    """Diversity of a count distribution, each index named by its variant.

    Returns: observations, richness (S), shannon_entropy_nats (H), shannon_evenness
    (H / ln S; NaN when S < 2, where evenness is undefined), effective_number_shannon (exp H),
    simpson_dominance (sum p^2), gini_simpson (1 - sum p^2), inverse_simpson (1 / sum p^2)."""
    values = np.array(
        [v for v in (counts.values if isinstance(counts, pd.Series) else counts.values())],
        dtype=float,
    )
    if (values < 0).any():
        raise ConfigError("counts must be non-negative")
    values = values[values > 0]
    total = values.sum()
    if total == 0:
        return {
            "observations": 0,
            "richness": 0,
            "shannon_entropy_nats": 0.0,
            "shannon_evenness": float("nan"),
            "effective_number_shannon": 0.0,
            "simpson_dominance": float("nan"),
            "gini_simpson": float("nan"),
            "inverse_simpson": 0.0,
        }
    p = values / total
    h = float(-(p * np.log(p)).sum())
    s = len(p)
    dominance = float((p**2).sum())
    return {
        "observations": int(total),
        "richness": s,
        "shannon_entropy_nats": h,
        "shannon_evenness": h / math.log(s) if s > 1 else float("nan"),
        "effective_number_shannon": math.exp(h),
        "simpson_dominance": dominance,
        "gini_simpson": 1.0 - dominance,
        "inverse_simpson": 1.0 / dominance,
    }


@dataclass
class EntityDiversity:
    """Entity/label counts and their diversity indices (see `diversity_indices`)."""

    counts: pd.Series
    indices: dict[str, float]
    source: str
    items: int
    items_without_entities: int
    per_item: list[list[str]] = field(default_factory=list, repr=False)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"entity": self.counts.index, "count": self.counts.to_numpy()})

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "items": self.items,
            "items_without_entities": self.items_without_entities,
            **self.indices,
            "top": {str(k): int(v) for k, v in self.counts.head(10).items()},
        }

    def _repr_html_(self) -> str:
        table = pd.DataFrame([self.indices]).T.rename(columns={0: "value"}).to_html()
        return f"<div><b>Entity diversity of {self.source}</b>{table}</div>"


def _labels(value: Any, sep: str | None) -> list[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if isinstance(value, (list, tuple, set)):
        out = []
        for v in value:
            out.extend(_labels(v, sep))
        return out
    text = str(value).strip()
    if not text:
        return []
    if sep:
        return [part.strip() for part in text.split(sep) if part.strip()]
    return [text]


def entity_diversity(
    data: DataLike,
    field: str | None = None,
    *,
    text: str | Sequence[str] | None = None,
    extractor: str | Callable[[str], list[str]] = "auto",
    sep: str | None = None,
    lowercase: bool = False,
) -> EntityDiversity:
    """Diversity of labels in a field (a string or a list of labels per record), or of
    entities extracted from a text field.

    Args:
        field: a label field, e.g. "tag" or "task_label" (lists count each label).
        text: a text field to extract entities from (when `field` is not given).
        extractor: "auto" (jieba POS nr/ns/nt/nz for Chinese, the capitalization heuristic
            for English), "jieba", "english", "spacy" or a callable text -> list of entities.
        sep: split string labels on this separator (e.g. "," or "-").
        lowercase: fold case before counting.
    """
    if (field is None) == (text is None):
        raise ConfigError("entity_diversity: give exactly one of field= (labels) or text=")
    df = load_frame(data)
    if field is not None:
        if field not in df.columns:
            raise ConfigError(
                f"field {field!r} is not in the data; available fields: "
                + ", ".join(map(str, df.columns))
            )
        per_item = [_labels(v, sep) for v in df[field].tolist()]
        source = f"field {field!r}"
    else:
        texts = column_texts(df, text)  # type: ignore[arg-type]
        per_item = [extract_entities(t, extractor) for t in texts]
        source = f"entities in {text!r}"
    if lowercase:
        per_item = [[e.lower() for e in item] for item in per_item]
    counter = Counter(e for item in per_item for e in item)
    counts = pd.Series(dict(counter.most_common()), dtype="int64", name="count")
    return EntityDiversity(
        counts=counts,
        indices=diversity_indices(counter),
        source=source,
        items=len(per_item),
        items_without_entities=sum(1 for item in per_item if not item),
        per_item=per_item,
    )
