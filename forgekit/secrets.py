"""Keeping API keys out of everything forgekit writes.

Keys live in the environment (or `.env`). Before a manifest, an error log or a notebook is
written, its text is scrubbed of every secret value currently in the environment.
"""

from __future__ import annotations

import os
import re

_SECRET_NAME = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD|AUTH)", re.IGNORECASE)
_MIN_SECRET_LENGTH = 8  # shorter values ("1", "true") would scrub ordinary text
REDACTED = "***"


def secret_values() -> list[str]:
    """Values of environment variables whose names look secret, longest first."""
    from forgekit.config import load_dotenv_once

    load_dotenv_once()
    values = {
        value
        for name, value in os.environ.items()
        if _SECRET_NAME.search(name) and len(value) >= _MIN_SECRET_LENGTH
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
