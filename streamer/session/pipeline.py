"""The turn pipeline: chunks in text order, the next few already in the pool, each played into an encoder.

    chunks (text order) ──submit_ahead──> pool jobs (at most ``limit`` at once)
        ──ChunkPlayback──> ChunkShaper (click-free joins) ──> a frame at a time ──> StreamingEncoder ──> bytes

A WebSocket session keeps one ``Pipeline`` per generation (replaced whole on barge-in); a one-shot
synthesis (``oneshot.py``) is one turn of one pipeline. Both play chunks with ``ChunkPlayback``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..audio import PHRASE_GAP_MS, ChunkShaper, StreamingEncoder, split_frames
from ..engines.base import SynthesisRequest
from ..engines.catalog import ResolvedVoice
from ..errors import OverloadedError
from ..pool import Job, WorkerPool
from ..text import Chunk


@dataclass(eq=False)
class ChunkEntry:
    chunk: Chunk
    turn: int
    voice: ResolvedVoice
    speed: float
    audio: tuple[str, int]  # format, requested sample rate of the chunk's turn
    job: Job | None = None
    created_at: float = field(default_factory=time.perf_counter)


@dataclass(eq=False)
class TurnEnd:
    turn: int
    kind: Literal["flush", "end"]
    id: str | int | None
    audio: tuple[str, int]


def submit(
    pool: WorkerPool, key: str, chunk: Chunk, voice: ResolvedVoice, speed: float, batch_key: str | None = None
) -> Job:
    """Hand one chunk to the pool under the fair-scheduling ``key`` (a session's id)."""
    request = SynthesisRequest(text=chunk.text, voice=voice.voice, speed=speed)
    return pool.submit(key, voice.engine, request, first=chunk.first, batch_key=batch_key)


@dataclass(eq=False)
class Pipeline:
    """The work of one generation. Replaced whole on interrupt; the old one is discarded."""

    generation: int
    entries: deque[ChunkEntry | TurnEnd] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    encoder: StreamingEncoder | None = None
    rejected_turns: set[int] = field(default_factory=set)
    chunk_counter: int = 0
    # The current turn's figures, for its summary line and the metrics.
    turn_audio_ms: float = 0.0
    samples_reported: int = 0  # of the encoder's samples, those already counted in an audio frame
    turn_started_at: float | None = None  # when the turn's first chunk was cut from the text
    turn_first_audio_ms: float | None = None
    turn_synth_ms: float = 0.0
    turn_chunks: int = 0

    def push(self, entry: ChunkEntry | TurnEnd) -> None:
        self.entries.append(entry)
        self.wake.set()

    def discard(self, pool: WorkerPool) -> None:
        """Cancel every job still in the pool (waiting or mid-chunk) and abandon the encoder."""
        for entry in self.entries:
            if isinstance(entry, ChunkEntry) and entry.job is not None:
                pool.cancel(entry.job)
        self.entries.clear()
        if self.encoder is not None:
            self.encoder.close()
            self.encoder = None

    @property
    def queued_chars(self) -> int:
        """Characters of the client's text queued (a chunk's spoken text may be shorter, normalised)."""
        return sum(e.chunk.end - e.chunk.start for e in self.entries if isinstance(e, ChunkEntry))

    @property
    def chunks_queued(self) -> int:
        return sum(1 for e in self.entries if isinstance(e, ChunkEntry))

    def has_turn(self, turn: int) -> bool:
        return any(e.turn == turn for e in self.entries)

    def submit_ahead(
        self, pool: WorkerPool, key: str, limit: int, batch_key: Callable[[ResolvedVoice], str | None]
    ) -> list[tuple[ChunkEntry, OverloadedError]]:
        """Keep up to ``limit`` chunks in the pool; returns the chunks whose turn the pool refused.

        A turn's first chunk is admitted first (``pool.admit()``): a full pool refuses the whole turn up
        to its flush, never half a sentence.
        """
        refused: list[tuple[ChunkEntry, OverloadedError]] = []
        inflight = 0
        for entry in self.entries:
            if not isinstance(entry, ChunkEntry) or entry.turn in self.rejected_turns:
                continue
            if entry.job is None:
                if inflight >= limit:
                    break
                try:
                    if entry.chunk.first:
                        pool.admit()
                    entry.job = submit(
                        pool, key, entry.chunk, entry.voice, entry.speed, batch_key(entry.voice)
                    )
                except OverloadedError as exc:  # a full queue, or the pool shutting down
                    self.rejected_turns.add(entry.turn)
                    refused.append((entry, exc))
                    continue
            inflight += 1
        return refused


class ChunkPlayback:
    """One synthesized chunk through a ``ChunkShaper`` and into ``encoder``, a frame at a time.

    ``frames()`` yields ``(samples, data)`` per frame put into the encoder: how many samples went in,
    and the bytes that came out (a codec may hold some back: then ``data`` is empty). ``audio_ms``
    counts the engine's own audio, before the shaper trims or pads the joins.
    """

    def __init__(self, job: Job, chunk: Chunk, voice_rate: int, encoder: StreamingEncoder, frame_ms: int):
        self.job = job
        self.chunk = chunk
        self.encoder = encoder
        self.frame_ms = frame_ms
        self.rate = voice_rate
        self.audio_ms = 0.0
        self._shaper = ChunkShaper()
        # A chunk cut inside a phrase keeps only a short gap at its end, not a sentence's pause.
        self._shaper.start_chunk(voice_rate, tail_ms=None if chunk.pause else PHRASE_GAP_MS)

    async def frames(self) -> AsyncIterator[tuple[int, bytes]]:
        async with contextlib.aclosing(self.job.blocks()) as blocks:
            async for rate, block in blocks:
                self.rate = rate
                self.audio_ms += len(block) * 1000 / rate
                for frame in self._encode(self._shaper.process(block)):
                    yield frame
                    # Putting a frame in a queue with room does not suspend: without this, a burst of
                    # blocks would go out in one loop step while every other session waits.
                    await asyncio.sleep(0)
        for frame in self._encode(self._shaper.end_chunk()):
            yield frame

    def _encode(self, pcm: np.ndarray) -> Iterator[tuple[int, bytes]]:
        rate = self.rate
        for piece in split_frames(pcm, max(1, rate * self.frame_ms // 1000)):
            yield len(piece), self.encoder.encode(piece, rate)  # lazily: the first frame leaves first
