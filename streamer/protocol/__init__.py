"""The WebSocket wire protocol, sans I/O: parse and check client messages, build and encode server ones."""

from .codec import decode, encode
from .limits import RateLimiter
from .messages import (
    PROTOCOL_VERSION,
    ClientMessage,
    Config,
    End,
    Flush,
    Interrupt,
    Ping,
    SessionConfig,
    Start,
    Text,
    error_event,
    parse,
    parse_config,
)

__all__ = [
    "PROTOCOL_VERSION",
    "ClientMessage",
    "Config",
    "End",
    "Flush",
    "Interrupt",
    "Ping",
    "RateLimiter",
    "SessionConfig",
    "Start",
    "Text",
    "decode",
    "encode",
    "error_event",
    "parse",
    "parse_config",
]
