"""The exception tree, each class carrying the stable code it maps to on the wire and over HTTP.

    StreamerError                      code            HTTP
     ├── ProtocolError                 (a client's message was wrong; the connection goes on)
     │    ├── InvalidMessage           invalid_message     400
     │    ├── UnknownType              unknown_type        400
     │    ├── InvalidField             invalid_field       422
     │    ├── UnsupportedProtocol      unsupported_protocol 400 (fatal on the WebSocket)
     │    ├── TextTooLong              text_too_long       413
     │    ├── MessageTooLarge          message_too_large   413
     │    └── RateLimited              rate_limited        429
     ├── UnknownVoice                  unknown_voice       422
     ├── UnknownEngine                 unknown_engine      422
     ├── UnsupportedFormat             unsupported_format  422
     ├── EngineError                   engine_error        500
     │    └── WorkerDied               engine_error        500 (a worker process exited mid-chunk)
     ├── OverloadedError               overloaded          503
     │    └── TooManySessions          too_many_sessions   503 (sessions.max_sessions are held)
     ├── SessionNotFound               session_not_found   404
     ├── InvalidToken                  invalid_token       401
     ├── SendTimeout                   send_timeout        (fatal on the WebSocket)
     ├── SessionClosed                 session_closed      (fatal on the WebSocket)
     ├── ConfigError                   invalid_field       422 (a config document failed validation)
     └── ConfigSaveFailed              config_save_failed  500 (the file is as it was)
          ├── ConfigNotWritable        config_not_writable 409 (read-only, no permission, not a folder)
          └── ConfigDiskFull           insufficient_storage 507 (no space, or the quota)

Client mistakes become an ``error`` event or an HTTP error body and the server goes on; programmer
misuse raises a precise ``RuntimeError`` instead.
"""

from __future__ import annotations

from typing import Any, ClassVar


class StreamerError(Exception):
    """Base of every error the server reports to a client."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500
    fatal: ClassVar[bool] = False

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ProtocolError(StreamerError):
    code = "invalid_message"
    http_status = 400


class InvalidMessage(ProtocolError):
    code = "invalid_message"


class UnknownType(ProtocolError):
    code = "unknown_type"


class InvalidField(ProtocolError):
    code = "invalid_field"
    http_status = 422


class UnsupportedProtocol(ProtocolError):
    code = "unsupported_protocol"
    fatal = True


class TextTooLong(ProtocolError):
    code = "text_too_long"
    http_status = 413


class MessageTooLarge(ProtocolError):
    code = "message_too_large"
    http_status = 413


class RateLimited(ProtocolError):
    code = "rate_limited"
    http_status = 429


class UnknownVoice(StreamerError):
    code = "unknown_voice"
    http_status = 422


class UnknownEngine(StreamerError):
    code = "unknown_engine"
    http_status = 422


class UnsupportedFormat(StreamerError):
    code = "unsupported_format"
    http_status = 422


class EngineError(StreamerError):
    code = "engine_error"
    http_status = 500


class WorkerDied(EngineError):
    """The worker process synthesizing a chunk exited before finishing it."""


class OverloadedError(StreamerError):
    code = "overloaded"
    http_status = 503


class SessionNotFound(StreamerError):
    code = "session_not_found"
    http_status = 404


class InvalidToken(StreamerError):
    code = "invalid_token"
    http_status = 401


class SendTimeout(StreamerError):
    code = "send_timeout"
    fatal = True


class SessionClosed(StreamerError):
    code = "session_closed"
    fatal = True


class ConfigError(StreamerError):
    """A configuration document failed validation; ``errors`` lists every bad field."""

    code = "invalid_field"
    http_status = 422

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class TooManySessions(OverloadedError):
    """``sessions.max_sessions`` are held: 503 with Retry-After over REST, a non-fatal error on ``start``."""

    code = "too_many_sessions"
    http_status = 503


class ConfigSaveFailed(StreamerError):
    """The configuration could not be written; the file is as it was. ``reason`` is the system's word."""

    code = "config_save_failed"
    http_status = 500


class ConfigNotWritable(ConfigSaveFailed):
    """The file or its folder cannot be written: a read-only file system, no permission, not a folder."""

    code = "config_not_writable"
    http_status = 409


class ConfigDiskFull(ConfigSaveFailed):
    """No space left (or the quota is used up) where the file lives."""

    code = "insufficient_storage"
    http_status = 507


def error_for_code(code: str, message: str) -> StreamerError:
    """The most general error class carrying ``code``, instantiated (errors crossing processes)."""
    level: list[type[StreamerError]] = [StreamerError]
    while level:
        for cls in level:
            if cls.code == code:
                return cls(message)
        level = [sub for cls in level for sub in cls.__subclasses__()]
    return EngineError(message)
