"""The export formats: what each one is called, how a row is built, what file it goes to,
how it treats thinking traces, and what it tells LLaMA-Factory and the dataset card."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from forgekit.errors import ConfigError
from forgekit.export import convert


@dataclass(frozen=True)
class Format:
    name: str
    build: Callable[[Any, Any], dict[str, Any]] | None  # None: the records as they are
    file: str  # jsonl | parquet | disk (datasets save_to_disk)
    description: str
    preference: bool = False
    thinking: str = "inline"  # the default policy: inline | drop
    conversational: str = "never"  # never | always | auto (when any record has context)
    llamafactory: str | None = None  # alpaca | sharegpt: write a dataset_info.json entry
    tags: tuple[str, ...] = ()


_LIST = [
    Format(
        "trl-messages",
        convert.trl_messages,
        "jsonl",
        "TRL conversational SFT: `messages` (role/content), system and history turns first",
        conversational="always",
        tags=("trl", "sft"),
    ),
    Format(
        "trl-prompt-completion",
        convert.trl_prompt_completion,
        "jsonl",
        "TRL prompt-completion: `prompt`, `completion` (message lists when any record has a "
        "system prompt or history)",
        conversational="auto",
        tags=("trl", "sft"),
    ),
    Format(
        "trl-preference",
        convert.trl_preference,
        "jsonl",
        "TRL preference (DPO): `prompt`, `chosen`, `rejected` (message lists when any record "
        "has a system prompt or history)",
        preference=True,
        conversational="auto",
        tags=("trl", "dpo", "preference"),
    ),
    Format(
        "alpaca",
        convert.alpaca,
        "jsonl",
        "LLaMA-Factory alpaca: `instruction`, `input`, `output`, `system`, `history`",
        llamafactory="alpaca",
        tags=("llama-factory", "alpaca", "sft"),
    ),
    Format(
        "alpaca-preference",
        convert.alpaca_preference,
        "jsonl",
        "LLaMA-Factory alpaca ranking: `instruction`, `input`, `chosen`, `rejected`, `system`, "
        "`history`",
        preference=True,
        llamafactory="alpaca",
        tags=("llama-factory", "alpaca", "dpo", "preference"),
    ),
    Format(
        "sharegpt",
        convert.sharegpt,
        "jsonl",
        "LLaMA-Factory sharegpt: `conversations` (from human/gpt, value), `system`",
        llamafactory="sharegpt",
        tags=("llama-factory", "sharegpt", "sft"),
    ),
    Format(
        "sharegpt-preference",
        convert.sharegpt_preference,
        "jsonl",
        "LLaMA-Factory sharegpt ranking: `conversations` ending with the human turn, `chosen` "
        "and `rejected` gpt turns, `system`",
        preference=True,
        llamafactory="sharegpt",
        tags=("llama-factory", "sharegpt", "dpo", "preference"),
    ),
    Format(
        "openai",
        convert.openai_sft,
        "jsonl",
        "OpenAI fine-tuning (SFT): `messages`",
        thinking="drop",
        tags=("openai", "sft"),
    ),
    Format(
        "openai-preference",
        convert.openai_preference,
        "jsonl",
        "OpenAI preference fine-tuning: `input` {messages}, `preferred_output`, "
        "`non_preferred_output`",
        preference=True,
        thinking="drop",
        tags=("openai", "dpo", "preference"),
    ),
    Format(
        "verl",
        convert.verl,
        "parquet",
        "VeRL RL Parquet: `data_source`, `prompt` (messages), `ability`, `reward_model` "
        "{style: rule, ground_truth}, `extra_info` {split, index, id}",
        thinking="drop",
        tags=("verl", "rl"),
    ),
    Format("parquet", None, "parquet", "forgekit records as Parquet (every field)"),
    Format("save_to_disk", None, "disk", "forgekit records as a datasets save_to_disk folder"),
]
FORMATS: dict[str, Format] = {f.name: f for f in _LIST}
ALIASES = {
    "trl": "trl-messages",
    "messages": "trl-messages",
    "dpo": "trl-preference",
    "llamafactory-alpaca": "alpaca",
    "llamafactory-sharegpt": "sharegpt",
    "openai-sft": "openai",
    "openai-dpo": "openai-preference",
    "disk": "save_to_disk",
}


def get_format(name: str) -> Format:
    key = ALIASES.get(name, name)
    if key not in FORMATS:
        raise ConfigError(f"format {name!r}: choose one of {', '.join(FORMATS)}")
    return FORMATS[key]
