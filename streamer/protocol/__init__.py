"""The WebSocket wire protocol, sans I/O: client messages, typed server events, the session state machine."""

from .codec import decode, encode
from .events import PROTOCOL_VERSION, ServerEvent, error_event
from .limits import RateLimiter
from .messages import (
    ClientMessage,
    Config,
    End,
    Flush,
    Interrupt,
    Ping,
    SessionConfig,
    Start,
    Text,
    parse,
    parse_config,
)
from .session import SessionProtocol

__all__ = [
    "PROTOCOL_VERSION",
    "ClientMessage",
    "Config",
    "End",
    "Flush",
    "Interrupt",
    "Ping",
    "RateLimiter",
    "ServerEvent",
    "SessionConfig",
    "SessionProtocol",
    "Start",
    "Text",
    "decode",
    "encode",
    "error_event",
    "parse",
    "parse_config",
]
