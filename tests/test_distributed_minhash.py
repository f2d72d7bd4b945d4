"""Distributed MinHash dedup on a real local Ray cluster equals the local `minhash_dedup`.

The corpus has planted near-duplicates in English and Chinese, exact copies, and chains
(A~B, B~C, A!~C) where keep-first and "one per connected component" differ. It is read from
a folder of several JSONL files (cut into several shards each) and a Parquet file in one run.
"""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pandas as pd
import pytest

from forgekit.data.io import RecordFormatError, read_records
from forgekit.distributed.components import compact, components
from forgekit.distributed.file_shards import Shard, input_files, plan_shards, read_shard
from forgekit.evaluate.minhash import minhash_dedup as local_minhash_dedup

CJK = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]


def _edit(tokens: list[str], rng: random.Random, pool: list[str], start: int, k: int) -> list[str]:
    out = list(tokens)
    for i in range(start, start + k):
        out[i] = rng.choice(pool)
    return out


def make_corpus(seed: int = 7) -> tuple[list[dict], list[list[str]]]:
    """Records (id, input, lang) and the ids of each planted chain."""
    rng = random.Random(seed)
    vocab = [
        "".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(3, 8)))
        for _ in range(5000)
    ]
    docs: list[tuple[str, list[str]]] = []  # (lang, tokens)
    chains: list[list[int]] = []
    for _ in range(60):
        docs.append(("en", [rng.choice(vocab) for _ in range(rng.randint(60, 120))]))
        docs.append(("zh", [rng.choice(CJK) for _ in range(rng.randint(80, 160))]))
    for _ in range(50):  # near-duplicates (a few tokens changed) and exact copies
        lang, tokens = rng.choice(docs)
        pool = vocab if lang == "en" else CJK
        k = rng.choice([0, 1, 2, 3])
        docs.append((lang, _edit(tokens, rng, pool, rng.randrange(len(tokens) - k), k)))
    for lang in ("en", "zh", "en", "zh", "en", "zh"):
        pool = vocab if lang == "en" else CJK
        n = 150
        a = [rng.choice(pool) for _ in range(n)]
        b = _edit(a, rng, pool, 10, 12)  # J(a, b) ~ 0.8
        c = _edit(b, rng, pool, 80, 12)  # J(b, c) ~ 0.8, J(a, c) ~ 0.64
        chains.append([len(docs), len(docs) + 1, len(docs) + 2])
        docs.extend([(lang, a), (lang, b), (lang, c)])
    records = []
    for i, (lang, tokens) in enumerate(docs):
        text = " ".join(tokens) if lang == "en" else "".join(tokens)
        records.append({"id": f"doc-{i:04d}", "input": text, "lang": lang})
    return records, [[f"doc-{i:04d}" for i in chain] for chain in chains]


def write_inputs(records: list[dict], root) -> list:
    """Three JSONL files in a folder (one with blank lines) and one Parquet file with two row
    groups: [folder, parquet] reads back as `records` in order."""
    folder = root / "jsonl"
    folder.mkdir()
    cut = [0, 50, 100, 140, len(records)]
    for k in range(3):
        with open(folder / f"part-{k}.jsonl", "w", encoding="utf-8") as handle:
            for j, record in enumerate(records[cut[k] : cut[k + 1]]):
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                if k == 1 and j % 17 == 0:
                    handle.write("\n")
    parquet = root / "tail.parquet"
    pd.DataFrame(records[cut[3] :]).to_parquet(parquet, row_group_size=25, index=False)
    return [folder, parquet]


def read_parts(folder) -> list[dict]:
    rows = []
    for name in sorted(os.listdir(folder)):
        rows.extend(read_records(folder / name))
    return rows


