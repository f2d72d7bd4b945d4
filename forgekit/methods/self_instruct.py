"""Self-Instruct (Wang et al., 2023; the Alpaca recipe): grow a task pool from a few seeds.

Stage 1 asks for numbered lists of new tasks, in rounds until enough pass the filters (DESIGN
§4) and the ROUGE-L check against the pool (seeds included; CJK text is tokenized per
character, see forgekit.evaluate.rouge). Its records (one per prompt: the raw answer and the
parsed tasks) go to `<out>.instructions.jsonl`, so a re-run resumes both stages; the pool is
rebuilt from them in prompt order, which keeps the result independent of concurrency.
Stage 2 writes one instance per task: output-first for classification tasks (a label, then
an input of that class — else inputs mostly fall in one class), input-first for the rest.
"""

from __future__ import annotations

import math
import random
import re
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from forgekit.data.io import read_records
from forgekit.data.records import fingerprint, make_record
from forgekit.data.text import detect_script, length_units
from forgekit.engine import RunContext, RunStats
from forgekit.errors import ConfigError
from forgekit.evaluate.rouge import RougePool
from forgekit.methods.parsing import parse_labeled, parse_numbered_list, parse_yes_no, strip_quotes
from forgekit.methods.prompting import chat_messages
from forgekit.methods.samplers import with_seed
from forgekit.methods.spec import Method, option, sampling
from forgekit.methods.stages import Stages
from forgekit.models import SamplingParams

LANGUAGES = ("en", "zh")
# The bundled seed tasks and the prompts (per language, exactly as the model sees them).
_DATA = resources.files("forgekit.methods") / "seeds"
_INSTANCE_LABELS = {
    "input": ("Input", "输入"),
    "output": ("Output", "输出", "Answer", "答案"),
    "label": ("Class label", "Class", "Label", "类别", "类别标签", "标签"),
}
_NO_INPUT = {"", "none", "n/a", "na", "(none)", "<noinput>", "无", "没有", "无输入", "null"}

# --- filters (DESIGN §4) -------------------------------------------------------------------
_EN_WORDS = "image graph picture file map draw plot go_to video audio music flowchart diagram"
BLACKLIST_EN = tuple(word.replace("_", " ") for word in _EN_WORDS.split())
# The same ideas in Chinese; substrings, since Chinese has no word boundaries.
_ZH_WORDS = "图片 图像 照片 图表 图形 文件 地图 绘制 画出 画一 视频 音频 音乐 流程图 示意图 前往"
BLACKLIST_ZH = tuple(_ZH_WORDS.split())
_BLACKLIST_EN_RE = re.compile(rf"\b(?:{'|'.join(map(re.escape, BLACKLIST_EN))})s?\b", re.IGNORECASE)
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
    if _BLACKLIST_EN_RE.search(text) or (language == "zh" and any(w in text for w in BLACKLIST_ZH)):
        return "blacklisted_word"
    if text.lower().startswith(_PROGRAM_PREFIXES):
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
    return Path(str(_DATA / f"self_instruct_{language}.jsonl"))


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
        ident = str(record.get("id", f"seed_{number}"))
        text = {k: str(instance.get(k) or "") for k in ("input", "output")}
        seeds.append({"id": ident, "instruction": instruction, **text, "is_classification": cls})
    return seeds


# --- the method ----------------------------------------------------------------------------
def _seeds_identity(source: Any) -> str | None:
    """The seed tasks' content, not where they came from, is part of the resume identity."""
    return None if source is None else fingerprint(load_seed_tasks(source), 16)


@dataclass(frozen=True, kw_only=True)
class SelfInstructOptions:
    n: int = option(10, flag="-n", minimum=1, identity=False, help="records to produce")
    seed_tasks: Any = option(
        None,
        identity=_seeds_identity,
        from_text=str,
        help="seed tasks file (.jsonl/.json/.csv: instruction, input, output, is_classification;"
        " in Python also a DataFrame or a list); default: the bundled set for --language",
    )
    language: str = option("en", choices=LANGUAGES, help="language of the prompts and filters")
    num_examples: int = option(3, minimum=1, help="seed tasks shown per prompt")
    num_tasks: int = option(8, minimum=1, help="new tasks asked per prompt")
    similarity_threshold: float = option(0.7, help="drop tasks with ROUGE-L F1 above this")
    tokenizer: str | Callable[[str], list[str]] = option(
        "auto",
        metavar="{auto,jieba}",  # in Python also a callable text -> tokens
        help="ROUGE tokens: auto = words, CJK per character; jieba = Chinese words",
    )
    classification: str = option(
        "llm", choices=("llm", "heuristic"), help="classification tasks: ask the model, or keywords"
    )
    min_words: float = option(3, help="drop tasks of <= this many words (CJK character: 0.5)")
    max_words: float = option(150, help="drop tasks over this many words")
    instruction_params: SamplingParams = sampling(
        temperature=1.0,
        top_p=1.0,
        max_tokens=512,
        flags={"temperature": "--temperature", "max_tokens": "--list-max-tokens"},
        help="the task lists",
    )
    instance_params: SamplingParams = sampling(
        temperature=0.0,
        max_tokens=256,
        flags={"temperature": "--instance-temperature", "max_tokens": "--max-tokens"},
        help="the instances",
    )
    max_prompts: int | None = option(
        None, minimum=1, identity=False, help="give up after this many prompts (default: 10x need)"
    )
    seed: int = option(0, help="base seed")


