"""Speaks one generation of a session: its pipeline's chunks out as ``chunk_start``, audio, ``chunk_end``.

One ``Speaker`` per generation, run as the connection's synthesizer task; barge-in cancels it and starts
the next generation's. Everything it sends goes into the outbox's data queue tagged with its generation,
so what an old speaker still puts there is dropped before it can leave.
"""

from __future__ import annotations

import time

import structlog

from ..audio import StreamingEncoder
from ..errors import StreamerError
from ..protocol.events import CLOSE_NORMAL, Audio, ChunkEnd, ChunkStart, Done, ServerEvent, error_event
from ..protocol.session import Close
from .host import SessionHost
from .outbox import Outbox
from .pipeline import ChunkEntry, ChunkPlayback, Pipeline, TurnEnd
from .state import Session

log = structlog.get_logger(__name__)


class Speaker:
    def __init__(self, host: SessionHost, session: Session, outbox: Outbox) -> None:
        self.host = host
        self.session = session
        self.outbox = outbox
        self.pipe = Pipeline(generation=session.generation)

    async def run(self) -> None:
        """Until cancelled: by a barge-in or a resume (after ``discard()``), or with the connection."""
        pipe = self.pipe
        while True:
            pipe.wake.clear()
            self.submit_ahead()
            if not pipe.entries:
                await pipe.wake.wait()
                continue
            entry = pipe.entries[0]
            if isinstance(entry, TurnEnd):
                await self._finish_turn(entry)
            elif entry.turn not in pipe.rejected_turns and entry.job is not None:
                await self._play(entry)
            pipe.entries.popleft()

    def submit_ahead(self) -> None:
        """Keep up to ``pool.max_inflight_per_session`` chunks in the pool; report refused turns."""
        host = self.host
        limit = host.settings.pool.max_inflight_per_session
        for entry, exc in self.pipe.submit_ahead(host.pool, self.session.id, limit, host.batch_key):
            chunk = entry.chunk
            # On the control path: the client hears of it at once, and before any later `interrupted`.
            self.outbox.control(
                error_event(
                    exc.code,
                    f"{exc.message}: the turn from offset {chunk.start} up to the next flush is dropped",
                    False,
                    text_start=chunk.start,
                    retry_after=exc.details.get("retry_after", 1),
                )
            )

    def discard(self) -> None:
        """Cancel this generation's jobs in the pool and drop its encoder (before cancelling the task)."""
        self.pipe.discard(self.host.pool)

    async def _emit(self, event: ServerEvent | Close) -> None:
        await self.outbox.put(self.pipe.generation, event)

    def _encoder_for(self, entry: ChunkEntry) -> StreamingEncoder:
        """The turn's encoder, made once per turn (it takes up to a few ms: not on the first block's path)."""
        pipe = self.pipe
        if pipe.encoder is None:
            pipe.encoder = StreamingEncoder(*entry.audio)
            pipe.turn_audio_ms = 0.0
            pipe.samples_reported = 0
        return pipe.encoder

    async def _play(self, entry: ChunkEntry) -> None:
        assert entry.job is not None
        pipe, chunk, job = self.pipe, entry.chunk, entry.job
        number = pipe.chunk_counter
        pipe.chunk_counter += 1
        pipe.turn_chunks += 1
        if pipe.turn_started_at is None:
            pipe.turn_started_at = entry.created_at
        await self._emit(ChunkStart(pipe.generation, number, chunk.text, chunk.start, chunk.end))
        encoder = self._encoder_for(entry)  # while the pool synthesizes the chunk's first block
        playback = ChunkPlayback(
            job, chunk, entry.voice.sample_rate, encoder, self.host.settings.audio.frame_ms
        )
        try:
            async for samples, data in playback.frames():
                pipe.turn_audio_ms += samples * 1000 / playback.rate
                if data:
                    await self._emit_audio(encoder, data, chunk.start, chunk.end)
        except StreamerError as exc:
            log.warning("chunk_failed", code=exc.code, error=exc.message, text_start=chunk.start)
            await self._emit(
                error_event(
                    "engine_error",
                    f"{exc.message}; skipped text {chunk.start}..{chunk.end}",
                    False,
                    text_start=chunk.start,
                    text_end=chunk.end,
                )
            )
        self.session.chunks_done += 1
        synth_ms = job.timings.get("synth_ms") or 0.0
        pipe.turn_synth_ms += synth_ms
        queue_ms = round((job.started_at - job.submitted_at) * 1000, 2) if job.started_at else None
        first_block_ms = round(job.timings.get("first_block_ms") or 0.0, 2)
        await self._emit(
            ChunkEnd(
                pipe.generation,
                number,
                round(playback.audio_ms, 1),
                round(synth_ms, 2),
                first_block_ms,
                queue_ms,
            )
        )

    async def _emit_audio(
        self, encoder: StreamingEncoder, data: bytes, text_start: int | None, text_end: int | None
    ) -> None:
        pipe = self.pipe
        # A codec may hold a frame or two back: `samples` counts what went in since the last frame out.
        samples = encoder.samples_out - pipe.samples_reported
        pipe.samples_reported = encoder.samples_out
        if pipe.turn_first_audio_ms is None and pipe.turn_started_at is not None:
            pipe.turn_first_audio_ms = (time.perf_counter() - pipe.turn_started_at) * 1000
        await self._emit(
            Audio(pipe.generation, encoder.format, encoder.sample_rate, samples, text_start, text_end, data)
        )

    async def _finish_turn(self, end: TurnEnd) -> None:
        pipe = self.pipe
        encoder, pipe.encoder = pipe.encoder, None
        if encoder is not None and (tail := encoder.flush()):
            await self._emit_audio(encoder, tail, None, None)
        rejected = end.turn in pipe.rejected_turns
        event = Done(pipe.generation, round(pipe.turn_audio_ms, 1), rejected=rejected, id=end.id)
        self.log_turn("rejected" if rejected else "done")
        await self._emit(event)
        if end.kind == "end":
            await self._emit(Close(CLOSE_NORMAL, "end"))

    def log_turn(self, outcome: str) -> None:
        """The one summary line per turn; resets the pipeline's per-turn figures."""
        pipe = self.pipe
        audio_ms = pipe.turn_audio_ms
        if pipe.turn_chunks or outcome != "done":
            ttfa_ms = pipe.turn_first_audio_ms
            log.info(
                "turn_finished",
                outcome=outcome,
                generation=pipe.generation,
                chunks=pipe.turn_chunks,
                ttfa_ms=round(ttfa_ms, 2) if ttfa_ms is not None else None,
                audio_ms=round(audio_ms, 1),
                synth_ms=round(pipe.turn_synth_ms, 1),
                rtf=round(pipe.turn_synth_ms / audio_ms, 4) if audio_ms else None,
            )
            self.host.metrics.observe_turn(outcome, ttfa_ms, audio_ms, pipe.turn_synth_ms)
        pipe.turn_audio_ms = pipe.turn_synth_ms = 0.0
        pipe.turn_started_at = pipe.turn_first_audio_ms = None
        pipe.turn_chunks = 0
