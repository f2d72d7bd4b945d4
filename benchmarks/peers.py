"""forgekit against its peers on the same work, in one command.

    .venv/bin/python benchmarks/peers.py [--rounds 3] [--n 2000] [--quick]

Clients: a plain `AsyncOpenAI` + semaphore loop, forgekit (`forgekit.methods.generate`,
JSONL store and response cache on, a fresh cache so every request is a miss), curator
(bespokelabs-curator) and distilabel. curator and distilabel are installed into their own
throwaway virtualenvs under --cache-dir (never into the project's environment) the first
time; plain and forgekit run on this interpreter.

Every client runs in its own process (benchmarks/peer_clients.py) against the same stub
server (tests/openai_stub.py), one after the other, in an order that rotates each round, for
both workloads: 0 ms stub latency at concurrency 64 (the client's CPU is the limit) and
100 ms at concurrency 200 (what a real endpoint looks like). Every client's answers are
checked: all `n` present, each the stub's answer to its own prompt. Results, with medians
over the rounds and ratios, go to benchmarks/results/peers.json.

The figures compare throughput: the call that does the work, to the last answer. Imports
and the peers' separate set-up steps are reported beside it (forgekit has no separate set-up
step: its set-up is inside its figure). On a machine shared with other work, timings are
noisy: the rounds alternate clients so that a busy neighbour hurts all alike, and medians are
reported with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import StubServer  # noqa: E402

CLIENT_SCRIPT = ROOT / "benchmarks" / "peer_clients.py"
# The versions DESIGN.md §8 measured. distilabel 1.5.3 imports `requests` without
# declaring it.
PEER_PACKAGES = {
    "curator": ["bespokelabs-curator==0.1.31"],
    "distilabel": ["distilabel[openai]==1.5.3", "requests"],
}
WORKLOADS = {"latency_0ms_c64": (0.0, 64), "latency_100ms_c200": (100.0, 200)}
CLIENTS = ("plain", "forgekit", "curator", "distilabel")


def build_venv(name: str, cache_dir: Path) -> tuple[Path | None, str | None]:
    """The python of a throwaway venv with the peer installed: (python, None), or (None,
    why it could not be built)."""
    venv = cache_dir / name
    python = venv / "bin" / "python"
    marker = venv / ".forgekit-installed"
    wanted = " ".join(PEER_PACKAGES[name])
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python, None
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES[name]],
    ]
    for step in steps:
        print(f"[peers] {' '.join(step)}", flush=True)
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
            return None, f"`{' '.join(step[-3:])}` failed (exit {done.returncode}): {tail}"
    marker.write_text(wanted)
    return python, None


def run_client(
    client: str, python: Path, url: str, n: int, concurrency: int, tag: str, work: Path
) -> dict:
    answers = work / f"{tag}.answers.jsonl"
    command = [
        str(python),
        str(CLIENT_SCRIPT),
        client,
        "--url",
        url,
        "--n",
        str(n),
        "--c",
        str(concurrency),
        "--tag",
        tag,
        "--answers",
        str(answers),
        "--work",
        str(work / tag),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)} if client in ("plain", "forgekit") else None
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    process_s = time.perf_counter() - started
    line = next((x for x in done.stdout.splitlines() if x.startswith("TIMINGS ")), None)
    if done.returncode != 0 or line is None:
        tail = "\n".join(done.stderr.strip().splitlines()[-10:])
        return {"error": f"exit {done.returncode}: {tail}", "process_s": process_s}
    timings = json.loads(line[len("TIMINGS ") :])
    return {**timings, "process_s": process_s, **verify(answers, tag, n)}


def verify(path: Path, tag: str, n: int) -> dict:
    """All n answers present, each the stub's answer to its own prompt."""
    expected = {f"{tag} item {i}": f"echo: {tag} item {i}" for i in range(n)}
    got = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    by_prompt = {row["prompt"]: row["answer"] for row in got}
    wrong = sum(1 for prompt, answer in by_prompt.items() if expected.get(prompt) != answer)
    missing = len(set(expected) - set(by_prompt))
    return {
        "answers": len(got),
        "verified": len(got) == n and missing == 0 and wrong == 0,
        "missing": missing,
        "wrong": wrong,
    }