class SelfInstruct(Method):
    """Self-Instruct: prompt with 3 sampled seed tasks for a numbered list of new tasks; drop
    too short/long, blacklisted ('image', 'file', ...), 'Write a program', punctuation-led
    tasks and any with ROUGE-L > threshold to the pool (CJK-aware); then write one instance
    per task (output-first for classification tasks). The task lists go to
    <out>.instructions.jsonl. `df.attrs['forgekit']` has `filtered` (tasks dropped per
    filter) and `pool` counts."""

    name = "self_instruct"
    command = "self-instruct"
    aliases = ("self_instruct",)
    help = "Self-Instruct (Alpaca): grow tasks from seed examples, with filters"
    Options = SelfInstructOptions
    inputs = "none"
    positional = "n"

    def prepare(self, records: list[dict[str, Any]]) -> list[Any]:
        o = self.options
        self.seeds = load_seed_tasks(o.seed_tasks, o.language)
        if len(self.seeds) < o.num_examples:
            raise ConfigError(
                f"num_examples={o.num_examples} needs at least that many seed tasks; "
                f"the seed set has {len(self.seeds)}"
            )
        prompts = (_DATA / "self_instruct_prompts.yaml").read_text(encoding="utf-8")
        self.text: dict[str, str] = yaml.safe_load(prompts)[o.language]
        self.pool = RougePool(o.similarity_threshold, o.tokenizer)
        for seed in self.seeds:
            self.pool.add(seed["instruction"])
        self.groups = {
            c: [s for s in self.seeds if s["is_classification"] == c] for c in (False, True)
        }
        shots = sorted(self.groups[True][:3] + self.groups[False][:3], key=lambda s: s["id"])
        answer = {True: self.text["yes"], False: self.text["no"]}
        shot = self.text["classify_example"]
        self.shots = "\n\n".join(
            shot.format(task=s["instruction"], answer=answer[s["is_classification"]]) for s in shots
        )
        self.template_hash = fingerprint(self.text, 12)
        self.params = {"instruction": o.instruction_params.to_dict()}
        self.params["instance"] = o.instance_params.to_dict()
        self.kept: list[dict[str, Any]] = []  # the new tasks that passed, in prompt order
        self.candidates = self.prompts = 0
        return []

    async def run(self, stages: Stages, items: list[Any]) -> None:
        o = self.options
        target = math.ceil(o.n * 1.25) + 1  # a margin: some instances fail to parse
        most = o.max_prompts or (10 * math.ceil(target / o.num_tasks) + 10)
        results = []
        while len(self.kept) < target and self.prompts < most:
            # Prompts for the tasks still missing at the yield so far (at first: half of those
            # asked for survive), at least doubling each round so a poor yield costs few rounds.
            done = self.prompts
            rate = len(self.kept) / done if done else o.num_tasks / 2
            need = math.ceil((target - len(self.kept)) / max(rate, 0.25) * 1.2)
            self.prompts = min(most, done + max(need, done, 1))
            lists = await stages.run(
                range(done, self.prompts),
                produce=self.generate,
                stage="instructions",
                start=done,  # a prompt's id does not depend on how the rounds split
                side="instructions",
                label="self_instruct task lists",
            )
            results.append(lists.result)
            for batch in filter(None, lists.outputs):  # in prompt order, whatever the concurrency
                self.admit(batch)
            if not lists.completed:
                break
        instances = await stages.run(self.kept, produce=self.instance, limit=o.n)
        self.details = {
            "instructions_out": str(results[0].out) if results[0].out else None,
            "stats_all_stages": asdict(RunStats.total([*results, instances.result])),
        }

    # -- stage 1: prompts -> candidate tasks -------------------------------------------------
    async def generate(self, ctx: RunContext, index: int) -> dict[str, Any]:
        o = self.options
        examples = random.Random(o.seed * 7919 + index).sample(self.seeds, o.num_examples)
        listing = "\n".join(f"{i}. {ex['instruction']}" for i, ex in enumerate(examples, 1))
        prompt = self.text["generate"].format(
            k=o.num_examples, examples=listing, num=o.num_tasks, next=o.num_examples + 1
        )
        params = with_seed(o.instruction_params, o.seed, index)
        answer = await ctx.chat(chat_messages(None, prompt), params=params)
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
            lineage=self.lineage(ctx, params=self.params, index=index),
        )

    def admit(self, batch: dict[str, Any]) -> None:
        """Filter one prompt's tasks into the pool."""
        o = self.options
        for text in batch["metadata"]["candidates"]:
            self.candidates += 1
            # models often wrap a task in quotes; that is not the task starting with one
            text = strip_quotes(" ".join(text.split()) if o.language == "en" else text)
            problem = instruction_problem(
                text, o.language, min_words=o.min_words, max_words=o.max_words
            )
            if problem is None and self.pool.most_similar(text) is not None:
                problem = "similar"
            if problem:
                self.counts[problem] += 1
                continue
            self.pool.add(text)
            origin = {"batch_id": batch["id"], "prompt_index": batch["metadata"]["prompt_index"]}
            self.kept.append({"instruction": text, **origin, "position": len(self.kept)})

    # -- stage 2: tasks -> instances ---------------------------------------------------------
    async def classify(self, ctx: RunContext, task: str) -> tuple[bool, str]:
        o = self.options
        if o.classification == "heuristic":
            return looks_like_classification(task), "heuristic"
        question = self.text["classify"].format(examples=self.shots, task=task)
        params = SamplingParams.coerce(o.instance_params, max_tokens=8, seed=o.seed)
        verdict = parse_yes_no((await ctx.chat(chat_messages(None, question), params=params)).text)
        if verdict is None:
            self.counts["classification_unreadable"] += 1  # counted; decided by keywords
            return looks_like_classification(task), "heuristic_fallback"
        return verdict, "llm"

    def demos(self, is_cls: bool, index: int) -> str:
        group = self.groups[is_cls] or self.seeds
        picked = random.Random(self.options.seed * 31 + index).sample(group, min(2, len(group)))
        key = "output_first_example" if is_cls else "input_first_example"
        return "\n\n".join(
            self.text[key].format(
                task=ex["instruction"], input=ex["input"] or self.text["none"], output=ex["output"]
            )
            for ex in picked
        )

    async def instance(self, ctx: RunContext, item: dict[str, Any]) -> dict[str, Any] | None:
        o = self.options
        task, index = item["instruction"], item["position"]
        is_cls, source = await self.classify(ctx, task)
        prompt = self.text["output_first" if is_cls else "input_first"].format(
            examples=self.demos(is_cls, index), task=task
        )
        params = with_seed(o.instance_params, o.seed, index, salt=1)
        answer = await ctx.chat(chat_messages(None, prompt), params=params)
        fields = parse_labeled(answer.text, _INSTANCE_LABELS)
        output = fields.get("label" if is_cls else "output", "").strip()
        given = fields.get("input", "").strip()
        instance_input = "" if given.lower().strip(".。") in _NO_INPUT else given
        if not output:
            self.counts["instance_unparsable"] += 1
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
            lineage=self.lineage(ctx, params=self.params, index=index, parent_id=item["batch_id"]),
        )

    def dry_reply(self, kind: str, payload: Any, params: SamplingParams) -> str:
        """A dry run's stand-in answer (forgekit.methods.estimate) that parses as a list of
        distinct new tasks and as an instance, so both stages are estimated."""
        from forgekit.engine.estimate import stand_in_tasks

        tasks = stand_in_tasks(self.options.num_tasks)
        listing = "\n".join(f"{i}. {task}" for i, task in enumerate(tasks, 1))
        return f"{listing}\n\nInput: none\nOutput: {tasks[0]}\nClass label: {tasks[-1]}"

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        pool = {"seeds": len(self.seeds), "prompts": self.prompts, "candidates": self.candidates}
        pool |= {"kept_instructions": len(self.kept), "lcs_computed": self.pool.lcs_computed}
        return {"filtered": dict(self.counts), "pool": pool, **self.details}
