"""Vendi scores and entity diversity indices against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from forgekit.errors import ConfigError
from forgekit.evaluate import (
    diversity_indices,
    entity_diversity,
    extract_entities,
    vendi_score,
    vendi_score_embeddings,
    vendi_score_kernel,
)
from forgekit.evaluate.diversity import vendi_from_eigenvalues, vendi_score_pairwise

ALL_Q = [0, 1, 2, "inf"]


def test_indices_on_known_counts():
    # p = (1/2, 1/4, 1/4)
    out = diversity_indices({"a": 2, "b": 1, "c": 1})
    h = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))  # = 1.5 ln 2
    assert out["shannon_entropy_nats"] == pytest.approx(h)
    assert out["shannon_entropy_nats"] == pytest.approx(1.5 * math.log(2))
    assert out["shannon_evenness"] == pytest.approx(h / math.log(3))
    assert out["effective_number_shannon"] == pytest.approx(2 * math.sqrt(2))
    assert out["simpson_dominance"] == pytest.approx(0.375)  # 1/4 + 1/16 + 1/16
    assert out["gini_simpson"] == pytest.approx(0.625)
    assert out["inverse_simpson"] == pytest.approx(8 / 3)
    assert out["richness"] == 3 and out["observations"] == 4


def test_indices_uniform_and_single_category():
    uniform = diversity_indices({k: 5 for k in "abcd"})
    assert uniform["shannon_entropy_nats"] == pytest.approx(math.log(4))
    assert uniform["shannon_evenness"] == pytest.approx(1.0)
    assert uniform["effective_number_shannon"] == pytest.approx(4.0)
    assert uniform["inverse_simpson"] == pytest.approx(4.0)
    single = diversity_indices({"only": 7})
    assert single["shannon_entropy_nats"] == 0.0
    assert math.isnan(single["shannon_evenness"])  # H / ln 1 is undefined
    assert single["simpson_dominance"] == 1.0 and single["gini_simpson"] == 0.0


@pytest.mark.parametrize("q", ALL_Q)
def test_vendi_identical_items_score_one_and_orthogonal_items_score_n(q):
    assert vendi_score_embeddings(np.ones((6, 4)), q) == pytest.approx(1.0)
    assert vendi_score_embeddings(np.eye(5), q) == pytest.approx(5.0)
    # n > d: the dual form; 300 copies of 3 orthogonal directions -> 3 effective items
    x = np.tile(np.eye(3, 8), (100, 1)).astype(np.float32)
    assert vendi_score_embeddings(x, q) == pytest.approx(3.0, rel=1e-5)


def test_vendi_orders_on_a_hand_computed_kernel():
    # two identical items and one orthogonal: eigenvalues of K/3 are 2/3 and 1/3
    k = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=float)
    scores = vendi_score_kernel(k, ALL_Q)
    assert scores["q=0"] == pytest.approx(2.0)
    assert scores["q=1"] == pytest.approx(
        math.exp(-(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)))
    )
    assert scores["q=2"] == pytest.approx(1 / (4 / 9 + 1 / 9))  # 1.8
    assert scores["q=inf"] == pytest.approx(1.5)
    # monotone non-increasing in q, as Hill numbers are
    values = [scores[f"q={q}"] for q in ("0", "1", "2", "inf")]
    assert values == sorted(values, reverse=True)


@pytest.mark.filterwarnings("ignore::DeprecationWarning:vendi_score")
def test_dual_and_kernel_forms_agree_and_match_the_vendi_package():
    from vendi_score import vendi

    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 16))
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    dual = vendi_score_embeddings(x, [1, 2, "inf"])  # n > d: dual form
    kernel = vendi_score_kernel(xn @ xn.T, [1, 2, "inf"])
    assert dual == pytest.approx(kernel)
    assert dual["q=1"] == pytest.approx(vendi.score_dual(x, q=1))
    assert dual["q=2"] == pytest.approx(vendi.score_K(xn @ xn.T, q=2))
    # the package's score_X ignores q; ours does not
    assert vendi.score_X(x, q=2) == pytest.approx(vendi.score_X(x, q=1))
    assert dual["q=2"] < dual["q=1"]


def test_vendi_q0_ignores_round_off_eigenvalues():
    assert vendi_from_eigenvalues(np.array([1.0, 1e-17, -1e-17]), 0) == 1.0
    with pytest.raises(ConfigError, match="q=-1"):
        vendi_from_eigenvalues(np.array([1.0]), -1)
    with pytest.raises(ConfigError, match="q='big'"):
        vendi_from_eigenvalues(np.array([1.0]), "big")


def test_vendi_pairwise_uses_the_package_for_finite_q():
    items = ["a", "a", "b"]
    same = lambda x, y: float(x == y)  # noqa: E731
    assert vendi_score_pairwise(items, same, q=1) == pytest.approx(1.8898815748)
    assert vendi_score_pairwise(items, same, q="inf") == pytest.approx(1.5)


def test_vendi_of_texts_with_the_ngram_kernel():
    texts = ["the cat sat on the mat"] * 3 + ["完全不同的中文句子在这里"] * 3
    assert vendi_score([{"input": t} for t in texts]) == pytest.approx(2.0, rel=1e-6)
    assert vendi_score([{"input": t} for t in texts], kernel="embedding", q=1) == pytest.approx(
        2.0, rel=1e-5
    )
    with pytest.raises(ConfigError, match="kernel='rbf'"):
        vendi_score([{"input": "x"}], kernel="rbf")


def test_entity_diversity_from_a_list_field():
    df = pd.DataFrame(
        {
            "input": ["q1", "q2", "q3", "q4"],
            "task_label": [["med", "pharma"], ["med"], [], ["law"]],
            "tag": ["合理用药-用法用量", "合理用药-用法用量", None, "疾病诊断"],
        }
    )
    labels = entity_diversity(df, "task_label")
    assert labels.counts.to_dict() == {"med": 2, "pharma": 1, "law": 1}
    assert labels.indices["simpson_dominance"] == pytest.approx(0.375)
    assert labels.items_without_entities == 1
    tags = entity_diversity(df, "tag", sep="-")
    assert tags.counts.to_dict() == {"合理用药": 2, "用法用量": 2, "疾病诊断": 1}
    summary = tags.summary()
    assert {"shannon_entropy_nats", "simpson_dominance", "gini_simpson", "inverse_simpson"} <= set(
        summary
    )


def test_entities_extracted_from_chinese_and_english_text():
    assert extract_entities("我在北京大学学习，李明去了上海。") == ["北京大学", "李明", "上海"]
    english = extract_entities(
        "What is the capital of France? Tell me about the Eiffel Tower. NASA works with the "
        "United States of America."
    )
    assert english == ["France", "Eiffel Tower", "NASA", "United States of America"]
    div = entity_diversity(
        [{"input": "李明去了上海。"}, {"input": "王芳也去了上海。"}, {"input": "no names here"}],
        text="input",
    )
    assert div.counts.to_dict() == {"上海": 2, "李明": 1, "王芳": 1}
    assert div.items_without_entities == 1


def test_entity_diversity_errors_name_the_field():
    with pytest.raises(
        ConfigError, match="field 'tags' is not in the data; available fields: input"
    ):
        entity_diversity([{"input": "x"}], "tags")
    with pytest.raises(ConfigError, match="exactly one of"):
        entity_diversity([{"input": "x"}])
