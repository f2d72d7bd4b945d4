"""MinHash dedup at scale: local vs Ray on synthetic documents, and per-core speed vs rensa
and datasketch on the same data.

    .venv/bin/python benchmarks/scale_minhash.py                  # 1M documents
    .venv/bin/python benchmarks/scale_minhash.py --docs 100000    # a smaller run
    .venv/bin/python benchmarks/scale_minhash.py --reuse --skip local --skip ray  # per core again

Writes benchmarks/results/scale_minhash.json (or --out). Each measured part runs in its own
process (this script with --stage), so that its peak memory is its own:

* corpus: N documents, half English (Zipf words, 60-160 words), half Chinese (Zipf
  characters, 80-240 characters); 10 % are near-duplicates of an earlier document (2-8 % of
  the tokens replaced) and 2 % exact copies. Written as JSONL files in a folder.
* local: `forgekit.evaluate.minhash.minhash_dedup` on all records (hashing on all cores).
* ray: `forgekit.distributed.minhash_dedup` on the folder, on a local Ray with every core:
  wall time per stage, object-store bytes of the signatures, bytes of band keys shuffled,
  colliding documents, driver and worker peak memory; and whether its removed set equals
  the local one.
* per core (one process, CPU seconds, shingling included for everyone): forgekit's sha1
  signatures (equal to datasketch's) with its C kernels and with its numpy code alone
  (FORGEKIT_MINHASH_KERNEL=numpy), datasketch `MinHash.bulk`, and rensa `RMinHash`
  (run from a throwaway venv given by --rensa-python, never a forgekit dependency:
  `python3 -m venv /tmp/rensa-venv && /tmp/rensa-venv/bin/pip install rensa`), on the
  first --percore-docs synthetic documents and on the man pages of this machine; the least
  of --repeats runs each (datasketch: one run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

THRESHOLD, NUM_PERM, NGRAM = 0.7, 128, 3


def make_corpus(n_docs: int, folder: Path, n_files: int, seed: int = 0) -> dict:
    """Write the synthetic corpus as `n_files` JSONL files; return what it holds."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = np.array(["".join(rng.choice(letters, k)) for k in rng.integers(2, 10, 30_000)])
    chars = np.array([chr(c) for c in range(0x4E00, 0x4E00 + 4000)])
    zipf = {len(v): 1.0 / (np.arange(len(v)) + 10.0) for v in (vocab, chars)}
    for p in zipf.values():
        p /= p.sum()
    # token ids drawn in bulk (drawing with p= per document would redo a cumsum each time)
    pools = {
        name: rng.choice(len(v), size=n_docs * 130, p=zipf[len(v)]).astype(np.int32)
        for name, v in (("en", vocab), ("zh", chars))
    }
    cursor = {"en": 0, "zh": 0}

    def draw(lang: str, k: int) -> np.ndarray:
        pool, at = pools[lang], cursor[lang]
        if at + k > len(pool):
            at = 0
        cursor[lang] = at + k
        return pool[at : at + k].copy()

    docs: list[np.ndarray] = []
    langs: list[str] = []
    planted = exact = 0
    rolls = rng.random(n_docs)
    for i in range(n_docs):
        roll = rolls[i]
        if docs and roll < 0.12:
            src = int(rng.integers(0, len(docs)))
            tokens = docs[src].copy()
            if roll < 0.10:  # near-duplicate: 2-8 % of the tokens replaced
                k = max(1, round(rng.uniform(0.02, 0.08) * len(tokens)))
                tokens[rng.integers(0, len(tokens), k)] = draw(langs[src], k)
                planted += 1
            else:
                exact += 1
            docs.append(tokens)
            langs.append(langs[src])
        elif i % 2 == 0:
            docs.append(draw("en", int(rng.integers(60, 161))))
            langs.append("en")
        else:
            docs.append(draw("zh", int(rng.integers(80, 241))))
            langs.append("zh")
    folder.mkdir(parents=True, exist_ok=True)
    per_file = -(-n_docs // n_files)
    total_bytes = 0
    for f in range(n_files):
        with open(folder / f"part-{f:03d}.jsonl", "w", encoding="utf-8") as handle:
            for i in range(f * per_file, min((f + 1) * per_file, n_docs)):
                text = " ".join(vocab[docs[i]]) if langs[i] == "en" else "".join(chars[docs[i]])
                line = json.dumps(
                    {"id": f"d{i}", "input": text, "lang": langs[i]}, ensure_ascii=False
                )
                handle.write(line + "\n")
        total_bytes += (folder / f"part-{f:03d}.jsonl").stat().st_size
    return {
        "documents": n_docs,
        "english": langs.count("en"),
        "chinese": langs.count("zh"),
        "near_duplicates_planted": planted,
        "exact_copies_planted": exact,
        "files": n_files,
        "bytes": total_bytes,
    }


def read_folder(folder: Path, limit: int | None = None) -> list[dict]:
    """The records of the folder's files in order (only the files that the first `limit`
    records need)."""
    from forgekit.data.io import read_records

    records: list[dict] = []
    for path in sorted(folder.glob("*.jsonl")):
        if limit is not None and len(records) >= limit:
            break
        records.extend(read_records(path))
    return records[:limit]


def peak_rss_mb() -> dict:
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"process_peak_rss_mb": round(me, 1), "largest_child_peak_rss_mb": round(kids, 1)}


