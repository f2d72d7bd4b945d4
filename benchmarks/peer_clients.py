"""One client of benchmarks/peers.py, run in its own process (and, for curator and
distilabel, its own virtualenv): sends `n` chat requests at concurrency `c` to the stub,
writes every (prompt, answer) pair to `answers`, and prints one JSON line of timings.

    python peer_clients.py CLIENT --url URL --n N --c C --tag TAG --answers FILE --work DIR

CLIENT: plain (AsyncOpenAI + semaphore), forgekit (`forgekit.methods.generate`, store and
cache on), curator (bespokelabs-curator `LLM`), distilabel (`TextGeneration` pipeline).
Timings: `import_s` (importing the library), `setup_s` (building the client objects before
the call that does the work: curator's `LLM(...)`, which imports litellm, probes the rate
limit headers and loads a tokenizer; distilabel's pipeline definition) and `seconds` (the
call that does the work, to the last answer: `asyncio.run(...)`, `generate(...)` — forgekit
has no separate set-up step, so its set-up is inside `seconds` —, `llm(rows)`,
`pipeline.run()`). The parent process verifies the answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

MAX_TOKENS = 8


def prompts(tag: str, n: int) -> list[str]:
    return [f"{tag} item {i}" for i in range(n)]


def run_plain(args: argparse.Namespace) -> tuple[list[tuple[str, str]], float, float, float]:
    started = time.perf_counter()
    import openai

    imported = time.perf_counter()

    async def main() -> list[tuple[str, str]]:
        client = openai.AsyncOpenAI(base_url=args.url, api_key="bench", max_retries=2)
        semaphore = asyncio.Semaphore(args.c)

        async def one(prompt: str) -> tuple[str, str]:
            async with semaphore:
                response = await client.chat.completions.create(
                    model="stub-model",
                    messages=[{"role": "user", "content": prompt}],
                    max_tokens=MAX_TOKENS,
                )
                return prompt, response.choices[0].message.content

        try:
            return await asyncio.gather(*(one(p) for p in prompts(args.tag, args.n)))
        finally:
            await client.close()

    answers = asyncio.run(main())
    return answers, imported - started, 0.0, time.perf_counter() - imported


def run_forgekit(args: argparse.Namespace) -> tuple[list[tuple[str, str]], float, float, float]:
    work = Path(args.work)
    config = work / "forgekit.yaml"
    config.write_text(
        f"models:\n  stub:\n    provider: openai\n    base_url: {args.url}\n    model: stub-model\n"
    )
    os.environ["FORGEKIT_CONFIG"] = str(config)
    os.environ["FORGEKIT_CACHE_DIR"] = str(work / "cache")  # a fresh cache: all misses
    started = time.perf_counter()
    import forgekit.methods

    imported = time.perf_counter()
    data = [{"prompt": p} for p in prompts(args.tag, args.n)]
    df = forgekit.methods.generate(
        data,
        user="{{ prompt }}",
        model="stub",
        out=str(work / "out.jsonl"),
        concurrency=args.c,
        params={"max_tokens": MAX_TOKENS},
    )  # its default text progress bar on, like the peers' (to stderr, which the parent keeps)
    seconds = time.perf_counter() - imported
    stats = df.attrs["forgekit"]["stats"]
    assert stats["cached"] == 0 and stats["requests"] == args.n, stats
    return list(zip(df["input"], df["output"])), imported - started, 0.0, seconds


def run_curator(args: argparse.Namespace) -> tuple[list[tuple[str, str]], float, float, float]:
    os.environ["CURATOR_CACHE_DIR"] = str(Path(args.work) / "curator")
    os.environ["CURATOR_DISABLE_CACHE"] = "1"
    # curator's lighter display (tqdm instead of rich): the setting most favourable to it.
    os.environ["CURATOR_DISABLE_RICH_DISPLAY"] = "1"
    os.environ["TELEMETRY_ENABLED"] = "false"
    # Offline: litellm would fetch its model price map from the network at import.
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    # curator counts tokens with tiktoken's cl100k_base, which tiktoken downloads on first
    # use; litellm (a curator dependency) ships that file in tiktoken's cache layout.
    import importlib.util

    litellm = importlib.util.find_spec("litellm")
    if litellm is not None and "TIKTOKEN_CACHE_DIR" not in os.environ:
        bundled = Path(litellm.submodule_search_locations[0]) / "litellm_core_utils/tokenizers"
        os.environ["TIKTOKEN_CACHE_DIR"] = str(bundled)
    started = time.perf_counter()
    from bespokelabs import curator

    imported = time.perf_counter()

    class Echo(curator.LLM):
        def prompt(self, row):
            return row["prompt"]

        def parse(self, row, response):
            return {"prompt": row["prompt"], "answer": response}

    llm = Echo(
        model_name="stub-model",
        backend="openai",
        generation_params={"max_tokens": MAX_TOKENS},
        backend_params={
            "base_url": args.url,
            "api_key": "bench",
            "max_concurrent_requests": args.c,
            "max_requests_per_minute": 100_000_000,
            "max_tokens_per_minute": 10_000_000_000,
            "require_all_responses": True,
        },
    )
    rows = [{"prompt": p} for p in prompts(args.tag, args.n)]
    ready = time.perf_counter()
    result = llm(rows)
    seconds = time.perf_counter() - ready
    dataset = getattr(result, "dataset", result)
    answers = list(zip(dataset["prompt"], dataset["answer"]))
    return answers, imported - started, ready - imported, seconds


def run_distilabel(args: argparse.Namespace) -> tuple[list[tuple[str, str]], float, float, float]:
    os.environ["DISTILABEL_CACHE_DIR"] = str(Path(args.work) / "distilabel")
    started = time.perf_counter()
    from distilabel.models import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import TextGeneration

    imported = time.perf_counter()
    data = [{"instruction": p} for p in prompts(args.tag, args.n)]
    with Pipeline(name=f"bench-{args.tag}", cache_dir=Path(args.work) / "distilabel") as pipe:
        load = LoadDataFromDicts(data=data, batch_size=args.c)
        llm = OpenAILLM(
            model="stub-model",
            base_url=args.url,
            api_key="bench",
            generation_kwargs={"max_new_tokens": MAX_TOKENS},
        )
        generate = TextGeneration(llm=llm, input_batch_size=args.c)
        load >> generate
    ready = time.perf_counter()
    distiset = pipe.run(use_cache=False)
    seconds = time.perf_counter() - ready
    rows = distiset["default"]["train"]
    answers = list(zip(rows["instruction"], rows["generation"]))
    return answers, imported - started, ready - imported, seconds


CLIENTS = {
    "plain": run_plain,
    "forgekit": run_forgekit,
    "curator": run_curator,
    "distilabel": run_distilabel,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("client", choices=sorted(CLIENTS))
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--c", type=int, required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--answers", required=True)
    parser.add_argument("--work", required=True)
    args = parser.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    answers, import_s, setup_s, seconds = CLIENTS[args.client](args)
    with open(args.answers, "w", encoding="utf-8") as handle:
        for prompt, answer in answers:
            handle.write(json.dumps({"prompt": prompt, "answer": answer}) + "\n")
    timings = {"seconds": seconds, "import_s": import_s, "setup_s": setup_s}
    print("TIMINGS " + json.dumps(timings), file=sys.stdout, flush=True)


if __name__ == "__main__":
    main()
