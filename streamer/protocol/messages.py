"""Wire protocol v1: client messages parsed and checked into typed messages. No I/O.

Every message is an object with a ``type``. See docs/protocol.md for the flows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidField, TextTooLong, UnknownType, UnsupportedProtocol
from .events import PROTOCOL_VERSION
from .fields import CONFIG_KEYS, Voice, check_sample_rate, check_speed, check_voice


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """A partial session configuration: only the keys the client sent are not None."""

    engine: str | None = None
    voice: Voice | None = None
    voice_id: int | None = None  # index of a voice in its language's list (REST contract)
    language: str | None = None
    speed: float | None = None
    format: str | None = None
    sample_rate: int | None = None

    def items(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in CONFIG_KEYS if getattr(self, k) is not None}


@dataclass(frozen=True, slots=True)
class Start:
    protocol: int = PROTOCOL_VERSION
    session_id: str | None = None
    resume_token: str | None = None
    config: SessionConfig = field(default_factory=SessionConfig)


@dataclass(frozen=True, slots=True)
class Text:
    text: str
    flush: bool = False
    id: str | int | None = None


@dataclass(frozen=True, slots=True)
class Flush:
    id: str | int | None = None


@dataclass(frozen=True, slots=True)
class Interrupt:
    pass


@dataclass(frozen=True, slots=True)
class Config:
    config: SessionConfig


@dataclass(frozen=True, slots=True)
class End:
    id: str | int | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    id: str | int | None = None


ClientMessage = Start | Text | Flush | Interrupt | Config | End | Ping


def _get(obj: dict[str, Any], key: str, types: type | tuple[type, ...], default: Any = None) -> Any:
    value = obj.get(key, default)
    if value is None:
        return default
    # bool is an int in Python; a flag sent as a number (or a number as a flag) is still a mistake.
    wrong_bool = isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,))
    if not isinstance(value, types) or wrong_bool:
        names = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise InvalidField(f"field '{key}' must be {names}", field=key)
    return value


def _message_id(obj: dict[str, Any]) -> str | int | None:
    return _get(obj, "id", (str, int))


def parse_config(raw: Any, where: str = "config") -> SessionConfig:
    if raw is None:
        return SessionConfig()
    if not isinstance(raw, dict):
        raise InvalidField(f"field '{where}' must be an object", field=where)
    voice = check_voice(raw.get("voice"), f"{where}.voice")
    speed = check_speed(raw.get("speed"), f"{where}.speed")
    voice_id = _get(raw, "voice_id", int)
    if voice_id is not None and voice_id < 0:
        raise InvalidField(f"field '{where}.voice_id' must be 0 or more", field=f"{where}.voice_id")
    sample_rate = check_sample_rate(raw.get("sample_rate"), f"{where}.sample_rate")
    return SessionConfig(
        engine=_get(raw, "engine", str),
        voice=voice,
        voice_id=voice_id,
        language=_get(raw, "language", str),
        speed=speed,
        format=_get(raw, "format", str),
        sample_rate=sample_rate,
    )


def parse(obj: dict[str, Any], max_text_chars: int) -> ClientMessage:
    """A decoded message object as a typed client message, or a ProtocolError with a stable code."""
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise InvalidField("field 'type' is required and must be a string", field="type")
    if kind == "text":
        text = obj.get("text")
        if not isinstance(text, str):
            raise InvalidField("field 'text' is required and must be a string", field="text")
        if len(text) > max_text_chars:
            raise TextTooLong(f"text of {len(text)} characters is over the limit of {max_text_chars}")
        return Text(text=text, flush=bool(_get(obj, "flush", bool, False)), id=_message_id(obj))
    if kind == "flush":
        return Flush(id=_message_id(obj))
    if kind == "interrupt":
        return Interrupt()
    if kind == "ping":
        return Ping(id=_message_id(obj))
    if kind == "end":
        return End(id=_message_id(obj))
    if kind == "config":
        if "config" not in obj:
            raise InvalidField("field 'config' is required", field="config")
        return Config(config=parse_config(obj["config"]))
    if kind == "start":
        version = _get(obj, "protocol", int, PROTOCOL_VERSION)
        if version != PROTOCOL_VERSION:
            raise UnsupportedProtocol(
                f"protocol {version} is not supported; this server speaks {PROTOCOL_VERSION}"
            )
        session_id = _get(obj, "session_id", str)
        resume_token = _get(obj, "resume_token", str)
        if (session_id is None) != (resume_token is None):
            raise InvalidField("'session_id' and 'resume_token' go together", field="resume_token")
        return Start(
            protocol=version,
            session_id=session_id,
            resume_token=resume_token,
            config=parse_config(obj.get("config")),
        )
    raise UnknownType(f"unknown message type '{kind}'", received_type=kind)
