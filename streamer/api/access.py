"""API keys at the door: the middleware that refuses HTTP requests and WebSocket handshakes without one.

What a valid key is, and which paths are public, is ``security.py``'s; this module turns a refusal into
an answer. Over HTTP that is a 401 with ``WWW-Authenticate: Bearer``: the error body of every other
route (``error_type: "unauthorized"``), or OpenAI's error shape under ``/v1/`` so the OpenAI SDKs raise
their ``AuthenticationError``. A refused WebSocket handshake gets that same HTTP 401 through the ASGI
WebSocket denial-response extension (uvicorn supports it with every WebSocket implementation); on a
server without it, the socket is accepted only to send an ``unauthorized`` error event and close with 4401.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextvars import ContextVar

import structlog
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..protocol import encode, error_event
from ..security import (
    OPENAI_PREFIX,
    Verdict,
    app_path,
    check_key,
    is_preflight,
    is_public,
    presented_key,
    refusal,
)
from .http import error_response, openai_error, request_id_of

log = structlog.get_logger(__name__)

CLOSE_UNAUTHORIZED = 4401  # the 4000s are the application's; 401 for the HTTP status it stands for

# Set in the task of a handshake this module denied; the server logs about that task afterwards.
_denied_handshake: ContextVar[bool] = ContextVar("streamer_denied_handshake", default=False)


class _DenialNoiseFilter(logging.Filter):
    """uvicorn's websockets-sansio protocol logs an ERROR after every denial response although the
    client got it (Kludex/uvicorn#3138): drop that line for the handshakes we denied, and only those."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            _denied_handshake.get() and "returned without completing handshake" in record.getMessage()
        )


_DENIAL_NOISE_FILTER = _DenialNoiseFilter()


class AccessControlMiddleware:
    """Requires an API key when keys are configured. Sits inside the request-context middleware,
    so a 401 still carries ``X-Request-ID`` and ``X-Process-Time``."""

    def __init__(self, app: ASGIApp, api_keys: Callable[[], Sequence[str]]) -> None:
        self.app = app
        self.api_keys = api_keys
        logging.getLogger("uvicorn.error").addFilter(_DENIAL_NOISE_FILTER)  # once: addFilter dedupes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        keys = self.api_keys()
        path = app_path(scope)
        if not keys or (scope["type"] == "http" and (is_public(path) or is_preflight(scope))):
            await self.app(scope, receive, send)
            return
        verdict = check_key(presented_key(scope), keys)
        if verdict == "ok":
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await _refuse_websocket(scope, receive, send, verdict)
        else:
            await _unauthorized(scope, verdict)(scope, receive, send)


def _unauthorized(scope: Scope, verdict: Verdict) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="streamer"'}
    if app_path(scope).startswith(OPENAI_PREFIX):
        return openai_error(
            401, refusal(verdict), "invalid_request_error", "invalid_api_key", headers=headers
        )
    return error_response(request_id_of(scope), 401, refusal(verdict), "unauthorized", headers)


async def _refuse_websocket(scope: Scope, receive: Receive, send: Send, verdict: Verdict) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return  # the client left during the handshake
    client = scope.get("client")
    log.info(
        "websocket_refused", reason=f"api_key_{verdict}", client=f"{client[0]}:{client[1]}" if client else ""
    )
    if "websocket.http.response" in scope.get("extensions", {}):
        # Starlette's responses speak the denial-response extension in a WebSocket scope.
        _denied_handshake.set(True)
        await _unauthorized(scope, verdict)(scope, receive, send)
        return
    await send({"type": "websocket.accept"})
    event = error_event("unauthorized", refusal(verdict), True)
    await send({"type": "websocket.send", "text": encode(event, binary=False)})
    await send({"type": "websocket.close", "code": CLOSE_UNAUTHORIZED, "reason": "unauthorized"})
