"""How long the Self-Instruct ROUGE-L filter takes at 10k and 50k instructions.

Compares forgekit's pruned incremental pool (forgekit.evaluate.rouge.RougePool: prefix
filtering over rarity-ordered tokens, length and token-overlap bounds, bit-parallel LCS) with
the naive all-pairs filter that the original Self-Instruct/Alpaca code runs (every candidate
against every kept instruction, LCS by the pure-Python dynamic-programming table, as
rouge_score computes it). The naive filter is timed on a subsample and extrapolated
quadratically to the full sizes — labelled as an estimate in the output. Agreement of the
kept sets is measured on the subsample (the pruning is exact, so it should be 100 %).

Data are synthetic, reproducible instructions: English ones from templates over a Zipf-
distributed vocabulary (stop words frequent, content words rare, as in real text) and
Chinese ones over Zipf-distributed characters, each with ~15 % near-duplicates (a few words
or characters changed) of earlier instructions.

    .venv/bin/python benchmarks/similarity_filter.py            # 10k and 50k
    .venv/bin/python benchmarks/similarity_filter.py --quick    # 2k and 5k

Writes benchmarks/results/similarity_filter.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from forgekit.evaluate.rouge import RougePool, lcs_length, lcs_table, naive_filter  # noqa: E402

VERBS = [
    "Write",
    "Explain",
    "Describe",
    "Summarize",
    "List",
    "Compare",
    "Suggest",
    "Create",
    "Give",
    "Translate",
    "Classify",
    "Rewrite",
    "Outline",
    "Propose",
    "Identify",
    "Recommend",
    "Design",
    "Plan",
    "Evaluate",
    "Analyze",
    "Draft",
    "Convert",
    "Name",
    "Estimate",
    "Predict",
    "Critique",
    "Define",
    "Illustrate",
    "Argue",
    "Justify",
]
FUNCTION = [
    "the",
    "a",
    "an",
    "of",
    "to",
    "in",
    "for",
    "and",
    "with",
    "on",
    "about",
    "how",
    "why",
    "what",
    "that",
    "is",
    "are",
    "your",
    "my",
]


def _pseudo_words(count: int, rng: random.Random) -> list[str]:
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["an", "er", "ol", "is"]
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choices(syllables, k=rng.randint(2, 4))))
    return sorted(words)


def _mutate(tokens: list[str], pool: list[str], rng: random.Random) -> list[str]:
    tokens = list(tokens)
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        if op < 0.35 and len(tokens) > 3:
            tokens.pop(rng.randrange(len(tokens)))
        elif op < 0.7:
            tokens.insert(rng.randrange(len(tokens) + 1), rng.choice(pool))
        else:
            tokens[rng.randrange(len(tokens))] = rng.choice(pool)
    return tokens


def english(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    vocab = _pseudo_words(20_000, rng)
    weights = [1 / (i + 1) ** 1.05 for i in range(len(vocab))]
    made: list[list[str]] = []
    out = []
    for _ in range(count):
        if made and rng.random() < 0.15:
            tokens = _mutate(rng.choice(made), vocab[:2000], rng)
        else:
            tokens = [rng.choice(VERBS)]
            for _ in range(rng.randint(5, 24)):
                tokens.append(
                    rng.choice(FUNCTION) if rng.random() < 0.35 else rng.choices(vocab, weights)[0]
                )
        made.append(tokens)
        out.append(" ".join(tokens) + ".")
    return out


def chinese(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 3500)]
    rng.shuffle(chars)
    weights = [1 / (i + 1) for i in range(len(chars))]
    starts = ["请解释", "写一篇", "列出", "比较", "总结", "为什么", "如何", "给出", "翻译", "判断"]
    made: list[list[str]] = []
    out = []
    for _ in range(count):
        if made and rng.random() < 0.15:
            tokens = _mutate(made[rng.randrange(len(made))], chars[:500], rng)
        else:
            tokens = list(rng.choice(starts)) + rng.choices(chars, weights, k=rng.randint(8, 36))
        made.append(tokens)
        out.append("".join(tokens) + "。")
    return out


def time_pruned(texts: list[str]) -> dict:
    pool = RougePool(0.7)
    started = time.perf_counter()
    kept = sum(pool.offer(t) is None for t in texts)
    seconds = time.perf_counter() - started
    return {
        "n": len(texts),
        "seconds": round(seconds, 3),
        "kept": kept,
        "removed": len(texts) - kept,
        "lcs_computed": pool.lcs_computed,
        "candidate_pairs_probed": pool.candidates_seen,
        "per_1k_instructions_s": round(seconds / len(texts) * 1000, 4),
    }


def time_naive(texts: list[str], lcs, label: str) -> tuple[dict, list[bool]]:
    started = time.perf_counter()
    keep = naive_filter(texts, 0.7, lcs=lcs)
    seconds = time.perf_counter() - started
    return {"method": label, "n": len(texts), "seconds": round(seconds, 3)}, keep


def run(sizes: list[int], subsample: int, languages: list[str]) -> dict:
    results: dict = {
        "benchmark": "self_instruct ROUGE-L > 0.7 filter against a growing pool",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "note": "shared 2-core machine; other jobs may have been running",
        },
        "threshold": 0.7,
        "languages": {},
    }
    for language in languages:
        make = english if language == "en" else chinese
        texts = make(max(sizes), seed=1)
        entry: dict = {"tokenization": "words" if language == "en" else "one token per CJK char"}
        entry["pruned"] = [time_pruned(texts[:size]) for size in sizes]
        sub = texts[:subsample]
        pruned_pool = RougePool(0.7)
        pruned_keep = [pruned_pool.offer(t) is None for t in sub]
        naive, naive_keep = time_naive(
            sub, lcs_table, "all pairs, pure-Python DP LCS (rouge_score)"
        )
        bitpar, bitpar_keep = time_naive(
            sub, lcs_length, "all pairs, bit-parallel LCS (forgekit.evaluate.dedup)"
        )
        pruned_sub = time_pruned(sub)
        agree = sum(a == b for a, b in zip(pruned_keep, naive_keep))
        entry["subsample"] = {
            "n": subsample,
            "pruned_seconds": pruned_sub["seconds"],
            "baselines": [naive, bitpar],
            "kept_pruned": sum(pruned_keep),
            "kept_naive": sum(naive_keep),
            "agreement": f"{agree}/{subsample} keep/drop decisions identical",
            "identical_kept_sets": pruned_keep == naive_keep == bitpar_keep,
        }
        entry["naive_extrapolated_ESTIMATE"] = {
            str(size): {
                base["method"]: round(base["seconds"] * (size / subsample) ** 2, 1)
                for base in (naive, bitpar)
            }
            for size in sizes
        }
        entry["speedup_vs_naive_dp_ESTIMATE"] = {
            str(p["n"]): round(naive["seconds"] * (p["n"] / subsample) ** 2 / p["seconds"], 1)
            for p in entry["pruned"]
        }
        results["languages"][language] = entry
        print(json.dumps({language: entry}, indent=2, ensure_ascii=False), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2k and 5k instead of 10k and 50k")
    parser.add_argument(
        "--subsample",
        type=int,
        default=None,
        help="naive run size (default 1000; 500 with --quick)",
    )
    parser.add_argument("--languages", default="en,zh", help="comma-separated: en,zh")
    parser.add_argument(
        "--out", default=str(HERE / "results" / "similarity_filter.json"), help="result file"
    )
    args = parser.parse_args()
    sizes = [2_000, 5_000] if args.quick else [10_000, 50_000]
    subsample = args.subsample or (500 if args.quick else 1_000)
    results = run(sizes, subsample, args.languages.split(","))
    results["mode"] = "quick" if args.quick else "full"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
