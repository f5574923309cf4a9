"""The client's exceptions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .messages import Event


class ClientError(Exception):
    """Base of every error this module raises."""


class ServerError(ClientError):
    """The server answered with an `error` event."""

    def __init__(self, event: Event) -> None:
        self.event = event
        self.code: str = event.get("code", "internal_error")
        self.message: str = event.get("message", "")
        self.fatal: bool = bool(event.get("fatal"))
        super().__init__(f"{self.code}: {self.message}")


class ConnectionClosed(ClientError):
    """The WebSocket closed (``code`` None: it closed without a close frame)."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"connection closed ({code}{': ' + reason if reason else ''})")


class InvalidURL(ClientError, ValueError):
    """The URL given is not the streaming WebSocket's (``http://`` for ``ws://``, no host); says which is."""


class HandshakeRefused(ClientError):
    """The server answered the WebSocket handshake with an HTTP error (401: a missing or wrong API key)."""

    def __init__(self, status: int, body: str = "") -> None:
        self.status = status
        self.body = body
        super().__init__(f"WebSocket handshake refused: HTTP {status}{': ' + body if body else ''}")


class RestError(ClientError):
    """An HTTP error answer from the REST API, with the fields of its error body."""

    def __init__(self, status: int, error_type: str, detail: Any, request_id: str | None = None) -> None:
        self.status = status
        self.error_type = error_type
        self.detail = detail
        self.request_id = request_id
        super().__init__(f"HTTP {status} {error_type}: {detail}")