def summarize(runs: dict[str, list[dict]], n: int) -> dict:
    table: dict[str, dict] = {}
    for client, results in runs.items():
        good = [r for r in results if "seconds" in r]
        if not good:
            table[client] = {"error": results[0].get("error") if results else "not run"}
            continue
        seconds = [r["seconds"] for r in good]
        table[client] = {
            "rps_median": round(n / statistics.median(seconds), 1),
            "rps_best": round(n / min(seconds), 1),
            "seconds": [round(s, 3) for s in seconds],
            "import_s_median": round(statistics.median(r["import_s"] for r in good), 2),
            "setup_s_median": round(statistics.median(r["setup_s"] for r in good), 2),
            "process_s_median": round(statistics.median(r["process_s"] for r in good), 2),
            "all_verified": all(r["verified"] for r in good) and len(good) == len(results),
        }
    for base in ("plain", "curator"):
        if "rps_median" in table.get(base, {}):
            for entry in table.values():
                if "rps_median" in entry:
                    ratio = entry["rps_median"] / table[base]["rps_median"]
                    entry[f"ratio_vs_{base}"] = round(ratio, 3)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="1 round of 300 requests")
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument(
        "--cache-dir",
        default=os.path.expanduser("~/.cache/forgekit-bench/peers"),
        help="where the peers' throwaway virtualenvs live",
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/peers.json"))
    args = parser.parse_args()
    rounds, n = (1, 300) if args.quick else (args.rounds, args.n)
    clients = [c for c in args.clients.split(",") if c]
    cache_dir = Path(args.cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)

    pythons: dict[str, Path] = {"plain": Path(sys.executable), "forgekit": Path(sys.executable)}
    install_errors: dict[str, str] = {}
    for name in PEER_PACKAGES:
        if name in clients:
            python, error = build_venv(name, cache_dir)
            if python is not None:
                pythons[name] = python
            else:
                install_errors[name] = error
                print(f"[peers] {name}: {error}", flush=True)
    active = [c for c in clients if c in pythons]
    load_before = os.getloadavg()
    runs = {w: {c: [] for c in active} for w in WORKLOADS}
    server = StubServer()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for round_no in range(rounds):
                for workload, (latency, concurrency) in WORKLOADS.items():
                    shift = round_no % len(active)
                    for client in active[shift:] + active[:shift]:
                        server.configure(latency_ms=latency)
                        tag = f"{client}-{workload}-r{round_no}"
                        result = run_client(
                            client, pythons[client], server.url, n, concurrency, tag, Path(tmp)
                        )
                        result["stub_answers"] = server.stats().get("ok", 0)
                        runs[workload][client].append(result)
                        shown = {k: v for k, v in result.items() if k != "error"}
                        print(f"[peers] {tag}: {json.dumps(shown)}", flush=True)
                        if "error" in result:
                            print(f"[peers] {tag} failed: {result['error']}", flush=True)
    finally:
        server.close()
    results = {
        "benchmark": "peers",
        "requests": n,
        "rounds": rounds,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "caveat": "a shared machine: other work ran beside this benchmark; clients alternate "
        "and rotate order each round, and medians are reported, but absolute figures move "
        "with the neighbours' load",
        "measured": "requests/s of the call that does the work, to the last verified answer; "
        "imports and peers' separate set-up (curator's LLM(), distilabel's pipeline "
        "definition) apart",
        "install_errors": install_errors,
        "workloads": {w: summarize(runs[w], n) for w in WORKLOADS},
        "runs": runs,
    }
    forgekit_vs_curator = [
        table["forgekit"].get("ratio_vs_curator")
        for table in results["workloads"].values()
        if "forgekit" in table
    ]
    results["forgekit_vs_curator"] = forgekit_vs_curator
    results["goal_forgekit_1_25x_curator"] = bool(forgekit_vs_curator) and all(
        r is not None and r >= 1.25 for r in forgekit_vs_curator
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    for workload, table in results["workloads"].items():
        print(f"\n{workload}")
        for client, entry in table.items():
            print(
                f"  {client:11s} {json.dumps({k: v for k, v in entry.items() if k != 'seconds'})}"
            )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
