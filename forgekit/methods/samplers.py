"""Several sources of answers for one item — models x temperatures x seeds — as a list of
`Sampler`s (vote's voters, cascade's stages, dpo's responders), per-item seeds (`with_seed`),
and how a model is named in records and in a run's resume identity."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from forgekit.errors import ConfigError
from forgekit.models import Model, SamplingParams

if TYPE_CHECKING:
    from forgekit.engine import RunContext
    from forgekit.models.base import Message


@dataclass(frozen=True)
class Sampler:
    """One source of answers: a model with its own sampling parameters."""

    name: str
    model: str | Model | None
    params: SamplingParams

    async def ask(self, ctx: RunContext, messages: list[Message]) -> tuple[str, dict[str, Any]]:
        """One answer (stripped), and where it came from: model, temperature and seed, as
        records keep them for each vote, stage or response."""
        answer = await ctx.chat(messages, model=self.model, params=self.params)
        source = {
            "model": model_label(self.model) or ctx.model.name,
            "temperature": self.params.temperature,
            "seed": self.params.seed,
        }
        return answer.text.strip(), source


def with_seed(params: SamplingParams, seed: int, index: int, salt: int = 0) -> SamplingParams:
    """`params` with a per-request seed derived from the run's seed: reproducible, and
    different per item (`index`) and per request of one item (`salt`)."""
    return SamplingParams.coerce(params, seed=seed * 1_000_003 + index * 101 + salt)


def model_label(model: str | Model | None) -> str | None:
    return model if model is None or isinstance(model, str) else model.name


def model_key(model: str | Model | None) -> str | None:
    """What identifies a model in a job dict (resume safety): its name or identity."""
    return model if model is None or isinstance(model, str) else model.identity


def build_samplers(
    models: Sequence[str | Model],
    *,
    temperatures: Sequence[float] | None,
    seeds: Sequence[int] | None,
    n: int | None,
    base: SamplingParams,
    seed: int,
) -> list[Sampler]:
    """Every combination of models x temperatures (x seeds), cycled up to `n` samplers.

    Repeats of one combination get distinct seeds, so one model at one temperature still
    gives `n` different samples (and `n` different cache keys).
    """
    chosen_models = list(models)
    temps: list[float | None] = list(temperatures) if temperatures else [base.temperature]
    combos = [(m, t, s) for m in chosen_models for t in temps for s in (seeds or [None])]
    count = len(combos) if n is None else n
    if count < 1:
        raise ConfigError(f"the number of samples must be >= 1, got {count}")
    samplers: list[Sampler] = []
    used: set[str] = set()
    for j in range(count):
        m, t, s = combos[j % len(combos)]
        if s is None or j >= len(combos):
            s = (seed if s is None else s) + j
        name = model_label(m) or "default"
        if len(temps) > 1:
            name += f"@T{t:g}" if t is not None else "@T-"
        if seeds and len(seeds) > 1:
            name += f"#s{s}"
        if name in used:
            name += f"#{j}"
        used.add(name)
        samplers.append(Sampler(name, m, SamplingParams.coerce(base, temperature=t, seed=s)))
    return samplers
