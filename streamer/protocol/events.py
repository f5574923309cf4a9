"""Server -> client messages as typed events, each with its own ``to_wire()``. No I/O.

The fields and their order are docs/protocol.md's. Two fields are filled in by whoever sends the event,
not by whoever makes it, because only the sender knows them: an audio frame's ``seq`` and the ``seq_last``
of ``chunk_end``/``done`` (numbers are given as frames leave, so they have no gaps), and the ``last_seq``
of ``interrupted`` (the last frame that really went out before it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .fields import Voice

PROTOCOL_VERSION = 1

# WebSocket close codes the server uses (RFC 6455 section 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008  # rate-limit abuse, send timeout, a fatal protocol error
CLOSE_TOO_BIG = 1009  # a message over limits.max_message_bytes
CLOSE_SERVER_ERROR = 1011
CLOSE_RESTART = 1012  # the server is shutting down
CLOSE_TRY_AGAIN = 1013  # the server is at its connection limit


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """The audio a session's frames carry (``ready.audio``, ``configured.audio``)."""

    format: str
    sample_rate: int  # Hz of the encoded audio (a codec may round the requested rate up)
    channels: int = 1

    def to_wire(self) -> dict[str, Any]:
        return {"format": self.format, "sample_rate": self.sample_rate, "channels": self.channels}


@dataclass(frozen=True, slots=True)
class Ready:
    """A session started or resumed; the answer to ``start`` (or to the first message, implicitly)."""

    type: ClassVar[str] = "ready"
    session_id: str
    resume_token: str
    generation: int
    engine: str
    voice: Voice
    language: str
    speed: float
    text_offset: int  # characters of the session's text taken so far
    last_seq: int | None
    audio: AudioFormat
    protocol: int = PROTOCOL_VERSION

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "session_id": self.session_id,
            "resume_token": self.resume_token,
            "protocol": self.protocol,
            "generation": self.generation,
            "engine": self.engine,
            "voice": self.voice,
            "language": self.language,
            "speed": self.speed,
            "text_offset": self.text_offset,
            "last_seq": self.last_seq,
            "audio": self.audio.to_wire(),
        }


@dataclass(frozen=True, slots=True)
class Configured:
    """A ``config`` message applied; ``audio`` is what the next turn will carry."""

    type: ClassVar[str] = "configured"
    engine: str
    voice: Voice
    language: str
    speed: float
    audio: AudioFormat

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "engine": self.engine,
            "voice": self.voice,
            "language": self.language,
            "speed": self.speed,
            "audio": self.audio.to_wire(),
        }


@dataclass(frozen=True, slots=True)
class ChunkStart:
    type: ClassVar[str] = "chunk_start"
    generation: int
    chunk: int  # the chunk's number in its generation
    text: str
    text_start: int  # offsets into the session's text
    text_end: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "generation": self.generation,
            "chunk": self.chunk,
            "text": self.text,
            "text_start": self.text_start,
            "text_end": self.text_end,
        }


@dataclass(slots=True)
class Audio:
    """One encoded frame. ``samples`` counts what went into the encoder since the previous frame."""

    type: ClassVar[str] = "audio"
    generation: int
    format: str
    sample_rate: int
    samples: int
    text_start: int | None  # the span this frame speaks; None for a codec's tail at a turn's end
    text_end: int | None
    data: bytes
    seq: int | None = None  # given by the sender

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "generation": self.generation,
            "format": self.format,
            "sample_rate": self.sample_rate,
            "samples": self.samples,
            "text_start": self.text_start,
            "text_end": self.text_end,
            "data": self.data,
            "seq": self.seq,
        }


@dataclass(slots=True)
class ChunkEnd:
    type: ClassVar[str] = "chunk_end"
    generation: int
    chunk: int
    audio_ms: float
    synth_ms: float
    first_block_ms: float
    queue_ms: float | None  # None when the chunk never reached a worker
    seq_last: int | None = None  # given by the sender

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "generation": self.generation,
            "chunk": self.chunk,
            "audio_ms": self.audio_ms,
            "synth_ms": self.synth_ms,
            "first_block_ms": self.first_block_ms,
            "queue_ms": self.queue_ms,
            "seq_last": self.seq_last,
        }


@dataclass(slots=True)
class Done:
    """A turn (up to a ``flush`` or ``end``) fully sent."""

    type: ClassVar[str] = "done"
    generation: int
    audio_ms: float
    rejected: bool = False  # the pool refused the turn (`overloaded`): nothing of it was spoken
    id: str | int | None = None  # the id of the flush/end/text message that ended the turn
    seq_last: int | None = None  # given by the sender

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": self.type, "generation": self.generation, "audio_ms": self.audio_ms}
        if self.rejected:
            wire["rejected"] = True
        if self.id is not None:
            wire["id"] = self.id
        wire["seq_last"] = self.seq_last
        return wire


@dataclass(slots=True)
class Interrupted:
    """Barge-in acknowledged: nothing of an older generation follows this event."""

    type: ClassVar[str] = "interrupted"
    generation: int
    last_seq: int | None = None  # given by the sender: the last frame that went out before this

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "generation": self.generation, "last_seq": self.last_seq}


@dataclass(frozen=True, slots=True)
class Pong:
    type: ClassVar[str] = "pong"
    id: str | int | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id}


@dataclass(frozen=True, slots=True)
class Error:
    """Something went wrong; ``fatal`` errors are followed by the connection's close."""

    type: ClassVar[str] = "error"
    code: str  # stable: the codes of streamer.errors
    message: str
    fatal: bool
    id: str | int | None = None  # the id of the client message it answers, when it had one
    details: dict[str, Any] = field(default_factory=dict)  # e.g. text_start, retry_after, field

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "type": self.type,
            "code": self.code,
            "message": self.message,
            "fatal": self.fatal,
        }
        if self.id is not None:
            wire["id"] = self.id
        for key, value in self.details.items():
            wire.setdefault(key, value)  # details never overwrite the event's own fields
        return wire


ServerEvent = Ready | Configured | ChunkStart | Audio | ChunkEnd | Done | Interrupted | Pong | Error


def error_event(code: str, message: str, fatal: bool, id: str | int | None = None, **details: Any) -> Error:
    """An ``error`` event; extra keyword arguments are its details."""
    return Error(code, message, fatal, id, details)
