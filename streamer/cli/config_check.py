"""`streamer config check FILE`: the file against the schema, then the engine and default voice it names."""

from __future__ import annotations

import argparse
from typing import Any

from ..config import load_settings
from ..errors import ConfigError
from .settings import print_config_error


def add_parser(sub: Any) -> None:
    p = sub.add_parser("config", help="configuration tools")
    commands = p.add_subparsers(dest="config_command", required=True)
    check = commands.add_parser(
        "check", help="validate a config file and print why it is invalid", description=check_config.__doc__
    )
    check.add_argument("file")


def check_config(path: str) -> int:
    """Validate a config file on its own (packaged defaults under it; no STREAMER_* variables), and
    check on this machine what `serve` checks as it starts: that tts.engine can run, which engine `auto`
    picks and why, and that tts.default_voice is a voice of that engine."""
    from ..runtime import Runtime  # here: `streamer --help` loads no engine code

    try:
        settings = load_settings(path, environ={})
        runtime = Runtime(settings)  # refuses an engine that cannot run, a default voice it lacks
    except ConfigError as exc:
        print_config_error(exc, prefix=f"{path}: ")
        return 2
    server = settings.server
    workers = settings.pool.workers or "one per core"
    print(
        f"{path}: valid (engine {runtime.catalog.default_engine}, ports {server.http_port} and "
        f"{server.websocket_port}, inference workers: {workers})"
    )
    print(f"  engine: {runtime.catalog.describe_choice()}")
    return 0


def run(args: argparse.Namespace) -> int:
    return check_config(args.file)
