"""The streaming WebSocket endpoint: a thin adapter between Starlette's socket and a Connection."""

from __future__ import annotations

import contextlib

import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..protocol import encode, error_event
from ..protocol.events import CLOSE_POLICY, CLOSE_RESTART, CLOSE_SERVER_ERROR, CLOSE_TRY_AGAIN
from ..runtime import Runtime
from ..session.connection import Connection

log = structlog.get_logger(__name__)


class StarletteTransport:
    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    async def receive(self) -> str | bytes | None:
        try:
            message = await self.websocket.receive()
        except (RuntimeError, WebSocketDisconnect):
            return None
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        return text if text is not None else message.get("bytes") or b""

    async def send(self, data: str | bytes) -> None:
        try:
            if isinstance(data, bytes):
                await self.websocket.send_bytes(data)
            else:
                await self.websocket.send_text(data)
        except (RuntimeError, WebSocketDisconnect) as exc:
            raise ConnectionResetError("client went away") from exc

    async def close(self, code: int, reason: str = "") -> None:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await self.websocket.close(code, reason)


def _origin_allowed(origin: str | None, allowed: list[str]) -> bool:
    return origin is None or "*" in allowed or origin in allowed


async def refuse(websocket: WebSocket, code: str, message: str, close_code: int) -> None:
    """Accept only to say why, in the protocol's own words, then close."""
    await websocket.accept()
    await websocket.send_text(encode(error_event(code, message, True), binary=False))
    await websocket.close(close_code, code)


async def stream_endpoint(websocket: WebSocket) -> None:
    runtime: Runtime = websocket.app.state.runtime
    settings = runtime.settings
    if not _origin_allowed(websocket.headers.get("origin"), settings.server.allowed_origins):
        await websocket.close(CLOSE_POLICY)  # before accept: the handshake is answered with 403
        return
    if runtime.draining:
        await refuse(websocket, "overloaded", "the server is shutting down", CLOSE_RESTART)
        return
    if len(runtime.connections) >= settings.server.max_connections:
        await refuse(
            websocket,
            "overloaded",
            f"the server is at its limit of {settings.server.max_connections} connections",
            CLOSE_TRY_AGAIN,
        )
        return
    await websocket.accept()
    client = f"{websocket.client.host}:{websocket.client.port}" if websocket.client else ""
    connection = Connection(runtime, StarletteTransport(websocket), client)
    try:
        await connection.run()
    except Exception:
        log.exception("session_crashed", client=client)
        await StarletteTransport(websocket).close(CLOSE_SERVER_ERROR, "internal error")
