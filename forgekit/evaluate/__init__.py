"""Evaluate data sets: deduplicate (exact, MinHash, semantic, ROUGE-L) and measure diversity
(Vendi score, entity/label entropy and Simpson indices), with an Altair report.

`decontaminate(df, against=[...])` flags (and removes) records sharing an n-gram with
evaluation sets.

Every function takes a DataFrame, a records file (.jsonl/.json/.csv/.parquet) or a list of
records, and a `text` field (or several joined with '+', e.g. "input+output"). Dedup functions
return a `DedupResult` whose `.kept` is the DataFrame of kept records.
"""

from __future__ import annotations

from forgekit.evaluate.common import DedupResult
from forgekit.evaluate.contamination import Benchmark, DecontaminationResult, decontaminate
from forgekit.evaluate.dedup import exact_dedup
from forgekit.evaluate.diversity import (
    EntityDiversity,
    diversity_indices,
    entity_diversity,
    extract_entities,
    vendi_score,
    vendi_score_embeddings,
    vendi_score_kernel,
)
from forgekit.evaluate.embed import embed_texts, get_embedder
from forgekit.evaluate.minhash import minhash_dedup, minhash_signatures
from forgekit.evaluate.rouge import RougePool, rouge_filter, rouge_l
from forgekit.evaluate.semantic import semantic_dedup

__all__ = [
    "Benchmark",
    "DecontaminationResult",
    "DedupResult",
    "DiversityReport",
    "EntityDiversity",
    "RougePool",
    "decontaminate",
    "diversity_indices",
    "embed_texts",
    "entity_diversity",
    "exact_dedup",
    "extract_entities",
    "get_embedder",
    "minhash_dedup",
    "minhash_signatures",
    "report",
    "rouge_filter",
    "rouge_l",
    "semantic_dedup",
    "vendi_score",
    "vendi_score_embeddings",
    "vendi_score_kernel",
]


def __getattr__(name: str):
    # The report pulls in Altair; load it only when asked for.
    if name in ("report", "DiversityReport"):
        import importlib

        return getattr(importlib.import_module("forgekit.evaluate.reporting"), name)
    raise AttributeError(f"module 'forgekit.evaluate' has no attribute {name!r}")
