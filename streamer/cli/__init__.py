"""Command line: `streamer serve`, `streamer say`, `streamer voices` and `streamer config check`.

One module per command, each with ``add_parser(sub)`` and ``run(args) -> exit status``; heavy imports
(engines, uvicorn, PyAV) happen inside the command that needs them.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..config import load_settings
from ..errors import ConfigError, StreamerError
from . import say, serve, voices
from .settings import print_config_error, settings_from_args

__all__ = ["build_parser", "main", "settings_from_args"]


def _config_parser(sub: Any) -> None:
    p = sub.add_parser("config", help="configuration tools")
    commands = p.add_subparsers(dest="config_command", required=True)
    check = commands.add_parser(
        "check", help="validate a config file and print why it is invalid", description=check_config.__doc__
    )
    check.add_argument("file")


def check_config(path: str) -> int:
    """Validate a config file on its own (packaged defaults under it; no STREAMER_* variables)."""
    try:
        settings = load_settings(path, environ={})
    except ConfigError as exc:
        print_config_error(exc, prefix=f"{path}: ")
        return 2
    server = settings.server
    workers = settings.pool.workers or "one per core"
    print(
        f"{path}: valid (engine {settings.tts.engine}, ports {server.http_port} and "
        f"{server.websocket_port}, inference workers: {workers})"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamer", description="Real-time text-to-speech streaming server."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve.add_parser(sub)
    say.add_parser(sub)
    voices.add_parser(sub)
    _config_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "config":
            return check_config(args.file)
        command = {"serve": serve.run, "say": say.run, "voices": voices.run}[args.command]
        return command(args)
    except ConfigError as exc:
        print_config_error(exc)
        return 2
    except StreamerError as exc:
        print(f"streamer: {exc.message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `streamer voices | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:
        print(f"streamer: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
