"""Benchmark forgekit.evaluate: MinHash dedup throughput and agreement, Vendi score timing.

    .venv/bin/python benchmarks/evaluate.py           # 100k docs (a few minutes on 2 cores)
    .venv/bin/python benchmarks/evaluate.py --quick   # 10k docs, for a smoke run

Writes benchmarks/results/evaluate.json (or --out). Everything runs in one process, one
after another, on the same synthetic corpus:

* corpus: N documents of 200 words drawn from a Zipf-like vocabulary; 10 % of them are
  planted near-duplicates of an earlier document with 1-5 % of the words substituted (true
  3-gram Jaccard ~0.74-0.94). `--edit-rate 0.01,0.12` plants harder cases (true Jaccard down
  to ~0.5) so that many pairs straddle the 0.7 threshold: a stress test for agreement.
* forgekit `minhash_dedup` end to end (shingling, hashing, LSH, keep-first), with the
  default hash="sha1" (signatures bit-identical to datasketch) and with hash="fast", each on
  all cores and in one process; and the signatures alone (no LSH) in one process.
* datasketch baselines with the same shingles, threshold, num_perm and keep-first loop over
  a real `MinHashLSH`: `MinHash.bulk` on all documents; the per-token `MinHash.update`
  loop on a subsample only, extrapolated to N (labelled as such in the JSON).
* agreement: share of documents whose keep/remove decision matches the `MinHash.bulk`
  baseline, and the Jaccard of the kept-id sets; for the documents where they differ, the
  true (exact) 3-gram Jaccard with their source: MinHash estimates carry noise (std ~0.04 at
  J=0.7 with 128 permutations), so two hash functions can only disagree near the threshold.
* Vendi score of n x 384 float32 embeddings (dual form) at n = 10k and 100k, all four
  orders from one eigendecomposition; first call and the median of 3 warm calls.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forgekit.evaluate.diversity import vendi_score_embeddings
from forgekit.evaluate.minhash import lsh_params, minhash_dedup, minhash_signatures, shingles

THRESHOLD = 0.7
NUM_PERM = 128
NGRAM = 3
WORDS_PER_DOC = 200


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the hashing pool's workers): less
    sensitive than wall time to other load on a shared machine."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def make_corpus(
    n_docs: int, seed: int = 0, edit_rate: tuple[float, float] = (0.01, 0.05)
) -> tuple[list[str], dict[int, int]]:
    """Synthetic documents and the planted near-duplicates {row: row it copies}."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab_size = 30_000
    lengths = rng.integers(2, 10, vocab_size)
    vocab = np.array(["".join(rng.choice(letters, k)) for k in lengths])
    weights = 1.0 / (np.arange(vocab_size) + 10.0)  # Zipf-like: a few very common words
    weights /= weights.sum()
    n_planted = n_docs // 10
    n_base = n_docs - n_planted
    word_ids = rng.choice(vocab_size, size=(n_base, WORDS_PER_DOC), p=weights)
    docs_ids: list[np.ndarray] = list(word_ids)
    planted: dict[int, int] = {}
    # Insert each near-duplicate somewhere after its source document.
    positions = np.sort(rng.choice(np.arange(1, n_docs), size=n_planted, replace=False))
    out_ids: list[np.ndarray] = []
    base_iter = iter(docs_ids)
    pos_set = set(positions.tolist())
    for row in range(n_docs):
        if row in pos_set and out_ids:
            src = int(rng.integers(0, len(out_ids)))
            copy = out_ids[src].copy()
            rate = rng.uniform(*edit_rate)
            k = max(1, round(rate * WORDS_PER_DOC))
            where = rng.choice(WORDS_PER_DOC, size=k, replace=False)
            copy[where] = rng.choice(vocab_size, size=k, p=weights)
            # point at the original document (follow chains of copies)
            planted[row] = planted.get(src, src)
            out_ids.append(copy)
        else:
            out_ids.append(next(base_iter))
    docs = [" ".join(vocab[ids]) for ids in out_ids]
    return docs, planted


def true_jaccard(docs: list[str], planted: dict[int, int]) -> dict[int, float]:
    """Exact Jaccard of the 3-gram shingle sets of each planted document and its source."""
    out = {}
    for row, src in planted.items():
        a, b = set(shingles(docs[row], NGRAM)), set(shingles(docs[src], NGRAM))
        out[row] = len(a & b) / len(a | b)
    return out