def test_distributed_equals_local_on_jsonl_folder_and_parquet(ray_cluster, tmp_path):
    import ray

    ray.data.DataContext.get_current().enable_progress_bars = False
    from forgekit.distributed import minhash_dedup

    records, chains = make_corpus()
    sources = write_inputs(records, tmp_path)
    local = local_minhash_dedup(records, threshold=0.7)
    # the corpus exercises what keep-first means: a chain's middle document is removed as a
    # duplicate of the first, and the last one is kept (a component rule would drop it)
    by_id = local.removed.set_index("id")
    kept_ids = set(local.kept["id"])
    chained = [c for c in chains if c[1] in by_id.index and c[2] in kept_ids]
    assert len(chained) >= 2
    assert all(by_id.loc[c[1], "duplicate_of"] == c[0] for c in chained)
    assert {"en", "zh"} <= set(local.removed["lang"])

    result = minhash_dedup(sources, tmp_path / "out", threshold=0.7, shard_bytes=6000)

    assert result.stats["shards"] > 4  # the JSONL files were cut into byte ranges
    assert result.n_input == len(records)
    expected = local.removed[["row", "id", "duplicate_of_row", "duplicate_of"]]
    got = result.removed[["row", "id", "duplicate_of_row", "duplicate_of"]]
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True), check_dtype=False)
    assert np.allclose(result.removed["estimated_jaccard"], local.removed["estimated_jaccard"])
    # the written files: every kept record once, in input order; removed ones with reasons
    kept_rows = read_parts(result.kept_dir)
    assert [r["id"] for r in kept_rows] == local.kept["id"].tolist()
    assert kept_rows[0] == records[0]
    removed_rows = read_parts(result.removed_dir)
    assert [(r["id"], r["duplicate_of"], r["row"]) for r in removed_rows] == list(
        zip(local.removed["id"], local.removed["duplicate_of"], local.removed["row"])
    )
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["removed"] == local.n_removed
    with pytest.raises(FileExistsError, match="earlier run"):
        minhash_dedup(sources, tmp_path / "out")


def test_components_label_each_node_with_its_smallest_node():
    u = np.array([5, 6, 1, 9, 3, 20])
    v = np.array([6, 7, 3, 3, 2, 21])
    nodes, labels = components(u, v)
    assert dict(zip(nodes.tolist(), labels.tolist())) == {
        1: 1,
        2: 1,
        3: 1,
        9: 1,
        5: 5,
        6: 5,
        7: 5,
        20: 20,
        21: 20,
    }
    # a long path in the worst order still converges to its first node
    path = np.arange(1000)
    nodes, labels = components(path[::-1][1:], path[::-1][:-1])
    assert set(labels.tolist()) == {0}


def test_compacted_blocks_keep_the_components_of_the_whole_graph():
    rng = np.random.default_rng(3)
    u, v = rng.integers(0, 400, 300), rng.integers(0, 400, 300)
    whole = dict(zip(*(x.tolist() for x in components(u, v))))
    pieces = [compact(u[i : i + 50], v[i : i + 50]) for i in range(0, 300, 50)]
    merged = components(
        np.concatenate([p[0] for p in pieces]), np.concatenate([p[1] for p in pieces])
    )
    assert dict(zip(*(x.tolist() for x in merged))) == whole


def test_jsonl_shards_read_every_line_once_in_order(tmp_path):
    path = tmp_path / "a.jsonl"
    lines = [json.dumps({"id": i, "input": "x" * (i % 13)}) for i in range(200)]
    path.write_text("\n".join(lines[:50]) + "\n\n" + "\n".join(lines[50:]) + "\n")
    for size in (1, 7, 64, 333, 10_000):
        shards = plan_shards([str(path)], shard_bytes=size)
        ids = [r["id"] for s in shards for batch in read_shard(s, 16) for r in batch]
        assert ids == list(range(200)), size


def test_bad_input_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"input": "a"}\n{"input": "b"}\n{"input": oops}\n')
    shard = Shard(0, str(path), "jsonl", 20, path.stat().st_size)
    with pytest.raises(RecordFormatError, match=r"bad\.jsonl:3: invalid JSON"):
        list(read_shard(shard))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(Exception, match=r"notes\.txt: distributed dedup reads \.jsonl"):
        input_files(tmp_path / "notes.txt")


