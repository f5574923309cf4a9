"""The engine interface: voices to list, a model to load once, and synthesis that yields PCM blocks."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import EngineError, InvalidField
from ..protocol import fields

# Synthesis checks this between blocks (and espeak inside the library's callback); True means stop now.
ShouldStop = Callable[[], bool]


@dataclass(frozen=True, slots=True)
class Voice:
    """One voice of one engine. ``name`` is what clients send (``en-us``, ``en_US-joe-medium``)."""

    name: str
    engine: str
    language: str  # BCP-47-ish, lower case: "en-us", "en", "es"
    sample_rate: int  # Hz of the PCM the engine yields for this voice
    gender: str | None = None  # "male" | "female" | None when unknown
    quality: str = "medium"  # "low" | "medium" | "high" | "x_low"
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Capabilities:
    streaming: bool = False  # yields audio inside a sentence, before the sentence is complete
    speed: bool = True
    pitch: bool = False
    blending: bool = False
    # Most cores one chunk can run on when SynthesisRequest.threads allows it; the pool keeps that many
    # of the cores it gave a chunk free of later chunks until it is done.
    threads: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, as taskset or a container's cpuset sets it
    (``os.cpu_count()`` counts the whole host's)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


@dataclass(slots=True)
class SynthesisRequest:
    """What a worker is asked to speak. Picklable: it crosses the process boundary."""

    text: str
    voice: fields.Voice  # a voice's name, or a blend of speaker names -> weights (Capabilities.blending)
    speed: float = 1.0  # checked by the engine with check_speed
    options: dict[str, Any] = field(default_factory=dict)
    # Cores this chunk may use, set by the pool when it hands the chunk out: the cores no running chunk
    # holds, less one per waiting chunk that could use one (at least 1). 0: not set; the engine uses its
    # own setting. Engines may use fewer (Capabilities.threads) or ignore it.
    threads: int = 0
    # Most audio this chunk may produce, in seconds (set by the pool, see audio_bound_s); 0: no bound. The
    # worker stops a chunk that passes it; engines that can foresee their audio's length refuse sooner.
    max_audio_s: float = 0.0


def audio_bound_s(text: str, speed: float, per_char_s: float, floor_s: float) -> float:
    """The most audio a chunk of ``text`` may produce: ``max(floor_s, characters × per_char_s)``, longer
    at a slower speed; 0 (no bound) when ``per_char_s`` is 0. Speech runs at 12 to 15 characters a second
    (numbers and symbols read by name, 3 to 5), so 1 s a character stops only text that no voice reads."""
    if per_char_s <= 0:
        return 0.0
    rate = speed if isinstance(speed, int | float) and speed > 0 else 1.0
    return max(floor_s, len(text) * per_char_s) / rate


def audio_bound_error(bound_s: float, chars: int) -> EngineError:
    """What a chunk that passes its audio bound fails with (code ``engine_error``)."""
    return EngineError(
        f"the engine produced more than {bound_s:.0f} s of audio for {chars} characters; "
        "the chunk was stopped"
    )


def check_speed(speed: float) -> float:
    """The request's speaking rate, checked the same way by every engine: a number in
    ``SPEED_MIN..SPEED_MAX``, the range sessions, REST, Wyoming and the CLI accept. Anything else
    reaching an engine is a caller's mistake, not a client's: ValueError."""
    if (
        isinstance(speed, bool)
        or not isinstance(speed, int | float)
        or not fields.SPEED_MIN <= speed <= fields.SPEED_MAX  # also false for nan
    ):
        raise ValueError(
            f"speed must be a number from {fields.SPEED_MIN} to {fields.SPEED_MAX}, got {speed!r}"
        )
    return float(speed)


def voice_name(request: SynthesisRequest, engine: str) -> str:
    """The one voice a request names, for engines that cannot blend: a blend is refused by name."""
    if isinstance(request.voice, str):
        return request.voice
    raise InvalidField(f"engine '{engine}' cannot blend voices; name one voice", field="voice")


@runtime_checkable
class Engine(Protocol):
    """A text-to-speech engine.

    ``voices()`` must be cheap and must not load a model: the server calls it in the event-loop
    process to validate voice names. ``load()`` and ``synthesize()`` run only in worker processes.
    """

    name: str
    capabilities: Capabilities

    def available(self) -> bool:
        """Whether the engine's libraries and at least one voice are installed."""
        ...

    def unavailable_reason(self) -> str | None:
        """None when ``available()``; else why not and what to do about it, in a line for a person
        ("no model files in /x/EN (no such folder): expected ..."). As cheap as ``available()``."""
        ...

    def voices(self) -> list[Voice]: ...

    def load(self) -> None:
        """Load models (idempotent). Raises EngineError with a clear message when it cannot."""
        ...

    def warmup(self) -> None: ...

    def synthesize(self, request: SynthesisRequest, should_stop: ShouldStop) -> Iterator[np.ndarray]:
        """Yield mono float32 PCM blocks in [-1, 1] at the voice's sample rate.

        Engines that can stream inside a sentence yield as they go; the others yield once per
        sentence. ``should_stop`` is polled between blocks: when it returns True the engine stops
        (mid-utterance where the library allows) and returns.
        """
        ...


@runtime_checkable
class BatchEngine(Engine, Protocol):
    """An engine that can synthesize several requests of one model in one pass (MeloTTS). The pool
    batches chunks only for these (``pool.max_batch`` > 1)."""

    def synthesize_batch(self, requests: list[SynthesisRequest]) -> list[np.ndarray]:
        """The whole audio of each request, computed together."""
        ...
