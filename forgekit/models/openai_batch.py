"""A provider's batch API (`/v1/files` + `/v1/batches`) for an OpenAI-compatible model.

The engine (forgekit.engine.batch_api) decides what goes into a batch and when; this module
only speaks the protocol: one JSONL line per request (`custom_id`, method, url, body — the
body is exactly what the online path would send, never the API key), upload, create,
retrieve, cancel, download, and turning one result line back into a `Completion`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import openai

from forgekit.errors import ClientRequestError, RetryableModelError, UnsupportedOperationError
from forgekit.models.base import Completion, Message, Model, SamplingParams, Usage

ENDPOINTS = {"chat": "/v1/chat/completions", "complete": "/v1/completions"}
# Statuses after which a batch changes no more.
TERMINAL = ("completed", "failed", "expired", "cancelled")
# Result statuses worth another batch: rate limits, server errors, timeouts.
_RETRYABLE_STATUS = {408, 409, 429}
BATCH_TIMEOUT_S = 300.0  # per batch-API call (upload, create, retrieve, download)
DEFAULT_DISCOUNT = 0.5  # batch price = half the online price unless a profile says otherwise


@dataclass
class ItemResult:
    """One line of a result file: an answer, or why there is none."""

    custom_id: str
    completion: Completion | None = None
    error: str | None = None  # short code: http_500, batch_expired, invalid_request, ...
    message: str = ""
    retryable: bool = True


class BatchAPI:
    """The batch endpoints of one OpenAI-compatible model (its base URL and key)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.name = model.name
        self._client: openai.AsyncOpenAI | None = None

    @property
    def client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            options = dict(self.model._client_options)
            # Uploads and downloads are large, and a create that times out after the server
            # took it would be retried into a second batch: never the short request timeout.
            options["timeout"] = max(float(options.get("timeout") or 0), BATCH_TIMEOUT_S)
            self._client = openai.AsyncOpenAI(**options)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    # -- building a batch file ---------------------------------------------------------------
    def request_line(
        self, custom_id: str, kind: str, payload: str | list[Message], params: SamplingParams
    ) -> dict[str, Any]:
        """One line of a batch input file: the same body the online request would carry."""
        body = dict(self.model._request_kwargs(params))
        body["messages" if kind == "chat" else "prompt"] = payload
        return {"custom_id": custom_id, "method": "POST", "url": ENDPOINTS[kind], "body": body}

    # -- the protocol --------------------------------------------------------------------
    async def upload(self, content: bytes, filename: str) -> str:
        file = await self._call(
            self.client.files.create, file=(filename, content, "application/jsonl"), purpose="batch"
        )
        return file.id

    async def create(self, input_file_id: str, kind: str, metadata: dict[str, str]) -> Any:
        return await self._call(
            self.client.batches.create,
            input_file_id=input_file_id,
            endpoint=ENDPOINTS[kind],
            completion_window="24h",
            metadata=metadata,
        )

    async def retrieve(self, batch_id: str) -> Any:
        return await self._call(self.client.batches.retrieve, batch_id)

    async def cancel(self, batch_id: str) -> Any:
        return await self._call(self.client.batches.cancel, batch_id)

    async def download(self, file_id: str) -> bytes:
        response = await self._call(self.client.files.content, file_id)
        return response.content if hasattr(response, "content") else bytes(response)

    async def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except openai.APIStatusError as exc:
            status = exc.status_code
            if status in _RETRYABLE_STATUS or status >= 500:
                raise RetryableModelError(
                    f"{self.name}: batch API: HTTP {status}", status=status
                ) from None
            raise ClientRequestError(
                f"{self.name}: batch API refused the call: HTTP {status} "
                f"({_message(exc.body)}); does this endpoint offer /v1/files and /v1/batches?",
                status=status,
            ) from None
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            raise RetryableModelError(f"{self.name}: batch API: {exc}") from None

    # -- reading results -----------------------------------------------------------------
    def parse_line(self, kind: str, line: dict[str, Any]) -> ItemResult:
        """One result line (from the output or the error file) -> `ItemResult`."""
        custom_id = str(line.get("custom_id"))
        response = line.get("response") or {}
        error = line.get("error")
        status = response.get("status_code")
        if error and not (status == 200 and response.get("body")):
            code = str(error.get("code") or "error") if isinstance(error, dict) else "error"
            text = error.get("message", "") if isinstance(error, dict) else str(error)
            return ItemResult(custom_id, error=code, message=str(text)[:300], retryable=True)
        body = response.get("body") or {}
        if status != 200:
            retryable = status is None or status in _RETRYABLE_STATUS or status >= 500
            return ItemResult(
                custom_id,
                error=f"http_{status}",
                message=_message(body),
                retryable=retryable,
            )
        try:
            return ItemResult(custom_id, completion=self.completion(kind, body))
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            return ItemResult(custom_id, error="malformed", message=f"malformed body ({exc})")

    def completion(self, kind: str, body: dict[str, Any]) -> Completion:
        """A response body as the online path would have returned it."""
        choices = body["choices"]
        if kind == "chat":
            texts = [(c.get("message") or {}).get("content") or "" for c in choices]
        else:
            texts = [c.get("text") or "" for c in choices]
        if not texts:
            raise IndexError("no choices")
        usage = body.get("usage") or {}
        counted = Usage(
            int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        )
        if not usage:
            counted = Usage(0, sum(max(1, len(t) // 4) for t in texts if t))
        return Completion(
            texts=texts,
            usage=counted,
            finish_reason=choices[0].get("finish_reason"),
            model=self.model.identity,
        )

    def unit_prices(self, discount: float | None = None) -> tuple[float, float]:
        """USD per token (input, output) at the batch price: the profile's `batch_price`,
        else the online price times `discount` (default one half)."""
        return batch_unit_prices(self.model, discount)


def batch_unit_prices(model: Model, discount: float | None = None) -> tuple[float, float]:
    """The batch price of `model`: its profile's `batch_price`, else online x discount."""
    from forgekit.config import get_profile
    from forgekit.errors import ConfigError

    try:
        profile = get_profile(model.name)
    except ConfigError:
        profile = None
    price = getattr(profile, "batch_price", None)
    if price is not None:
        return price.input / 1e6, price.output / 1e6
    factor = DEFAULT_DISCOUNT if discount is None else discount
    price_in, price_out = model.unit_prices()
    return price_in * factor, price_out * factor


def batch_api_for(model: Model) -> BatchAPI:
    """The batch API of `model`; a clear error for a model that has none (the embedded one)."""
    if not hasattr(model, "_client_options") or not hasattr(model, "_request_kwargs"):
        raise UnsupportedOperationError(
            f"batch mode needs a provider batch API (/v1/files + /v1/batches), and model "
            f"{model.name!r} ({model.identity}) has none: the embedded model runs in this "
            f"process and costs nothing per request. Run without --batch / batch=True, or "
            f"choose an OpenAI-compatible model profile."
        )
    return BatchAPI(model)


def _message(body: Any) -> str:
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        return str(inner.get("message") or json.dumps(body))[:300]
    return str(body)[:300]
