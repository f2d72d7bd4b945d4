"""Any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp server, gateways) through the
official `openai` SDK.

The SDK's own retries are switched off (max_retries=0): the engine retries with backoff,
jitter and Retry-After across all providers, and counts every attempt. This module only
translates SDK outcomes into `Completion` or a `ModelError` that says whether a retry helps.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
import warnings
import weakref
from typing import Any

import openai

from forgekit.errors import (
    ClientRequestError,
    RetryableModelError,
    UnsupportedOperationError,
)
from forgekit.models.base import Completion, Message, SamplingParams, Usage

# Endpoints (model identities) that answered 400 to response_format: not sent there again.
_NO_RESPONSE_FORMAT: set[str] = set()
# Statuses worth retrying besides 5xx: request timeout, conflict (the SDK's own choice), 429.
_RETRYABLE_STATUS = {408, 409, 429}


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms`, `retry-after` (seconds or an HTTP date)."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def response_format(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's structured-output request (vLLM and llama.cpp server accept it too)."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "response"))[:64]
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": schema, "strict": True},
    }


def _estimate_tokens(text: str) -> int:
    # Servers that omit `usage` still need accounting for budgets and TPM; ~4 chars/token.
    return max(1, len(text) // 4) if text else 0


class OpenAICompatibleModel:
    default_concurrency = 32

    def __init__(
        self,
        name: str,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        template: str | None = None,
        completions: bool | None = None,
        prices: tuple[float, float] = (0.0, 0.0),
        max_concurrency: int | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.base_url = base_url
        self.template = template
        self.supports_completion = completions is not False
        self._prices = prices
        if max_concurrency:
            self.default_concurrency = max_concurrency
        self._client_options = {
            "base_url": base_url,
            # Local servers (vLLM, llama.cpp) accept any key; the SDK insists on one.
            "api_key": api_key or "not-needed",
            "timeout": timeout,
            "max_retries": 0,
        }
        # Keyed by the loop itself (weakly): a dead loop's client goes with it.
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The SDK client for the running event loop. An httpx connection pool belongs to the
        loop that opened it, and the sync API runs each job on a fresh loop, so one model
        object used by several runs (a method's stages) needs one client per loop."""
        loop = asyncio.get_running_loop()
        if loop not in self._clients:
            self._clients[loop] = openai.AsyncOpenAI(**self._client_options)
        return self._clients[loop]

    @property
    def identity(self) -> str:
        return f"openai:{self.base_url or 'https://api.openai.com/v1'}:{self.model}"

    def unit_prices(self) -> tuple[float, float]:
        return self._prices

    async def aclose(self) -> None:
        """Close the client of the running loop (those of finished loops are already dead)."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()

    def _request_kwargs(self, params: SamplingParams) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.model}
        for key in ("temperature", "top_p", "max_tokens", "seed"):
            value = getattr(params, key)
            if value is not None:
                kwargs[key] = value
        if params.stop:
            kwargs["stop"] = list(params.stop)
        if params.n > 1:
            kwargs["n"] = params.n
        return kwargs

    async def chat(self, messages: list[Message], params: SamplingParams) -> Completion:
        kwargs = self._request_kwargs(params)
        if params.json_schema is not None and self.identity not in _NO_RESPONSE_FORMAT:
            kwargs["response_format"] = response_format(params.json_schema)
        try:
            response = await self._call(
                self.client.chat.completions.create, messages=messages, **kwargs
            )
        except ClientRequestError as exc:
            if exc.status != 400 or "response_format" not in kwargs:
                raise
            # This server refuses structured output: ask again without it, and never send
            # it to this endpoint again; the answers are still validated afterwards.
            if self.identity not in _NO_RESPONSE_FORMAT:
                _NO_RESPONSE_FORMAT.add(self.identity)
                warnings.warn(
                    f"{self.name}: the server refused response_format json_schema ({exc}); "
                    "generating without it (answers are still validated)",
                    stacklevel=2,
                )
            del kwargs["response_format"]
            response = await self._call(
                self.client.chat.completions.create, messages=messages, **kwargs
            )
        try:
            texts = [choice.message.content or "" for choice in response.choices]
            finish = response.choices[0].finish_reason
        except (AttributeError, IndexError, TypeError) as exc:
            raise RetryableModelError(f"{self.name}: malformed chat response ({exc})") from None
        return self._completion(response, texts, finish)

    async def complete(self, prompt: str, params: SamplingParams) -> Completion:
        if not self.supports_completion:
            raise UnsupportedOperationError(
                f"{self.name}: this endpoint offers chat only, but raw text completion is needed "
                f"(Magpie sends a bare pre-query template). Use a completion endpoint: the "
                f"embedded 'local' model, vLLM or a llama.cpp server."
            )
        response = await self._call(
            self.client.completions.create, prompt=prompt, **self._request_kwargs(params)
        )
        try:
            texts = [choice.text or "" for choice in response.choices]
            finish = response.choices[0].finish_reason
        except (AttributeError, IndexError, TypeError) as exc:
            raise RetryableModelError(
                f"{self.name}: malformed completion response ({exc})"
            ) from None
        return self._completion(response, texts, finish)

    def _completion(self, response: Any, texts: list[str], finish: str | None) -> Completion:
        if not texts:
            raise RetryableModelError(f"{self.name}: response had no choices")
        usage = getattr(response, "usage", None)
        if usage is not None and getattr(usage, "prompt_tokens", None) is not None:
            counted = Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0)
        else:
            counted = Usage(0, sum(_estimate_tokens(t) for t in texts))
        return Completion(texts=texts, usage=counted, finish_reason=finish, model=self.identity)

    async def _call(self, method, **kwargs: Any) -> Any:
        try:
            response = await method(**kwargs)
        except openai.APIStatusError as exc:
            status = exc.status_code
            detail = _error_detail(exc)
            if status in _RETRYABLE_STATUS or status >= 500:
                raise RetryableModelError(
                    f"{self.name}: HTTP {status}{detail}",
                    status=status,
                    retry_after=parse_retry_after(exc.response.headers),
                ) from None
            raise ClientRequestError(
                f"{self.name}: HTTP {status}{detail} — the request was refused; "
                f"check the model name, parameters and API key",
                status=status,
            ) from None
        except openai.APITimeoutError:
            raise RetryableModelError(f"{self.name}: request timed out") from None
        except openai.APIConnectionError as exc:
            raise RetryableModelError(
                f"{self.name}: connection error ({exc.__cause__ or exc})"
            ) from None
        except (openai.APIResponseValidationError, ValueError) as exc:
            # A body that is not the JSON the protocol promises (a proxy's HTML page, a
            # truncated stream): the server misbehaved, another attempt may succeed.
            raise RetryableModelError(f"{self.name}: malformed response body ({exc})") from None
        if isinstance(response, (str, bytes)):
            raise RetryableModelError(f"{self.name}: malformed response body (not JSON)")
        return response


def _error_detail(exc: openai.APIStatusError) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        message = body.get("message") or (body.get("error") or {}).get("message")
        if message:
            return f": {str(message)[:200]}"
    return ""
