"""`streamer serve`: the server's options (uvicorn's, as ttskit's `api` command has them), ports, start."""

from __future__ import annotations

import argparse
import errno
import socket
import ssl
import sys
from typing import Any

from ..config import Settings
from .banner import announce
from .settings import config_path_of, load, overrides_of

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
WORKERS_REFUSED = (
    "--workers {n}: streamer runs one server process. Sessions, resume tokens and interrupts live in "
    "that process's memory, so a request or a WebSocket landing on another process would not find its "
    "session. Until a shared (Redis-backed) session registry exists, scale synthesis with "
    "--pool-workers N (inference processes behind the one server), or run several instances behind a "
    "load balancer with sticky sessions."
)


def _header(value: str) -> tuple[str, str]:
    name, sep, content = value.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE, got {value!r}")
    return name.strip(), content.strip()


def _ssl_constant(prefix: str) -> Any:
    """A parser for an ssl module constant given as a number or a name (with or without ``prefix``)."""

    def parse(value: str) -> int:
        if value.isdigit():
            return int(value)
        name = value.upper()
        constant = getattr(ssl, name if name.startswith(prefix) else prefix + name, None)
        if not isinstance(constant, int):
            raise argparse.ArgumentTypeError(f"no ssl.{prefix}{name.removeprefix(prefix)}")
        return int(constant)

    parse.__name__ = f"ssl {prefix.lower().rstrip('_')}"  # argparse names the type in its errors
    return parse


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="run the REST and streaming WebSocket server",
        description="Run the REST API and the streaming WebSocket. Options left out take their value "
        "from the config tree: packaged defaults, then --config FILE, then STREAMER_* variables.",
    )
    p.add_argument(
        "--config", metavar="FILE", help="YAML config file over the defaults (env: STREAMER_CONFIG)"
    )
    p.add_argument("--host", metavar="ADDRESS", help="address both ports bind to (default: server.host)")
    p.add_argument(
        "-p",
        "--port",
        "--http-port",
        dest="http_port",
        type=int,
        metavar="PORT",
        help="REST port (default: server.http_port)",
    )
    p.add_argument(
        "--ws-port",
        dest="ws_port",
        type=int,
        metavar="PORT",
        help="WebSocket port (default: server.websocket_port)",
    )
    p.add_argument(
        "--wyoming-port",
        dest="wyoming_port",
        type=int,
        metavar="PORT",
        help="serve the Wyoming protocol (Home Assistant) on this port (default: wyoming.port, off)",
    )
    p.add_argument(
        "--pool-workers",
        dest="pool_workers",
        type=int,
        metavar="N",
        help="inference worker processes (default: pool.workers)",
    )
    p.add_argument(
        "-w",
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="server processes: only 1 until sessions are shared between processes (see --pool-workers)",
    )
    p.add_argument(
        "--reload",
        action="store_true",
        help="development: restart the server when a file of the package or the config file changes",
    )
    p.add_argument(
        "--log-level", dest="log_level", type=str.lower, choices=LOG_LEVELS, help="default: logging.level"
    )
    p.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="uvicorn's access log line per request (default: off; the app already logs every "
        "request as `request_handled`, with its request id and timing)",
    )
    p.add_argument(
        "--timeout-keep-alive",
        type=int,
        default=5,
        metavar="SECONDS",
        help="how long an idle keep-alive connection stays open",
    )

    tls = p.add_argument_group("TLS (applies to both ports: https:// and wss://)")
    tls.add_argument("--ssl-keyfile", metavar="FILE", help="private key file (PEM)")
    tls.add_argument("--ssl-certfile", metavar="FILE", help="certificate file (PEM), chain after it")
    tls.add_argument("--ssl-keyfile-password", metavar="PASSWORD", help="password of an encrypted key file")
    tls.add_argument(
        "--ssl-version",
        type=_ssl_constant("PROTOCOL_"),
        metavar="VERSION",
        help="ssl protocol, number or name (default: TLS_SERVER)",
    )
    tls.add_argument(
        "--ssl-cert-reqs",
        type=_ssl_constant("CERT_"),
        metavar="REQS",
        help="client certificates: none | optional | required, or 0 | 1 | 2 (default: none)",
    )
    tls.add_argument("--ssl-ca-certs", metavar="FILE", help="CA file client certificates are checked against")
    tls.add_argument(
        "--ssl-ciphers", metavar="CIPHERS", help="OpenSSL cipher list (default: the ssl module's)"
    )

    http = p.add_argument_group("HTTP")
    http.add_argument(
        "--header",
        dest="headers",
        type=_header,
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="a header added to every response (repeatable)",
    )
    http.add_argument(
        "--forwarded-allow-ips",
        metavar="IPS",
        help="comma-separated proxy addresses trusted for X-Forwarded-* ('*': any; default: "
        "127.0.0.1, or env FORWARDED_ALLOW_IPS)",
    )
    http.add_argument("--root-path", default="", metavar="PATH", help="path prefix of the app behind a proxy")
    http.add_argument(
        "--proxy-headers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="take client address and scheme from X-Forwarded-For/-Proto sent by trusted proxies",
    )
    http.add_argument(
        "--server-header", action=argparse.BooleanOptionalAction, default=True, help="send `server: uvicorn`"
    )
    http.add_argument(
        "--date-header", action=argparse.BooleanOptionalAction, default=True, help="send a `date` header"
    )


