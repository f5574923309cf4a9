"""Access rules: which key a request carries, whether it is valid, which paths are public; exposure warnings.

Off while ``security.api_keys`` is empty. When keys are set, a request carries one as
``Authorization: Bearer KEY`` or ``X-API-Key: KEY``; a WebSocket handshake may also carry it as
``?api_key=KEY`` on the URL, because a browser cannot set headers on a WebSocket. (REST requests do
not take the query form: URLs end up in logs and browser history.) Keys are read from the live
settings on every request, so a config change applies at once, and compared in constant time.
The middleware that answers a refusal is ``streamer/api/access.py``.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence
from typing import Literal
from urllib.parse import parse_qsl

import structlog
from starlette.types import Scope

from .config import Settings

log = structlog.get_logger(__name__)

# Open without a key: probes, the API docs and the demo page (with their assets).
PUBLIC_PATHS = frozenset(
    {"/health", "/ready", "/docs", "/redoc", "/openapi.json", "/", "/demo", "/favicon.ico"}
)
PUBLIC_PREFIXES = ("/docs/", "/redoc/", "/demo/", "/static/")
# Routes that speak OpenAI's dialect, errors included.
OPENAI_PREFIX = "/v1/"

Verdict = Literal["ok", "missing", "invalid"]


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


def app_path(scope: Scope) -> str:
    """The path within the app: under `--root-path`, uvicorn's scope path still carries the prefix."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root) :] or "/" if root and path.startswith(root) else path


def is_preflight(scope: Scope) -> bool:
    """A CORS preflight: browsers never send credentials with it."""
    headers = dict(scope.get("headers") or [])
    return scope.get("method") == "OPTIONS" and b"access-control-request-method" in headers


def refusal(verdict: Verdict) -> str:
    """What a client without a valid key is told."""
    if verdict == "missing":
        return "an API key is required: send `Authorization: Bearer KEY` or `X-API-Key: KEY`"
    return "the API key is not valid"


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
