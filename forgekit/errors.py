"""Errors that carry context. Every message says what was wrong and, where it can, how to fix it.

The CLI and the magics print `ForgeError` messages as one line, without a traceback.
"""

from __future__ import annotations


class ForgeError(Exception):
    """Base class for errors a user can act on."""


class ConfigError(ForgeError):
    """A bad configuration file, profile, option or parameter."""


class ModelNotFoundError(ConfigError):
    """A model name that no profile defines."""


class ModelError(ForgeError):
    """A model request failed. `retryable` says whether trying again may help."""

    retryable = False

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RetryableModelError(ModelError):
    """429, 5xx, timeouts, dropped connections, malformed bodies: worth another try."""

    retryable = True


class ModelTimeoutError(RetryableModelError):
    """No answer within the timeout (an overload signal for adaptive concurrency)."""


class ClientRequestError(ModelError):
    """4xx other than 429: the request itself is wrong; retrying cannot help."""


class UnsupportedOperationError(ModelError):
    """The provider cannot do this (e.g. raw completion on a chat-only endpoint)."""


class ModelUnavailableError(UnsupportedOperationError):
    """The model cannot serve at all here (a llama.cpp build that crashes or is missing): the
    run stops at once with this message instead of failing every record."""


class BudgetExceededError(ForgeError):
    """A budget cap (requests, tokens, cost) was reached; the run stops cleanly."""


class StoreError(ForgeError):
    """The output JSONL cannot be used safely (e.g. a malformed line that is not a torn tail)."""
