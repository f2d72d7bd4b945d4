"""DiversityReport: summary numbers, linked charts, HTML/PNG output."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest

import forgekit.evaluate as ev
from forgekit.errors import ConfigError


@pytest.fixture(scope="module")
def records():
    return pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(9)],
            "input": [
                "How do I bake bread at home?",
                "How do I bake bread at home?",
                "How can I bake bread at home today",
                "涂了甲硝唑后皮肤长的痘痘没有效果，我应该如何处理？",
                "What is the capital of France?",
                "Explain quantum computing simply",
                "Write a poem about Paris in spring",
                "List three prime numbers",
                "",
            ],
            "tag": ["cook", "cook", "cook", "med", "geo", ["sci", "cs"], "lit", "math", None],
        }
    )


@pytest.fixture(scope="module")
def rep(records):
    return ev.report(records, text="input", label="tag")


def _summary(rep):
    return dict(zip(rep.summary["metric"], rep.summary["value"], strict=True))


def test_summary_numbers(rep, records):
    s = _summary(rep)
    assert s["records"] == 9
    assert s["exact_duplicates"] == 1
    assert s["empty_texts"] == 1
    assert s["cjk_share"] == pytest.approx(1 / 9)
    assert s["label_richness"] == 7  # cook, med, geo, sci, cs, lit, math
    # 9 labels on 8 records: cook x3, six others once each -> Simpson dominance (9 + 6) / 81
    assert s["label_simpson_dominance"] == pytest.approx(15 / 81)
    assert 1 < s["vendi_ngram_q1"] < 9
    assert len(rep.records) == 9 and set(rep.records["duplicate"]) == {"duplicate", "unique"}
    assert rep.labels.iloc[0].tolist() == ["cook", 3]


def test_chart_links_a_brush_and_a_label_selection_to_the_table(rep):
    spec = rep.chart().to_dict()
    text = json.dumps(spec)
    params = {p["name"] for p in _walk_params(spec)}
    assert {"brush", "pick"} <= params
    assert '"filter": {"param": "brush"}' in text and '"filter": {"param": "pick"}' in text
    assert "Selected records" in text and "Embedding map (PCA)" in text
    assert set(rep.charts()) == {"length", "embedding", "labels", "duplicates"}


def _walk_params(node):
    if isinstance(node, dict):
        yield from node.get("params", [])
        for value in node.values():
            yield from _walk_params(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk_params(value)


def test_selected_records_follow_the_widget_selections(rep):
    points = rep.records
    x0, x1 = sorted(points["x"])[0], sorted(points["x"])[3]
    widget = SimpleNamespace(
        selections=SimpleNamespace(
            brush=SimpleNamespace(value={"x": [x1, x0], "y": [-10, 10]}),
            pick=SimpleNamespace(value=[]),
        )
    )
    chosen = rep.selected_records(widget)
    assert len(chosen) == 4
    widget.selections.pick.value = [{"label": "cook"}]
    assert set(rep.selected_records(widget)["label"]) <= {"cook"}


def test_save_html_and_png(rep, tmp_path):
    page = rep.save(tmp_path / "report.html")
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "vega" in html.lower()
    assert "label_simpson_dominance" in html
    with pytest.raises(FileExistsError):
        rep.save(tmp_path / "report.html")
    pytest.importorskip("vl_convert")
    png = rep.save(tmp_path / "report.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="save as .html or .png"):
        rep.save(tmp_path / "report.pdf")


def test_notebook_display_hooks(rep):
    bundle = rep._repr_mimebundle_()
    assert any("vegalite" in key or key == "text/html" for key in bundle)
    assert "DiversityReport(records=9" in bundle["text/plain"]
    assert "<table" in rep._repr_html_()


def test_missing_label_field_is_reported_not_fatal(records):
    out = ev.report(records.drop(columns=["tag"]), label="tag", max_points=5)
    assert "label field 'tag' not in data" in out.summary["value"].tolist()
    assert len(out.records) == 5 and out.labels.empty