def disagreement_detail(a, b, truth: dict[int, float]) -> dict:
    rows = np.flatnonzero(a != b).tolist()
    js = [truth[r] for r in rows if r in truth]
    return {
        "differing_rows_planted": len(js),
        "differing_rows_not_planted": len(rows) - len(js),
        "true_jaccard_min": round(min(js), 3) if js else None,
        "true_jaccard_max": round(max(js), 3) if js else None,
    }


def decisions_from_removed(n: int, removed_rows) -> np.ndarray:
    kept = np.ones(n, dtype=bool)
    kept[np.asarray(list(removed_rows), dtype=np.int64)] = False
    return kept


def datasketch_dedup(sigs_objects, threshold: float) -> np.ndarray:
    """Keep-first dedup over datasketch MinHash objects with a real MinHashLSH."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    kept = np.ones(len(sigs_objects), dtype=bool)
    for i, mh in enumerate(sigs_objects):
        candidates = lsh.query(mh)
        if candidates and max(mh.jaccard(sigs_objects[c]) for c in candidates) >= threshold:
            kept[i] = False
            continue
        lsh.insert(i, mh, check_duplication=False)
    return kept


def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    kept_a, kept_b = set(np.flatnonzero(a)), set(np.flatnonzero(b))
    return {
        "same_decision_pct": round(100.0 * float((a == b).mean()), 3),
        "kept_set_jaccard_pct": round(100.0 * len(kept_a & kept_b) / len(kept_a | kept_b), 3),
        "decisions_differing": int((a != b).sum()),
    }


def planted_recall(kept: np.ndarray, planted: dict[int, int]) -> dict[str, float]:
    removed = set(np.flatnonzero(~kept).tolist())
    hit = len(removed & set(planted))
    return {
        "removed": len(removed),
        "planted_removed": hit,
        "removed_not_planted": len(removed - set(planted)),
    }


def bench_minhash(n_docs: int, subsample: int, seed: int, edit_rate: tuple[float, float]) -> dict:
    from datasketch import MinHash

    t0 = time.perf_counter()
    docs, planted = make_corpus(n_docs, seed, edit_rate)
    gen_s = time.perf_counter() - t0
    truth = true_jaccard(docs, planted)
    above = sum(1 for j in truth.values() if j >= THRESHOLD)
    records = [{"input": d} for d in docs]
    results: dict = {
        "docs": n_docs,
        "words_per_doc": WORDS_PER_DOC,
        "threshold": THRESHOLD,
        "num_perm": NUM_PERM,
        "ngram": NGRAM,
        "lsh_bands_rows": list(lsh_params(THRESHOLD, NUM_PERM)),
        "corpus_generation_s": round(gen_s, 2),
        "planted_edit_rate": list(edit_rate),
        "planted": len(planted),
        "planted_true_jaccard_at_or_above_threshold": above,
        "planted_true_jaccard_range": [
            round(min(truth.values()), 3),
            round(max(truth.values()), 3),
        ],
        "methods": {},
    }
    lsh_params(THRESHOLD, NUM_PERM)  # warm datasketch's parameter search (cached by nobody)

    def run_forgekit(label: str, **kwargs) -> np.ndarray:
        c = cpu_seconds()
        t = time.perf_counter()
        res = minhash_dedup(records, threshold=THRESHOLD, num_perm=NUM_PERM, ngram=NGRAM, **kwargs)
        s = time.perf_counter() - t
        cpu = cpu_seconds() - c
        kept = decisions_from_removed(n_docs, res.removed["row"])
        results["methods"][label] = {
            "what": "forgekit minhash_dedup end to end (shingle, hash, LSH, keep-first)",
            "params": {k: v for k, v in kwargs.items()},
            "seconds": round(s, 3),
            "cpu_seconds": round(cpu, 3),
            "docs_per_s": round(n_docs / s, 1),
            **planted_recall(kept, planted),
        }
        print(f"{label}: {s:.2f} s, {n_docs / s:,.0f} docs/s", flush=True)
        return kept

    # untimed warm-up: first-call costs (page faults, pool start-up code paths) out of the way
    for hash_name in ("sha1", "fast"):
        minhash_dedup(records[:2000], threshold=THRESHOLD, num_perm=NUM_PERM, hash=hash_name)
    sha1_kept = run_forgekit("forgekit_sha1_all_cores", hash="sha1", n_jobs=-1)  # the default
    run_forgekit("forgekit_sha1_1_process", hash="sha1", n_jobs=1)
    fast_kept = run_forgekit("forgekit_fast_all_cores", hash="fast", n_jobs=-1)
    fast1_kept = run_forgekit("forgekit_fast_1_process", hash="fast", n_jobs=1)
    # datasketch semantics with another permutation seed (sha1 signatures are bit-identical
    # to datasketch's): how far two runs of the *same* method agree, the yardstick for the
    # fast hash's agreement below.
    seed2_kept = run_forgekit("forgekit_sha1_seed2_all_cores", hash="sha1", seed=2, n_jobs=-1)

    # signatures only (shingling + hashing, no LSH), one process: the part MinHash.bulk does
    t = time.perf_counter()
    minhash_signatures(docs, num_perm=NUM_PERM, ngram=NGRAM, hash="sha1", n_jobs=1)
    sig_sha1_s = time.perf_counter() - t

    # datasketch MinHash.bulk on everything, same shingles, then MinHashLSH keep-first.
    c = cpu_seconds()
    t = time.perf_counter()
    shingle_bytes = [[s.encode("utf-8") for s in shingles(d, NGRAM)] for d in docs]
    t_shingle = time.perf_counter() - t
    t = time.perf_counter()
    bulk = MinHash.bulk(shingle_bytes, num_perm=NUM_PERM)
    t_bulk = time.perf_counter() - t
    t = time.perf_counter()
    bulk_kept = datasketch_dedup(bulk, THRESHOLD)
    t_lsh = time.perf_counter() - t
    total = t_shingle + t_bulk + t_lsh
    bulk_cpu = cpu_seconds() - c
    results["methods"]["datasketch_bulk"] = {
        "what": "same shingles -> datasketch MinHash.bulk -> MinHashLSH keep-first",
        "seconds": round(total, 3),
        "cpu_seconds": round(bulk_cpu, 3),
        "seconds_shingling": round(t_shingle, 3),
        "seconds_hashing": round(t_bulk, 3),
        "seconds_lsh": round(t_lsh, 3),
        "docs_per_s": round(n_docs / total, 1),
        "hashing_docs_per_s": round(n_docs / t_bulk, 1),
        **planted_recall(bulk_kept, planted),
    }
    print(f"datasketch bulk: {total:.2f} s, {n_docs / total:,.0f} docs/s", flush=True)

    # datasketch per-token update loop: a subsample, extrapolated.
    sub = min(subsample, n_docs)
    t = time.perf_counter()
    updated = []
    for doc_shingles in shingle_bytes[:sub]:
        m = MinHash(num_perm=NUM_PERM)
        for s in doc_shingles:
            m.update(s)
        updated.append(m)
    t_update = time.perf_counter() - t
    update_rate = sub / (t_update + (t_shingle + t_lsh) * sub / n_docs)
    identical = np.mean(
        [
            np.array_equal(a.hashvalues, b.hashvalues)
            for a, b in zip(updated, bulk[:sub], strict=True)
        ]
    )
    results["methods"]["datasketch_update_loop"] = {
        "what": (
            f"per-token MinHash.update on the first {sub} docs only; docs_per_s and "
            "seconds_extrapolated scale that to all docs (plus the measured shingling and LSH "
            "share); not run on all docs"
        ),
        "subsample_docs": sub,
        "subsample_hashing_seconds": round(t_update, 3),
        "docs_per_s": round(update_rate, 1),
        "seconds_extrapolated": round(n_docs / update_rate, 1),
        "signatures_identical_to_bulk_pct": round(100.0 * float(identical), 2),
    }
    print(f"datasketch update loop (subsample {sub}): {update_rate:,.0f} docs/s", flush=True)

    # sha1 signatures must equal datasketch's bit for bit on the subsample.
    ours = minhash_signatures(docs[:sub], num_perm=NUM_PERM, ngram=NGRAM, hash="sha1", n_jobs=1)
    same = np.mean([np.array_equal(o, m.hashvalues) for o, m in zip(ours, bulk[:sub], strict=True)])

    base = results["methods"]["datasketch_bulk"]["docs_per_s"]
    labels = (
        "forgekit_sha1_all_cores",
        "forgekit_sha1_1_process",
        "forgekit_fast_all_cores",
        "forgekit_fast_1_process",
    )
    results["speedup_vs_bulk"] = {
        label: round(results["methods"][label]["docs_per_s"] / base, 2) for label in labels
    }
    bulk_sig_s = t_shingle + t_bulk
    results["signatures_only_1_process"] = {
        "what": "shingling + hashing of every document, no LSH: forgekit minhash_signatures "
        "(hash='sha1', n_jobs=1) vs the same shingles built in Python + MinHash.bulk",
        "forgekit_sha1_seconds": round(sig_sha1_s, 3),
        "datasketch_bulk_seconds": round(bulk_sig_s, 3),
        "speedup": round(bulk_sig_s / sig_sha1_s, 2),
    }
    # CPU time (this process + pool workers): robust to other load on a shared machine;
    # for the all-cores runs it measures work done, not elapsed time.
    results["speedup_vs_bulk_cpu_time"] = {
        label: round(bulk_cpu / results["methods"][label]["cpu_seconds"], 2) for label in labels
    }
    results["speedup_vs_update_loop"] = {
        label: round(
            results["methods"][label]["docs_per_s"]
            / results["methods"]["datasketch_update_loop"]["docs_per_s"],
            1,
        )
        for label in ("forgekit_sha1_all_cores", "forgekit_fast_all_cores")
    }
    results["agreement_with_bulk"] = {
        label: {**agreement(kept, bulk_kept), **disagreement_detail(kept, bulk_kept, truth)}
        for label, kept in (
            ("forgekit_sha1_all_cores", sha1_kept),
            ("forgekit_fast_all_cores", fast_kept),
            ("forgekit_fast_1_process", fast1_kept),
            ("datasketch_semantics_other_seed", seed2_kept),
        )
    }
    default = results["agreement_with_bulk"]["forgekit_sha1_all_cores"]["same_decision_pct"]
    results["goal"] = {
        "what": "default minhash_dedup (hash='sha1', all cores) >= 4x MinHash.bulk with "
        ">= 99 % of keep/remove decisions equal",
        "speedup_all_cores": results["speedup_vs_bulk"]["forgekit_sha1_all_cores"],
        "speedup_1_process": results["speedup_vs_bulk"]["forgekit_sha1_1_process"],
        "same_decision_pct": default,
        "met": results["speedup_vs_bulk"]["forgekit_sha1_all_cores"] >= 4 and default >= 99,
    }
    results["sha1_signatures_identical_to_datasketch_pct"] = round(100.0 * float(same), 2)
    return results


def bench_vendi(sizes: list[int], dim: int = 384, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for n in sizes:
        # clustered embeddings: 500 directions plus noise, like real sentence embeddings
        centers = rng.standard_normal((500, dim)).astype(np.float32)
        x = centers[rng.integers(0, 500, n)] + 0.5 * rng.standard_normal((n, dim)).astype(
            np.float32
        )
        t = time.perf_counter()
        scores = vendi_score_embeddings(x, [0, 1, 2, "inf"])
        first = time.perf_counter() - t
        warm = []
        for _ in range(3):
            t = time.perf_counter()
            vendi_score_embeddings(x, [0, 1, 2, "inf"])
            warm.append(time.perf_counter() - t)
        out[f"n={n}"] = {
            "n": n,
            "d": dim,
            "dtype": "float32",
            "form": "dual (eigenvalues of X^T X / n)",
            "first_call_s": round(first, 3),
            "warm_median_s": round(float(np.median(warm)), 3),
            "scores": {k: round(v, 3) for k, v in scores.items()},
        }
        print(f"vendi n={n}: first {first:.3f} s, warm {np.median(warm):.3f} s", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k docs, Vendi at 10k only")
    parser.add_argument("--docs", type=int, default=None, help="number of documents")
    parser.add_argument("--subsample", type=int, default=None, help="update-loop docs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--edit-rate",
        default="0.01,0.05",
        help="share of words substituted in planted near-duplicates, as MIN,MAX",
    )
    parser.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parent / "results" / "evaluate.json"),
    )
    args = parser.parse_args()
    n_docs = args.docs or (10_000 if args.quick else 100_000)
    subsample = args.subsample or (500 if args.quick else 2_000)
    import datasketch

    result = {
        "benchmark": "forgekit.evaluate",
        "command": " ".join(["python", "benchmarks/evaluate.py", *sys.argv[1:]]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "datasketch": datasketch.__version__ if hasattr(datasketch, "__version__") else "?",
        },
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    low, high = (float(v) for v in args.edit_rate.split(","))
    result["minhash"] = bench_minhash(n_docs, subsample, args.seed, (low, high))
    result["vendi"] = bench_vendi([10_000] if args.quick else [10_000, 100_000])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    brief = {
        "minhash_goal": result["minhash"]["goal"],
        "minhash_speedup_vs_bulk": result["minhash"]["speedup_vs_bulk"],
        "agreement": result["minhash"]["agreement_with_bulk"],
    }
    print(json.dumps(brief, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
