"""Exact-duplicate removal: records whose normalized text hashes alike (the ROUGE-L filter is
in forgekit.evaluate.rouge)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from forgekit.evaluate.common import (
    DataLike,
    DedupResult,
    build_result,
    load_frame,
)
from forgekit.evaluate.text import _SPACE_PUNCT_RE, column_texts, normalize


def text_key(text: str, *, ignore_punctuation: bool = False) -> str:
    """The hash exact dedup compares: SHA1 of the NFKC, lowercased, whitespace-collapsed text
    (and without punctuation when asked)."""
    norm = normalize(text)
    if ignore_punctuation:
        norm = " ".join(_SPACE_PUNCT_RE.sub(" ", norm).split())
    return hashlib.sha1(norm.encode("utf-8")).hexdigest()


def exact_dedup(
    data: DataLike,
    text: str | Sequence[str] = "input",
    *,
    ignore_punctuation: bool = False,
    id_field: str | None = "id",
    source_field: str | None = None,
) -> DedupResult:
    """Drop records whose normalized text equals an earlier record's (the first one is kept)."""
    df = load_frame(data)
    texts = column_texts(df, text)
    first: dict[str, int] = {}
    duplicate_of = np.full(len(texts), -1, dtype=np.int64)
    for i, t in enumerate(texts):
        key = text_key(t, ignore_punctuation=ignore_punctuation)
        j = first.setdefault(key, i)
        if j != i:
            duplicate_of[i] = j
    return build_result(
        "exact",
        df,
        duplicate_of,
        None,
        None,
        id_field=id_field,
        params={"text": text, "ignore_punctuation": ignore_punctuation},
        source_field=source_field,
    )
