"""Application factory: the REST app (owner of the runtime's lifespan) and the WebSocket-port app."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send

from .. import __version__
from ..runtime import Runtime
from .ws import stream_endpoint

STREAM_PATH = "/api/v1/stream"


async def health(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    return JSONResponse(
        {
            "status": "healthy",
            "version": __version__,
            "uptime_seconds": round(time.time() - runtime.started_at, 3),
            "engine": runtime.catalog.default_engine,
            "workers_ready": runtime.pool.status()["ready_workers"],
        }
    )


async def status(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    if request.query_params.get("reset_loop_lag"):
        runtime.loop_lag.reset()
    return JSONResponse(runtime.status())


def create_apps(runtime: Runtime) -> tuple[Starlette, Starlette]:
    """(REST app, WebSocket-port app). Both serve the stream at /api/v1/stream and /health."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        await runtime.start()
        try:
            yield {}
        finally:
            await runtime.stop()

    rest = Starlette(
        routes=[
            Route("/health", health),
            Route("/api/v1/health", health),
            Route("/api/v1/status", status),
            WebSocketRoute(STREAM_PATH, stream_endpoint),
        ],
        lifespan=lifespan,
    )
    ws = Starlette(routes=[Route("/health", health), WebSocketRoute(STREAM_PATH, stream_endpoint)])
    rest.state.runtime = runtime
    ws.state.runtime = runtime
    return rest, ws


class PortDispatcher:
    """One ASGI app for both listening sockets: requests to the WebSocket port go to its app."""

    def __init__(self, rest: Starlette, ws: Starlette, ws_port: int) -> None:
        self.rest = rest
        self.ws = ws
        self.ws_port = ws_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if scope["type"] != "lifespan" and server and server[1] == self.ws_port:
            await self.ws(scope, receive, send)
        else:
            await self.rest(scope, receive, send)
