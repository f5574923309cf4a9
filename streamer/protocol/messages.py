"""Wire protocol v1: client messages parsed and checked, server messages built. No I/O.

Every message is an object with a ``type``. See docs/protocol.md for the flows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidField, TextTooLong, UnknownType, UnsupportedProtocol

PROTOCOL_VERSION = 1
CONFIG_KEYS = ("engine", "voice", "voice_id", "language", "speed", "format", "sample_rate")


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """A partial session configuration: only the keys the client sent are not None."""

    engine: str | None = None
    voice: str | dict[str, float] | None = None
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
    voice = raw.get("voice")
    if isinstance(voice, dict):
        if not voice or not all(
            isinstance(k, str) and isinstance(w, int | float) and not isinstance(w, bool)
            for k, w in voice.items()
        ):
            raise InvalidField(
                f"field '{where}.voice' as a blend must map speaker names to numeric weights",
                field=f"{where}.voice",
            )
        voice = {k: float(w) for k, w in voice.items()}
    elif voice is not None and not isinstance(voice, str):
        raise InvalidField(
            f"field '{where}.voice' must be a string or a blend object", field=f"{where}.voice"
        )
    speed = _get(raw, "speed", (int, float))
    if speed is not None and not 0.25 <= speed <= 4.0:
        raise InvalidField(f"field '{where}.speed' must be between 0.25 and 4.0", field=f"{where}.speed")
    voice_id = _get(raw, "voice_id", int)
    if voice_id is not None and voice_id < 0:
        raise InvalidField(f"field '{where}.voice_id' must be 0 or more", field=f"{where}.voice_id")
    sample_rate = _get(raw, "sample_rate", int)
    if sample_rate is not None and not 8000 <= sample_rate <= 48000:
        raise InvalidField(
            f"field '{where}.sample_rate' must be between 8000 and 48000", field=f"{where}.sample_rate"
        )
    return SessionConfig(
        engine=_get(raw, "engine", str),
        voice=voice,
        voice_id=voice_id,
        language=_get(raw, "language", str),
        speed=float(speed) if speed is not None else None,
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


# ---- server -> client ---------------------------------------------------------------------------


def error_event(
    code: str, message: str, fatal: bool, id: str | int | None = None, **extra: Any
) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "error", "code": code, "message": message, "fatal": fatal}
    if id is not None:
        event["id"] = id
    for key, value in extra.items():
        event.setdefault(key, value)  # details never overwrite the event's own fields
    return event
