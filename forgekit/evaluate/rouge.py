"""ROUGE-L near-duplicate filtering, CJK-aware, and not all-pairs.

The stock `rouge_score` tokenizer keeps only [a-z0-9] and silently scores Chinese text 0, so
here Chinese characters are tokens of their own (or jieba words with `tokenizer="jieba"`) and
English text is split into lowercase words. `RougePool` is the incremental filter that both
Self-Instruct (forgekit.methods.self_instruct) and `rouge_filter` use.

Self-Instruct keeps a new instruction only if its ROUGE-L F1 with every instruction already
in the pool is at most a threshold (0.7). Done naively that is one LCS per pool entry per
candidate: quadratic in the pool, in pure Python. Here each candidate is compared only with
the few pool entries that *could* pass, and the answer is exactly the same:

* ROUGE-L F1 = 2·LCS/(m+n) and LCS <= |A ∩ B| (the multiset intersection of the tokens),
  so F1 > t needs an overlap o > t·(m+n)/2 >= t·m/(2-t) for a text of m tokens, whatever
  the partner's length (a partner shorter than m·t/(2-t) cannot pass the length bound
  2·min(m,n)/(m+n) > t at all).
* Prefix filtering (set-similarity joins): order all token occurrences by a global order;
  two multisets with overlap >= o share an element within each one's first |x|-o+1
  elements. So each pool entry is indexed under its prefix only, and a candidate probes
  only its own prefix. Ordering by rarity (document frequency) keeps prefixes made of rare
  tokens with short posting lists; stop words sit at the end of the order and are never
  probed.
* The entries met in those posting lists are pruned in numpy: the length bound, and the
  positional bound (the first shared element at position i of the query's order and j of
  the entry's: every shared element comes after it, so overlap <= min(n-i, m-j)); then the
  exact multiset overlap (a set intersection); the few survivors get an exact LCS
  (bit-parallel, `lcs_length`).

The order must stay fixed while entries are indexed under it, so frequencies are a snapshot:
the index is rebuilt from fresh frequencies whenever the pool has doubled (amortized linear).
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from forgekit.data.text import CJK_RE
from forgekit.errors import ConfigError
from forgekit.evaluate.common import (
    EXTERNAL,
    DataLike,
    DedupResult,
    build_result,
    check_fraction,
    load_frame,
)
from forgekit.evaluate.text import column_texts, words

_BIG = 1 << 32  # rank key = frequency * _BIG + element id: one int, a fixed total order
_POS_BITS = 20
_POS_MASK = (1 << _POS_BITS) - 1


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
            if CJK_RE.search(piece):
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


@dataclass(frozen=True)
class Match:
    """The pool entry a text was found too similar to."""

    index: int  # position in the pool
    text: str
    score: float  # ROUGE-L F1


def min_overlap(size: int, threshold: float) -> int:
    """The least token overlap a text of `size` tokens needs with ANY partner to reach
    ROUGE-L F1 > threshold (see the module doc); a small epsilon keeps it conservative."""
    return max(1, math.floor(threshold * size / (2 - threshold) - 1e-9) + 1)


class RougePool:
    """A growing pool of texts; `offer(text)` adds the text unless it is too similar.

    >>> pool = RougePool(0.7)
    >>> pool.offer("Write a poem about the sea.") is None
    True
    >>> pool.offer("Write a poem about the blue sea.").score > 0.7
    True
    """

    def __init__(
        self, threshold: float = 0.7, tokenizer: str | Callable[[str], list[str]] = "auto"
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"similarity threshold must be in [0, 1], got {threshold}")
        rouge_tokens("", tokenizer)  # validate the tokenizer name now, not on first use
        self.threshold = threshold
        self.tokenizer = tokenizer
        self.texts: list[str] = []
        self._tokens: list[list[str]] = []
        self._elements: list[list[int]] = []  # element ids: (token, occurrence) pairs
        self._sets: list[frozenset[int]] = []
        self._sizes = array("q")  # token counts, viewed as a numpy array when probing
        self._element_ids: dict[tuple[str, int], int] = {}
        self._df: Counter[int] = Counter()  # entries holding each element
        self._rank: dict[int, int] = {}  # frozen order keys (snapshot of _df)
        # element -> codes (entry << _POS_BITS | position of the element in the entry's
        # ordered prefix); array('q') so numpy reads them without a copy
        self._postings: dict[int, array] = {}
        self._built_at = 0
        self.lcs_computed = 0  # how many exact LCS were needed (for the benchmark)
        self.candidates_seen = 0  # distinct pool entries met in the probed posting lists

    def __len__(self) -> int:
        return len(self.texts)

    # -- internals -----------------------------------------------------------------------
    def _elements_of(self, tokens: list[str], create: bool) -> list[int]:
        seen: Counter[str] = Counter()
        out = []
        for tok in tokens:
            seen[tok] += 1
            key = (tok, seen[tok])
            eid = self._element_ids.get(key)
            if eid is None:
                if not create:
                    eid = -1 - len(out)  # unseen: in no posting list, rarest of all
                else:
                    eid = self._element_ids[key] = len(self._element_ids)
            out.append(eid)
        return out

    def _key(self, eid: int) -> int:
        rank = self._rank.get(eid)
        return rank if rank is not None else eid  # frequency 0 in the snapshot

    def _prefix(self, elements: list[int]) -> list[int]:
        size = len(elements)
        if size == 0:
            return []
        length = size - min_overlap(size, self.threshold) + 1
        if length <= 0:
            return []
        return sorted(elements, key=self._key)[:length]

    def _index(self, index: int, elements: list[int]) -> None:
        for position, eid in enumerate(self._prefix(elements)):
            codes = self._postings.get(eid)
            if codes is None:
                codes = self._postings[eid] = array("q")
            codes.append(index << _POS_BITS | min(position, _POS_MASK))

    def _rebuild(self) -> None:
        self._rank = {eid: count * _BIG + eid for eid, count in self._df.items()}
        self._postings = {}
        for index, elements in enumerate(self._elements):
            self._index(index, elements)
        self._built_at = len(self.texts)

    # -- the API -------------------------------------------------------------------------
    def add(self, text: str) -> int:
        """Add `text` without checking it (e.g. seed tasks); returns its pool index."""
        tokens = rouge_tokens(text, self.tokenizer)
        elements = self._elements_of(tokens, create=True)
        index = len(self.texts)
        self.texts.append(text)
        self._tokens.append(tokens)
        self._elements.append(elements)
        self._sets.append(frozenset(elements))
        self._sizes.append(len(tokens))
        self._df.update(set(elements))
        if len(self.texts) >= max(64, 2 * self._built_at):
            self._rebuild()  # frequencies drifted enough to re-order: amortized O(1)
        else:
            self._index(index, elements)
        return index

    def _candidates(self, prefix: list[int], n: int) -> list[int]:
        """Pool entries that may pass, from the posting lists of the query's prefix, with
        the length bound and the positional bound applied in numpy: if the first shared
        element sits at position i of the query's order and j of the entry's, every shared
        element comes after it, so overlap <= min(n - i, m - j)."""
        parts, lengths, positions = [], [], []
        for position, eid in enumerate(prefix):
            codes = self._postings.get(eid)
            if codes:
                parts.append(np.frombuffer(codes, dtype=np.int64))
                lengths.append(len(codes))
                positions.append(position)
        if not parts:
            return []
        codes = np.concatenate(parts)
        query_pos = np.repeat(np.asarray(positions, dtype=np.int64), lengths)
        entries = codes >> _POS_BITS
        unique, first = np.unique(entries, return_index=True)
        self.candidates_seen += len(unique)
        sizes = np.frombuffer(self._sizes, dtype=np.int64)[unique]
        t = self.threshold
        i = query_pos[first]
        j = codes[first] & _POS_MASK
        upper = np.minimum(n - i, sizes - j)
        needed = np.floor(t * (n + sizes) / 2 - 1e-9) + 1
        ok = (upper >= needed) & (2 * np.minimum(sizes, n) > t * (sizes + n))
        return unique[ok].tolist()

    def most_similar(self, text: str) -> Match | None:
        """The most similar pool entry with ROUGE-L F1 above the threshold, or None."""
        tokens = rouge_tokens(text, self.tokenizer)
        n = len(tokens)
        if n == 0 or self.threshold >= 1.0:
            return None
        elements = self._elements_of(tokens, create=False)
        best: Match | None = None
        query = frozenset(elements)
        for index in self._candidates(self._prefix(elements), n):
            m = self._sizes[index]
            if 2 * len(query & self._sets[index]) <= self.threshold * (m + n):
                continue  # LCS <= shared tokens: cannot pass (a set operation, in C)
            self.lcs_computed += 1
            score = rouge_l(self._tokens[index], tokens)
            if score > self.threshold and (best is None or score > best.score):
                best = Match(index, self.texts[index], score)
        return best

    def offer(self, text: str) -> Match | None:
        """Add `text` unless it is too similar to an entry; returns the match that kept it
        out, or None when it was added."""
        match = self.most_similar(text)
        if match is None:
            self.add(text)
        return match


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

    Runs on `RougePool`, so each record is compared only with the kept records that could
    pass (the result is the all-pairs one). `duplicate_of` names the most similar kept
    record (ties: the earliest), or `against[<i>]` for a pool text.
    """
    check_fraction("threshold", threshold)
    df = load_frame(data)
    texts = column_texts(df, text)
    pool_texts: list[str] = []
    if against is not None:
        if isinstance(against, (list, tuple)) and all(isinstance(x, str) for x in against):
            pool_texts = list(against)
        else:
            pool_texts = column_texts(load_frame(against, "against"), against_text or text)
    pool = RougePool(threshold, tokenizer)
    for pool_text in pool_texts:
        pool.add(pool_text)
    n_pool = len(pool_texts)
    pool_row: list[int] = []  # row of each kept record, in pool order after the `against` texts
    duplicate_of = np.full(len(texts), -1, dtype=np.int64)
    best_score = np.zeros(len(texts), dtype=float)
    external: dict[int, str] = {}
    for row, record_text in enumerate(texts):
        match = pool.offer(record_text)
        if match is None:
            pool_row.append(row)
            continue
        best_score[row] = match.score
        if match.index < n_pool:
            duplicate_of[row] = EXTERNAL
            external[row] = f"against[{match.index}]"
        else:
            duplicate_of[row] = pool_row[match.index - n_pool]
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


def naive_filter(
    texts: list[str],
    threshold: float = 0.7,
    tokenizer: str | Callable[[str], list[str]] = "auto",
    lcs: Callable[[list[str], list[str]], int] | None = None,
) -> list[bool]:
    """The all-pairs reference: compare each text with every kept one (what the original
    Self-Instruct/Alpaca code does with rouge_score). `lcs` defaults to the classic dynamic
    programming table in pure Python. For benchmarks and tests."""
    lcs = lcs or lcs_table
    kept: list[list[str]] = []
    keep = []
    for text in texts:
        tokens = rouge_tokens(text, tokenizer)
        ok = True
        for other in kept:
            common = lcs(other, tokens)
            if common and 2 * common / (len(other) + len(tokens)) > threshold:
                ok = False
                break
        if ok and tokens:
            kept.append(tokens)
        keep.append(ok)
    return keep


def lcs_table(a: list[str], b: list[str]) -> int:
    """LCS length with the O(m·n) table, as rouge_score computes it."""
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]
