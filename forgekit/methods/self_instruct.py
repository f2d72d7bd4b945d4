"""Self-Instruct (Wang et al., 2023; the Alpaca recipe): grow a task pool from a few seeds.

Stage 1 shows the model 3 tasks sampled from the seed set and asks for a numbered list of new
ones; each parsed task must pass the filters (length, blacklisted words such as "image" or
"file", "Write a program", a leading punctuation mark, a non-ASCII start in English) and be
no more similar than ROUGE-L 0.7 to any task already in the pool (seeds included; CJK text
is tokenized per character, see forgekit.evaluate.rouge). Stage 2 decides whether each
new task is a classification task and writes one instance for it: output-first for
classification (pick a label, then an input of that class — otherwise models write inputs
that mostly belong to one class), input-first for everything else.

Stage 1 records (one per prompt, with the raw answer and the parsed tasks) go to
`<out>.instructions.jsonl` beside `out`, so a re-run resumes both stages; the pool is
rebuilt from them in prompt order, which keeps the result independent of concurrency.
"""

from __future__ import annotations

import argparse
import math
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from forgekit.cli.legacy import add_model_option, add_run_options, run_config_from_args
from forgekit.data.io import read_records
from forgekit.data.records import fingerprint, make_lineage, make_record, record_id
from forgekit.data.text import detect_script, length_units
from forgekit.engine import RunContext, RunResult, RunStats, Task
from forgekit.errors import ConfigError
from forgekit.evaluate.rouge import RougePool
from forgekit.methods._common import (
    add_stats,
    budget_exhausted,
    remaining_budget,
    result_frame,
    run_method,
    split_run_options,
)
from forgekit.methods._text import (
    parse_labeled,
    parse_numbered_list,
    sampling,
    strip_quotes,
    with_seed,
)
from forgekit.methods.parsing import parse_yes_no
from forgekit.models import SamplingParams

LANGUAGES = ("en", "zh")

# --- prompts (per language) ----------------------------------------------------------------
PROMPTS: dict[str, dict[str, str]] = {
    "en": {
        "generate": (
            "Here are {k} examples of tasks that people ask an AI assistant to do:\n"
            "{examples}\n\n"
            "Come up with {num} new tasks. Make them different from the examples and from "
            "each other: vary the verbs, the topics and the kind of task (open questions, "
            "writing, rewriting, reasoning, classification, coding, advice). Each task must "
            "be answerable in text alone, without images, audio, files or web browsing, and "
            "be one or two sentences long. Write only the numbered list, starting at {next}."
        ),
        "classify": (
            "Can the task be answered by choosing from a small, fixed set of labels (a "
            "classification task)? Answer Yes or No.\n\n{examples}\n\nTask: {task}\n"
            "Classification:"
        ),
        "classify_example": "Task: {task}\nClassification: {answer}",
        "input_first": (
            "Write one example for the last task below: first an input for it (or None if "
            "the task needs no input), then the correct output. Follow the format of the "
            "examples exactly.\n\n{examples}\n\nTask: {task}\n"
        ),
        "input_first_example": "Task: {task}\nInput: {input}\nOutput: {output}",
        "output_first": (
            "The last task below is a classification task. Pick one of its possible class "
            "labels, then write an input that belongs to that class. Follow the format of "
            "the examples exactly.\n\n{examples}\n\nTask: {task}\n"
        ),
        "output_first_example": "Task: {task}\nClass label: {output}\nInput: {input}",
        "yes": "Yes",
        "no": "No",
        "none": "None",
    },
    "zh": {
        "generate": (
            "下面是人们请 AI 助手完成的 {k} 个任务示例：\n{examples}\n\n"
            "请再想出 {num} 个新任务。新任务要与示例不同，彼此之间也不同：动词、话题和任务类型"
            "（开放问答、写作、改写、推理、分类、编程、建议）都要有变化。每个任务只用文字就能"
            "完成，不涉及图片、音频、文件或上网，长度为一到两句话。请用中文，只写编号列表，"
            "从 {next} 开始编号。"
        ),
        "classify": (
            "下面的任务能否通过从一小组固定的标签中选择一个来完成（即分类任务）？"
            "回答“是”或“否”。\n\n{examples}\n\n任务：{task}\n是否分类："
        ),
        "classify_example": "任务：{task}\n是否分类：{answer}",
        "input_first": (
            "请为最后一个任务写一个示例：先写任务的输入（如果任务不需要输入，写“无”），再写"
            "正确的输出。严格按照示例的格式。\n\n{examples}\n\n任务：{task}\n"
        ),
        "input_first_example": "任务：{task}\n输入：{input}\n输出：{output}",
        "output_first": (
            "最后一个任务是分类任务。请先选出它的一个类别标签，再写一个属于该类别的输入。"
            "严格按照示例的格式。\n\n{examples}\n\n任务：{task}\n"
        ),
        "output_first_example": "任务：{task}\n类别：{output}\n输入：{input}",
        "yes": "是",
        "no": "否",
        "none": "无",
    },
}
_INSTANCE_LABELS = {
    "input": ("Input", "输入"),
    "output": ("Output", "输出", "Answer", "答案"),
    "label": ("Class label", "Class", "Label", "类别", "类别标签", "标签"),
}
_NO_INPUT = {"", "none", "n/a", "na", "(none)", "<noinput>", "无", "没有", "无输入", "null"}

