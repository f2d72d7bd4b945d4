"""One async protocol for every model: chat completion and raw text completion.

A model knows nothing about files, caches or retries; it turns one request into one
`Completion` or raises a `ModelError` that says whether retrying may help. The engine
does the rest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

Message = dict[str, str]  # {"role": "user", "content": "..."}


@dataclass(frozen=True)
class SamplingParams:
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = 256
    stop: tuple[str, ...] | None = None
    seed: int | None = None
    n: int = 1
    json_schema: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stop, (list, str)):
            stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
            object.__setattr__(self, "stop", stop)
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["stop"] is not None:
            data["stop"] = list(data["stop"])
        return data

    @classmethod
    def coerce(
        cls, value: SamplingParams | dict[str, Any] | None = None, **overrides: Any
    ) -> SamplingParams:
        data = value.to_dict() if isinstance(value, SamplingParams) else dict(value or {})
        data.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"unknown sampling parameter(s) {sorted(unknown)}; "
                f"known: {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**data)


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Completion:
    """What a model returned: one text per choice (n), usage, and why it stopped."""

    texts: list[str]
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    model: str | None = None
    cached: bool = False

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "texts": self.texts,
            "usage": asdict(self.usage),
            "finish_reason": self.finish_reason,
            "model": self.model,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], cached: bool = False) -> Completion:
        return cls(
            texts=list(data["texts"]),
            usage=Usage(**data.get("usage", {})),
            finish_reason=data.get("finish_reason"),
            model=data.get("model"),
            cached=cached,
        )


@runtime_checkable
class Model(Protocol):
    """The contract every provider meets."""

    name: str  # the profile name the user typed
    identity: str  # what makes responses comparable: provider + endpoint + model (cache key)
    template: str | None  # chat-template family, e.g. "chatml" (Magpie needs it)
    supports_completion: bool  # raw text completion available (Magpie needs it)
    default_concurrency: int

    async def chat(self, messages: list[Message], params: SamplingParams) -> Completion: ...

    async def complete(self, prompt: str, params: SamplingParams) -> Completion: ...

    def unit_prices(self) -> tuple[float, float]: ...

    async def aclose(self) -> None: ...
