"""Command line: `streamer serve` and friends."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .config import Settings, deep_merge, load_settings, validate
from .errors import ConfigError


def _serve_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the REST and streaming WebSocket server")
    p.add_argument("--config", help="YAML config file laid over the packaged defaults (env: STREAMER_CONFIG)")
    p.add_argument("--host", help="address to bind (server.host)")
    p.add_argument("--http-port", "--port", dest="http_port", type=int, help="REST port (server.http_port)")
    p.add_argument("--ws-port", dest="ws_port", type=int, help="WebSocket port (server.websocket_port)")
    p.add_argument(
        "--pool-workers", dest="pool_workers", type=int, help="inference worker processes (pool.workers)"
    )
    p.add_argument("--log-level", dest="log_level", help="logging.level")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamer", description="Real-time text-to-speech streaming server."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    check = sub.add_parser("config", help="configuration tools")
    check_sub = check.add_subparsers(dest="config_command", required=True)
    check_file = check_sub.add_parser("check", help="validate a config file and print why it is invalid")
    check_file.add_argument("file")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    path = args.config or os.environ.get("STREAMER_CONFIG")
    settings = load_settings(path)
    overrides: dict[str, Any] = {}
    for value, section, key in (
        (args.host, "server", "host"),
        (args.http_port, "server", "http_port"),
        (args.ws_port, "server", "websocket_port"),
        (args.pool_workers, "pool", "workers"),
        (args.log_level, "logging", "level"),
    ):
        if value is not None:
            overrides.setdefault(section, {})[key] = value
    if overrides:
        settings = validate(deep_merge(settings.model_dump(), overrides))
    return settings


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "config":
            load_settings(args.file, environ={})
            print(f"{args.file}: valid")
            return 0
        settings = settings_from_args(args)
    except ConfigError as exc:
        print(f"streamer: {exc.message}", file=sys.stderr)
        for error in exc.errors:
            print(f"  {'.'.join(error['loc'])}: {error['msg']}", file=sys.stderr)
        return 2
    if args.command == "serve":
        from .observability.logging import configure_logging
        from .server import serve

        configure_logging(settings.logging.level, settings.logging.format)
        serve(settings, args.config or os.environ.get("STREAMER_CONFIG"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
