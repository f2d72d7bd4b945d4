"""Magpie: instruction data from an aligned model's own chat template (Xu et al., 2024).

Stage 1 sends only the left side of the chat template, up to where the user's text would
begin (the pre-query template); the model, trained to see a user query there, writes one.
Stage 2 answers that query with the normal chat template. Stage 1 needs a raw completion
endpoint: a chat-only provider cannot be given a bare template.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgekit.cli.legacy import add_model_option, add_run_options, run_config_from_args
from forgekit.data.records import fingerprint, make_lineage, make_record, record_id
from forgekit.data.text import detect_script, length_units
from forgekit.engine import RunContext, Task
from forgekit.errors import ConfigError, UnsupportedOperationError
from forgekit.methods._common import result_frame, run_method, split_run_options
from forgekit.models import Model, SamplingParams

QWEN25_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
# SmolLM2's chat template inserts this system turn when a conversation has none; the model
# writes far more plausible queries when the pre-query text carries it too.
SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@dataclass(frozen=True)
class ChatFormat:
    """How one model family lays out a conversation, as plain strings."""

    name: str
    bos: str
    system: str | None  # format with {content}; None: the family has no system role
    user: str  # format with {content}, a complete user turn
    assistant: str  # format with {content}, a complete assistant turn
    user_prefix: str  # the left side of a user turn: the pre-query template
    stops: tuple[str, ...]
    default_system: str | None = None

    def pre_query(self, system: str | None = None, turns: list[tuple[str, str]] = ()) -> str:
        """The text up to where the next user message would begin."""
        system = system if system is not None else self.default_system
        text = self.bos
        if system:
            if self.system is None:
                raise ConfigError(
                    f"template {self.name!r} has no system role, so --system cannot steer it"
                )
            text += self.system.format(content=system)
        for user, assistant in turns:
            text += self.user.format(content=user) + self.assistant.format(content=assistant)
        return text + self.user_prefix


def _chatml(name: str, default_system: str | None = None) -> ChatFormat:
    return ChatFormat(
        name=name,
        bos="",
        system="<|im_start|>system\n{content}<|im_end|>\n",
        user="<|im_start|>user\n{content}<|im_end|>\n",
        assistant="<|im_start|>assistant\n{content}<|im_end|>\n",
        user_prefix="<|im_start|>user\n",
        stops=("<|im_end|>", "<|im_start|>", "<|endoftext|>"),
        default_system=default_system,
    )


_LLAMA3 = ChatFormat(
    name="llama3",
    bos="<|begin_of_text|>",
    system="<|start_header_id|>system<|end_header_id|>\n\n{content}<|eot_id|>",
    user="<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>",
    assistant="<|start_header_id|>assistant<|end_header_id|>\n\n{content}<|eot_id|>",
    user_prefix="<|start_header_id|>user<|end_header_id|>\n\n",
    stops=("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|end_of_text|>"),
)
_GEMMA2 = ChatFormat(
    name="gemma2",
    bos="<bos>",
    system=None,
    user="<start_of_turn>user\n{content}<end_of_turn>\n",
    assistant="<start_of_turn>model\n{content}<end_of_turn>\n",
    user_prefix="<start_of_turn>user\n",
    stops=("<end_of_turn>", "<start_of_turn>", "<eos>"),
)
_PHI3 = ChatFormat(
    name="phi3",
    bos="<s>",
    system="<|system|>\n{content}<|end|>\n",
    user="<|user|>\n{content}<|end|>\n",
    assistant="<|assistant|>\n{content}<|end|>\n",
    user_prefix="<|user|>\n",
    stops=("<|end|>", "<|user|>", "<|assistant|>", "<|endoftext|>"),
)
# Mistral and Llama-2 put the system text inside the first [INST]; the pre-query template
# for a first turn is "<s>[INST] " (with Llama-2's <<SYS>> block when a system is given).
_MISTRAL = ChatFormat(
    name="mistral",
    bos="<s>",
    system="{content}\n\n",
    user="[INST] {content} [/INST]",
    assistant=" {content}</s>",
    user_prefix="[INST] ",
    stops=("[/INST]", "[INST]", "</s>"),
)
_LLAMA2 = ChatFormat(
    name="llama2",
    bos="<s>",
    system="<<SYS>>\n{content}\n<</SYS>>\n\n",
    user="[INST] {content} [/INST]",
    assistant=" {content} </s><s>",
    user_prefix="[INST] ",
    stops=("[/INST]", "[INST]", "</s>"),
)

CHAT_FORMATS: dict[str, ChatFormat] = {
    "chatml": _chatml("chatml"),
    "smollm2": _chatml("smollm2", default_system=SMOLLM2_SYSTEM),
    "qwen2": _chatml("qwen2"),
    "qwen2.5": _chatml("qwen2.5", default_system=QWEN25_SYSTEM),
    "llama3": _LLAMA3,
    "gemma2": _GEMMA2,
    "phi3": _PHI3,
    "mistral": _MISTRAL,
    "llama2": _LLAMA2,
}


def chat_format(name: str) -> ChatFormat:
    try:
        return CHAT_FORMATS[name.lower()]
    except KeyError:
        raise ConfigError(
            f"unknown chat template {name!r}; known: {', '.join(CHAT_FORMATS)}"
        ) from None


def pre_query_text(fmt: ChatFormat, system: str | None, turns: list[tuple[str, str]]) -> str:
    """The pre-query prompt; Mistral folds the system text into the first [INST]."""
    if fmt.name == "mistral" and system:
        if turns:
            return fmt.pre_query(None, turns)  # system stays in the first turn's text
        return fmt.bos + fmt.user_prefix + fmt.system.format(content=system)  # type: ignore[union-attr]
    if fmt.name == "llama2" and system:
        return fmt.bos + fmt.user_prefix + fmt.system.format(content=system)  # type: ignore[union-attr]
    return fmt.pre_query(system, turns)


# --- filters ---------------------------------------------------------------------------
_TEMPLATE_MARKERS = re.compile(
    r"<\|[a-z_]+\|>|<start_of_turn>|<end_of_turn>|\[/?INST\]|<</?SYS>>|"
    r"^(user|assistant|system|model)\s*[:\n]",
    re.IGNORECASE,
)


def clean_instruction(text: str, fmt: ChatFormat) -> str:
    for stop in fmt.stops:
        text = text.split(stop, 1)[0]
    return text.strip()


def query_problem(text: str, *, min_words: int, language: str | None, seen: set[str]) -> str | None:
    """Why a generated query is dropped (the name of the filter), or None to keep it."""
    if not text:
        return "empty"
    if length_units(text) < min_words:
        return "too_short"
    if _TEMPLATE_MARKERS.search(text):
        return "template_echo"
    if language and detect_script(text) != language:
        return "wrong_language"
    key = " ".join(text.lower().split())
    if key in seen:
        return "duplicate"
    seen.add(key)
    return None


# --- the method ------------------------------------------------------------------------
def _template_name(model: Model, template: str | None) -> str:
    name = template or getattr(model, "template", None)
    if not name:
        raise ConfigError(
            f"model {model.name!r} has no chat-template family configured; pass "
            f"template= (one of {', '.join(CHAT_FORMATS)}) or set `template:` in its profile"
        )
    return name


def magpie(
    n: int = 10,
    *,
    model: str | Model | None = None,
    response_model: str | Model | None = None,
    template: str | None = None,
    system: str | None = None,
    n_turns: int = 1,
    newline_stop: bool = True,
    instruction_params: SamplingParams | dict[str, Any] | None = None,
    response_params: SamplingParams | dict[str, Any] | None = None,
    min_words: int = 3,
    language: str | None = None,
    max_generations: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    **run_options: Any,
):
    """Generate `n` instruction/response records with Magpie; returns a DataFrame.

    - `template`: chat-template family (chatml, smollm2, qwen2, qwen2.5, llama3, gemma2,
      phi3, mistral, llama2); default: the model profile's.
    - `system`: a system prompt before the user slot, to steer the topic.
    - `n_turns`: conversation turns per record (earlier turns go to `history`).
    - `newline_stop`: stop the instruction at its first newline (on by default).
    - `instruction_params` / `response_params`: sampling for each stage (defaults:
      T=1.0, top_p=1.0, 128 tokens / T=0, 256 tokens).
    - `min_words`, `language` ('en', 'zh'): instruction filters; counts of what each
      removed are in `df.attrs['forgekit']['filtered']`.
    - `max_generations`: give up after this many attempts (default 20 * n).
    - run options (concurrency, rpm, tpm, max_requests, max_tokens, max_cost, cache, ...)
      go to the engine; `out` is a JSONL file that a re-run resumes.
    """
    config, rest = split_run_options(run_options)
    if rest:
        raise TypeError(f"magpie() got unexpected option(s): {', '.join(sorted(rest))}")
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    if n_turns < 1:
        raise ConfigError(f"n_turns must be >= 1, got {n_turns}")
    from forgekit.models import get_model

    main_model = get_model(model)
    fmt = chat_format(_template_name(main_model, template))
    if not main_model.supports_completion:
        raise UnsupportedOperationError(
            f"Magpie needs a raw completion endpoint, but model {main_model.name!r} is "
            f"chat-only. Use the embedded 'local' model, a vLLM or llama.cpp server "
            f"(set `completions: true` in its profile)."
        )
    stops = list(fmt.stops) + (["\n"] if newline_stop else [])
    instr = SamplingParams.coerce(
        {"temperature": 1.0, "top_p": 1.0, "max_tokens": 128}, **_as_dict(instruction_params)
    )
    instr = SamplingParams.coerce(instr, stop=tuple(dict.fromkeys([*(instr.stop or ()), *stops])))
    resp = SamplingParams.coerce(
        {"temperature": 0.0, "max_tokens": 256}, **_as_dict(response_params)
    )
    filtered: Counter[str] = Counter()
    seen: set[str] = set()
    job = {
        "method": "magpie",
        "model": main_model.identity,
        "response_model": getattr(response_model, "identity", response_model),
        "template": fmt.name,
        "system": system,
        "n_turns": n_turns,
        "newline_stop": newline_stop,
        "instruction_params": instr.to_dict(),
        "response_params": resp.to_dict(),
        "min_words": min_words,
        "language": language,
        "seed": seed,
    }
    template_hash = fingerprint({"format": fmt.name, "system": system}, 12)

    async def produce(ctx: RunContext, index: int) -> dict[str, Any] | None:
        turns: list[tuple[str, str]] = []
        raw_instructions = []
        for turn in range(n_turns):
            prompt = pre_query_text(fmt, system, turns)
            params = SamplingParams.coerce(instr, seed=seed * 1_000_003 + index * 101 + turn)
            generated = await ctx.complete(prompt, params=params)
            raw_instructions.append(generated.text)
            instruction = clean_instruction(generated.text, fmt)
            problem = query_problem(instruction, min_words=min_words, language=language, seen=seen)
            if problem:
                filtered[problem] += 1
                return None
            messages = [{"role": "system", "content": system}] if system else []
            for user, assistant in turns:
                messages += [
                    {"role": "user", "content": user},
                    {"role": "assistant", "content": assistant},
                ]
            messages.append({"role": "user", "content": instruction})
            answer = await ctx.chat(messages, model=response_model, params=resp)
            response = answer.text.strip()
            if not response:
                filtered["empty_response"] += 1
                return None
            turns.append((instruction, response))
        *history, (last_user, last_answer) = turns
        return make_record(
            id=ctx.task.id,
            input=last_user,
            output=last_answer,
            history=[list(t) for t in history],
            system=system,
            metadata={"template": fmt.name, "raw_instructions": raw_instructions},
            lineage=make_lineage(
                "magpie",
                [main_model.name]
                + ([getattr(response_model, "name", response_model)] if response_model else []),
                template_hash=template_hash,
                params={"instruction": instr.to_dict(), "response": resp.to_dict()},
                seed=seed,
                index=index,
            ),
        )

    def tasks() -> Iterator[Task]:
        for index in range(max_generations or 20 * n):
            yield Task(
                id=record_id("magpie", job, index),
                fn=lambda ctx, i=index: produce(ctx, i),
                info={"index": index},
            )

    result = run_method(
        tasks=tasks(),
        method="magpie",
        model=model,
        out=out,
        config=config,
        job=job,
        limit=n,
    )
    return result_frame(
        result,
        filtered=dict(filtered),
        generations=result.stats.filtered + result.stats.ok + result.stats.failed,
    )


def _as_dict(params: SamplingParams | dict[str, Any] | None) -> dict[str, Any]:
    if params is None:
        return {}
    return params.to_dict() if isinstance(params, SamplingParams) else dict(params)


# --- the `forge magpie` command --------------------------------------------------------
def _run_command(args: argparse.Namespace, ctx: Any) -> Any:
    return magpie(
        args.n,
        model=args.model,
        response_model=args.response_model,
        template=args.template,
        system=args.system,
        n_turns=args.turns,
        newline_stop=not args.no_newline_stop,
        instruction_params={
            "temperature": args.temperature,
            "max_tokens": args.instruction_max_tokens,
        },
        response_params={"temperature": args.response_temperature, "max_tokens": args.max_tokens},
        min_words=args.min_words,
        language=args.language,
        seed=args.seed,
        out=args.out,
        config=run_config_from_args(args, ctx),
    )


def add_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "magpie",
        help="instruction/response pairs from the model's own chat template",
        description="Magpie: send the chat template's pre-query text so the model writes a "
        "user query, then answer it. Needs a raw completion endpoint (local, vLLM, "
        "llama.cpp server).",
    )
    p.add_argument("-n", type=int, default=10, help="records to produce (default 10)")
    add_model_option(p)
    p.add_argument(
        "--response-model", default=None, help="answer with another model (default: the same)"
    )
    p.add_argument(
        "--template",
        choices=sorted(CHAT_FORMATS),
        default=None,
        help="chat-template family (default: the model profile's)",
    )
    p.add_argument("--system", default=None, help="system prompt that steers the topic")
    p.add_argument("--turns", type=int, default=1, help="conversation turns per record")
    p.add_argument(
        "--no-newline-stop",
        action="store_true",
        help="let instructions run past their first newline",
    )
    p.add_argument(
        "--temperature", type=float, default=1.0, help="instruction temperature (default 1.0)"
    )
    p.add_argument("--instruction-max-tokens", type=int, default=128)
    p.add_argument(
        "--response-temperature", type=float, default=0.0, help="response temperature (default 0)"
    )
    p.add_argument("--max-tokens", type=int, default=256, help="response max tokens")
    p.add_argument(
        "--min-words", type=int, default=3, help="drop instructions shorter than this many words"
    )
    p.add_argument(
        "--language",
        choices=["en", "zh"],
        default=None,
        help="drop instructions not in this language",
    )
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    add_run_options(p)
    p.set_defaults(handler=_run_command)