# --- filters (DESIGN §4) -------------------------------------------------------------------
BLACKLIST_EN = (
    "image",
    "graph",
    "picture",
    "file",
    "map",
    "draw",
    "plot",
    "go to",
    "video",
    "audio",
    "music",
    "flowchart",
    "diagram",
)
# The same ideas in Chinese; substrings, since Chinese has no word boundaries.
BLACKLIST_ZH = (
    "图片",
    "图像",
    "照片",
    "图表",
    "图形",
    "文件",
    "地图",
    "绘制",
    "画出",
    "画一",
    "视频",
    "音频",
    "音乐",
    "流程图",
    "示意图",
    "前往",
)
_BLACKLIST_EN_RE = re.compile(
    r"\b(?:" + "|".join(re.escape(w) for w in BLACKLIST_EN) + r")s?\b", re.IGNORECASE
)
_PROGRAM_PREFIXES = ("write a program", "编写一个程序", "写一个程序", "编写程序", "写一段程序")


def instruction_problem(
    text: str, language: str = "en", *, min_words: float = 3, max_words: float = 150
) -> str | None:
    """Why a generated task is dropped (the filter's name), or None to keep it."""
    if not text:
        return "empty"
    size = length_units(text)
    if size <= min_words:
        return "too_short"
    if size > max_words:
        return "too_long"
    lowered = text.lower()
    if _BLACKLIST_EN_RE.search(text) or (language == "zh" and any(w in text for w in BLACKLIST_ZH)):
        return "blacklisted_word"
    if lowered.startswith(_PROGRAM_PREFIXES):
        return "write_a_program"
    if unicodedata.category(text[0])[0] in "PS":
        return "starts_with_punctuation"
    if language == "en" and not text[0].isascii():
        return "non_ascii_start"
    if language == "zh" and detect_script(text) != "zh":
        return "wrong_language"
    return None


_CLASSIFICATION_HINTS = re.compile(
    r"\b(classify|classification|categori[sz]e|which (?:of the following|one)|true or false|"
    r"yes or no|sentiment|is (?:it|this|the \w+) (?:a|an)\b|identify (?:the|whether)|"
    r"decide whether|determine whether|detect the)\b|分类|判断|是否|属于哪|哪一类|哪个选项|识别",
    re.IGNORECASE,
)


def looks_like_classification(task: str) -> bool:
    """A keyword guess, used when the model's yes/no cannot be read (or when asked to)."""
    return bool(_CLASSIFICATION_HINTS.search(task))


# --- seeds ---------------------------------------------------------------------------------


def default_seed_path(language: str) -> Path:
    path = resources.files("forgekit.methods") / "seeds" / f"self_instruct_{language}.jsonl"
    return Path(str(path))


