"""Settings for a command: the config tree (defaults, --config FILE, env) with the command line on top."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..config import Settings, deep_merge, load_settings, validate
from ..errors import ConfigError

# Command-line options that set a key of the config tree.
OVERRIDES = (
    ("host", "server", "host"),
    ("http_port", "server", "http_port"),
    ("ws_port", "server", "websocket_port"),
    ("pool_workers", "pool", "workers"),
    ("wyoming_port", "wyoming", "port"),
    ("log_level", "logging", "level"),
)


def config_path_of(args: argparse.Namespace) -> str | None:
    return getattr(args, "config", None) or os.environ.get("STREAMER_CONFIG")


def overrides_of(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for name, section, key in OVERRIDES:
        value = getattr(args, name, None)
        if value is not None:
            overrides.setdefault(section, {})[key] = value
    return overrides


def load(config_path: str | None, overrides: dict[str, Any]) -> Settings:
    settings = load_settings(config_path)
    if overrides:
        settings = validate(deep_merge(settings.model_dump(), overrides))
    return settings


def settings_from_args(args: argparse.Namespace) -> Settings:
    return load(config_path_of(args), overrides_of(args))


def print_config_error(exc: ConfigError, prefix: str = "streamer: ") -> None:
    """The reason, or one line per invalid field."""
    if not exc.errors:
        print(f"{prefix}{exc.message}", file=sys.stderr)
        return
    print(f"{prefix}invalid configuration", file=sys.stderr)
    for error in exc.errors:
        print(f"  {'.'.join(error['loc'])}: {error['msg']}", file=sys.stderr)
