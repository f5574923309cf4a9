"""Opening the streaming WebSocket: the API key in a header or the query, TLS, a refused handshake."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Generic, Literal, Protocol, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection

from ._tls import ssl_context
from .errors import HandshakeRefused


class _Closable(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


class Connector(Generic[C]):
    """What ``connect()`` returns: awaitable, or an async context manager that closes what it opened."""

    def __init__(self, opener: Callable[[], Awaitable[C]]) -> None:
        self._opener = opener
        self._client: C | None = None

    def __await__(self) -> Generator[Any, None, C]:
        return self._opener().__await__()

    async def __aenter__(self) -> C:
        self._client = await self._opener()
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.close()


STREAM_PATH = "/api/v1/stream"


def stream_url_problem(url: str) -> str | None:
    """Why ``url`` is not a streaming WebSocket URL, with the one probably meant; None when it is one."""
    parts = urlsplit(url)
    if parts.scheme in ("ws", "wss") and parts.netloc:
        return None
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme)
    if scheme and parts.netloc:
        return f"{url} is not a WebSocket URL: the stream is at {scheme}://{parts.netloc}{STREAM_PATH}"
    return f"{url} is not a WebSocket URL: the stream is at ws://HOST:8081{STREAM_PATH} (wss:// with TLS)"


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


async def open_socket(
    url: str,
    api_key: str | None,
    api_key_in: Literal["header", "query"],
    verify: bool | str | ssl.SSLContext,
    open_timeout: float,
    headers: dict[str, str] | None,
) -> ClientConnection:
    """The WebSocket, open; ``HandshakeRefused`` with the server's status and body when it says no."""
    extra = dict(headers or {})
    target = url
    if api_key is not None:
        if api_key_in == "query":
            target = with_query(url, api_key=api_key)
        else:
            extra["Authorization"] = f"Bearer {api_key}"
    try:
        return await websockets.connect(
            target,
            additional_headers=extra,
            ssl=ssl_context(verify) if url.startswith("wss:") else None,
            open_timeout=open_timeout,
            max_size=16 * 2**20,
            compression=None,  # audio does not deflate; compressing costs latency for nothing
        )
    except websockets.InvalidStatus as exc:
        response = exc.response
        body = response.body.decode("utf-8", "replace") if response.body else ""
        refused = HandshakeRefused(response.status_code, body[:500])
        if not urlsplit(url).path.endswith(STREAM_PATH):
            refused.args = (f"{refused} (a wrong path? the stream is at {STREAM_PATH})",)
        raise refused from None
