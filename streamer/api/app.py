"""Application factory: the REST app (owner of the runtime's lifespan) and the WebSocket-port app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from ..observability.metrics import RequestMetricsMiddleware, metrics_endpoint
from ..runtime import Runtime
from ..wyoming import WyomingServer
from . import config_routes, demo, docs_pages, openapi, sessions, synth, system, voices
from .access import AccessControlMiddleware
from .http import EXCEPTION_HANDLERS, RequestContextMiddleware
from .ws import stream_endpoint

STREAM_PATH = "/api/v1/stream"


def rest_routes() -> list[BaseRoute]:
    return [
        *system.routes,
        *config_routes.routes,
        *voices.routes,
        *sessions.routes,
        *synth.routes,
        *openapi.routes,
        *docs_pages.routes,
        *demo.routes,
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        WebSocketRoute(STREAM_PATH, stream_endpoint),
    ]


def create_apps(runtime: Runtime) -> tuple[ASGIApp, ASGIApp]:
    """(REST app, WebSocket-port app). Both serve the stream at /api/v1/stream, and /health."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        await runtime.start()
        wyoming_settings = runtime.settings.wyoming
        wyoming = None
        if wyoming_settings.port is not None:
            wyoming = WyomingServer(
                runtime, wyoming_settings.host or runtime.settings.server.host, wyoming_settings.port
            )
            await wyoming.start()
        try:
            yield {}
        finally:
            if wyoming is not None:
                await wyoming.stop()
            await runtime.stop()

    rest = Starlette(routes=rest_routes(), lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS)
    ws = Starlette(
        routes=[
            *(r for r in system.routes if r.path == "/health"),
            WebSocketRoute(STREAM_PATH, stream_endpoint),
        ],  # type: ignore[attr-defined]
        exception_handlers=EXCEPTION_HANDLERS,
    )
    rest.state.runtime = runtime
    ws.state.runtime = runtime

    def wrap(app: Starlette) -> ASGIApp:
        # Outside in: metrics (every response counted) → request context → API keys → the app.
        guarded = AccessControlMiddleware(app, api_keys=lambda: runtime.settings.security.api_keys)
        context = RequestContextMiddleware(
            guarded, max_body=lambda: runtime.settings.limits.max_request_bytes
        )
        return RequestMetricsMiddleware(context, runtime.metrics, app.routes)

    return wrap(rest), wrap(ws)


class PortDispatcher:
    """One ASGI app for both listening sockets: requests to the WebSocket port go to its app."""

    def __init__(self, rest: ASGIApp, ws: ASGIApp, ws_port: int) -> None:
        self.rest = rest
        self.ws = ws
        self.ws_port = ws_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if scope["type"] != "lifespan" and server and server[1] == self.ws_port:
            await self.ws(scope, receive, send)
        else:
            await self.rest(scope, receive, send)