def uvicorn_options_of(args: argparse.Namespace) -> dict[str, Any]:
    """The options that go to ``uvicorn.Config``; the ones not given keep uvicorn's defaults."""
    options: dict[str, Any] = {
        "access_log": args.access_log,
        "timeout_keep_alive": args.timeout_keep_alive,
        "headers": list(args.headers),
        "root_path": args.root_path,
        "proxy_headers": args.proxy_headers,
        "server_header": args.server_header,
        "date_header": args.date_header,
        "forwarded_allow_ips": args.forwarded_allow_ips,
        "ssl_keyfile": args.ssl_keyfile,
        "ssl_certfile": args.ssl_certfile,
        "ssl_keyfile_password": args.ssl_keyfile_password,
        "ssl_version": args.ssl_version,
        "ssl_cert_reqs": args.ssl_cert_reqs,
        "ssl_ca_certs": args.ssl_ca_certs,
        "ssl_ciphers": args.ssl_ciphers,
    }
    return {key: value for key, value in options.items() if value is not None}


def tls_problem(options: dict[str, Any]) -> str | None:
    """Why the TLS options cannot work, or None: found before anything starts."""
    if not (options.get("ssl_keyfile") or options.get("ssl_certfile")):
        return None
    if not options.get("ssl_certfile"):
        return "--ssl-keyfile needs --ssl-certfile"
    from uvicorn.config import SSL_PROTOCOL_VERSION, create_ssl_context

    try:
        create_ssl_context(
            certfile=options["ssl_certfile"],
            keyfile=options.get("ssl_keyfile"),
            password=options.get("ssl_keyfile_password"),
            ssl_version=options.get("ssl_version", SSL_PROTOCOL_VERSION),
            cert_reqs=options.get("ssl_cert_reqs", ssl.CERT_NONE),
            ca_certs=options.get("ssl_ca_certs"),
            ciphers=options.get("ssl_ciphers"),
        )
    except (OSError, ssl.SSLError, ValueError) as exc:
        return f"the TLS settings do not load: {exc}"
    return None


class PortUnavailable(Exception):
    """A port cannot be bound: the one line to print, naming the flag that changes it."""


def bind_ports(settings: Settings) -> tuple[socket.socket, socket.socket]:
    """The REST and WebSocket sockets, bound, after trying the Wyoming port too (the server binds that
    one again as it starts), so that a port in use is one line before anything starts."""
    from ..server import make_socket

    server, wyoming = settings.server, settings.wyoming
    wanted = [
        ("REST", server.host, server.http_port, "--port"),
        ("WebSocket", server.host, server.websocket_port, "--ws-port"),
    ]
    if wyoming.port is not None:
        wanted.append(("Wyoming", wyoming.host or server.host, wyoming.port, "--wyoming-port"))
    sockets: list[socket.socket] = []
    for name, host, port, flag in wanted:
        try:
            sockets.append(make_socket(host, port))
        except OSError as exc:
            for sock in sockets:
                sock.close()
            taken = exc.errno in (errno.EADDRINUSE, errno.EACCES)
            hint = f"; choose another port with {flag}" if taken else ""
            raise PortUnavailable(
                f"cannot listen on {host}:{port} ({name}): {exc.strerror or exc}{hint}"
            ) from None
    if len(sockets) > 2:
        sockets.pop().close()  # the Wyoming port was free: the server binds it as it starts
    return sockets[0], sockets[1]


def run(args: argparse.Namespace) -> int:
    if args.workers != 1:
        print(f"streamer: {WORKERS_REFUSED.format(n=args.workers)}", file=sys.stderr)
        return 2
    config_path = config_path_of(args)
    overrides = overrides_of(args)
    settings = load(config_path, overrides)
    options = uvicorn_options_of(args)
    problem = tls_problem(options)
    if problem:
        print(f"streamer: {problem}", file=sys.stderr)
        return 2

    from ..observability.logging import configure_logging

    configure_logging(settings.logging.level, settings.logging.format)
    try:
        sockets = bind_ports(settings)
    except PortUnavailable as exc:
        print(f"streamer: {exc}", file=sys.stderr)
        return 1
    if args.reload:
        from .reload import run_with_reload

        return run_with_reload(config_path, overrides, options, sockets)
    from ..runtime import Runtime  # here: `streamer --help` loads no engine code
    from ..server import serve

    try:
        runtime = Runtime(settings, config_path, overrides)  # refuses an engine or default voice it lacks
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    ports = (sockets[0].getsockname()[1], sockets[1].getsockname()[1])
    announce(runtime, ports, tls="ssl_certfile" in options)
    serve(runtime, sockets=sockets, uvicorn_options=options)
    return 0
