"""The embedded model: llama.cpp called directly (one stream) vs forgekit's batched worker.

    .venv/bin/python benchmarks/local_model.py [--prompts 32] [--max-tokens 64]

Writes benchmarks/results/local_model.json. Every configuration runs in its own process (two
llama.cpp contexts in one process slow each other down, DESIGN.md §7), and each forgekit
configuration gets a fresh worker of its own, stopped afterwards:
- direct: llama_cpp.Llama(n_threads=2 or the core count).create_chat_completion, greedy,
  the prompts one after another, on the packaged GGUF (the baseline of every ratio); once as
  is, once with OMP_WAIT_POLICY=PASSIVE (the setting README suggests for busy shared cores;
  the worker inherits the caller's env), and once on the Q8_0 copy the worker decodes
  (forgekit/models/batch_weights.py), to show what the conversion alone changes;
- weights: the packaged Q4_1 file against its Q8_0 copy, teacher-forced on a fixed text
  (this repository's README): top-1 agreement, KL divergence and negative log-likelihood;
- forgekit at concurrency 1, 4, 8, 16: the same chat prompts through forgekit's engine
  (`model="local"`, cache off), greedy.
Reported: aggregate completion tokens/s, the ratio to direct, and how many greedy outputs
differ from the concurrency-1 run (batch composition) and from direct llama.cpp. The C=1
configuration also samples a few prompts twice with a seed, to check they repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SUBJECTS = [
    "the sea", "a lighthouse", "bread", "winter", "trains", "bees", "a library", "rain",
    "mountains", "a violin", "coffee", "the moon", "a market", "bicycles", "owls", "snow",
    "a garden", "clocks", "deserts", "a river", "chess", "paper", "volcanoes", "a bridge",
    "whales", "autumn", "maps", "glass", "forests", "a kite", "salt", "thunder",
]  # fmt: skip


def prompts(count: int) -> list[str]:
    return [f"Write a short paragraph about {SUBJECTS[i % len(SUBJECTS)]}." for i in range(count)]


def converted_gguf() -> str:
    """The Q8_0 copy the worker decodes (made in a throwaway folder)."""
    from forgekit.models.batch_weights import batch_weights
    from forgekit.models.local import find_smollm2_gguf

    path, _ = batch_weights(str(find_smollm2_gguf()), Path(tempfile.mkdtemp(prefix="fk-w-")))
    return path


def run_direct(count: int, max_tokens: int, threads: int, converted: bool = False) -> dict:
    from llama_cpp import Llama

    from forgekit.models.local import find_smollm2_gguf

    path = converted_gguf() if converted else str(find_smollm2_gguf())
    llama = Llama(model_path=path, n_ctx=2048, n_threads=threads, verbose=False)
    llama.create_chat_completion([{"role": "user", "content": "Hi"}], max_tokens=4)  # warm-up
    texts, tokens, started = [], 0, time.perf_counter()
    for prompt in prompts(count):
        out = llama.create_chat_completion(
            [{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0.0
        )
        texts.append(out["choices"][0]["message"]["content"])
        tokens += out["usage"]["completion_tokens"]
    return {"seconds": time.perf_counter() - started, "completion_tokens": tokens, "texts": texts}


def run_forgekit(count: int, max_tokens: int, concurrency: int) -> dict:
    os.environ["FORGEKIT_WORKER_DIR"] = tempfile.mkdtemp(prefix="fk-bench-workers-")
    os.environ["FORGEKIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="fk-bench-cache-")
    from forgekit.engine import RunConfig, Task, run
    from forgekit.models import SamplingParams, get_model
    from forgekit.models.worker_pool import stop_workers

    model = get_model("local")
    try:
        import asyncio

        warm = [{"role": "user", "content": "Hi"}]
        asyncio.run(model.chat(warm, SamplingParams(max_tokens=4)))  # starts the worker

        async def make(ctx, i, prompt):
            c = await ctx.chat([{"role": "user", "content": prompt}], max_tokens=max_tokens,
                               temperature=0.0)  # fmt: skip
            return {"id": ctx.task.id, "output": c.text}

        tasks = [
            Task(id=f"p{i:03d}", fn=lambda ctx, i=i, p=p: make(ctx, i, p))
            for i, p in enumerate(prompts(count))
        ]
        config = RunConfig(concurrency=concurrency, progress=False, cache=False)
        started = time.perf_counter()
        result = run(tasks, model="local", config=config)
        seconds = time.perf_counter() - started
        by_id = {r["id"]: r["output"] for r in result.records}
        report = {
            "seconds": seconds,
            "completion_tokens": result.stats.completion_tokens,
            "texts": [by_id[f"p{i:03d}"] for i in range(count)],
        }
        if concurrency == 1:
            report["seeded_repeats"] = seeded_repeats(model)
        return report
    finally:
        stop_workers()


def seeded_repeats(model) -> bool:
    """Sampling with a seed at concurrency 1 gives the same text twice."""
    import asyncio

    from forgekit.models import SamplingParams

    params = SamplingParams(max_tokens=32, temperature=0.8, seed=7)
    messages = [{"role": "user", "content": "Invent a name for a cat."}]
    first = asyncio.run(model.chat(messages, params)).text
    return first == asyncio.run(model.chat(messages, params)).text


def weights_quality(threads: int) -> dict:
    """Teacher-forced next-token distributions of the packaged file and its Q8_0 copy on
    the first 1,024 tokens of README.md (flash attention on, as in the worker)."""
    import numpy as np
    from llama_cpp import Llama

    from forgekit.models.local import find_smollm2_gguf

    text = (ROOT / "README.md").read_text(encoding="utf-8")[:8000]

    def log_probs(path: str) -> tuple[np.ndarray, list[int]]:
        llama = Llama(model_path=path, n_ctx=2048, n_threads=threads, logits_all=True,
                      flash_attn=True, verbose=False)  # fmt: skip
        tokens = llama.tokenize(text.encode())[:1024]
        llama.eval(tokens)
        logits = np.array(llama.scores[: len(tokens)], dtype=np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True)), tokens

    ref, tokens = log_probs(str(find_smollm2_gguf()))
    new, _ = log_probs(converted_gguf())
    nexts = np.arange(len(tokens) - 1), tokens[1:]
    return {
        "tokens": len(tokens),
        "top1_agreement": round(float((ref.argmax(1) == new.argmax(1)).mean()), 4),
        "kl_nats_per_token": round(float((np.exp(ref) * (ref - new)).sum(1).mean()), 5),
        "nll_packaged": round(float(-ref[:-1][nexts].mean()), 4),
        "nll_converted": round(float(-new[:-1][nexts].mean()), 4),
    }


def child(args: argparse.Namespace) -> None:
    if args.config == "weights":
        report = weights_quality(args.threads)
    elif args.config.startswith("direct"):
        report = run_direct(
            args.prompts, args.max_tokens, args.threads, converted=args.config == "direct-q8"
        )
    else:
        report = run_forgekit(args.prompts, args.max_tokens, int(args.config))
    print("RESULT " + json.dumps(report), flush=True)


def measure(config: str, args: argparse.Namespace) -> dict:
    command = [
        sys.executable, __file__, "--config", config, "--prompts", str(args.prompts),
        "--max-tokens", str(args.max_tokens), "--threads", str(args.threads),
    ]  # fmt: skip
    env = dict(os.environ)
    if config == "direct-passive":  # OpenMP threads that sleep instead of spinning
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"configuration {config} failed:\n{proc.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--concurrency", default="1,4,8,16")
    parser.add_argument("--config", help=argparse.SUPPRESS)  # internal: one configuration
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/local_model.json"))
    args = parser.parse_args()
    if args.config:
        child(args)
        return
    load_before = os.getloadavg()
    direct = measure("direct", args)
    direct_tps = direct["completion_tokens"] / direct["seconds"]
    passive = measure("direct-passive", args)
    passive_tps = passive["completion_tokens"] / passive["seconds"]
    direct_q8 = measure("direct-q8", args)
    weights = measure("weights", args)
    rows, texts = [], {}
    for concurrency in [int(c) for c in args.concurrency.split(",")]:
        found = measure(str(concurrency), args)
        texts[concurrency] = found["texts"]
        tps = found["completion_tokens"] / found["seconds"]
        row = {
            "concurrency": concurrency,
            "completion_tokens": found["completion_tokens"],
            "seconds": round(found["seconds"], 2),
            "tokens_per_s": round(tps, 1),
            "ratio_vs_direct": round(tps / direct_tps, 3),
            "ratio_vs_direct_passive": round(tps / passive_tps, 3),
            "greedy_differs_from_direct": sum(
                a != b for a, b in zip(found["texts"], direct["texts"])
            ),
        }
        if 1 in texts:
            row["greedy_differs_from_concurrency_1"] = sum(
                a != b for a, b in zip(found["texts"], texts[1])
            )
        if "seeded_repeats" in found:
            row["seeded_sampling_repeats"] = found["seeded_repeats"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "prompts": args.prompts,
        "max_tokens": args.max_tokens,
        "threads": args.threads,
        "direct_llama_cpp": {
            "completion_tokens": direct["completion_tokens"],
            "seconds": round(direct["seconds"], 2),
            "tokens_per_s": round(direct_tps, 1),
        },
        "direct_llama_cpp_omp_passive": {
            "completion_tokens": passive["completion_tokens"],
            "seconds": round(passive["seconds"], 2),
            "tokens_per_s": round(passive_tps, 1),
        },
        "direct_llama_cpp_on_q8_0_copy": {
            "completion_tokens": direct_q8["completion_tokens"],
            "seconds": round(direct_q8["seconds"], 2),
            "tokens_per_s": round(direct_q8["completion_tokens"] / direct_q8["seconds"], 1),
            "greedy_differs_from_direct": sum(
                a != b for a, b in zip(direct_q8["texts"], direct["texts"])
            ),
        },
        "weights_q4_1_vs_q8_0_copy": weights,
        "forgekit": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        json.dumps(
            {
                "direct": report["direct_llama_cpp"],
                "direct_passive": report["direct_llama_cpp_omp_passive"],
                "direct_q8_0_copy": report["direct_llama_cpp_on_q8_0_copy"],
                "weights": weights,
            }
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
