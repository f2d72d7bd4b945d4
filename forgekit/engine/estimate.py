"""Know the cost before spending it: `estimate=True` / `--dry-run` on every method.

The runner (forgekit.methods.runner.dry_run) runs the method for real — its prepare, its
stages and rounds, its parse and filters — but every model is a `DryModel` that sends
nothing: it counts the request's prompt tokens (forgekit.models.tokens: exact for the
embedded model, a documented estimate otherwise) and answers with a stand-in reply as long
as `max_tokens` allows. So each stage is estimated from its bounds: the requests it makes
when every answer is kept (evol: rounds x items x rewrite/answer/judge), completion tokens
at most `max_tokens` x n per request, and prompts that quote an earlier answer counted as
if that answer were `max_tokens` long. A method can give parsable stand-ins with
`dry_reply(kind, payload, params)` (self_instruct: a numbered list of distinct tasks), so
stages after a parse are estimated too.

Costs use the models' configured prices: online, and the batch price (the profile's
`batch_price`, else half). A budget cap (max_requests, max_total_tokens, max_cost) below the
estimate is a warning — before the run starts, also for a real run with a cap.
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

from forgekit.engine.core import Engine
from forgekit.engine.types import RunConfig
from forgekit.models import Model, SamplingParams
from forgekit.models.base import Completion, Message, Usage
from forgekit.models.openai_batch import batch_unit_prices
from forgekit.models.tokens import token_counter

_FILLER = "a plain stand-in answer used to count tokens in a dry run "  # 58 chars ~ 14 tokens


# Plain words for stand-in tasks (none of them a word a method filters out).
_WORDS = (
    "explain compare summarize describe suggest outline list rank classify translate rewrite "
    "evaluate river garden market engine planet recipe budget schedule letter poem story "
    "argument theory habit climate forest ocean mountain village museum language history "
    "science kitchen bridge harbor winter summer morning evening careful brief formal "
    "friendly simple detailed ancient modern local global quiet rapid three several"
)
_stand_ins = random.Random(0)


def stand_in_tasks(count: int) -> list[str]:
    """`count` distinct plausible task sentences (for a method's `dry_reply`): random
    9-word draws, so a similarity filter keeps them apart like real, varied tasks."""
    words = _WORDS.split()
    return [" ".join(_stand_ins.sample(words, 9)).capitalize() + "." for _ in range(count)]


@dataclass
class StageEstimate:
    stage: str
    model: str
    requests: int = 0
    prompt_tokens: int = 0
    max_completion_tokens: int = 0
    cost_min: float = 0.0  # prompts only (every answer empty)
    cost_max: float = 0.0  # prompts + every answer at max_tokens
    batch_cost_min: float = 0.0
    batch_cost_max: float = 0.0
    tokens_counted: str = ""


@dataclass
class Estimate:
    """What a run would send, stage by stage; `to_dataframe()` for a table."""

    method: str
    stages: list[StageEstimate]
    warnings: list[str] = field(default_factory=list)

    def total(self, name: str) -> Any:
        return sum(getattr(stage, name) for stage in self.stages)

    @property
    def requests(self) -> int:
        return self.total("requests")

    def warn(self, note: str = "") -> None:
        """Each budget cap below the estimate, as a Python warning."""
        for message in self.warnings:
            warnings.warn(f"forgekit: {message}{note}", stacklevel=4)

    def to_dataframe(self):
        import pandas as pd

        rows = [vars(stage) for stage in self.stages]
        return pd.DataFrame(rows, columns=list(StageEstimate.__dataclass_fields__))

    def render_text(self) -> str:
        columns = ("stage", "model", "requests", "prompt_tokens", "max_completion_tokens")
        head = ["stage", "model", "requests", "prompt tok", "max completion tok", "cost (USD)"]
        head.append("batch cost (USD)")
        rows = [
            [str(getattr(s, c)) for c in columns]
            + [_range(s.cost_min, s.cost_max), _range(s.batch_cost_min, s.batch_cost_max)]
            for s in self.stages
        ]
        total = ["total", "", *(str(self.total(c)) for c in columns[2:])]
        total += [
            _range(self.total("cost_min"), self.total("cost_max")),
            _range(self.total("batch_cost_min"), self.total("batch_cost_max")),
        ]
        rows.append(total)
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        lines = [f"dry run of {self.method}: nothing was sent"]
        for row in [head, *rows]:
            cells = [
                c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
            ]
            lines.append("  ".join(cells))
        counted = sorted({s.tokens_counted for s in self.stages if s.tokens_counted})
        lines += [f"prompt tokens: {how}" for how in counted]
        lines.append("completion tokens: at most max_tokens x n per request")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    __str__ = render_text

    def __repr__(self) -> str:
        return self.render_text()


def _range(low: float, high: float) -> str:
    return f"{low:.4f}-{high:.4f}"


def dry_config(config: RunConfig) -> RunConfig:
    """A run's config for its dry run: no cache, no display, no caps, nothing to stop it."""
    return replace(
        config,
        cache=False,
        progress=False,
        batch=False,
        overwrite=False,
        max_requests=None,
        max_total_tokens=None,
        max_cost=None,
        rpm=None,
        tpm=None,
        on_event=[],
        cancel_event=None,
    )


class Recorder:
    """Every request a dry run made, by stage and model. `entry` runs a stage (what
    `forgekit.engine.arun` does for a real one) on a `DryEngine`; `finish` sums it up."""

    def __init__(self, config: RunConfig, reply: Any = None) -> None:
        self.config = config
        self.custom_reply = reply  # a method's `dry_reply(kind, payload, params)`, if any
        self.stage = ""
        self.stages: dict[tuple[str, str], StageEstimate] = {}
        self.counters: dict[str, tuple[Any, str]] = {}
        self.wrapped: dict[int, DryModel] = {}
        self.replies = 0

    def wrap(self, model: Model) -> Model:
        if isinstance(model, DryModel):
            return model
        if id(model) not in self.wrapped:
            self.wrapped[id(model)] = DryModel(model, self)
        return self.wrapped[id(model)]

    async def entry(self, tasks: Any, *, model: Any, out: Any, config: RunConfig, **kw: Any):
        """Run one stage of the dry run (the runner's stage label is its description)."""
        self.stage = config.description or ""
        engine = DryEngine(self, model, config, kw.get("job"))
        try:
            return await engine.run(tasks, limit=kw.get("limit"))
        finally:
            await engine.aclose()

    def finish(self, method: str) -> Estimate:
        """The Estimate, with a warning for every budget cap below it (see `Estimate.warn`)."""
        estimate = Estimate(method, list(self.stages.values()))
        estimate.warnings = budget_warnings(estimate, self.config)
        return estimate

    def note(self, model: Model, kind: str, payload: Any, params: SamplingParams) -> int:
        if model.identity not in self.counters:
            self.counters[model.identity] = token_counter(model)
        count, how = self.counters[model.identity]
        prompt = count(kind, payload)
        most = (params.max_tokens or 256) * params.n
        key = (self.stage, model.name)
        if key not in self.stages:
            self.stages[key] = StageEstimate(self.stage, model.name, tokens_counted=how)
        stage = self.stages[key]
        price_in, price_out = model.unit_prices()
        batch_in, batch_out = batch_unit_prices(model, self.config.batch_discount)
        stage.requests += 1
        stage.prompt_tokens += prompt
        stage.max_completion_tokens += most
        stage.cost_min += prompt * price_in
        stage.cost_max += prompt * price_in + most * price_out
        stage.batch_cost_min += prompt * batch_in
        stage.batch_cost_max += prompt * batch_in + most * batch_out
        return prompt

    def reply(self, kind: str, payload: Any, params: SamplingParams) -> str:
        self.replies += 1
        custom = self.custom_reply
        text = custom(kind, payload, params) if custom is not None else None
        if text is not None:
            return text
        chars = 4 * (params.max_tokens or 256)
        head = f"Stand-in answer {self.replies}: "
        return (head + _FILLER * (chars // len(_FILLER) + 1))[:chars]


class DryModel:
    """A model that sends nothing: it counts, and answers with a stand-in."""

    default_concurrency = 16

    def __init__(self, model: Model, recorder: Recorder) -> None:
        self.real = model
        self.recorder = recorder
        self.name = model.name
        self.identity = model.identity
        self.template = getattr(model, "template", None)
        self.supports_completion = getattr(model, "supports_completion", True)

    def unit_prices(self) -> tuple[float, float]:
        return self.real.unit_prices()

    async def chat(self, messages: list[Message], params: SamplingParams) -> Completion:
        return self._answer("chat", messages, params)

    async def complete(self, prompt: str, params: SamplingParams) -> Completion:
        if not self.supports_completion:
            return await self.real.complete(prompt, params)  # raises its clear error
        return self._answer("complete", prompt, params)

    def _answer(self, kind: str, payload: Any, params: SamplingParams) -> Completion:
        prompt = self.recorder.note(self.real, kind, payload, params)
        texts = [self.recorder.reply(kind, payload, params) for _ in range(params.n)]
        usage = Usage(prompt, (params.max_tokens or 256) * params.n)
        return Completion(texts=texts, usage=usage, finish_reason="stop", model=self.identity)

    async def aclose(self) -> None:
        return None


class DryEngine(Engine):
    """An engine whose every model is a DryModel (also one a task names at run time)."""

    def __init__(self, recorder: Recorder, model: Any, config: RunConfig, job: Any) -> None:
        self.recorder = recorder  # first: Engine.__init__ resolves the main model
        super().__init__(model, config, None, job)

    def resolve_model(self, model: str | Model | None) -> Model:
        return self.recorder.wrap(super().resolve_model(model))


def budget_warnings(estimate: Estimate, config: RunConfig) -> list[str]:
    """A cap below what the run may need, each said once, in words."""
    found = []
    if config.max_requests is not None and estimate.requests > config.max_requests:
        found.append(
            f"max_requests={config.max_requests} is below the {estimate.requests} requests "
            f"this run may make: it may stop early"
        )
    tokens = estimate.total("prompt_tokens") + estimate.total("max_completion_tokens")
    if config.max_total_tokens is not None and tokens > config.max_total_tokens:
        found.append(
            f"max_total_tokens={config.max_total_tokens} is below the up to {tokens} tokens "
            f"this run may use: it may stop early"
        )
    high = estimate.total("batch_cost_max" if config.batch else "cost_max")
    if config.max_cost is not None and high > config.max_cost:
        found.append(
            f"max_cost=${config.max_cost:g} is below the up to ${high:.4f} this run may cost"
            f"{' at the batch price' if config.batch else ''}: it may stop early"
        )
    return found
