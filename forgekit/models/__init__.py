"""Models: one async protocol (`Model`) and two providers — the embedded llama.cpp model and
any OpenAI-compatible endpoint. `get_model(name)` turns a profile name into a model."""

from __future__ import annotations

from forgekit.config import ModelProfile, get_profile
from forgekit.models.base import Completion, Message, Model, SamplingParams, Usage

__all__ = ["Completion", "Message", "Model", "ModelPool", "SamplingParams", "Usage", "get_model"]

_INSTANCES: dict[str, Model] = {}


def model_from_profile(profile: ModelProfile) -> Model:
    if profile.provider == "local":
        from forgekit.models.local import LocalModel

        return LocalModel(
            profile.name,
            profile.model_path,
            template=profile.template or "smollm2",
            n_ctx=profile.n_ctx,
            n_threads=profile.n_threads,
            max_concurrency=profile.max_concurrency,
        )
    from forgekit.models.openai_compat import OpenAICompatibleModel

    return OpenAICompatibleModel(
        profile.name,
        profile.model or profile.name,
        base_url=profile.base_url,
        api_key=profile.api_key(),
        timeout=profile.timeout,
        template=profile.template,
        completions=profile.completions,
        prices=profile.unit_prices(),
        max_concurrency=profile.max_concurrency,
        transport=profile.transport,
    )


def get_model(model: str | Model | None = None) -> Model:
    """A model by profile name (None: the default, `local`), or a Model passed through."""
    if model is not None and not isinstance(model, str):
        return model
    profile = get_profile(model)
    # Only the local model is worth sharing (its weights); HTTP clients bind to an event loop.
    if profile.provider == "local":
        if profile.name not in _INSTANCES:
            _INSTANCES[profile.name] = model_from_profile(profile)
        return _INSTANCES[profile.name]
    return model_from_profile(profile)


class ModelPool:
    """The models of one run, resolved once per name: options that name the same profile
    share one object. `aclose()` closes the models the pool created (HTTP clients belong to
    the run's event loop), never a Model object the caller passed in."""

    def __init__(self) -> None:
        self._by_name: dict[str | None, Model] = {}

    def get(self, model: str | Model | None) -> Model:
        if model is not None and not isinstance(model, str):
            return model
        if model not in self._by_name:
            self._by_name[model] = get_model(model)
        return self._by_name[model]

    def models(self) -> list[Model]:
        """The models resolved so far."""
        return list(self._by_name.values())

    async def aclose(self) -> None:
        for model in self._by_name.values():
            try:
                await model.aclose()
            except Exception:  # closing must never hide the run's own result or error
                pass
