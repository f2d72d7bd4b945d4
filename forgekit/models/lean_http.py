"""A small HTTP/1.1 client for the hot loop of OpenAI-compatible requests.

Why: the `openai` SDK spends a few ms of CPU on every request (request transforms,
httpx/httpcore bookkeeping, pydantic response models). With many requests in flight the
client is CPU-bound on small machines, so the request loop goes through this lean path:
keep-alive connections on asyncio streams, one write per request, JSON in and out with
the standard library. It does only what an OpenAI-compatible POST needs: http and https,
Content-Length or chunked bodies, gzip/deflate bodies, `Connection: close`.

It knows nothing about the OpenAI protocol; `forgekit.models.openai_compat` maps statuses,
bodies and failures to forgekit's errors exactly as it does for the SDK. Proxies are not
handled here: the model falls back to the SDK when the environment names one.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
import urllib.request
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# Idle connections older than this are not reused: servers close keep-alive connections
# after a few seconds (uvicorn, so vLLM: 5 s), and a request written to a connection the
# server is closing fails for no fault of the request.
KEEPALIVE_SECONDS = 4.0
_MAX_HEAD = 64 * 1024


class LeanTimeout(Exception):
    """No complete answer within the timeout."""


class LeanConnectionError(Exception):
    """The connection failed or closed before a complete answer."""


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY), as
    urllib and httpx read them; None when the request goes direct."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


def _ssl_context() -> ssl.SSLContext:
    # Same trust store as httpx: SSL_CERT_FILE / SSL_CERT_DIR if set, else certifi's bundle.
    cafile = os.environ.get("SSL_CERT_FILE")
    capath = os.environ.get("SSL_CERT_DIR")
    if not cafile and not capath:
        try:
            import certifi

            cafile = certifi.where()
        except ImportError:  # the system store then
            pass
    return ssl.create_default_context(cafile=cafile, capath=capath)


class _Connection:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = time.monotonic()

    def reusable(self) -> bool:
        return (
            not self.writer.is_closing()
            and not self.reader.at_eof()
            and time.monotonic() - self.idle_since < KEEPALIVE_SECONDS
        )

    def close(self) -> None:
        self.writer.transport.abort()


class LeanHttpClient:
    """Keep-alive POSTs of JSON to one base URL, from one event loop.

    `timeout` covers the whole exchange: connecting, sending and the complete answer. For a
    non-streamed answer (all the engine asks for) that is what the SDK's read timeout
    amounts to, since the server sends nothing until the answer is ready.
    """

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self.host = parts.hostname
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        default_port = self.port == (443 if self.tls else 80)
        host_header = self.host if default_port else f"{self.host}:{self.port}"
        if ":" in self.host and not default_port:  # an IPv6 literal
            host_header = f"[{self.host}]:{self.port}"
        self.timeout = timeout
        fixed = {
            "Host": host_header,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Accept-Encoding": "identity",
            **headers,
        }
        self._head = "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self._idle: list[_Connection] = []
        self._ssl = _ssl_context() if self.tls else None

    async def post_json(self, path: str, payload: dict[str, Any]) -> HttpAnswer:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        request = (
            f"POST {self.prefix}{path} HTTP/1.1\r\n{self._head}Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1") + body
        connection: _Connection | None = None
        try:
            async with asyncio.timeout(self.timeout):
                connection = await self._acquire()
                connection.writer.write(request)
                answer, keep = await _read_answer(connection.reader)
        except TimeoutError:
            if connection is not None:
                connection.close()
            raise LeanTimeout(f"no answer within {self.timeout:g} s") from None
        except (OSError, EOFError, ValueError, zlib.error, asyncio.LimitOverrunError) as exc:
            # (IncompleteReadError is an EOFError; ValueError: a garbled status line.)
            if connection is not None:
                connection.close()
            raise LeanConnectionError(_describe(exc)) from exc
        except BaseException:
            if connection is not None:  # cancelled mid-exchange: the stream is unusable
                connection.close()
            raise
        if keep:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()
        return answer

    async def _acquire(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable():
                return connection
            connection.close()
        reader, writer = await asyncio.open_connection(
            self.host,
            self.port,
            ssl=self._ssl,
            server_hostname=self.host if self.tls else None,
            limit=_MAX_HEAD,
        )
        return _Connection(reader, writer)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.writer.close()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[HttpAnswer, bool]:
    """One response: (answer, whether the connection may be reused)."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, status_text = lines[0].split(" ", 2)[:2]
        status = int(status_text)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if status >= 200 or status == 101:
            break  # 1xx (100 Continue) is followed by the real answer
    connection = headers.get("connection", "").lower()
    keep = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:  # the body runs until the server closes the connection
        body, keep = await reader.read(), False
    encoding = headers.get("content-encoding", "").lower()
    if encoding in ("gzip", "deflate"):
        body = zlib.decompress(body, 47 if encoding == "gzip" else zlib.MAX_WBITS)
    elif encoding not in ("", "identity"):
        raise OSError(f"unsupported Content-Encoding {encoding!r}")
    return HttpAnswer(status, headers, body), keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            # Trailers, if any, end with an empty line.
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return "connection closed before a complete answer"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
