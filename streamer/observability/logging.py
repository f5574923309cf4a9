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
    quiet_client_errors()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                *shared,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(allow=_CLIENT_ERROR_FIELDS),
            ],
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


# uvicorn's own lines about bad client input: each logged at ERROR with a traceback, so any client could
# fill the log. uvicorn closes the connection at the first one (an invalid UTF-8 text frame: 1007, as
# RFC 6455 asks), so as rewritten here each is one warning per connection, with the count, and no traceback.
_CLIENT_ERRORS = {"Invalid UTF-8 sequence received from client.": "invalid_utf8_text_frame"}
_CLIENT_ERROR_FIELDS = ("path", "reason", "count")


class _ClientErrorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        reason = _CLIENT_ERRORS.get(record.msg) if isinstance(record.msg, str) else None
        if reason is not None:
            record.msg, record.args = "malformed_input", ()
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
            record.path, record.reason, record.count = "websocket", reason, 1
        return True


def quiet_client_errors() -> None:
    """Rewrite uvicorn's tracebacks about a client's malformed frames as one `malformed_input` warning."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _ClientErrorFilter) for f in logger.filters):
        logger.addFilter(_ClientErrorFilter())


def _json_text(obj: object, **kwargs: object) -> str:
    return orjson.dumps(obj, default=str).decode()


def set_level(level: str) -> None:
    """Change the level of every logger at once (live config)."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper()))
    )
    logging.getLogger().setLevel(level.upper())
