"""What `streamer serve` says as it starts: where to go, what to try."""

from __future__ import annotations

import sys

from ..config import Settings


def banner_urls(settings: Settings, ports: tuple[int, int], tls: bool) -> dict[str, str]:
    host = settings.server.host
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    http, ws = ("https", "wss") if tls else ("http", "ws")
    base = f"{http}://{shown}:{ports[0]}"
    auth = ' -H "Authorization: Bearer $STREAMER_API_KEY"' if settings.security.api_keys else ""
    return {
        "rest": f"{base}/api/v1",
        "ws": f"{ws}://{shown}:{ports[1]}/api/v1/stream",
        "ws_on_rest_port": f"{ws}://{shown}:{ports[0]}/api/v1/stream",
        "docs": f"{base}/docs",
        "demo": f"{base}/demo/",
        "try": f"curl{auth} -X POST {base}/api/v1/synth -H 'Content-Type: application/json' "
        f"""-d '{{"text": "Hello from streamer", "format": "wav"}}' -o hello.wav""",
    }


def announce(settings: Settings, ports: tuple[int, int], tls: bool) -> None:
    """Where to go now: a short banner on a console, one structured line in JSON logs."""
    from .. import __version__
    from ..engines.base import usable_cores

    urls = banner_urls(settings, ports, tls)
    fmt = settings.logging.format
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    if fmt == "json":
        import structlog

        structlog.get_logger("streamer.cli").info("server_urls", **urls)
        return
    workers = settings.pool.workers or f"{usable_cores()} (one per core)"
    everywhere = ", listening on every interface" if settings.server.host in ("0.0.0.0", "::", "") else ""
    lines = [
        f"streamer {__version__}: engine {settings.tts.engine}, inference workers: {workers}{everywhere}",
        f"  REST API   {urls['rest']}",
        f"  WebSocket  {urls['ws']}  (also {urls['ws_on_rest_port']})",
        f"  API docs   {urls['docs']}",
        f"  Demo       {urls['demo']}",
        f"  Try        {urls['try']}",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)
