"""Command line: `streamer serve`, `streamer say`, `streamer voices` and `streamer config check`.

One module per command, each with ``add_parser(sub)`` and ``run(args) -> exit status``; heavy imports
(engines, uvicorn, PyAV) happen inside the command that needs them.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import ConfigError, StreamerError
from . import config_check, say, serve, voices
from .settings import print_config_error, settings_from_args

__all__ = ["build_parser", "main", "settings_from_args"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamer", description="Real-time text-to-speech streaming server."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve.add_parser(sub)
    say.add_parser(sub)
    voices.add_parser(sub)
    config_check.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        commands = {"serve": serve.run, "say": say.run, "voices": voices.run, "config": config_check.run}
        return commands[args.command](args)
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
