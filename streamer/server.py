"""Serve the REST port and the WebSocket port from one uvicorn server, with a graceful drain on signals.

Shutdown (SIGTERM/SIGINT): stop accepting on both ports, let every connection finish the turn it is
speaking for up to ``server.shutdown_timeout_s`` (idle ones are closed at once), close what is left
with 1012, then let uvicorn run the lifespan shutdown, which stops every worker process.
A second signal skips the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
import time
from collections.abc import Generator
from types import FrameType
from typing import Any

import structlog
import uvicorn

from .api.app import PortDispatcher, create_apps
from .protocol.events import CLOSE_RESTART
from .runtime import Runtime
from .security import warn_if_exposed

log = structlog.get_logger(__name__)


def make_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit it on Linux: without it small frames stall ~40 ms (Nagle + delayed ACK).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class StreamerServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, runtime: Runtime) -> None:
        super().__init__(config)
        self.runtime = runtime
        self._drain: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # Unlike uvicorn's, this does not re-raise the signal at the end: a drained server exits 0.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        original[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._handle_hangup)
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def _handle_hangup(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.runtime.reload_config, "SIGHUP")

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain is not None or self._loop is None:
            self.force_exit = self._drain is not None
            self.should_exit = True
            return
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        if self._drain is None:
            self._drain = asyncio.create_task(self.drain(), name="server-drain")

    async def drain(self) -> None:
        runtime = self.runtime
        timeout = runtime.settings.server.shutdown_timeout_s
        log.info("server_draining", connections=len(runtime.connections), timeout_s=timeout)
        runtime.draining = True
        for server in self.servers:
            server.close()  # stop accepting on both ports
        deadline = time.monotonic() + timeout
        # Polling: "idle" is a property of each connection's pipeline, not an event anyone sets.
        while runtime.connections and time.monotonic() < deadline:
            for connection in list(runtime.connections):
                if connection.idle and connection.close_code is None:
                    connection.close_code = CLOSE_RESTART
                    connection.close_soon(CLOSE_RESTART, "server shutting down")
            await asyncio.sleep(0.05)
        for connection in list(runtime.connections):
            connection.close_soon(CLOSE_RESTART, "server shutting down")
        close_deadline = time.monotonic() + 2.0
        while runtime.connections and time.monotonic() < close_deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        self.should_exit = True


def serve(
    runtime: Runtime,
    *,
    sockets: tuple[socket.socket, socket.socket] | None = None,
    uvicorn_options: dict[str, Any] | None = None,
) -> None:
    """Run ``runtime`` (built, not started: the lifespan starts it) until a signal drains the server.

    ``sockets`` (REST, WebSocket) are bound here unless given (the command line binds them first, to
    report a taken port before anything starts, and a reloader keeps them across restarts).
    ``uvicorn_options`` go to ``uvicorn.Config``: SSL, extra headers, proxy and keep-alive settings; TLS
    applies to both sockets.
    """
    settings = runtime.settings
    server_settings = settings.server
    if sockets is None:
        sockets = (
            make_socket(server_settings.host, server_settings.http_port),
            make_socket(server_settings.host, server_settings.websocket_port),
        )
    http_sock, ws_sock = sockets
    options: dict[str, Any] = {"access_log": False, **(uvicorn_options or {})}
    runtime.ws_port = ws_sock.getsockname()[1]
    rest, ws = create_apps(runtime)
    app = PortDispatcher(rest, ws, ws_sock.getsockname()[1])
    limits = settings.limits
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,
        # Above the protocol's own limit, so the app answers `message_too_large` itself.
        ws_max_size=limits.max_message_bytes * 4 + 1024,
        ws_ping_interval=limits.ping_interval_s or None,
        ws_ping_timeout=limits.ping_interval_s or None,
        timeout_graceful_shutdown=5,
        # Speech audio barely compresses (PCM to ~73%) and deflate cost a third of the server's CPU per frame.
        ws_per_message_deflate=False,
        **options,
    )
    server = StreamerServer(config, runtime)
    warn_if_exposed(settings)
    log.info(
        "server_listening",
        http=f"{'https' if config.is_ssl else 'http'}://{server_settings.host}:{http_sock.getsockname()[1]}",
        ws=f"{'wss' if config.is_ssl else 'ws'}://{server_settings.host}:{ws_sock.getsockname()[1]}/api/v1/stream",
    )
    asyncio.run(server.serve(sockets=[http_sock, ws_sock]))
