"""What `streamer serve` says once the engine is checked: the engine and why, where to go, what to try."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import structlog

from ..config import Settings

if TYPE_CHECKING:
    from ..runtime import Runtime

log = structlog.get_logger("streamer.cli")


def _shown_host(host: str) -> str:
    """An address a client on this machine can use: a wildcard bind is reached through loopback."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"[{shown}]" if ":" in shown else shown


def banner_urls(settings: Settings, ports: tuple[int, int], tls: bool) -> dict[str, str]:
    shown = _shown_host(settings.server.host)
    http, ws = ("https", "wss") if tls else ("http", "ws")
    base = f"{http}://{shown}:{ports[0]}"
    auth = ' -H "Authorization: Bearer $STREAMER_API_KEY"' if settings.security.api_keys else ""
    urls = {
        "rest": f"{base}/api/v1",
        "ws": f"{ws}://{shown}:{ports[1]}/api/v1/stream",
        "ws_on_rest_port": f"{ws}://{shown}:{ports[0]}/api/v1/stream",
        "docs": f"{base}/docs",
        "demo": f"{base}/demo/",
        "try": f"curl{auth} -X POST {base}/api/v1/synth -H 'Content-Type: application/json' "
        f"""-d '{{"text": "Hello from streamer", "format": "wav"}}' -o hello.wav""",
    }
    wyoming = settings.wyoming
    if wyoming.port is not None:  # bound as the server starts: port 0 is still 0 here
        urls["wyoming"] = f"tcp://{_shown_host(wyoming.host or settings.server.host)}:{wyoming.port}"
    return urls


def announce(runtime: Runtime, ports: tuple[int, int], tls: bool) -> None:
    """The engine choice as one structured line (`engine_selected`), then where to go: a short banner on
    a console, one `server_urls` line in JSON logs."""
    settings = runtime.settings
    catalog = runtime.catalog
    requested = settings.tts.engine
    choice = catalog.describe_choice()
    log.info(
        "engine_selected",
        engine=catalog.default_engine,
        requested=requested,
        skipped=catalog.choice.skipped,
        choice=choice,
    )
    urls = banner_urls(settings, ports, tls)
    fmt = settings.logging.format
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    if fmt == "json":
        log.info("server_urls", **urls)
        return
    from .. import __version__

    workers = settings.pool.workers or f"{runtime.pool.size} (one per core)"
    everywhere = ", listening on every interface" if settings.server.host in ("0.0.0.0", "::", "") else ""
    lines = [
        f"streamer {__version__}: engine {catalog.default_engine}, inference workers: {workers}{everywhere}",
        f"  Engine     {choice}",
        f"  REST API   {urls['rest']}",
        f"  WebSocket  {urls['ws']}  (also {urls['ws_on_rest_port']})",
    ]
    if "wyoming" in urls:
        free = " (a free port: `wyoming_listening` names it)" if settings.wyoming.port == 0 else ""
        lines.append(f"  Wyoming    {urls['wyoming']}{free}")
    lines += [
        f"  API docs   {urls['docs']}",
        f"  Demo       {urls['demo']}",
        f"  Try        {urls['try']}",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)
