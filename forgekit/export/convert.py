"""One forgekit record -> one row of a trainer format (DESIGN.md §3, §11).

How the record's parts map, in every format:

* `system` -> a system message (TRL, OpenAI, VeRL), the `system` column (LLaMA-Factory);
* `history` ([user, assistant] pairs, or {"role", "content"} messages) -> the earlier turns,
  in order, before `input`; LLaMA-Factory alpaca keeps its own `history` column of pairs;
* `input` -> the last user message (alpaca: `instruction`); an input that is itself a list of
  messages (a unified multi-turn preference prompt) is the whole prompt;
* `output` -> the assistant answer; `chosen` / `rejected` -> the preferred and the other one
  (strings, a message, or message lists whose trailing assistant turns are the answer);
* `thinking` -> with thinking="inline", `<think>\n...\n</think>\n\n` before the answer (the
  convention of reasoning chat templates: Qwen3, DeepSeek-R1); with thinking="drop" it is
  left out and counted in the export report. Preference rows and VeRL prompts have no place
  for the trace of `output`, so there it is always dropped and counted — never silently.

A record a format cannot hold raises `Unrepresentable` with the reason (e.g. an SFT record
sent to a preference format); the exporter counts it and writes it to the rejects file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Message = dict[str, str]


class Unrepresentable(ValueError):
    """A record the chosen format cannot hold; the message is the reason."""


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return value if isinstance(value, str) else str(value)


def _role(value: Any) -> str:
    role = str(value or "").lower()
    return {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant"}.get(
        role, role
    )


def as_messages(value: Any, what: str) -> list[Message]:
    """{"role", "content"} messages from a list of messages or of [user, assistant] pairs."""
    messages: list[Message] = []
    for turn, item in enumerate(value or []):
        if isinstance(item, Mapping):
            role = _role(item.get("role", item.get("from")))
            content = item.get("content", item.get("value"))
            if role not in ("system", "user", "assistant") or content is None:
                raise Unrepresentable(f"{what}[{turn}] is not a system/user/assistant message")
            messages.append({"role": role, "content": _text(content)})
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            messages.append({"role": "user", "content": _text(item[0])})
            messages.append({"role": "assistant", "content": _text(item[1])})
        else:
            raise Unrepresentable(
                f"{what}[{turn}] is neither a [user, assistant] pair nor a message"
            )
    return messages


def history_pairs(record: Mapping[str, Any]) -> list[list[str]]:
    """The history as [user, assistant] pairs (alpaca's form); uneven turns cannot be."""
    messages = [m for m in as_messages(record.get("history"), "history") if m["role"] != "system"]
    if len(messages) % 2 or any(
        m["role"] != ("user", "assistant")[i % 2] for i, m in enumerate(messages)
    ):
        raise Unrepresentable("history does not alternate user/assistant turns")
    return [
        [messages[i]["content"], messages[i + 1]["content"]] for i in range(0, len(messages), 2)
    ]


def prompt_messages(record: Mapping[str, Any], *, system: bool = True) -> list[Message]:
    """system (optional) + history + input, as messages ending with the user's turn."""
    raw_input = record.get("input")
    if isinstance(raw_input, (list, tuple)):
        messages = as_messages(raw_input, "input")
        if not system:
            messages = [m for m in messages if m["role"] != "system"]
    else:
        messages = []
        if system and _text(record.get("system")).strip():
            messages.append({"role": "system", "content": _text(record["system"])})
        messages += as_messages(record.get("history"), "history")
        if _text(raw_input).strip():
            messages.append({"role": "user", "content": _text(raw_input)})
    if not messages or messages[-1]["role"] != "user":
        raise Unrepresentable("no user input (input is empty)")
    return messages


def has_context(record: Mapping[str, Any]) -> bool:
    """Whether the prompt is more than one user string: history, a system prompt, or a list."""
    return bool(
        record.get("history")
        or _text(record.get("system")).strip()
        or isinstance(record.get("input"), (list, tuple))
    )


def system_text(record: Mapping[str, Any]) -> str:
    raw_input = record.get("input")
    if isinstance(raw_input, (list, tuple)):
        found = [m["content"] for m in as_messages(raw_input, "input") if m["role"] == "system"]
        return found[0] if found else ""
    return _text(record.get("system"))


def user_text(record: Mapping[str, Any]) -> str:
    """The last user turn (the instruction)."""
    return prompt_messages(record)[-1]["content"]


class Thinking:
    """Applies the thinking policy and counts what it did, for the export report."""

    def __init__(self, policy: str) -> None:
        if policy not in ("inline", "drop"):
            raise ValueError(f"thinking={policy!r}: choose inline or drop")
        self.policy = policy
        self.inlined = 0
        self.dropped = 0

    def answer(self, record: Mapping[str, Any]) -> str:
        """The assistant answer of an SFT record, with its thinking inlined or dropped."""
        output, thinking = _text(record.get("output")), _text(record.get("thinking")).strip()
        if not output.strip() and not (thinking and self.policy == "inline"):
            if record.get("chosen") is not None or record.get("rejected") is not None:
                raise Unrepresentable("a preference record (chosen/rejected, no output)")
            raise Unrepresentable("no output")
        if not thinking:
            return output
        if self.policy == "drop":
            self.dropped += 1
            return output
        self.inlined += 1
        return f"<think>\n{thinking}\n</think>\n\n{output}"

    def not_held(self, record: Mapping[str, Any]) -> None:
        """The format has no place for the trace: count it as dropped."""
        if _text(record.get("thinking")).strip():
            self.dropped += 1


def reply(value: Any, what: str) -> str:
    """The answer in a chosen/rejected value: a string, a message, or messages (trailing
    assistant turns; several are joined by a blank line)."""
    if isinstance(value, str):
        if not value.strip():
            raise Unrepresentable(f"{what} is empty")
        return value
    if isinstance(value, Mapping):
        value = [value]
    if isinstance(value, (list, tuple)) and value:
        messages = as_messages(value, what)
        tail: list[str] = []
        for message in reversed(messages):
            if message["role"] != "assistant":
                break
            tail.insert(0, message["content"])
        if tail and any(t.strip() for t in tail):
            return "\n\n".join(tail)
    raise Unrepresentable(f"{what} is missing or empty (not a preference record, or a tie)")


def pair(record: Mapping[str, Any], thinking: Thinking) -> tuple[str, str]:
    if record.get("chosen") is None and record.get("rejected") is None:
        raise Unrepresentable("an SFT record (no chosen/rejected) in a preference format")
    chosen, rejected = (
        reply(record.get("chosen"), "chosen"),
        reply(record.get("rejected"), "rejected"),
    )
    thinking.not_held(record)
    return chosen, rejected


def assistant(content: str) -> Message:
    return {"role": "assistant", "content": content}


# -- formats -------------------------------------------------------------------------------
# Each takes (record, ctx) and returns the row; ctx holds the thinking policy, whether the
# file is conversational (decided over all records, so a column keeps one type) and options.


def trl_messages(record: Mapping[str, Any], ctx: Any) -> dict[str, Any]:
    return {"messages": [*prompt_messages(record), assistant(ctx.thinking.answer(record))]}


def trl_prompt_completion(record: Mapping[str, Any], ctx: Any) -> dict[str, Any]:
    prompt = prompt_messages(record)
    answer = ctx.thinking.answer(record)
    if ctx.conversational:
        return {"prompt": prompt, "completion": [assistant(answer)]}
    return {"prompt": prompt[-1]["content"], "completion": answer}


def trl_preference(record: Mapping[str, Any], ctx: Any) -> dict[str, Any]:
    prompt = prompt_messages(record)
    chosen, rejected = pair(record, ctx.thinking)
    if ctx.conversational:
        return {"prompt": prompt, "chosen": [assistant(chosen)], "rejected": [assistant(rejected)]}
    return {"prompt": prompt[-1]["content"], "chosen": chosen, "rejected": rejected}


def alpaca(record: Mapping[str, Any], ctx: Any) -> dict[str, Any]:
    instruction, history = user_text(record), _alpaca_history(record)
    return {
        "instruction": instruction,
        "input": "",
        "output": ctx.thinking.answer(record),
        "system": system_text(record),
        "history": history,
    }


def alpaca_preference(record: Mapping[str, Any], ctx: Any) -> dict[str, Any]:
    instruction, history = user_text(record), _alpaca_history(record)
    chosen, rejected = pair(record, ctx.thinking)
    return {
        "instruction": instruction,
        "input": "",
        "chosen": chosen,
        "rejected": rejected,
        "system": system_text(record),
        "history": history,
    }


def _alpaca_history(record: Mapping[str, Any]) -> list[list[str]]:
    if isinstance(record.get("input"), (list, tuple)):
        return history_pairs({"history": prompt_messages(record, system=False)[:-1]})
    return history_pairs(record)


_SHAREGPT_ROLE = {"user": "human", "assistant": "gpt"}


def _sharegpt_turns(record: Mapping[str, Any]) -> list[dict[str, str]]:
    turns = prompt_messages(record, system=False)
    return [{"from": _SHAREGPT_ROLE[m["role"]], "value": m["content"]} for m in turns]


def sharegpt(record: Mapping[str, Any], ctx: Any) -> dict[str, Any]:
    turns = _sharegpt_turns(record)
    turns.append({"from": "gpt", "value": ctx.thinking.answer(record)})
    return {"conversations": turns, "system": system_text(record)}


def sharegpt_preference(record: Mapping[str, Any], ctx: Any) -> dict[str, Any]:
    chosen, rejected = pair(record, ctx.thinking)
    return {
        "conversations": _sharegpt_turns(record),
        "chosen": {"from": "gpt", "value": chosen},
        "rejected": {"from": "gpt", "value": rejected},
        "system": system_text(record),
    }


def openai_sft(record: Mapping[str, Any], ctx: Any) -> dict[str, Any]:
    return trl_messages(record, ctx)


def openai_preference(record: Mapping[str, Any], ctx: Any) -> dict[str, Any]:
    chosen, rejected = pair(record, ctx.thinking)
    return {
        "input": {"messages": prompt_messages(record)},
        "preferred_output": [assistant(chosen)],
        "non_preferred_output": [assistant(rejected)],
    }


def verl(record: Mapping[str, Any], ctx: Any) -> dict[str, Any]:
    prompt = prompt_messages(record)
    truth = record.get(ctx.ground_truth)
    if truth is None or (isinstance(truth, str) and not truth.strip()):
        raise Unrepresentable(
            f"no {ctx.ground_truth!r} (the reference answer a rule reward checks)"
        )
    ctx.thinking.not_held(record)
    metadata = record.get("metadata") if isinstance(record.get("metadata"), Mapping) else {}
    return {
        "data_source": ctx.data_source,
        "prompt": prompt,
        "ability": _text(record.get("ability") or metadata.get("ability") or ctx.ability),
        "reward_model": {"style": "rule", "ground_truth": _text(truth)},
        "extra_info": {"split": ctx.split, "index": ctx.index, "id": _text(record.get("id"))},
    }
