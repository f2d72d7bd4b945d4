"""Model profiles: which names exist, where each lives, how to authenticate.

A profile is a name a user types (`--model local`, `--model openai:gpt-4o-mini`,
`--model my-vllm`). Profiles come from, in order of precedence:

1. a config file: `$FORGEKIT_CONFIG`, else `./forgekit.yaml`, else
   `~/.config/forgekit/config.yaml`;
2. built-ins: `local` (the embedded SmolLM2) and `openai:<model>` for any OpenAI model.

Example `forgekit.yaml`:

    models:
      my-vllm:
        provider: openai            # any OpenAI-compatible server
        base_url: http://localhost:8000/v1
        model: Qwen/Qwen2.5-7B-Instruct
        api_key_env: VLLM_API_KEY   # the NAME of a variable; keys never live in this file
        template: qwen2.5           # chat-template family, for Magpie
        max_concurrency: 64
        price: {input: 0.0, output: 0.0}   # USD per 1M tokens
        batch_price: {input: 0.0, output: 0.0}  # batch API price (default: half of price)

API keys come from the environment or a `.env` file only. A config file that contains a key
is rejected, so keys cannot leak into notebooks, manifests or logs through it.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forgekit.errors import ConfigError, ModelNotFoundError

DEFAULT_MODEL = "local"

# USD per 1M tokens (input, output), published list prices; a profile's `price` overrides.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o4-mini": (1.10, 4.40),
}


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: float = Field(0.0, ge=0, description="USD per 1M prompt tokens")
    output: float = Field(0.0, ge=0, description="USD per 1M completion tokens")


class ModelProfile(BaseModel):
    """One named model endpoint. Never holds a secret: only the name of the env var."""

    model_config = ConfigDict(extra="forbid")

    name: str
    provider: Literal["local", "openai"] = "openai"
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    model_path: str | None = None  # local provider: another GGUF file
    template: str | None = None  # chat-template family (chatml, qwen2.5, llama3, ...)
    completions: bool | None = None  # raw /v1/completions available? None: assume yes
    timeout: float = 120.0
    max_concurrency: int | None = None
    # HTTP client for requests: "auto" (lean unless a proxy is set), "lean", or "sdk" (the
    # openai SDK); see forgekit.models.openai_compat.
    transport: Literal["auto", "lean", "sdk"] = "auto"
    rpm: float | None = None
    tpm: float | None = None
    price: Price | None = None
    # The provider's batch-API price (USD per 1M tokens); default: half of `price`.
    batch_price: Price | None = None
    n_ctx: int = 2048
    n_threads: int | None = None

    def unit_prices(self) -> tuple[float, float]:
        """USD per token (input, output)."""
        if self.price is not None:
            return self.price.input / 1e6, self.price.output / 1e6
        per_million = PRICES.get(self.model or "", (0.0, 0.0))
        return per_million[0] / 1e6, per_million[1] / 1e6

    def api_key(self) -> str | None:
        """The key from the environment (after `.env` is loaded), never from a file we write."""
        load_dotenv_once()
        if self.api_key_env:
            return os.environ.get(self.api_key_env)
        if self.provider == "openai":
            return os.environ.get("OPENAI_API_KEY")
        return None

    def public(self) -> dict[str, Any]:
        """What may be shown or written to a manifest: everything but secrets (there are none
        in a profile by construction) plus whether the key variable is set."""
        data = self.model_dump(exclude_none=True)
        if self.provider == "openai":
            data["api_key_set"] = bool(self.api_key())
        return data


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default_model: str | None = None
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)


_SECRET_KEYS = {"api_key", "key", "token", "password", "secret", "authorization"}
_dotenv_loaded = False


def load_dotenv_once() -> None:
    """Load `.env` from the working directory (or FORGEKIT_DOTENV); existing env vars win."""
    global _dotenv_loaded
    if _dotenv_loaded:
        return
    _dotenv_loaded = True
    from dotenv import load_dotenv

    path = os.environ.get("FORGEKIT_DOTENV") or os.path.join(os.getcwd(), ".env")
    if os.path.isfile(path):
        load_dotenv(path, override=False)


def config_path() -> Path | None:
    explicit = os.environ.get("FORGEKIT_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"FORGEKIT_CONFIG={explicit}: no such file")
        return path
    for candidate in (Path.cwd() / "forgekit.yaml", Path.home() / ".config/forgekit/config.yaml"):
        if candidate.is_file():
            return candidate
    return None


# The last parse of each config file, with the text it came from: one run resolves profiles
# several times (the model, the secrets to scrub, ...), and parsing YAML is not free. The
# file is read every time, so an edited file is always parsed again.
_parsed: dict[str, tuple[str, Any]] = {}
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available


def _parse_yaml(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    cached = _parsed.get(str(path))
    if cached is None or cached[0] != text:
        cached = _parsed[str(path)] = (text, yaml.load(text, Loader=_YAML_LOADER))
    return copy.deepcopy(cached[1])  # callers may change what they get


def load_config(path: str | os.PathLike | None = None) -> tuple[ConfigFile, Path | None]:
    path = Path(path) if path else config_path()
    if path is None:
        return ConfigFile(), None
    try:
        raw = _parse_yaml(path) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    for name, entry in (raw.get("models") or {}).items():
        leaked = _SECRET_KEYS & set(entry or {})
        if leaked:
            key = sorted(leaked)[0]
            raise ConfigError(
                f"{path}: models.{name}.{key}: API keys must not be stored in the config file; "
                f"set an environment variable (or .env) and name it with api_key_env"
            )
    try:
        return ConfigFile.model_validate(raw), path
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}"


def builtin_profiles() -> dict[str, ModelProfile]:
    return {
        "local": ModelProfile(
            name="local", provider="local", model="SmolLM2-135M-Instruct", template="smollm2"
        )
    }


def list_profiles(path: str | os.PathLike | None = None) -> dict[str, ModelProfile]:
    """All named profiles: built-ins, then the config file's (which may override them)."""
    config, source = load_config(path)
    profiles = builtin_profiles()
    for name, entry in config.models.items():
        try:
            profiles[name] = ModelProfile.model_validate({"name": name, **(entry or {})})
        except ValidationError as exc:
            raise ConfigError(f"{source}: models.{name}.{_first_error(exc)}") from None
    return profiles


def default_model_name() -> str:
    env = os.environ.get("FORGEKIT_MODEL")
    if env:
        return env
    config, _ = load_config()
    return config.default_model or DEFAULT_MODEL


def get_profile(name: str | None = None) -> ModelProfile:
    """The profile for `name`; an unknown name lists what is configured."""
    name = name or default_model_name()
    profiles = list_profiles()
    if name in profiles:
        return profiles[name]
    if name.startswith("openai:") and len(name) > len("openai:"):
        base_url = os.environ.get("OPENAI_BASE_URL")
        return ModelProfile(
            name=name,
            provider="openai",
            model=name.split(":", 1)[1],
            base_url=base_url,
            # OpenAI's chat models have no raw completion endpoint; a server named by
            # OPENAI_BASE_URL (vLLM, llama.cpp) usually has one.
            completions=None if base_url else False,
        )
    source = config_path()
    known = ", ".join(sorted(profiles)) + ", openai:<model>"
    where = f" (config: {source})" if source else " (no config file; see `forge config`)"
    raise ModelNotFoundError(f"unknown model {name!r}; configured: {known}{where}")
