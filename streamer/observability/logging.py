"""structlog set-up: context variables first, ISO UTC time, JSON through orjson or a console renderer."""

from __future__ import annotations

import logging
import sys

import orjson
import structlog


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Configure structlog and the stdlib root logger (uvicorn's loggers go through it too)."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if fmt == "json":
        renderer: structlog.types.Processor = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        shared.append(structlog.processors.format_exc_info)
        factory: structlog.types.WrappedLogger = structlog.BytesLoggerFactory(sys.stderr.buffer)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        factory = structlog.PrintLoggerFactory(sys.stderr)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    root.setLevel(level.upper())
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)


def set_level(level: str) -> None:
    """Change the level of every logger at once (live config)."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper()))
    )
    logging.getLogger().setLevel(level.upper())