def stage_local(folder: Path, work: Path) -> dict:
    from forgekit.evaluate.minhash import minhash_dedup

    t0 = time.perf_counter()
    records = read_folder(folder)
    read_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    result = minhash_dedup(records, threshold=THRESHOLD, num_perm=NUM_PERM, ngram=NGRAM)
    wall = time.perf_counter() - t0
    np.save(work / "local_removed.npy", result.removed["row"].to_numpy())
    return {
        "read_seconds": round(read_s, 2),
        "dedup_wall_seconds": round(wall, 2),
        "docs_per_second_wall": round(len(records) / wall),
        "removed": result.n_removed,
        "cores": os.cpu_count(),
        **peak_rss_mb(),
        "note": "all records in memory; hashing on all cores (ProcessPool), LSH in the driver",
        "driver_cpu_seconds": round(time.process_time() - c0, 2),
    }


class WorkerMemory:
    """Peak total RSS of Ray's worker processes (sampled every 0.5 s)."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.5):
            total = 0
            for proc in psutil.process_iter(["cmdline", "memory_info"]):
                cmd = " ".join(proc.info.get("cmdline") or [])
                if "ray::" in cmd or "default_worker.py" in cmd:
                    total += proc.info["memory_info"].rss
            self.peak = max(self.peak, total / 2**20)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return round(self.peak, 1)


def stage_ray(folder: Path, work: Path) -> dict:
    import ray

    from forgekit.distributed import minhash_dedup
    from forgekit.distributed.cluster import connect

    t0 = time.perf_counter()
    connect()
    ray.data.DataContext.get_current().enable_progress_bars = False
    start_s = time.perf_counter() - t0
    memory = WorkerMemory()
    t0 = time.perf_counter()
    result = minhash_dedup(folder, work / "ray-out", overwrite=True, threshold=THRESHOLD)
    wall = time.perf_counter() - t0
    workers_peak = memory.stop()
    np.save(work / "ray_removed.npy", result.removed["row"].to_numpy())
    ray.shutdown()
    return {
        "ray_start_seconds": round(start_s, 2),
        "dedup_wall_seconds": round(wall, 2),
        "docs_per_second_wall": round(result.n_input / wall),
        "removed": result.n_removed,
        "stats": result.stats,
        "workers_peak_rss_mb": workers_peak,
        **peak_rss_mb(),
    }


def man_pages(limit: int = 18_000) -> list[str]:
    import gzip

    root = Path("/usr/share/man/man1")
    docs = []
    for path in sorted(root.glob("*"))[:limit] if root.is_dir() else []:
        if path.is_symlink() or not path.is_file():
            continue
        if path.suffix == ".gz":
            with gzip.open(path) as handle:
                raw = handle.read()
        else:
            raw = path.read_bytes()
        docs.append(raw.decode("utf-8", "replace"))
    return docs


def _forgekit_cpu(texts: list[str], kernel: str) -> tuple[float, np.ndarray]:
    """CPU seconds of forgekit's sha1 signatures in this process with one kernel, and them."""
    from forgekit.evaluate.minhash import minhash_signatures

    os.environ["FORGEKIT_MINHASH_KERNEL"] = kernel
    try:
        c0 = time.process_time()
        sigs = minhash_signatures(texts, num_perm=NUM_PERM, ngram=NGRAM, n_jobs=1)
        return time.process_time() - c0, sigs
    finally:
        del os.environ["FORGEKIT_MINHASH_KERNEL"]


