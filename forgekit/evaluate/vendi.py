"""The Vendi score: the effective number of distinct items in a set.

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
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from forgekit.errors import ConfigError
from forgekit.evaluate.common import DataLike, load_frame
from forgekit.evaluate.embed import Embedder, embed_texts
from forgekit.evaluate.text import column_texts, is_cjk, words

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
