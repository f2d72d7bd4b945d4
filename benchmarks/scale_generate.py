"""Sharded `generate` on Ray vs a local run at the same total concurrency, one stub server.

Called by benchmarks/scale.py (`generate_scaling(...)`), or alone:

    .venv/bin/python benchmarks/scale_generate.py [--quick]

Scenarios: a zero-latency stub (the client's own CPU cost dominates: shards add processes,
so event loops, but share the machine's cores with the stub) and a 100 ms stub (latency
bound: the same total concurrency should give the same throughput, minus Ray's overhead).
Both runs write their JSONL output (the sharded one its parts plus the merge) with the
response cache off. The Ray cluster is started once (its start-up time is reported apart);
one sharded warm-up run starts the workers first. Each configuration runs `repeats` times,
alternating, best kept (less sensitive to a busy neighbour on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import StubServer  # noqa: E402


def _timed_generate(n: int, workdir: Path, tag: str, **options) -> float:
    from forgekit.methods import generate

    data = [{"n": i} for i in range(n)]
    started = time.perf_counter()
    df = generate(
        data,
        user=f"{tag} item {{{{ n }}}}",
        model="stub",
        out=workdir / f"{tag}.jsonl",
        cache=False,
        progress=False,
        **options,
    )
    elapsed = time.perf_counter() - started
    assert len(df) == n and df.attrs["forgekit"]["status"] == "completed", df.attrs["forgekit"]
    return elapsed


def _scenario(server, n, concurrency, latency_ms, shards, repeats, workdir) -> dict:
    server.configure(latency_ms=latency_ms)
    local, sharded = [], []
    for r in range(repeats):
        tag = f"{latency_ms:g}ms-{r}"
        local.append(_timed_generate(n, workdir, f"local-{tag}", concurrency=concurrency))
        sharded.append(
            _timed_generate(
                n,
                workdir,
                f"ray-{tag}",
                concurrency=concurrency,
                engine="ray",
                shards=shards,
            )
        )
    best_local, best_ray = min(local), min(sharded)
    return {
        "requests": n,
        "total_concurrency": concurrency,
        "stub_latency_ms": latency_ms,
        "shards": shards,
        "local_records_per_s": round(n / best_local, 1),
        "ray_records_per_s": round(n / best_ray, 1),
        "ray_vs_local": round(best_local / best_ray, 2),
        "local_s": [round(t, 2) for t in local],
        "ray_s": [round(t, 2) for t in sharded],
    }


def generate_scaling(quick: bool = False, repeats: int = 2, shards: int = 2) -> dict:
    """The measurements, as a JSON-able dict."""
    from forgekit.distributed import connect

    n_fast, n_slow = (1000, 1000) if quick else (4000, 4000)
    server = StubServer()
    saved = {k: os.environ.get(k) for k in ("FORGEKIT_CONFIG", "FORGEKIT_CACHE_DIR")}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        config = workdir / "forgekit.yaml"
        config.write_text(
            f"models:\n  stub:\n    provider: openai\n    base_url: {server.url}\n"
            f"    model: stub-model\n"
        )
        os.environ["FORGEKIT_CONFIG"] = str(config)
        os.environ["FORGEKIT_CACHE_DIR"] = str(workdir / "cache")
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        try:
            started = time.perf_counter()
            info = connect()
            startup = time.perf_counter() - started
            _timed_generate(100, workdir, "warm-up", engine="ray", shards=shards)
            zero = _scenario(server, n_fast, 64, 0.0, shards, repeats, workdir)
            print("generate, zero latency:", json.dumps(zero), flush=True)
            slow = _scenario(server, n_slow, 64, 100.0, shards, repeats, workdir)
            print("generate, 100 ms latency:", json.dumps(slow), flush=True)
        finally:
            server.close()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return {
        "ray_cluster_cpus": info.num_cpus,
        "ray_local_start_s": round(startup, 1),
        "zero_latency": zero,
        "latency_100ms": slow,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--shards", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(generate_scaling(args.quick, args.repeats, args.shards), indent=2))


if __name__ == "__main__":
    main()
