"""Adaptive concurrency against fixed settings, on an endpoint whose capacity changes.

    .venv/bin/python benchmarks/adaptive.py [--n 2000] [--rounds 2]

The stub (tests/openai_stub.py, `capacity`) serves 32 requests at once, then 6 from the
n/4-th answer on, then 32 again from the 5n/8-th; beyond its capacity it answers 429 with
Retry-After ("429" workload) or makes requests wait, so latency rises ("queue", like vLLM).
Each setting — fixed concurrency 4, 6, 8, 16, 32 (adaptive off) and adaptive with ceiling
32 — runs the same n chat requests through the engine with its defaults (6 attempts,
backoff, Retry-After), cache off, alternating settings each round. Reported: requests/s
(median), failed records, retries, the best fixed setting and adaptive's ratio to it.
Writes benchmarks/results/adaptive.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import StubServer  # noqa: E402

FIXED = (4, 6, 8, 16, 32)
CEILING = 32


def one_run(server: StubServer, mode: str, n: int, concurrency: int, adaptive: bool, tag: str):
    from forgekit.engine import RunConfig, Task, run

    async def make(ctx, i):
        c = await ctx.chat([{"role": "user", "content": f"{tag} {i}"}], max_tokens=8)
        return {"id": ctx.task.id, "input": f"{tag} {i}", "output": c.text}

    tasks = [Task(id=f"{tag}-{i}", fn=lambda ctx, i=i: make(ctx, i)) for i in range(n)]
    server.configure(
        latency_ms=20,
        capacity=[[0, 32], [n // 4, 6], [n * 5 // 8, 32]],
        overload=mode,
        retry_after=0.05,
    )
    limits = []
    config = RunConfig(
        concurrency=concurrency,
        adaptive=adaptive,
        cache=False,
        progress=False,
        on_event=[lambda e, d: limits.append(d["current"]) if e == "concurrency" else None],
    )
    started = time.perf_counter()
    result = run(tasks, model="stub", config=config)
    seconds = time.perf_counter() - started
    correct = sum(1 for r in result.records if r["output"] == f"echo: {r['input']}")
    stats = server.stats()
    return {
        "seconds": round(seconds, 3),
        "ok": result.stats.ok,
        "correct": correct,
        "failed": result.stats.failed,
        "retried": result.stats.retried,
        "over_capacity_429": stats.get("over_capacity", 0),
        "queued": stats.get("queued", 0),
        **({"limit_min": min(limits), "limit_changes": len(limits)} if limits else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/adaptive.json"))
    args = parser.parse_args()
    settings = [(f"fixed_{c}", c, False) for c in FIXED] + [(f"adaptive_{CEILING}", CEILING, True)]
    server = StubServer()
    results: dict[str, dict] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "forgekit.yaml"
            config.write_text(
                f"models:\n  stub:\n    provider: openai\n    base_url: {server.url}\n"
                f"    model: stub-model\n    timeout: 10\n"
            )
            os.environ["FORGEKIT_CONFIG"] = str(config)
            for mode in ("429", "queue"):
                runs: dict[str, list[dict]] = {name: [] for name, _, _ in settings}
                for round_no in range(args.rounds):
                    order = settings if round_no % 2 == 0 else settings[::-1]
                    for name, concurrency, adaptive in order:
                        tag = f"{mode}-{name}-{round_no}"
                        run = one_run(server, mode, args.n, concurrency, adaptive, tag)
                        runs[name].append(run)
                        print(f"[adaptive] {tag}: {json.dumps(run)}", flush=True)
                table = {}
                for name, entries in runs.items():
                    median = statistics.median(e["seconds"] for e in entries)
                    table[name] = {
                        "rps_median": round(args.n / median, 1),
                        "failed_records": sum(e["failed"] for e in entries),
                        "retries_median": statistics.median(e["retried"] for e in entries),
                        "all_correct": all(e["correct"] == args.n for e in entries),
                        "runs": entries,
                    }
                best = max(
                    (k for k in table if k.startswith("fixed")),
                    key=lambda k: table[k]["rps_median"],
                )
                clean = [
                    k for k in table if k.startswith("fixed") and not table[k]["failed_records"]
                ]
                best_clean = max(clean, key=lambda k: table[k]["rps_median"]) if clean else None
                adaptive_rps = table[f"adaptive_{CEILING}"]["rps_median"]
                results[mode] = {
                    "settings": table,
                    "best_fixed": best,
                    "adaptive_vs_best_fixed": round(adaptive_rps / table[best]["rps_median"], 3),
                    "best_fixed_without_failures": best_clean,
                    "adaptive_vs_best_fixed_without_failures": (
                        round(adaptive_rps / table[best_clean]["rps_median"], 3)
                        if best_clean
                        else None
                    ),
                }
    finally:
        server.close()
    output = {
        "benchmark": "adaptive",
        "requests": args.n,
        "rounds": args.rounds,
        "capacity": "32 at once, 6 from answer n/4, 32 from answer 5n/8; stub latency 20 ms",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(output, indent=2) + "\n")
    for mode, entry in results.items():
        rates = {k: (v["rps_median"], v["failed_records"]) for k, v in entry["settings"].items()}
        print(mode, json.dumps(rates), "adaptive/best fixed:", entry["adaptive_vs_best_fixed"])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
