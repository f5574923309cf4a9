"""`streamer serve --reload`: the server in a child process, started again when its files change.

The parent binds both sockets once and hands them to every child, so clients connecting during a
restart wait in the listen backlog instead of being refused. It polls the modification times of the
package's ``*.py`` files and of the config files; on a change it stops the child (SIGTERM: the
child drains as on any shutdown) and starts a fresh one, which imports the new code and reads the
config again (it checks the engine and the default voice and prints the banner, as `serve` does). A
child that fails to start (a syntax error mid-edit, a bad config) is reported, and the next change
starts it again. SIGINT/SIGTERM stop the child and end the reloader; SIGHUP is passed on (reload
the config live).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import threading
from multiprocessing.context import SpawnProcess
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from ..config import default_config_path
from ..errors import ConfigError
from .banner import announce
from .settings import load, print_config_error

log = structlog.get_logger("streamer.reload")

POLL_S = 0.5
STOP_TIMEOUT_S = 30.0


def watched_files(config_path: str | None) -> list[Path]:
    package = Path(__file__).resolve().parent.parent
    files = sorted(package.rglob("*.py"))
    files.append(default_config_path())
    if config_path:
        files.append(Path(config_path).resolve())
    return files


def snapshot(files: list[Path]) -> dict[Path, int | None]:
    stamps: dict[Path, int | None] = {}
    for path in files:
        try:
            stamps[path] = path.stat().st_mtime_ns
        except OSError:
            stamps[path] = None
    return stamps


def serve_child(
    config_path: str | None,
    overrides: dict[str, Any],
    options: dict[str, Any],
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    """The server in a reloader's child process: settings are read and checked again (so config edits
    apply), and the banner says what this child runs."""
    from ..observability.logging import configure_logging
    from ..runtime import Runtime  # here: `streamer --help` loads no engine code
    from ..server import serve

    try:
        settings = load(config_path, overrides)
        configure_logging(settings.logging.level, settings.logging.format)
        runtime = Runtime(settings, config_path, overrides)
    except ConfigError as exc:
        print_config_error(exc)
        sys.exit(2)
    ports = (sockets[0].getsockname()[1], sockets[1].getsockname()[1])
    announce(runtime, ports, tls="ssl_certfile" in options)
    serve(runtime, sockets=sockets, uvicorn_options=options)


def _start(
    context: Any,
    config_path: str | None,
    overrides: dict[str, Any],
    options: dict[str, Any],
    sockets: tuple[socket.socket, socket.socket],
) -> SpawnProcess:
    child: SpawnProcess = context.Process(
        target=serve_child, args=(config_path, overrides, options, sockets), name="streamer-server"
    )
    child.start()
    log.info("reloader_started_server", pid=child.pid)
    return child


def _stop(child: SpawnProcess) -> None:
    if child.exitcode is None:
        child.terminate()  # SIGTERM: the server drains
        child.join(STOP_TIMEOUT_S)
    if child.exitcode is None:
        log.warning("reloader_killed_server", pid=child.pid, waited_s=STOP_TIMEOUT_S)
        child.kill()
        child.join()


def run_with_reload(
    config_path: str | None,
    overrides: dict[str, Any],
    options: dict[str, Any],
    sockets: tuple[socket.socket, socket.socket],
) -> int:
    multiprocessing.allow_connection_pickling()  # sockets go to the spawned child
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()
    child: SpawnProcess | None = None

    def on_stop(sig: int, frame: FrameType | None) -> None:
        stop.set()

    def on_hangup(sig: int, frame: FrameType | None) -> None:
        if child is not None and child.pid is not None and child.exitcode is None:
            os.kill(child.pid, signal.SIGHUP)

    previous = {sig: signal.signal(sig, on_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hangup)
    files = watched_files(config_path)
    stamps = snapshot(files)
    log.info("reloader_watching", files=len(files), config=config_path)
    try:
        while not stop.is_set():
            child = _start(context, config_path, overrides, options, sockets)
            reported = False
            while not stop.wait(POLL_S):
                current = snapshot(files)
                if current != stamps:
                    changed = [str(p) for p in current if current[p] != stamps.get(p)]
                    stamps = current
                    log.warning("reloader_restarting", changed=changed[:5])
                    break
                if child.exitcode is not None and not reported:
                    reported = True
                    log.error("reloader_server_exited", exit_code=child.exitcode, waiting_for="a file change")
            _stop(child)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sock in sockets:
            sock.close()
    return 0
