"""One-shot synthesis: a whole text through the pool and one encoder, out as the bytes of one audio file.

    text ──> Chunker (push + flush) ──> pool jobs, at most ``pool.max_inflight_per_session`` at once
         ──> ChunkShaper per chunk ──> one StreamingEncoder, a frame at a time ──> bytes, as they come

The REST routes (``/api/v1/synth``, ``/v1/audio/speech``) drive it; it reuses the pieces a WebSocket turn
uses (chunker, pool, shaper, encoder) without the session machinery: no generations, no barge-in.

- **Pace.** ``stream()`` is a plain async generator: bytes are made only as fast as they are taken, and
  no more than ``max_inflight_per_session`` chunks sit in the pool ahead of the consumer.
- **Admission** comes first: ``admit()`` refuses with ``OverloadedError`` (503 + Retry-After) before any
  byte is promised. The pool sees the text as one session of its own, so the fair scheduler interleaves
  it with WebSocket sessions instead of letting a long text starve them.
- **Ending early.** When the consumer stops (a client that disconnects: the response's generator is
  cancelled or closed) the generator's ``finally`` cancels every job still in the pool, waiting or
  mid-chunk, and abandons the encoder.
- **A chunk that fails** in the pool (engine error, worker death) ends the stream with that
  ``StreamerError``. Unlike a WebSocket turn, which reports the skipped span in an ``error`` event, a file
  has no place to say a sentence is missing: audio with a hole in it would be a lie. Before the first byte
  the caller can still answer with an error status; after it, the only honest thing is to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from typing import Literal

import structlog

from ..audio import MIME_TYPES, StreamingEncoder, output_sample_rate
from ..engines.catalog import ResolvedVoice
from ..errors import OverloadedError, StreamerError
from ..pool import Job
from ..text import Chunk, Chunker
from .host import SessionHost
from .pipeline import ChunkPlayback, submit

log = structlog.get_logger(__name__)

Outcome = Literal["pending", "done", "failed", "cancelled"]


def admit(runtime: SessionHost) -> None:
    """Refuse new one-shot work with ``OverloadedError`` when the server drains or its queue is full."""
    if runtime.draining:
        raise OverloadedError("the server is shutting down", retry_after=5)
    runtime.pool.admit()


def voice_label(voice: ResolvedVoice) -> str:
    """A voice as one header-safe string: its name, or ``name:weight,...`` for a blend."""
    if isinstance(voice.voice, str):
        return voice.voice
    return ",".join(f"{name}:{weight:.3g}" for name, weight in voice.voice.items())


class OneShot:
    """One text, synthesized start to end into one audio file. Streams once.

    ``text`` is the whole text, or an async iterator of pieces (a language model's tokens, Wyoming's
    ``synthesize-chunk``s): then chunks go to the pool as the chunker cuts them, so audio starts before
    the text has all arrived.
    """

    def __init__(
        self,
        runtime: SessionHost,
        text: str | AsyncIterator[str],
        voice: ResolvedVoice,
        speed: float,
        fmt: str,
        sample_rate: int,
        path: str = "synth",
    ) -> None:
        self.runtime = runtime
        self.path = path  # which API asked, for the metrics: synth, speech or wyoming
        self.voice = voice
        self.speed = speed
        self.format = fmt
        self.requested_rate = sample_rate
        self.sample_rate = output_sample_rate(fmt, sample_rate)  # validates fmt
        self.mime_type = MIME_TYPES[fmt]
        settings = runtime.settings
        self._chunker = Chunker(
            first_chunk_chars=settings.chunker.first_chunk_chars,
            max_chunk_chars=settings.chunker.max_chunk_chars,
        )
        self._feed: AsyncIterator[str] | None = None
        if isinstance(text, str):
            self.chunks = [*self._chunker.push(text), *self._chunker.flush()]
            self.chars = len(text)
        else:
            self.chunks, self.chars, self._feed = [], 0, text
        self.outcome: Outcome = "pending"
        self.error: StreamerError | None = None
        self.ttfa_ms: float | None = None  # from the start of stream() to the first bytes of audio
        self.synth_ms = 0.0
        # Its own key in the pool's fair scheduler (and never a client-chosen one, which could collide).
        self._key = f"oneshot-{uuid.uuid4().hex[:16]}"
        self._frame_ms = settings.audio.frame_ms
        # One more than a session: the whole text is known, and a chunk waiting in the pool when the
        # one before it finishes tells the pool to run them side by side rather than each on every core.
        self._max_inflight = settings.pool.max_inflight_per_session + 1
        # Submitted, in text order, each with its chunk; the first is the one being played.
        self._jobs: deque[tuple[Job, Chunk]] = deque()
        self._encoder: StreamingEncoder | None = None
        self._streamed = False

    @property
    def duration_s(self) -> float:
        """Seconds of audio encoded so far (all of it once the stream has ended)."""
        encoder = self._encoder
        return encoder.samples_out / encoder.sample_rate if encoder is not None else 0.0

    @property
    def bytes_out(self) -> int:
        return self._encoder.bytes_out if self._encoder is not None else 0

    async def stream(self) -> AsyncIterator[bytes]:
        """The file's bytes as they are encoded; concatenated, one complete file."""
        if self._streamed:
            raise RuntimeError("a OneShot streams once")
        self._streamed = True
        pool = self.runtime.pool
        self._encoder = encoder = StreamingEncoder(self.format, self.requested_rate)
        pending = deque(self.chunks)
        arrived = asyncio.Event()
        feeder = asyncio.create_task(self._take_feed(pending, arrived)) if self._feed is not None else None
        started = time.perf_counter()
        try:
            while pending or self._jobs or (feeder is not None and not feeder.done()):
                while pending and len(self._jobs) < self._max_inflight:
                    chunk = pending.popleft()
                    self._jobs.append((submit(pool, self._key, chunk, self.voice, self.speed), chunk))
                if not self._jobs:  # the text so far is spoken: wait for more
                    arrived.clear()
                    if not pending and feeder is not None and not feeder.done():
                        await arrived.wait()
                    continue
                job, chunk = self._jobs[0]
                playback = ChunkPlayback(job, chunk, self.voice.sample_rate, encoder, self._frame_ms)
                async for _, data in playback.frames():
                    if data:
                        if self.ttfa_ms is None:
                            self.ttfa_ms = (time.perf_counter() - started) * 1000
                        yield data
                self._jobs.popleft()
                self.synth_ms += job.timings.get("synth_ms") or 0.0
            if feeder is not None:
                await feeder  # raises what the text source raised
            tail = encoder.flush()
            self.outcome = "done"
            if tail:
                yield tail
        except StreamerError as exc:
            self.outcome, self.error = "failed", exc
            raise
        except Exception:
            self.outcome = "failed"  # a bug: whoever ends the request logs the traceback
            raise
        finally:
            if feeder is not None and not feeder.done():
                feeder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeder
            if self.outcome == "pending":
                self.outcome = "cancelled"  # the consumer stopped taking bytes: cancelled or closed
            self.close()
            self._log(started)
            self.runtime.metrics.observe_oneshot(self.path, self.outcome, self.ttfa_ms)

    async def _take_feed(self, pending: deque[Chunk], arrived: asyncio.Event) -> None:
        """Cut the incoming text into chunks as it arrives; the end of the feed flushes the rest."""
        assert self._feed is not None
        try:
            async for piece in self._feed:
                self.chars += len(piece)
                new = self._chunker.push(piece)
                if new:
                    self.chunks.extend(new)
                    pending.extend(new)
                    arrived.set()
            tail = self._chunker.flush()
            self.chunks.extend(tail)
            pending.extend(tail)
        finally:
            arrived.set()  # also when the feed fails: stream() must wake to see it

    async def read_all(self) -> bytes:
        """The whole file, once every chunk is synthesized."""
        return b"".join([data async for data in self.stream()])

    def close(self) -> None:
        """Cancel the jobs still in the pool and abandon the encoder; safe to call more than once."""
        pool = self.runtime.pool
        while self._jobs:
            pool.cancel(self._jobs.popleft()[0])
        pool.forget_session(self._key)
        if self._encoder is not None:
            self._encoder.close()

    def _log(self, started: float) -> None:
        """The one summary line per synthesis."""
        audio_ms = self.duration_s * 1000
        log.info(
            "oneshot_finished",
            path=self.path,
            outcome=self.outcome,
            error=self.error.code if self.error is not None else None,
            engine=self.voice.engine,
            voice=voice_label(self.voice),
            format=self.format,
            chars=self.chars,
            chunks=len(self.chunks),
            ttfa_ms=round(self.ttfa_ms, 2) if self.ttfa_ms is not None else None,
            audio_ms=round(audio_ms, 1),
            synth_ms=round(self.synth_ms, 1),
            rtf=round(self.synth_ms / audio_ms, 4) if audio_ms else None,
            bytes=self.bytes_out,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )


__all__ = ["OneShot", "admit", "voice_label"]
