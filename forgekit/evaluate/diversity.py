"""Diversity: the Vendi score and entity (label) diversity indices.

Vendi score (Friedman & Dieng 2023): VS_q = exp(H_q(lambda)), the exponential of the order-q
Rényi entropy of the eigenvalues lambda of K/n, K a similarity kernel with K_ii = 1.

* q=1 Shannon (the paper's default), q=2 collision, q=inf min-entropy (1/max lambda), q=0 the
  rank of K (eigenvalues above a numerical tolerance).
* With embeddings X (n x d, rows L2-normalized) K = X X^T, and the non-zero eigenvalues of
  X X^T / n equal those of X^T X / n (d x d): the dual form costs O(n d^2) instead of O(n^3).
  It is used whenever d < n.

The `vendi-score` package (0.0.3 on PyPI) gets the definition right, but its `score_X` ignores
`q`, its `entropy_q` treats q=float("inf") as an ordinary number and counts round-off
eigenvalues for q=0, and its text helpers import torch. So the eigenvalue part is computed here;
the package is used for what it does correctly: `vendi_score.vendi.score` with a user-supplied
pairwise similarity function (see `vendi_score_pairwise`).

Entity diversity (from labels or extracted entities): Shannon entropy H = -sum p ln p in nats,
its normalized form H / ln S (Pielou's evenness; S = number of distinct entities), the effective
number exp(H), Simpson's dominance lambda = sum p^2 (the probability that two draws with
replacement agree), Gini-Simpson 1 - lambda and inverse Simpson 1 / lambda. "Simpson index"
means different things in different libraries, so every output names its variant.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from forgekit.errors import ConfigError
from forgekit.evaluate.common import DataLike, load_frame
from forgekit.evaluate.embed import Embedder, embed_texts
from forgekit.evaluate.text import column_texts, is_cjk, words

# --- Vendi -----------------------------------------------------------------------------------

QS = (0, 1, 2, math.inf)
# Largest Gram matrix side decomposed exactly (2048^2 doubles: 32 MB, ~1 s); sparse input
# with both n and d above it is projected to PROJECTED_DIM dimensions first.
MAX_EXACT_DIM = 2048
PROJECTED_DIM = 512


def _check_q(q: float | str) -> float:
    if isinstance(q, str):
        if q.lower() in ("inf", "infinity"):
            return math.inf
        try:
            q = float(q)
        except ValueError:
            raise ConfigError(f"q={q!r}: use a number >= 0 or 'inf'") from None
    q = float(q)
    if q < 0 or math.isnan(q):
        raise ConfigError(f"q={q}: the order must be >= 0 (or inf)")
    return q


def vendi_from_eigenvalues(
    eigenvalues: np.ndarray, q: float | str = 1, *, eps: float | None = None
) -> float:
    """exp(Rényi entropy of order q) of eigenvalues of K/n (which sum to 1 when K_ii = 1).

    Round-off leaves tiny or slightly negative eigenvalues where the exact ones are zero.
    Negative ones are dropped for every q; for q=0 (the rank) eigenvalues below
    max * size * eps * 10 count as zero too, `eps` being the machine epsilon of the precision
    the kernel was computed in (default float64)."""
    q = _check_q(q)
    w = np.asarray(eigenvalues, dtype=np.float64)
    if w.size == 0 or w.max() <= 0:
        return 0.0
    p = w[w > 0]
    p = p / p.sum()
    if q == 0:
        tol = p.max() * w.size * (eps or np.finfo(np.float64).eps) * 10
        return float((p > tol).sum())
    if q == 1:
        return float(np.exp(-(p * np.log(p)).sum()))
    if math.isinf(q):
        return float(1.0 / p.max())
    return float(np.exp(np.log((p**q).sum()) / (1.0 - q)))


def _normalize_rows(x: Any) -> Any:
    if hasattr(x, "tocsr"):
        from sklearn.preprocessing import normalize

        return normalize(x.tocsr(), axis=1)
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return x / norms


def vendi_eigenvalues(x: Any, normalize: bool = True) -> tuple[np.ndarray, float]:
    """Eigenvalues of K/n for K = X X^T, and the machine epsilon they were computed at.

    Dual form (X^T X / n, d x d) when d < n, else the n x n kernel. Dense float32 input keeps
    the Gram product in float32 (6x faster at n=100k, d=384; entries carry ~1e-7 relative
    error, far below the eigenvalues that matter); anything else is float64. Sparse input
    (n-gram counts, TF-IDF) is accepted."""
    n, d = x.shape
    if hasattr(x, "tocsr") and min(n, d) > MAX_EXACT_DIM:
        # Neither X^T X nor X X^T is small enough for a dense eigendecomposition: project the
        # sparse rows to PROJECTED_DIM dimensions first (TruncatedSVD; an approximation).
        from forgekit.evaluate.embed import to_dense

        x = to_dense(x, max_dim=PROJECTED_DIM)
        n, d = x.shape
    if normalize:
        x = _normalize_rows(x)
    if n == 0:
        return np.zeros(0), float(np.finfo(np.float64).eps)
    sparse = hasattr(x, "tocsr")
    dtype = np.float32 if (not sparse and x.dtype == np.float32) else np.float64
    from threadpoolctl import threadpool_limits

    with threadpool_limits(_gram_threads()):
        if d < n:
            gram = (x.T @ x).toarray() if sparse else x.T @ x
        else:
            gram = x @ x.T
            gram = gram.toarray() if hasattr(gram, "toarray") else np.asarray(gram)
    gram = np.asarray(gram, dtype=np.float64) / n
    # A d x d (or small n x n) eigendecomposition gains nothing from BLAS threads, and loses a
    # lot when they spin on a busy machine (measured: 0.03 s on one thread, up to 1.1 s on two).
    with threadpool_limits(1):
        return np.linalg.eigvalsh(gram), float(np.finfo(dtype).eps)


def _gram_threads() -> int | None:
    """BLAS threads for the Gram product: all (None) on an idle machine; one when the load
    average already fills the cores, where spinning BLAS threads make the product 2-4x slower
    (measured on 2 shared cores: 0.43 s on one thread, 1.1-1.7 s on two)."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return None
    return 1 if load >= (os.cpu_count() or 1) - 0.5 else None


