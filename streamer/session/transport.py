"""What a connection needs of a socket; the WebSocket endpoint adapts Starlette's to it."""

from __future__ import annotations

from typing import Protocol


class Transport(Protocol):
    async def receive(self) -> str | bytes | None:
        """The next message (a text frame as str, a binary one as bytes), or None once the client has gone."""
        ...

    async def send(self, data: str | bytes) -> None:
        """Send one message; raises OSError when the client has gone."""
        ...

    async def close(self, code: int, reason: str = "") -> None: ...


class Closed(Exception):
    """Ends a connection's task group once its socket is closed or gone."""
