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
        # The same JSON for the stdlib loggers (uvicorn, asyncio, libraries), as text for their handler.
        line_renderer: structlog.types.Processor = structlog.processors.JSONRenderer(serializer=_json_text)
        shared.append(structlog.processors.format_exc_info)
        factory: structlog.types.WrappedLogger = structlog.BytesLoggerFactory(sys.stderr.buffer)
    else:
        renderer = line_renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        factory = structlog.PrintLoggerFactory(sys.stderr)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    # Records of stdlib loggers go through the same processors, so with `json` every line on stderr is
    # one JSON object, uvicorn's startup and access lines included ("logger" names where they came from).
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, line_renderer],
        )
    )
    root = logging.getLogger()
    root.setLevel(level.upper())
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:  # configured before
        root.removeHandler(old)
    if not root.handlers:  # a test runner's capturing handler stays alone
        root.addHandler(handler)


_HANDLER_NAME = "streamer"


def _json_text(obj: object, **kwargs: object) -> str:
    return orjson.dumps(obj, default=str).decode()


def set_level(level: str) -> None:
    """Change the level of every logger at once (live config)."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper()))
    )
    logging.getLogger().setLevel(level.upper())