def vendi_score_embeddings(
    x: Any, q: float | str | Sequence[float | str] = 1, normalize: bool = True
) -> float | dict[str, float]:
    """Vendi score of embeddings (rows = items). A sequence of q gives a dict keyed "q=<q>".

    Sparse input whose n and d both exceed MAX_EXACT_DIM is projected to PROJECTED_DIM
    dimensions first (an approximation); dense input is always exact (dual form if d < n)."""
    w, eps = vendi_eigenvalues(x, normalize=normalize)
    if isinstance(q, (list, tuple)):
        return {f"q={_q_label(v)}": vendi_from_eigenvalues(w, v, eps=eps) for v in q}
    return vendi_from_eigenvalues(w, q, eps=eps)


def vendi_score_kernel(
    k: np.ndarray, q: float | str | Sequence[float | str] = 1
) -> float | dict[str, float]:
    """Vendi score of a similarity matrix K (n x n, symmetric PSD, K_ii = 1)."""
    k = np.asarray(k, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ConfigError(f"kernel matrix must be square, got shape {k.shape}")
    w = np.linalg.eigvalsh(k / max(k.shape[0], 1)) if k.size else np.zeros(0)
    if isinstance(q, (list, tuple)):
        return {f"q={_q_label(v)}": vendi_from_eigenvalues(w, v) for v in q}
    return vendi_from_eigenvalues(w, q)


def vendi_score_pairwise(items: Sequence[Any], similarity: Callable[[Any, Any], float], q=1):
    """Vendi score from a pairwise similarity function, through `vendi_score.vendi.score`
    (O(n^2) calls: for small sets). Finite q only — the package mishandles q=inf."""
    q = _check_q(q)
    if math.isinf(q):
        n = len(items)
        k = np.zeros((n, n))
        for i in range(n):
            for j in range(i, n):
                k[i, j] = k[j, i] = similarity(items[i], items[j])
        return vendi_score_kernel(k, q)
    import warnings

    from vendi_score import vendi

    with warnings.catch_warnings():
        # 0.0.3 touches the deprecated scipy.sparse.csr namespace on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        return float(vendi.score(list(items), similarity, q=q))


def _q_label(q: float | str) -> str:
    q = _check_q(q)
    return "inf" if math.isinf(q) else f"{q:g}"


def ngram_features(
    texts: Sequence[str], n: int | tuple[int, int] = (1, 2), max_exact_dim: int = MAX_EXACT_DIM
) -> Any:
    """Count vectors of word n-grams (CJK: character n-grams); the n-gram kernel of the Vendi
    paper is the cosine similarity of these. When both the number of texts and of distinct
    n-grams exceed `max_exact_dim`, the n-grams are hashed into `max_exact_dim` buckets (an
    approximation: colliding n-grams count as equal) so the Gram matrix stays small."""
    from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer

    ngram_range = (n, n) if isinstance(n, int) else tuple(n)

    def analyzer(text: str) -> list[str]:
        toks = words(text)
        sep = "" if is_cjk(text) else " "
        out = []
        for size in range(ngram_range[0], ngram_range[1] + 1):
            out.extend(sep.join(toks[i : i + size]) for i in range(len(toks) - size + 1))
        return out

    counts = CountVectorizer(analyzer=analyzer, dtype=np.float64)
    try:
        x = counts.fit_transform(texts)
    except ValueError:  # every text empty
        from scipy.sparse import csr_matrix

        return csr_matrix((len(texts), 1))
    if x.shape[1] > max_exact_dim and x.shape[0] > max_exact_dim:
        hashed = HashingVectorizer(
            analyzer=analyzer, n_features=max_exact_dim, alternate_sign=False, norm=None
        )
        x = hashed.transform(texts)
    return x


def vendi_score(
    data: DataLike = None,
    text: str | Sequence[str] = "input",
    *,
    kernel: str = "ngram",
    q: float | str | Sequence[float | str] = 1,
    ngram: int | tuple[int, int] = (1, 2),
    embedder: str | Embedder | None = "tfidf",
    embeddings: Any = None,
    cache_dir: str | os.PathLike | bool | None = None,
) -> float | dict[str, float]:
    """Vendi score of the records' texts: the effective number of distinct items.

    Args:
        data: DataFrame / records file / list of records (or None with `embeddings`).
        kernel: "ngram" (cosine of word n-gram counts; CJK: character n-grams) or
            "embedding" (cosine of `embedder` embeddings, or of `embeddings` if given).
        q: order 0, 1 (default), 2, inf or any q >= 0; a list gives {"q=<q>": score}.
    """
    if embeddings is not None:
        return vendi_score_embeddings(embeddings, q)
    if data is None:
        raise ConfigError("vendi_score: give data (records) or embeddings")
    texts = column_texts(load_frame(data), text)
    if kernel == "ngram":
        x = ngram_features(texts, ngram)
    elif kernel == "embedding":
        x = embed_texts(texts, embedder, cache_dir=cache_dir)
    else:
        raise ConfigError(f"kernel={kernel!r}: use 'ngram' or 'embedding'")
    return vendi_score_embeddings(x, q)


# --- entity diversity -----------------------------------------------------------------------

# Chinese: jieba part-of-speech tags for named entities.
JIEBA_ENTITY_TAGS = {"nr": "person", "ns": "place", "nt": "organization", "nz": "other proper"}

# English heuristic (no model): a run of capitalized words (joined by "of"/"the"/"and"/"de"),
# or an acronym of 2+ capitals. A single capitalized word is dropped when it starts a sentence
# and is a common word (it is capitalized for position, not because it is a name).
_EN_ENTITY_RE = None
_EN_COMMON = frozenset(
    [
        "a",
        "an",
        "the",
        "this",
        "that",
        "these",
        "those",
        "it",
        "its",
        "i",
        "you",
        "he",
        "she",
        "we",
        "they",
        "my",
        "your",
        "our",
        "their",
        "his",
        "her",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "do",
        "does",
        "did",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "have",
        "has",
        "had",
        "if",
        "then",
        "else",
        "for",
        "to",
        "of",
        "in",
        "on",
        "at",
        "by",
        "with",
        "from",
        "as",
        "and",
        "or",
        "but",
        "not",
        "no",
        "yes",
        "please",
        "give",
        "write",
        "explain",
        "describe",
        "list",
        "tell",
        "make",
        "create",
        "find",
        "show",
        "help",
        "summarize",
        "translate",
        "compare",
        "calculate",
        "provide",
        "generate",
        "suggest",
        "there",
        "here",
        "some",
        "any",
        "all",
        "each",
        "every",
        "one",
        "two",
        "first",
        "next",
        "also",
        "however",
        "therefore",
        "so",
        "because",
        "after",
        "before",
        "while",
    ]
)


def english_entities(text: str) -> list[str]:
    """Named-entity candidates in English text by capitalization (see the rule above)."""
    import re

    global _EN_ENTITY_RE
    if _EN_ENTITY_RE is None:
        word = r"[A-Z][\w'&.-]*[\w]|[A-Z]"
        _EN_ENTITY_RE = re.compile(
            rf"(?<![\w])(?:{word})(?:\s+(?:(?:of|the|and|de|von|van|la|del)\s+)?(?:{word}))*"
        )
    out = []
    for m in _EN_ENTITY_RE.finditer(text):
        span = m.group(0).strip(".")
        start = m.start()
        before = text[:start].rstrip()
        sentence_start = not before or before[-1] in ".!?:\n\"'“(" or before.endswith("...")
        parts = span.split()
        if sentence_start and parts and parts[0].lower() in _EN_COMMON:
            parts = parts[1:]
            while parts and parts[0].lower() in ("of", "the", "and", "de"):
                parts = parts[1:]
        if not parts:
            continue
        span = " ".join(parts)
        if len(parts) == 1 and span.lower() in _EN_COMMON:
            continue
        if len(parts) == 1 and span.isupper() is False and len(span) < 2:
            continue
        out.append(span)
    return out


def chinese_entities(text: str, tags: Iterable[str] = tuple(JIEBA_ENTITY_TAGS)) -> list[str]:
    """Words jieba tags as person/place/organization/other proper noun (nr, ns, nt, nz)."""
    try:
        import jieba
        import jieba.posseg as pseg
    except ImportError:
        raise ConfigError("Chinese entity extraction needs jieba: pip install jieba") from None
    jieba.setLogLevel(60)
    wanted = set(tags)
    return [w.word for w in pseg.cut(text) if w.flag in wanted and len(w.word.strip()) > 1]


def extract_entities(text: str, extractor: str | Callable[[str], list[str]] = "auto"):
    """Entities of one text: jieba for Chinese, the capitalization heuristic for English."""
    if callable(extractor):
        return list(extractor(text))
    if extractor == "auto":
        extractor = "jieba" if is_cjk(text) else "english"
    if extractor == "jieba":
        return chinese_entities(text)
    if extractor == "english":
        return english_entities(text)
    if extractor == "spacy":
        try:
            import spacy
        except ImportError:
            raise ConfigError("extractor='spacy' needs spaCy and a model installed") from None
        nlp = _spacy_model(spacy)
        return [ent.text for ent in nlp(text).ents]
    raise ConfigError(
        f"extractor={extractor!r}: use 'auto', 'jieba', 'english', 'spacy' or a callable"
    )


_SPACY = None


def _spacy_model(spacy):
    global _SPACY
    if _SPACY is None:
        try:
            _SPACY = spacy.load("en_core_web_sm")
        except OSError:
            raise ConfigError(
                "extractor='spacy': the model en_core_web_sm is not installed"
            ) from None
    return _SPACY


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
