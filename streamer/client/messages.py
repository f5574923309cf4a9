"""What the server sends, as the client hands it out: audio frames, events, whole turns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """One `audio` message. Concatenated, the frames of one turn form one complete file (or raw PCM)."""

    data: bytes
    seq: int  # gap-free across the session
    generation: int
    format: str  # pcm (s16le) | wav | ogg | mp3 | flac | aac
    sample_rate: int  # Hz
    samples: int  # samples the bytes stand for (a codec may hold a few back for the next frame)
    text_start: int | None  # span of the session's text this frame speaks, in code points
    text_end: int | None
    received_at: float  # time.perf_counter() when it arrived
    type: Literal["audio"] = "audio"

    @property
    def duration_ms(self) -> float:
        return self.samples * 1000 / self.sample_rate if self.sample_rate else 0.0

    @classmethod
    def from_wire(cls, message: dict[str, Any], received_at: float, generation: int) -> AudioFrame:
        """An `audio` message as decoded; ``generation`` stands in when the message has none."""
        given = message.get("generation")
        return cls(
            data=message["data"],
            seq=message["seq"],
            generation=given if isinstance(given, int) else generation,
            format=message["format"],
            sample_rate=message["sample_rate"],
            samples=message["samples"],
            text_start=message.get("text_start"),
            text_end=message.get("text_end"),
            received_at=received_at,
        )


@dataclass(frozen=True, slots=True)
class Event:
    """Any other server message (`ready`, `chunk_start`, `done`, `interrupted`, `error`, ...)."""

    type: str
    data: dict[str, Any]  # the message as received
    received_at: float  # time.perf_counter()
    latency_ms: float | None = None  # for a reply to this client's request: request sent -> reply

    @property
    def generation(self) -> int | None:
        value = self.data.get("generation")
        return value if isinstance(value, int) else None

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


Message = AudioFrame | Event


@dataclass(eq=False)
class Turn:
    """Everything received for one turn of speech, from the first text sent to `done` or `interrupted`."""

    id: str
    generation: int
    sent_at: float  # time.perf_counter() when its first text was sent
    text: str = ""
    frames: list[AudioFrame] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)  # everything else, in order
    done: Event | None = None
    interrupted: Event | None = None
    finished_at: float | None = None

    @property
    def audio(self) -> bytes:
        return b"".join(frame.data for frame in self.frames)

    @property
    def completed(self) -> bool:
        return self.done is not None and not self.done.get("rejected")

    @property
    def rejected(self) -> bool:
        """The server had no room for the turn (`overloaded`); nothing of it was spoken."""
        return self.done is not None and bool(self.done.get("rejected"))

    @property
    def errors(self) -> list[Event]:
        return [event for event in self.events if event.type == "error"]

    @property
    def format(self) -> str | None:
        return self.frames[0].format if self.frames else None

    @property
    def sample_rate(self) -> int | None:
        return self.frames[0].sample_rate if self.frames else None

    @property
    def audio_ms(self) -> float:
        return sum(frame.duration_ms for frame in self.frames)

    @property
    def ttfa_ms(self) -> float | None:
        """Time to first audio: first text sent -> first audio frame received."""
        return (self.frames[0].received_at - self.sent_at) * 1000 if self.frames else None

    def _add(self, message: Message) -> None:
        if isinstance(message, AudioFrame):
            self.frames.append(message)
        else:
            self.events.append(message)


@dataclass(slots=True)
class ClientStats:
    frames: int = 0  # audio frames received and kept
    dropped: int = 0  # data messages of an interrupted generation, dropped
    stale_after_ack: int = 0  # ... of those, ones that arrived after the server acknowledged (never, ideally)
    interrupts: int = 0  # `interrupted` events received (this client's and REST ones)