def load_seed_tasks(source: Any = None, language: str = "en") -> list[dict[str, Any]]:
    """Seed tasks: flat records {instruction, input, output, is_classification} or Alpaca's
    {instruction, instances: [{input, output}], is_classification}. Default: the bundled
    set for `language`."""
    if language not in LANGUAGES:
        raise ConfigError(f"language={language!r}: choose one of {', '.join(LANGUAGES)}")
    where = str(source) if isinstance(source, (str, Path)) else "seed_tasks"
    records = read_records(source if source is not None else default_seed_path(language))
    seeds = []
    for number, record in enumerate(records, start=1):
        instruction = str(record.get("instruction") or "").strip()
        if not instruction:
            raise ConfigError(f"{where}: seed task {number} has no 'instruction'")
        instance = (record.get("instances") or [{}])[0] if "instances" in record else record
        cls = record.get("is_classification", False)
        if not isinstance(cls, bool):
            raise ConfigError(
                f"{where}: seed task {number}: 'is_classification' must be true or false, "
                f"got {cls!r}"
            )
        seeds.append(
            {
                "id": str(record.get("id", f"seed_{number}")),
                "instruction": instruction,
                "input": str(instance.get("input") or ""),
                "output": str(instance.get("output") or ""),
                "is_classification": cls,
            }
        )
    return seeds


# --- the method ----------------------------------------------------------------------------


def _sidecar(out: str | Path | None) -> Path | None:
    if out is None:
        return None
    path = Path(out)
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return path.with_name(f"{stem}.instructions.jsonl")