def per_core(texts: list[str], rensa_python: str | None, work: Path, repeats: int = 3) -> dict:
    """CPU seconds in this one process (plus rensa's own process) for the same texts: the
    least of `repeats` runs each (alternating forgekit with its C kernels, forgekit with its
    numpy code, and the Python shingling that feeding rensa and datasketch needs), since other
    jobs on a shared machine slow single runs by up to a third; datasketch, far behind, runs
    once."""
    from datasketch import MinHash

    from forgekit.evaluate.minhash import native, shingles

    n = len(texts)
    runs: dict[str, list[float]] = {"c": [], "numpy": [], "shingling": []}
    sigs: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for kernel in ("c", "numpy"):
            seconds, sigs[kernel] = _forgekit_cpu(texts, kernel)
            runs[kernel].append(seconds)
        c0 = time.process_time()
        shingled = [shingles(t, NGRAM) for t in texts]
        runs["shingling"].append(time.process_time() - c0)
    best = {name: min(times) for name, times in runs.items()}
    forgekit_s, numpy_s, shingle_s = best["c"], best["numpy"], best["shingling"]
    c0 = time.process_time()
    encoded = [[s.encode("utf-8") for s in sh] for sh in shingled]
    bulk = MinHash.bulk(encoded, num_perm=NUM_PERM, seed=1)
    datasketch_s = time.process_time() - c0 + shingle_s
    reference = np.array([m.hashvalues for m in bulk])
    out = {
        "documents": n,
        "shingles": int(sum(map(len, shingled))),
        "repeats": repeats,
        "kernels": native.status(),
        "forgekit_sha1_docs_per_cpu_second": round(n / forgekit_s),
        "forgekit_numpy_sha1_docs_per_cpu_second": round(n / numpy_s),
        "datasketch_bulk_docs_per_cpu_second": round(n / datasketch_s),
        "forgekit_signatures_equal_datasketch": bool(np.array_equal(sigs["c"], reference)),
        "forgekit_numpy_signatures_equal_datasketch": bool(
            np.array_equal(sigs["numpy"], reference)
        ),
        "python_shingling_cpu_seconds": round(shingle_s, 3),
        "forgekit_cpu_seconds_each_run": [round(x, 3) for x in runs["c"]],
        "forgekit_numpy_cpu_seconds_each_run": [round(x, 3) for x in runs["numpy"]],
        "python_shingling_cpu_seconds_each_run": [round(x, 3) for x in runs["shingling"]],
    }
    if rensa_python and Path(rensa_python).exists():
        path = work / "shingles.json"
        path.write_text(json.dumps(shingled))
        code = (
            "import json,sys,time,rensa\n"
            "sh=json.load(open(sys.argv[1]))\n"
            "best=None\n"
            "for _ in range(int(sys.argv[2])):\n"
            "    c=time.process_time()\n"
            "    for s in sh:\n"
            "        m=rensa.RMinHash(num_perm=128, seed=1); m.update(s); m.digest()\n"
            "    t=time.process_time()-c\n"
            "    best=t if best is None else min(best,t)\n"
            "print(best)\n"
        )
        run = subprocess.run(
            [rensa_python, "-c", code, str(path), str(repeats)],
            capture_output=True,
            text=True,
            check=True,
        )
        rensa_s = float(run.stdout.strip())
        version = subprocess.run(
            [rensa_python, "-c", "import importlib.metadata as m; print(m.version('rensa'))"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        out["rensa_version"] = version
        out["rensa_docs_per_cpu_second"] = round(n / (rensa_s + shingle_s))
        out["rensa_hash_only_docs_per_cpu_second"] = round(n / rensa_s)
        out["forgekit_vs_rensa"] = round((rensa_s + shingle_s) / forgekit_s, 2)
        out["forgekit_numpy_vs_rensa"] = round((rensa_s + shingle_s) / numpy_s, 2)
        path.unlink()
    out["forgekit_vs_datasketch"] = round(datasketch_s / forgekit_s, 2)
    return out


def stage_percore(
    folder: Path, work: Path, n_docs: int, rensa_python: str | None, repeats: int
) -> dict:
    texts = [r["input"] for r in read_folder(folder, n_docs)]
    out = {"synthetic": per_core(texts, rensa_python, work, repeats)}
    man = man_pages()
    if man:
        out["man_pages"] = per_core(man, rensa_python, work, repeats)
    return out


def run_stage(stage: str, args: argparse.Namespace) -> dict:
    """This script in a child process for one stage; its JSON answer."""
    cmd = [sys.executable, __file__, "--stage", stage, "--workdir", str(args.workdir)]
    cmd += ["--percore-docs", str(args.percore_docs), "--repeats", str(args.repeats)]
    if args.rensa_python:
        cmd += ["--rensa-python", args.rensa_python]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0, load = time.perf_counter(), os.getloadavg()[0]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if run.returncode:
        return {"error": run.stderr.strip().splitlines()[-1:], "seconds": time.perf_counter() - t0}
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    # each stage's own load: a --reuse run keeps stages measured at another time
    answer["load_average_1min"] = {"start": round(load, 2), "end": round(os.getloadavg()[0], 2)}
    return answer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--percore-docs", type=int, default=20_000)
    parser.add_argument(
        "--repeats", type=int, default=3, help="per core: keep the least CPU time of this many"
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/forgekit-scale-minhash"))
    parser.add_argument("--rensa-python", default="/tmp/rensa-venv/bin/python")
    parser.add_argument("--skip", action="append", default=[], help="local, ray or percore")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/scale_minhash.json")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the corpus in --workdir if it has --docs documents, and keep the results "
        "of --skip'ped stages from --out",
    )
    parser.add_argument("--stage", default=None, help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = _parser().parse_args()
    folder = args.workdir / "corpus"
    if args.stage:
        work = args.workdir
        if args.stage == "local":
            answer = stage_local(folder, work)
        elif args.stage == "ray":
            answer = stage_ray(folder, work)
        else:
            answer = stage_percore(folder, work, args.percore_docs, args.rensa_python, args.repeats)
        print(json.dumps(answer))
        return
    results = measure(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


def measure(args: argparse.Namespace) -> dict:
    """Make (or reuse) the corpus and run every stage not skipped, each in its own process."""
    folder = args.workdir / "corpus"
    described = args.workdir / "corpus.json"
    if (
        args.reuse
        and described.exists()
        and json.loads(described.read_text())["documents"] == args.docs
    ):
        corpus = json.loads(described.read_text())  # the same corpus as last time
    else:
        t0 = time.perf_counter()
        corpus = make_corpus(args.docs, folder, args.files)
        corpus["generate_seconds"] = round(time.perf_counter() - t0, 1)
        described.write_text(json.dumps(corpus))
    print("corpus", corpus, flush=True)
    results = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "parameters": {"threshold": THRESHOLD, "num_perm": NUM_PERM, "ngram": NGRAM},
        "corpus": corpus,
        # other jobs on a shared machine slow every stage: the load says how quiet it was
        "load_average": {"start_1min": round(os.getloadavg()[0], 2)},
    }
    if args.reuse and args.out.exists():  # stages skipped this time keep their last results
        previous = json.loads(args.out.read_text())
        for stage in args.skip:
            if stage in previous:
                results[stage] = previous[stage]
        if {"local", "ray"} <= set(args.skip) and "ray_removed_equals_local" in previous:
            results["ray_removed_equals_local"] = previous["ray_removed_equals_local"]
    for stage in ("percore", "local", "ray"):
        if stage not in args.skip:
            results[stage] = run_stage(stage, args)
            print(stage, json.dumps(results[stage]), flush=True)
    local, remote = args.workdir / "local_removed.npy", args.workdir / "ray_removed.npy"
    if local.exists() and remote.exists():  # the rows each removed (kept from a --reuse run)
        results["ray_removed_equals_local"] = bool(np.array_equal(np.load(local), np.load(remote)))
    results["load_average"]["end_1min"] = round(os.getloadavg()[0], 2)
    return results


def minhash_scaling(quick: bool = False) -> dict:
    """For benchmarks/scale.py: the whole measurement at 1M documents (quick: 20k), reusing
    the corpus of an earlier run of the same size."""
    size = ["--docs", "20000", "--workdir", "/tmp/forgekit-scale-minhash-quick"] if quick else []
    args = _parser().parse_args(["--reuse", *size])
    args.out = args.workdir / "scale-part.json"  # no earlier results to keep
    return measure(args)


if __name__ == "__main__":
    main()
