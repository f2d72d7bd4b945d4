"""Keeping API keys out of everything forgekit writes.

Keys live in the environment (or `.env`). Before a manifest, an error log or a notebook is
written, its text is scrubbed of every secret value currently in the environment.
"""

from __future__ import annotations

import os
import re

SECRET_NAME = re.compile(r"(^|_)KEY($|_)|APIKEY|TOKEN|SECRET|PASSW|AUTH", re.IGNORECASE)
_MIN_SECRET_LENGTH = 8  # shorter values ("1", "true") would scrub ordinary text
REDACTED = "***"


def secret_values() -> list[str]:
    """Values of environment variables whose names look secret or that a model profile
    names as its key variable, longest first."""
    from forgekit.config import list_profiles, load_dotenv_once
    from forgekit.errors import ConfigError

    load_dotenv_once()
    names = {name for name in os.environ if SECRET_NAME.search(name)}
    try:
        names |= {p.api_key_env for p in list_profiles().values() if p.api_key_env}
    except ConfigError:
        pass  # a broken config file is reported where it is used, not here
    values = {
        os.environ[name] for name in names if len(os.environ.get(name, "")) >= _MIN_SECRET_LENGTH
    }
    return sorted(values, key=len, reverse=True)


def scrub(text: str, secrets: list[str] | None = None) -> str:
    """`text` with every secret value replaced by ***."""
    for value in secrets if secrets is not None else secret_values():
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def find_secrets(text: str, secrets: list[str] | None = None) -> list[str]:
    """Names-free report of leaks: the masked prefixes of secret values found in `text`."""
    found = []
    for value in secrets if secrets is not None else secret_values():
        if value in text:
            found.append(value[:3] + "…")
    return found