def self_instruct(
    n: int = 10,
    *,
    model: Any = None,
    seed_tasks: Any = None,
    language: str = "en",
    num_examples: int = 3,
    num_tasks: int = 8,
    similarity_threshold: float = 0.7,
    tokenizer: str = "auto",
    classification: str = "llm",
    min_words: float = 3,
    max_words: float = 150,
    instruction_params: SamplingParams | dict[str, Any] | None = None,
    instance_params: SamplingParams | dict[str, Any] | None = None,
    max_prompts: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    **run_options: Any,
):
    """Generate `n` instruction/instance records with Self-Instruct; returns a DataFrame.

    - `seed_tasks`: JSONL/JSON/CSV path, DataFrame or list of seed tasks (default: the
      bundled English or Chinese set for `language`).
    - `language`: 'en' or 'zh': prompts, filters (non-ASCII start in English; wrong
      language and Chinese blacklist in Chinese).
    - `num_examples` seed tasks shown per prompt (3); `num_tasks` new tasks asked for.
    - `similarity_threshold`: drop a task whose ROUGE-L F1 with any pooled task is above
      it (0.7); `tokenizer`: 'auto' (words, CJK per character) or 'jieba'.
    - `classification`: 'llm' (ask the model, keyword guess if its answer is unreadable)
      or 'heuristic' (keywords only, no extra request).
    - `min_words` / `max_words`: length filter (a CJK character counts half a word).
    - `instruction_params` / `instance_params`: sampling (defaults T=1.0, top_p=1.0, 512
      tokens / T=0, 256 tokens).
    - `max_prompts`: give up after this many generation prompts (default 10 * n / num_tasks
      + 10).
    - run options go to the engine; `out` (plus `<out>.instructions.jsonl`) resume.
    `df.attrs['forgekit']` has `filtered` (tasks dropped per filter) and `pool` counts.
    """
    config, rest = split_run_options(run_options)
    if rest:
        raise TypeError(f"self_instruct() got unexpected option(s): {', '.join(sorted(rest))}")
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    if classification not in ("llm", "heuristic"):
        raise ConfigError(f"classification={classification!r}: use 'llm' or 'heuristic'")
    if num_tasks < 1:
        raise ConfigError(f"num_tasks must be >= 1, got {num_tasks}")
    seeds = load_seed_tasks(seed_tasks, language)
    if len(seeds) < num_examples or num_examples < 1:
        raise ConfigError(
            f"num_examples={num_examples} needs at least that many seed tasks; "
            f"the seed set has {len(seeds)}"
        )
    from forgekit.models import get_model

    main_model = get_model(model)
    prompts = PROMPTS[language]
    instr = sampling({"temperature": 1.0, "top_p": 1.0, "max_tokens": 512}, instruction_params)
    inst = sampling({"temperature": 0.0, "max_tokens": 256}, instance_params)
    job = {
        "method": "self_instruct",
        "model": main_model.identity,
        "seeds": fingerprint(seeds, 16),
        "language": language,
        "num_examples": num_examples,
        "num_tasks": num_tasks,
        "similarity_threshold": similarity_threshold,
        "tokenizer": tokenizer,
        "classification": classification,
        "min_words": min_words,
        "max_words": max_words,
        "instruction_params": instr.to_dict(),
        "instance_params": inst.to_dict(),
        "seed": seed,
    }
    template_hash = fingerprint(prompts, 12)
    lineage_params = {"instruction": instr.to_dict(), "instance": inst.to_dict()}

    # -- stage 1: prompts -> candidate tasks ---------------------------------------------
    async def generate(ctx: RunContext, index: int) -> dict[str, Any]:
        examples = random.Random(seed * 7919 + index).sample(seeds, num_examples)
        listing = "\n".join(f"{i}. {ex['instruction']}" for i, ex in enumerate(examples, 1))
        prompt = prompts["generate"].format(
            k=num_examples, examples=listing, num=num_tasks, next=num_examples + 1
        )
        answer = await ctx.chat(
            [{"role": "user", "content": prompt}], params=with_seed(instr, seed, index)
        )
        candidates = parse_numbered_list(answer.text)
        truncated = answer.finish_reason == "length"
        if truncated and candidates:
            candidates = candidates[:-1]  # the last item was cut off mid-sentence
        return make_record(
            id=ctx.task.id,
            input=prompt,
            output=answer.text,
            metadata={
                "stage": "instructions",
                "prompt_index": index,
                "examples": [ex["id"] for ex in examples],
                "candidates": candidates,
                "truncated": truncated,
            },
            lineage=make_lineage(
                "self_instruct",
                main_model.name,
                template_hash=template_hash,
                params=lineage_params,
                seed=seed,
                index=index,
            ),
        )

    pool = RougePool(similarity_threshold, tokenizer)
    for s in seeds:
        pool.add(s["instruction"])
    filtered: Counter[str] = Counter()
    kept: list[dict[str, Any]] = []  # {"instruction", "batch_id", "prompt_index"}

    counts = Counter()

    def admit(batch: dict[str, Any]) -> None:
        for text in batch["metadata"]["candidates"]:
            counts["candidates"] += 1
            # models often wrap a task in quotes; that is not the task starting with one
            text = strip_quotes(" ".join(text.split()) if language == "en" else text)
            problem = instruction_problem(text, language, min_words=min_words, max_words=max_words)
            if problem is None and pool.most_similar(text) is not None:
                problem = "similar"
            if problem:
                filtered[problem] += 1
                continue
            pool.add(text)
            kept.append(
                {
                    "instruction": text,
                    "batch_id": batch["id"],
                    "prompt_index": batch["metadata"]["prompt_index"],
                }
            )

    target = math.ceil(n * 1.25) + 1  # a margin: some instances fail to parse
    limit_prompts = max_prompts or (10 * math.ceil(target / num_tasks) + 10)
    spent = RunStats()
    status, stop_reason = "completed", None
    errors: list[dict[str, Any]] = []
    prompts_done = 0
    first = True
    while len(kept) < target and prompts_done < limit_prompts:
        # Enough prompts for the tasks still missing at the yield seen so far (half the
        # asked-for tasks survive, before anything is known).
        rate = len(kept) / prompts_done if prompts_done else num_tasks / 2
        need = math.ceil((target - len(kept)) / max(rate, 0.25) * 1.2)
        # at least double each round, so a poor yield costs few rounds (each is a run)
        stop = min(limit_prompts, prompts_done + max(need, prompts_done, 1))
        stage_config = remaining_budget(config, spent)
        if budget_exhausted(stage_config):
            status, stop_reason = "stopped", "budget exhausted"
            break
        if not first:
            stage_config = replace(stage_config, overwrite=False)
        stage_job = {**job, "stage": "instructions"}
        result = run_method(
            tasks=(
                Task(
                    id=record_id("self_instruct/instructions", stage_job, i),
                    fn=lambda ctx, i=i: generate(ctx, i),
                    info={"stage": "instructions", "prompt_index": i},
                )
                for i in range(prompts_done, stop)
            ),
            method="self_instruct",
            model=model,
            out=_sidecar(out),
            config=stage_config,
            job=stage_job,
        )
        first = False
        add_stats(spent, result.stats)
        errors += result.errors
        for batch in result.records:
            admit(batch)
        prompts_done = stop
        if result.status != "completed":
            status, stop_reason = result.status, result.stop_reason
            break

    # -- stage 2: tasks -> instances -----------------------------------------------------
    by_class = {
        flag: [s for s in seeds if s["is_classification"] == flag] for flag in (False, True)
    }

    def demos(is_cls: bool, index: int) -> str:
        group = by_class[is_cls] or seeds
        picked = random.Random(seed * 31 + index).sample(group, min(2, len(group)))
        key = "output_first_example" if is_cls else "input_first_example"
        return "\n\n".join(
            prompts[key].format(
                task=ex["instruction"],
                input=ex["input"] or prompts["none"],
                output=ex["output"],
            )
            for ex in picked
        )

    async def is_classification(ctx: RunContext, task: str, index: int) -> tuple[bool, str]:
        if classification == "heuristic":
            return looks_like_classification(task), "heuristic"
        cls_seeds = by_class[True][:3] + by_class[False][:3]
        shots = "\n\n".join(
            prompts["classify_example"].format(
                task=s["instruction"], answer=prompts["yes" if s["is_classification"] else "no"]
            )
            for s in sorted(cls_seeds, key=lambda s: s["id"])
        )
        answer = await ctx.chat(
            [{"role": "user", "content": prompts["classify"].format(examples=shots, task=task)}],
            params=SamplingParams.coerce(inst, max_tokens=8, seed=seed),
        )
        verdict = parse_yes_no(answer.text)
        if verdict is None:
            filtered["classification_unreadable"] += 1  # counted; decided by keywords
            return looks_like_classification(task), "heuristic_fallback"
        return verdict, "llm"

    async def instance(ctx: RunContext, index: int, item: dict[str, Any]) -> dict[str, Any] | None:
        task = item["instruction"]
        is_cls, source = await is_classification(ctx, task, index)
        key = "output_first" if is_cls else "input_first"
        prompt = prompts[key].format(examples=demos(is_cls, index), task=task)
        answer = await ctx.chat(
            [{"role": "user", "content": prompt}], params=with_seed(inst, seed, index, 1)
        )
        fields = parse_labeled(answer.text, _INSTANCE_LABELS)
        output = fields.get("label" if is_cls else "output", "").strip()
        instance_input = fields.get("input", "").strip()
        if instance_input.lower().strip(".。") in _NO_INPUT:
            instance_input = ""
        if not output:
            filtered["instance_unparsable"] += 1
            return None
        return make_record(
            id=ctx.task.id,
            input=task + (f"\n\n{instance_input}" if instance_input else ""),
            output=output,
            metadata={
                "instruction": task,
                "instance_input": instance_input,
                "is_classification": is_cls,
                "classification_source": source,
                "generation_order": "output-first" if is_cls else "input-first",
                "prompt_index": item["prompt_index"],
                "raw_instance": answer.text,
            },
            lineage=make_lineage(
                "self_instruct",
                main_model.name,
                template_hash=template_hash,
                params=lineage_params,
                seed=seed,
                index=index,
                parent_id=item["batch_id"],
            ),
        )

    def instance_tasks() -> Iterator[Task]:
        for index, item in enumerate(kept):
            yield Task(
                id=record_id("self_instruct", {**job, "instruction": item["instruction"]}, index),
                fn=lambda ctx, i=index, it=item: instance(ctx, i, it),
                info={"stage": "instances", "instruction": item["instruction"][:80]},
            )

    stage_config = remaining_budget(config, spent)
    if budget_exhausted(stage_config) and status == "completed":
        status, stop_reason = "stopped", "budget exhausted"
    result: RunResult = run_method(
        tasks=instance_tasks() if not budget_exhausted(stage_config) else iter(()),
        method="self_instruct",
        model=model,
        out=out,
        config=stage_config,
        job=job,
        limit=n,
    )
    add_stats(spent, result.stats)
    instruction_stats = dict(spent.__dict__)
    if result.status != "completed" and status == "completed":
        status, stop_reason = result.status, result.stop_reason
    result.errors = errors + result.errors
    df = result_frame(
        result,
        filtered=dict(filtered),
        pool={
            "seeds": len(seeds),
            "prompts": prompts_done,
            "candidates": counts["candidates"],
            "kept_instructions": len(kept),
            "lcs_computed": pool.lcs_computed,
        },
        instructions_out=str(_sidecar(out)) if out else None,
    )
    df.attrs["forgekit"].update(
        status=status, stop_reason=stop_reason, stats_all_stages=instruction_stats
    )
    return df


