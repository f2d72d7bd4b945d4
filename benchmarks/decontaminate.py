"""Benchmark forgekit.evaluate.decontaminate: 1M records against 100k benchmark items.

    .venv/bin/python benchmarks/decontaminate.py            # 1M x 100k (a few minutes)
    .venv/bin/python benchmarks/decontaminate.py --quick    # 100k x 10k, a smoke run

Writes benchmarks/results/decontaminate.json (or --out).

* benchmark: items of a 45-word question and a 15-word answer drawn from a Zipf-like
  vocabulary of 20k words;
* records: an 60-word input and a 20-word output from the same vocabulary; 1 % of them are
  planted contamination: a 20-word span of a random item's question+answer, with its case
  changed and punctuation added, inserted into the input;
* the run: `decontaminate(records, against=[items], n=13)` end to end (DataFrame in, report
  out); recall on the planted records and the number of flagged clean records (false
  positives) are checked, and the time split into building the index and the lookup.
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
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forgekit.evaluate import decontaminate

VOCAB = 20_000


def vocabulary(rng: np.random.Generator) -> np.ndarray:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = rng.integers(3, 9, size=VOCAB)
    return np.array(["".join(rng.choice(letters, size=k)) for k in lengths])


def texts(rng: np.random.Generator, vocab: np.ndarray, rows: int, words: int) -> list[str]:
    """`rows` texts of `words` Zipf-distributed words, made 20k at a time (a 1M x 60 table of
    Python strings at once would take more memory than the decontamination itself)."""
    ranks = np.arange(1, VOCAB + 1)
    p = 1.0 / ranks**1.05
    p /= p.sum()
    out: list[str] = []
    for start in range(0, rows, 20_000):
        ids = rng.choice(VOCAB, size=(min(20_000, rows - start), words), p=p)
        out += [" ".join(row) for row in vocab[ids].tolist()]
    return out


def rss_mb(field: str = "VmRSS") -> int:
    """This process's resident memory now (VmRSS) or at its peak (VmHWM), in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    return -1


def reset_peak() -> None:
    """Start VmHWM afresh, so the peak measured is the call's, not the data generation's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="100k records x 10k items")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results/decontaminate.json"))
    args = parser.parse_args()
    if args.quick:
        args.records, args.items = 100_000, 10_000
    rng = np.random.default_rng(0)
    vocab = vocabulary(rng)
    started = time.perf_counter()
    bench = pd.DataFrame(
        {"question": texts(rng, vocab, args.items, 45), "answer": texts(rng, vocab, args.items, 15)}
    )
    inputs = texts(rng, vocab, args.records, 60)
    outputs = texts(rng, vocab, args.records, 20)
    planted = np.sort(rng.choice(args.records, size=args.records // 100, replace=False))
    sources = rng.integers(0, args.items, size=len(planted))
    for row, item in zip(planted.tolist(), sources.tolist()):
        words = (bench.question[item] + " " + bench.answer[item]).split()
        start = int(rng.integers(0, len(words) - 20))
        span = " ".join(words[start : start + 20]).upper().replace(" ", ", ", 3)
        head = inputs[row].split()
        inputs[row] = " ".join(head[:20]) + " " + span + "! " + " ".join(head[20:40])
    records = pd.DataFrame({"id": np.arange(args.records), "input": inputs, "output": outputs})
    del inputs, outputs
    made = time.perf_counter() - started
    data_rss = rss_mb()
    reset_peak()

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    result = decontaminate(records, against={"bench": bench}, n=13)
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    flagged = set(result.report["row"].tolist())
    found = len(flagged & set(planted.tolist()))
    out = {
        "what": "forgekit.evaluate.decontaminate, 13-grams, synthetic Zipf-vocabulary text",
        "records": args.records,
        "record_words": 80,
        "benchmark_items": args.items,
        "item_words": 60,
        "indexed_ngrams": result.per_benchmark[0]["ngrams"],
        "planted": len(planted),
        "planted_found": found,
        "recall": found / len(planted),
        "false_positives": len(flagged) - found,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 2),
        "records_per_s": round(args.records / wall),
        "rss_before_mb": data_rss,
        "peak_rss_mb": rss_mb("VmHWM"),
        "data_generation_s": round(made, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "load_average": [round(x, 1) for x in os.getloadavg()],
            "note": "2 cores shared with other agents' jobs: wall time is an upper bound; "
            "cpu_s is the process's own CPU time; rss_before_mb is the data (1M records as a "
            "DataFrame) before the call, peak_rss_mb the peak during the call",
        },
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
