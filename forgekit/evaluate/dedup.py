"""Exact-duplicate removal (normalized text hash) and the ROUGE-L filter.

ROUGE-L here is CJK-aware: the stock `rouge_score` tokenizer keeps only [a-z0-9] and silently
scores Chinese text 0, so Chinese characters are tokens of their own (or jieba words with
`tokenizer="jieba"`), and English text is split into lowercase words.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from forgekit.errors import ConfigError
from forgekit.evaluate.common import (
    EXTERNAL,
    DataLike,
    DedupResult,
    build_result,
    check_fraction,
    load_frame,
    per_source_counts,
)
from forgekit.evaluate.text import _CJK_RE, _SPACE_PUNCT_RE, column_texts, normalize, words


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
    details: dict[str, Any] = {}
    per_source = per_source_counts(df, duplicate_of, source_field)
    if per_source is not None:
        details["per_source"] = per_source
    return build_result(
        "exact",
        df,
        duplicate_of,
        None,
        None,
        id_field=id_field,
        params={"text": text, "ignore_punctuation": ignore_punctuation},
        details=details,
    )


# --- ROUGE-L -------------------------------------------------------------------------------


def rouge_tokens(text: str, tokenizer: str | Callable[[str], list[str]] = "auto") -> list[str]:
    """Tokens for ROUGE-L: lowercase words; each CJK character a token ("auto"), or jieba
    words for CJK runs ("jieba"), or any callable."""
    if callable(tokenizer):
        return list(tokenizer(text))
    if tokenizer == "auto":
        return words(text)
    if tokenizer == "jieba":
        import jieba

        jieba.setLogLevel(60)  # its "Building prefix dict" chatter goes to stderr otherwise
        out = []
        for piece in jieba.lcut(text.lower()):
            if _CJK_RE.search(piece):
                out.append(piece)  # a jieba word: one token (words() would split it up)
            else:
                out.extend(words(piece))  # latin words, numbers; punctuation/space dropped
        return out
    raise ConfigError(f"tokenizer={tokenizer!r}: use 'auto', 'jieba' or a callable")


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, bit-parallel (Hyyrö 2004): one pass over `b`
    with big-integer operations, instead of an O(len(a) * len(b)) table in Python."""
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for i, tok in enumerate(a):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for tok in b:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def rouge_l(a: Sequence[str], b: Sequence[str]) -> float:
    """ROUGE-L F1 (beta = 1, as rouge_score reports `fmeasure`) between two token lists."""
    lcs = lcs_length(a, b)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(b), lcs / len(a)
    return 2 * precision * recall / (precision + recall)


def rouge_filter(
    data: DataLike,
    text: str | Sequence[str] = "input",
    *,
    threshold: float = 0.7,
    against: DataLike | Sequence[str] | None = None,
    against_text: str | Sequence[str] | None = None,
    tokenizer: str | Callable[[str], list[str]] = "auto",
    id_field: str | None = "id",
) -> DedupResult:
    """Self-Instruct's filter: visit records in order and drop one whose ROUGE-L F1 with any
    kept record (or with any text of `against`, e.g. the seed pool) is above `threshold`.

    Cost is quadratic in the number of kept records; pairs are skipped when even a perfect
    subsequence match could not pass the threshold (ROUGE-L F1 <= 2*min/(len_a+len_b)).
    `duplicate_of` names the kept record matched, or `against[<i>]` for a pool text.
    """
    check_fraction("threshold", threshold)
    df = load_frame(data)
    texts = column_texts(df, text)
    toks = [rouge_tokens(t, tokenizer) for t in texts]
    pool: list[list[str]] = []
    if against is not None:
        if isinstance(against, (list, tuple)) and all(isinstance(x, str) for x in against):
            pool_texts = list(against)
        else:
            pool_texts = column_texts(load_frame(against, "against"), against_text or text)
        pool = [rouge_tokens(t, tokenizer) for t in pool_texts]
    n_pool = len(pool)
    # Candidates: pool texts (ref < 0) first, then kept records (ref = row).
    cand_tokens: list[list[str]] = list(pool)
    cand_len = [len(t) for t in pool]
    cand_ref: list[int] = list(range(-n_pool, 0))
    duplicate_of = np.full(len(texts), -1, dtype=np.int64)
    best_score = np.zeros(len(texts), dtype=float)
    external: dict[int, str] = {}
    for i, tok in enumerate(toks):
        n = len(tok)
        best, best_ref = 0.0, None
        for cand, m, ref in zip(cand_tokens, cand_len, cand_ref):
            if n + m == 0 or 2 * min(n, m) / (n + m) <= threshold:
                continue
            score = rouge_l(cand, tok)
            if score > best:
                best, best_ref = score, ref
        if best_ref is not None and best > threshold:
            best_score[i] = best
            if best_ref < 0:
                duplicate_of[i] = EXTERNAL
                external[i] = f"against[{best_ref + n_pool}]"
            else:
                duplicate_of[i] = best_ref
            continue
        cand_tokens.append(tok)
        cand_len.append(n)
        cand_ref.append(i)
    return build_result(
        "rouge",
        df,
        duplicate_of,
        best_score,
        "rouge_l_f1",
        id_field=id_field,
        params={"text": text, "threshold": threshold, "tokenizer": str(tokenizer)},
        details={"against": n_pool, "removed_by_against": len(external)},
        external=external,
    )
