"""Any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp server, gateways).

Two transports, one behaviour: the official `openai` SDK, and a lean HTTP path
(`forgekit.models.lean_http`) that sends the same requests for a fraction of the CPU — the
client is what limits throughput with many requests in flight. `transport="auto"` (the
default) takes the lean path unless the environment names a proxy for the endpoint;
"sdk" forces the SDK (which other calls, e.g. `models.list()`, always use).

Retries belong to the engine on both paths (the SDK's are off: max_retries=0): it retries
with backoff, jitter and Retry-After across all providers, and counts every attempt. This
module only translates outcomes — the same for both transports — into `Completion` or a
`ModelError` that says whether a retry helps.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import re
import time
import warnings
import weakref
from typing import TYPE_CHECKING, Any

from forgekit.errors import (
    ClientRequestError,
    ModelTimeoutError,
    RetryableModelError,
    UnsupportedOperationError,
)
from forgekit.models.base import Completion, Message, SamplingParams, Usage
from forgekit.models.lean_http import LeanConnectionError, LeanHttpClient, LeanTimeout, proxy_for

if TYPE_CHECKING:
    import openai

TRANSPORTS = ("auto", "lean", "sdk")
DEFAULT_BASE_URL = "https://api.openai.com/v1"

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
        transport: str = "auto",
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
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
        # Where the SDK would send requests: base_url, else $OPENAI_BASE_URL, else OpenAI.
        self.endpoint = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        self.lean = transport == "lean" or (transport == "auto" and not proxy_for(self.endpoint))
        self._headers = _auth_headers(self._client_options["api_key"])
        # Keyed by the loop itself (weakly): a dead loop's client goes with it.
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lean_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The SDK client for the running event loop. An httpx connection pool belongs to the
        loop that opened it, and the sync API runs each job on a fresh loop, so one model
        object used by several runs (a method's stages) needs one client per loop."""
        import openai

        loop = asyncio.get_running_loop()
        if loop not in self._clients:
            self._clients[loop] = openai.AsyncOpenAI(**self._client_options)
        return self._clients[loop]

    @property
    def lean_client(self) -> LeanHttpClient:
        """The lean HTTP client of the running loop (connections belong to a loop too)."""
        loop = asyncio.get_running_loop()
        client = self._lean_clients.get(loop)
        if client is None:
            client = LeanHttpClient(self.endpoint, self._headers, self._client_options["timeout"])
            self._lean_clients[loop] = client
        return client

    @property
    def identity(self) -> str:
        return f"openai:{self.base_url or 'https://api.openai.com/v1'}:{self.model}"

    def unit_prices(self) -> tuple[float, float]:
        return self._prices

    async def aclose(self) -> None:
        """Close the client of the running loop (those of finished loops are already dead)."""
        loop = asyncio.get_running_loop()
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.close()
        lean = self._lean_clients.pop(loop, None)
        if lean is not None:
            await lean.aclose()

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
            return await self._chat_once(messages, kwargs)
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
            return await self._chat_once(messages, kwargs)

    async def _chat_once(self, messages: list[Message], kwargs: dict[str, Any]) -> Completion:
        if self.lean:
            data = await self._post("/chat/completions", messages=messages, **kwargs)
            try:
                choices = data["choices"]
                texts = [choice["message"].get("content") or "" for choice in choices]
                finish = choices[0].get("finish_reason")
            except (KeyError, IndexError, TypeError, AttributeError) as exc:
                raise RetryableModelError(
                    f"{self.name}: malformed chat response ({exc!r})"
                ) from None
            return self._completion(data.get("usage"), texts, finish)
        response = await self._call(
            self.client.chat.completions.create, messages=messages, **kwargs
        )
        try:
            texts = [choice.message.content or "" for choice in response.choices]
            finish = response.choices[0].finish_reason
        except (AttributeError, IndexError, TypeError) as exc:
            raise RetryableModelError(f"{self.name}: malformed chat response ({exc})") from None
        return self._completion(getattr(response, "usage", None), texts, finish)

    async def complete(self, prompt: str, params: SamplingParams) -> Completion:
        if not self.supports_completion:
            raise UnsupportedOperationError(
                f"{self.name}: this endpoint offers chat only, but raw text completion is needed "
                f"(Magpie sends a bare pre-query template). Use a completion endpoint: the "
                f"embedded 'local' model, vLLM or a llama.cpp server."
            )
        if self.lean:
            data = await self._post("/completions", prompt=prompt, **self._request_kwargs(params))
            try:
                choices = data["choices"]
                texts = [choice.get("text") or "" for choice in choices]
                finish = choices[0].get("finish_reason")
            except (KeyError, IndexError, TypeError, AttributeError) as exc:
                raise RetryableModelError(
                    f"{self.name}: malformed completion response ({exc!r})"
                ) from None
            return self._completion(data.get("usage"), texts, finish)
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
        return self._completion(getattr(response, "usage", None), texts, finish)

    def _completion(self, usage: Any, texts: list[str], finish: str | None) -> Completion:
        if not texts:
            raise RetryableModelError(f"{self.name}: response had no choices")
        if isinstance(usage, dict):  # the lean path's plain JSON
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        else:
            prompt = getattr(usage, "prompt_tokens", None)
            completion = getattr(usage, "completion_tokens", None)
        if prompt is not None:
            counted = Usage(prompt or 0, completion or 0)
        else:
            counted = Usage(0, sum(_estimate_tokens(t) for t in texts))
        return Completion(texts=texts, usage=counted, finish_reason=finish, model=self.identity)

    def _status_error(self, status: int, headers: Any, body: Any) -> Exception:
        """The error for a non-2xx answer, whichever transport received it."""
        detail = _error_detail(body)
        if status in _RETRYABLE_STATUS or status >= 500:
            return RetryableModelError(
                f"{self.name}: HTTP {status}{detail}",
                status=status,
                retry_after=parse_retry_after(headers),
            )
        return ClientRequestError(
            f"{self.name}: HTTP {status}{detail} — the request was refused; "
            f"check the model name, parameters and API key",
            status=status,
        )

    async def _post(self, path: str, **payload: Any) -> dict[str, Any]:
        """One request on the lean path: the parsed JSON body of a 2xx answer."""
        try:
            answer = await self.lean_client.post_json(path, payload)
        except LeanTimeout:
            raise ModelTimeoutError(f"{self.name}: request timed out") from None
        except LeanConnectionError as exc:
            raise RetryableModelError(f"{self.name}: connection error ({exc})") from None
        if not 200 <= answer.status < 300:
            try:
                body = answer.json()
            except ValueError:
                body = None
            # Like the SDK: an error's details are the `error` object of the body.
            if isinstance(body, dict):
                body = body.get("error", body)
            raise self._status_error(answer.status, answer.headers, body) from None
        try:
            data = answer.json()
        except ValueError as exc:
            raise RetryableModelError(f"{self.name}: malformed response body ({exc})") from None
        if not isinstance(data, dict):
            raise RetryableModelError(f"{self.name}: malformed response body (not JSON)")
        return data

    async def _call(self, method, **kwargs: Any) -> Any:
        import openai

        try:
            response = await method(**kwargs)
        except openai.APIStatusError as exc:
            raise self._status_error(exc.status_code, exc.response.headers, exc.body) from None
        except openai.APITimeoutError:
            raise ModelTimeoutError(f"{self.name}: request timed out") from None
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


def _auth_headers(api_key: str) -> dict[str, str]:
    """The headers the SDK would send to identify the caller: the key, and the organization
    and project from the environment when set."""
    from forgekit import __version__

    headers = {"Authorization": f"Bearer {api_key}", "User-Agent": f"forgekit/{__version__}"}
    if os.environ.get("OPENAI_ORG_ID"):
        headers["OpenAI-Organization"] = os.environ["OPENAI_ORG_ID"]
    if os.environ.get("OPENAI_PROJECT_ID"):
        headers["OpenAI-Project"] = os.environ["OPENAI_PROJECT_ID"]
    return headers


def _error_detail(body: Any) -> str:
    if isinstance(body, dict):
        message = body.get("message") or (body.get("error") or {}).get("message")
        if message:
            return f": {str(message)[:200]}"
    return ""
