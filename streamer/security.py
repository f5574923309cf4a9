"""Access control: API keys on every route but the public ones, and on the WebSocket handshake.

Off while ``security.api_keys`` is empty. When keys are set, a request carries one as
``Authorization: Bearer KEY`` or ``X-API-Key: KEY``; a WebSocket handshake may also carry it as
``?api_key=KEY`` on the URL, because a browser cannot set headers on a WebSocket. (REST requests do
not take the query form: URLs end up in logs and browser history.) Keys are read from the live
settings on every request, so a config change applies at once, and compared in constant time.

A refusal is a 401 with ``WWW-Authenticate: Bearer``: the error body of every other route
(``error_type: "unauthorized"``), or OpenAI's error shape under ``/v1/`` so the OpenAI SDKs raise
their ``AuthenticationError``. A refused WebSocket handshake is answered with that same HTTP 401 through
the ASGI WebSocket denial-response extension (uvicorn supports it with every WebSocket implementation);
on a server without it, the socket is accepted only to send an ``unauthorized`` error event and close
with 4401.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Literal
from urllib.parse import parse_qsl

import structlog
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .config import Settings
from .protocol import encode, error_event

log = structlog.get_logger(__name__)

# Open without a key: probes, the API docs and the demo page (with their assets).
PUBLIC_PATHS = frozenset(
    {"/health", "/ready", "/docs", "/redoc", "/openapi.json", "/", "/demo", "/favicon.ico"}
)
PUBLIC_PREFIXES = ("/docs/", "/redoc/", "/demo/", "/static/")
# Routes that speak OpenAI's dialect, errors included.
OPENAI_PREFIX = "/v1/"
CLOSE_UNAUTHORIZED = 4401  # the 4000s are the application's; 401 for the HTTP status it stands for

Verdict = Literal["ok", "missing", "invalid"]

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


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def presented_key(scope: Scope) -> str | None:
    """The key a request carries: ``Authorization: Bearer``, ``X-API-Key``, or (WebSocket) ``?api_key=``."""
    headers = dict(scope.get("headers") or [])
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    api_key = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    if api_key:
        return api_key
    if scope["type"] == "websocket":
        query = scope.get("query_string", b"").decode("latin-1")
        for name, value in parse_qsl(query):
            if name == "api_key" and value:
                return value
    return None


def check_key(presented: str | None, keys: Sequence[str]) -> Verdict:
    if presented is None:
        return "missing"
    given = presented.encode()
    # Compare with every key, without stopping at a match: the time says nothing about which matched.
    matches = [hmac.compare_digest(given, key.encode()) for key in keys]
    return "ok" if any(matches) else "invalid"


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
        if not keys or (scope["type"] == "http" and (is_public(path) or _is_preflight(scope))):
            await self.app(scope, receive, send)
            return
        verdict = check_key(presented_key(scope), keys)
        if verdict == "ok":
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await _refuse_websocket(scope, receive, send, verdict)
        else:
            await _unauthorized(scope, verdict)(scope, receive, send)


def app_path(scope: Scope) -> str:
    """The path within the app: under `--root-path`, uvicorn's scope path still carries the prefix."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root) :] or "/" if root and path.startswith(root) else path


def _is_preflight(scope: Scope) -> bool:
    """A CORS preflight: browsers never send credentials with it."""
    headers = dict(scope.get("headers") or [])
    return scope.get("method") == "OPTIONS" and b"access-control-request-method" in headers


def _message(verdict: Verdict) -> str:
    if verdict == "missing":
        return "an API key is required: send `Authorization: Bearer KEY` or `X-API-Key: KEY`"
    return "the API key is not valid"


def _unauthorized(scope: Scope, verdict: Verdict) -> JSONResponse:
    from .api.http import error_response, request_id_of  # here: importing streamer.api imports this module

    headers = {"WWW-Authenticate": 'Bearer realm="streamer"'}
    if app_path(scope).startswith(OPENAI_PREFIX):
        body = {
            "error": {
                "message": _message(verdict),
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }
        return JSONResponse(body, status_code=401, headers=headers)
    return error_response(request_id_of(scope), 401, _message(verdict), "unauthorized", headers)


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
    event = error_event("unauthorized", _message(verdict), True)
    await send({"type": "websocket.send", "text": encode(event, binary=False)})
    await send({"type": "websocket.close", "code": CLOSE_UNAUTHORIZED, "reason": "unauthorized"})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def warn_if_exposed(settings: Settings) -> bool:
    """Warn (``access_control_off``) when binding a non-loopback address with no API keys, or the Wyoming
    port (which keys do not cover) to one; True if it did."""
    warned = False
    host = settings.server.host
    if not (is_loopback(host) or settings.security.api_keys):
        log.warning(
            "access_control_off",
            host=host,
            hint="anyone who can reach this address can use the server: set security.api_keys",
        )
        warned = True
    wyoming_host = settings.wyoming.host or host
    if settings.wyoming.port is not None and not is_loopback(wyoming_host):
        log.warning(
            "access_control_off",
            host=wyoming_host,
            port=settings.wyoming.port,
            hint="the Wyoming port has no access control: anyone who can reach it can use it; "
            "bind wyoming.host to a trusted network",
        )
        warned = True
    return warned