# --- the `forge self-instruct` command -----------------------------------------------------
def _run_command(args: argparse.Namespace, ctx: Any) -> Any:
    return self_instruct(
        args.n,
        model=args.model,
        seed_tasks=args.seed_tasks,
        language=args.language,
        num_examples=args.num_examples,
        num_tasks=args.num_tasks,
        similarity_threshold=args.similarity_threshold,
        tokenizer=args.tokenizer,
        classification=args.classification,
        min_words=args.min_words,
        max_words=args.max_words,
        instruction_params={"temperature": args.temperature, "max_tokens": args.list_max_tokens},
        instance_params={"temperature": args.instance_temperature, "max_tokens": args.max_tokens},
        max_prompts=args.max_prompts,
        seed=args.seed,
        out=args.out,
        config=run_config_from_args(args, ctx),
    )


def add_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "self-instruct",
        aliases=["self_instruct"],
        help="Self-Instruct (Alpaca): grow tasks from seed examples, with filters",
        description="Self-Instruct: prompt with 3 sampled seed tasks for a numbered list of new "
        "tasks; drop too short/long, blacklisted ('image', 'file', ...), 'Write a program', "
        "punctuation-led tasks and any with ROUGE-L > threshold to the pool (CJK-aware); then "
        "write one instance per task (output-first for classification tasks).",
    )
    p.add_argument("-n", type=int, default=10, help="records to produce (default 10)")
    add_model_option(p)
    p.add_argument(
        "--seed-tasks",
        default=None,
        help="seed tasks file (.jsonl/.json/.csv: instruction, input, output, "
        "is_classification); default: the bundled set for --language",
    )
    p.add_argument("--language", choices=LANGUAGES, default="en", help="en (default) or zh")
    p.add_argument("--num-examples", type=int, default=3, help="seed tasks per prompt (3)")
    p.add_argument("--num-tasks", type=int, default=8, help="new tasks asked per prompt (8)")
    p.add_argument(
        "--similarity-threshold",
        type=float,
        default=0.7,
        help="drop tasks with ROUGE-L F1 above this to the pool (0.7)",
    )
    p.add_argument(
        "--tokenizer",
        choices=["auto", "jieba"],
        default="auto",
        help="ROUGE tokens: auto = words, CJK per character (default); jieba = Chinese words",
    )
    p.add_argument(
        "--classification",
        choices=["llm", "heuristic"],
        default="llm",
        help="how to tell classification tasks: ask the model (default) or keywords only",
    )
    p.add_argument("--min-words", type=float, default=3, help="drop tasks of <= this many words")
    p.add_argument("--max-words", type=float, default=150, help="drop tasks over this many words")
    p.add_argument(
        "--temperature", type=float, default=1.0, help="task-list temperature (default 1.0)"
    )
    p.add_argument("--list-max-tokens", type=int, default=512, help="task-list max tokens (512)")
    p.add_argument(
        "--instance-temperature", type=float, default=0.0, help="instance temperature (0)"
    )
    p.add_argument("--max-tokens", type=int, default=256, help="instance max tokens (256)")
    p.add_argument("--max-prompts", type=int, default=None, help="give up after this many prompts")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    add_run_options(p)
    p.set_defaults(handler=_run_command)
