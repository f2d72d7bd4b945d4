"""The lean HTTP transport: the HTTP details a real server may use (chunked and gzip bodies,
closed or stale keep-alive connections, a path prefix), the headers it sends, the proxy
fallback to the SDK, and errors identical to the SDK path's for every status."""

import asyncio
import gzip
import json

import pytest

from forgekit.engine.runner import run_sync
from forgekit.errors import ClientRequestError, RetryableModelError
from forgekit.models import SamplingParams
from forgekit.models.openai_compat import OpenAICompatibleModel

CHAT = {
    "id": "x",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


class RawServer:
    """Answers each request with the next canned response (bytes); records what it got."""

    def __init__(self, responses):
        self.responses = list(responses)
        self.requests = []  # (request head, body)
        self.connections = 0

    async def handle(self, reader, writer):
        self.connections += 1
        try:
            while self.responses:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                self.requests.append((head.decode(), json.loads(await reader.readexactly(length))))
                reply = self.responses.pop(0)
                if reply is None:
                    break  # close without answering
                writer.write(reply)
                await writer.drain()
                if b"Connection: close" in reply:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def chat(self, model_kwargs=None, times=1, transport="lean"):
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        model = OpenAICompatibleModel(
            "raw",
            "m",
            base_url=f"http://127.0.0.1:{port}/prefix/v1/",
            api_key="sk-test",
            timeout=2.0,
            transport=transport,
            **(model_kwargs or {}),
        )
        results = []
        try:
            for _ in range(times):
                try:
                    results.append(
                        await model.chat([{"role": "user", "content": "q"}], SamplingParams())
                    )
                except Exception as exc:  # the test looks at it
                    results.append(exc)
        finally:
            await model.aclose()
            server.close()
        return results


def http(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def plain(value=CHAT, *headers: str) -> bytes:
    body = json.dumps(value).encode()
    return http(body, f"Content-Length: {len(body)}", *headers)


def test_chunked_and_gzip_bodies_keep_alive_and_path_prefix():
    body = json.dumps(CHAT).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:10], body[10:])) + b"0\r\n\r\n"
    zipped = gzip.compress(body)
    server = RawServer(
        [
            http(chunked, "Transfer-Encoding: chunked"),
            http(zipped, f"Content-Length: {len(zipped)}", "Content-Encoding: gzip"),
            plain(),
        ]
    )
    results = run_sync(lambda: server.chat(times=3))
    assert [r.text for r in results] == ["hi", "hi", "hi"]
    assert results[0].usage.prompt_tokens == 3 and results[0].finish_reason == "stop"
    assert server.connections == 1  # one keep-alive connection for the three requests
    head, payload = server.requests[0]
    assert head.startswith("POST /prefix/v1/chat/completions HTTP/1.1\r\n")
    assert "Authorization: Bearer sk-test" in head
    assert payload == {
        "model": "m",
        "messages": [{"role": "user", "content": "q"}],
        "max_tokens": 256,
    }


def test_connection_close_and_body_until_eof_open_a_new_connection():
    body = json.dumps(CHAT).encode()
    server = RawServer([plain(CHAT, "Connection: close"), http(body, "Connection: close"), plain()])
    results = run_sync(lambda: server.chat(times=3))
    assert [r.text for r in results] == ["hi", "hi", "hi"]
    assert server.connections == 3


def test_a_dropped_connection_is_a_retryable_connection_error():
    server = RawServer([None, plain()])
    results = run_sync(lambda: server.chat(times=2))
    assert isinstance(results[0], RetryableModelError)
    assert "connection error" in str(results[0])
    assert results[1].text == "hi"  # the next request opens a fresh connection


def test_organization_and_project_headers_from_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_ORG_ID", "org-1")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-2")
    server = RawServer([plain()])
    run_sync(lambda: server.chat())
    head = server.requests[0][0]
    assert "OpenAI-Organization: org-1" in head and "OpenAI-Project: proj-2" in head


def test_a_proxy_in_the_environment_selects_the_sdk(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert not OpenAICompatibleModel("p", "m", base_url="https://api.example.com/v1").lean
    assert OpenAICompatibleModel("p", "m", base_url="http://127.0.0.1:1/v1").lean
    forced = OpenAICompatibleModel("p", "m", base_url="https://x.example/v1", transport="lean")
    assert forced.lean
    with pytest.raises(ValueError, match="transport must be one of"):
        OpenAICompatibleModel("p", "m", transport="fast")


@pytest.mark.parametrize(
    "status, retry_after, kind",
    [
        (400, None, ClientRequestError),
        (401, None, ClientRequestError),
        (404, None, ClientRequestError),
        (408, None, RetryableModelError),
        (409, None, RetryableModelError),
        (429, "2", RetryableModelError),
        (500, None, RetryableModelError),
        (503, None, RetryableModelError),
    ],
)
def test_status_errors_match_the_sdk_path(status, retry_after, kind):
    """The same answer gives the same error class, status, Retry-After and message on both
    transports."""
    body = json.dumps({"error": {"message": f"nope {status}"}}).encode()
    headers = [f"Content-Length: {len(body)}", "Content-Type: application/json"]
    if retry_after:
        headers.append(f"Retry-After: {retry_after}")
    reply = http(body, *headers, status=f"{status} Whatever")
    errors = {}
    for transport in ("lean", "sdk"):
        server = RawServer([reply])
        (errors[transport],) = run_sync(lambda s=server, t=transport: s.chat(transport=t))
    lean, sdk = errors["lean"], errors["sdk"]
    assert type(lean) is type(sdk) is kind
    assert lean.status == sdk.status == status
    assert str(lean) == str(sdk) and f"HTTP {status}: nope {status}" in str(lean)
    expected_wait = 2.0 if retry_after else None
    assert getattr(lean, "retry_after", None) == getattr(sdk, "retry_after", None)
    assert getattr(lean, "retry_after", None) == expected_wait


@pytest.mark.parametrize("transport", ["lean", "sdk"])
def test_malformed_bodies_are_retryable_on_both_transports(transport):
    server = RawServer([http(b"<html>", "Content-Length: 6"), plain({"id": "x"}), plain([1, 2])])
    results = run_sync(lambda: server.chat(times=3, transport=transport))
    assert all(isinstance(r, RetryableModelError) for r in results), results
    assert "malformed" in str(results[0]) and "malformed" in str(results[1])
