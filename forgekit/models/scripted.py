"""A model that answers from a script, in process: fast, exact tests of a method's logic.

    model = ScriptedModel([
        (r"First instruction:.*Name a colour", "Equal"),     # regex -> reply
        (r"Rate", ["Rating: 4", "Rating: 2"]),               # replies used in turn
        (r"boom", RetryableModelError("503", status=503)),   # raised instead
    ])
    df = forgekit.methods.evol(seeds, model=model, progress=False)
    model.calls        # every request: kind, prompt text, params

A rule's pattern is searched (re.DOTALL) in the request's text: for a chat request, each
message as "role: content" on its own line; for a raw completion, the prompt. The first
matching rule answers; a reply is a string, a list (one item per matching request, the last
one repeated), a callable `text -> str`, or an exception to raise. Without a match the model
echoes the last user message as "echo: <message>", like the HTTP stub server in tests/.

The stub server (tests/openai_stub.py) stays the way to test transport, retries and faults.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from forgekit.data.records import fingerprint
from forgekit.models.base import Completion, Message, SamplingParams, Usage

Reply = str | Sequence[str] | Callable[[str], str] | BaseException


class ScriptedModel:
    """Implements the `Model` protocol (forgekit.models.base) from a list of rules."""

    def __init__(
        self,
        rules: Sequence[tuple[str, Reply]] = (),
        *,
        name: str = "scripted",
        template: str | None = "chatml",
        supports_completion: bool = True,
        concurrency: int = 1,
        prices: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        self.name = name
        self.template = template
        self.supports_completion = supports_completion
        self.default_concurrency = concurrency
        self._prices = prices
        self._rules = [(re.compile(pattern, re.DOTALL), reply) for pattern, reply in rules]
        self._used: dict[int, int] = {}
        self._lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []
        # The script is part of the identity, so two scripts never share cached answers.
        self.identity = f"scripted:{name}:{fingerprint(repr(list(rules)), 12)}"

    async def chat(self, messages: list[Message], params: SamplingParams) -> Completion:
        text = "\n".join(f"{m['role']}: {m.get('content') or ''}" for m in messages)
        last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        return self._answer("chat", text, params, f"echo: {last_user}")

    async def complete(self, prompt: str, params: SamplingParams) -> Completion:
        return self._answer("complete", prompt, params, f"echo: {prompt}")

    def unit_prices(self) -> tuple[float, float]:
        return self._prices

    async def aclose(self) -> None:
        return None

    def _answer(self, kind: str, text: str, params: SamplingParams, echo: str) -> Completion:
        with self._lock:
            self.calls.append({"kind": kind, "prompt": text, "params": params.to_dict()})
            reply = self._reply(text, echo)
        if isinstance(reply, BaseException):
            raise reply
        usage = Usage(prompt_tokens=len(text.split()), completion_tokens=len(reply.split()))
        return Completion(
            texts=[reply] * params.n, usage=usage, finish_reason="stop", model=self.name
        )

    def _reply(self, text: str, echo: str) -> str | BaseException:
        for number, (pattern, reply) in enumerate(self._rules):
            if not pattern.search(text):
                continue
            if isinstance(reply, BaseException | str):
                return reply
            if callable(reply):
                return reply(text)
            used = self._used.get(number, 0)
            self._used[number] = used + 1
            return list(reply)[min(used, len(reply) - 1)]
        return echo