def test_forge_dedup_ray_refuses_what_it_cannot_do(tmp_path, capsys):
    from forgekit.cli import main

    data = tmp_path / "a.jsonl"
    data.write_text('{"input": "x"}\n')
    assert main(["dedup", "--ray", "-i", str(data)]) == 1
    assert "--ray needs --out" in capsys.readouterr().err
    assert main(["dedup", "--ray", "-i", str(data), "--method", "exact", "--out", "o"]) == 1
    assert "--ray runs --method minhash only" in capsys.readouterr().err
    args = ["dedup", "--ray", "auto", "-i", str(data), "--out", "o", "--source-field", "s"]
    assert main(args) == 1
    assert "--source-field is not supported with --ray" in capsys.readouterr().err


def test_stages_without_ray_give_the_local_keep_first():
    """The stage functions chained by hand, with the band-key rows split over three blocks the
    way a shuffle may put them, reproduce lsh_dedup's decisions (chains included)."""
    from forgekit.distributed import stages
    from forgekit.evaluate.minhash import lsh_dedup, lsh_params, minhash_signatures
    from forgekit.evaluate.minhash.lsh import band_keys

    records, _ = make_corpus()
    sigs = minhash_signatures([r["input"] for r in records], num_perm=128)
    params = lsh_params(0.7, 128)
    expected, _ = lsh_dedup(sigs, 0.7, params=params)
    keys, _ = band_keys(sigs, *params)
    order = np.arange(len(records), dtype=np.int64)
    ids = np.array([json.dumps(r["id"]) for r in records], dtype=object)
    rows = stages.bucket_rows({"order": order, "keys": keys.T})
    block = rows["bucket"] % 3  # a hash partition: every bucket whole in one block
    edges = [stages.star_edges({k: v[block == b] for k, v in rows.items()}) for b in range(3)]
    nodes, labels = components(
        np.concatenate([e["u"] for e in edges]), np.concatenate([e["v"] for e in edges])
    )
    colliding = stages.colliding_rows({"order": order, "sig": sigs, "id": ids}, nodes, labels)
    part = colliding["component"] % 2
    got = np.full(len(records), -1)
    for b in range(2):
        verdict = stages.dedup_block({k: v[part == b] for k, v in colliding.items()}, 0.7, params)
        got[verdict["order"]] = verdict["dup_order"]
    assert np.array_equal(got, expected)
    assert (expected >= 0).sum() > 20


def test_write_stage_splits_a_shard_into_kept_and_removed_parquet(tmp_path):
    from forgekit.distributed import stages

    path = tmp_path / "in.jsonl"
    rows = [{"id": f"r{i}", "input": f"text {i}"} for i in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    shard = {"index": [3], "path": [str(path)], "kind": ["jsonl"], "start": [0]}
    removed = {"rows": [1, 4], "dup_rows": [100, 101], "dup_ids": ['"r0"', "null"]}
    removed["similarity"] = [0.9, 0.8125]
    batch = {
        **{k: np.array(v) for k, v in shard.items()},
        "stop": np.array([path.stat().st_size]),
        "first_row": np.array([100]),
        "removed": np.array([json.dumps(removed)]),
    }
    counts = stages.write_shard_outputs(batch, str(tmp_path / "out"), ".parquet", 2)
    assert counts["kept"].tolist() == [3] and counts["removed"].tolist() == [2]
    kept = read_records(tmp_path / "out/kept/part-00003.parquet")
    assert [r["id"] for r in kept] == ["r0", "r2", "r3"]
    gone = read_records(tmp_path / "out/removed/part-00003.parquet")
    assert [(r["id"], r["row"], r["duplicate_of"]) for r in gone] == [
        ("r1", 101, "r0"),
        ("r4", 104, "101"),
    ]
