"""One client connection: a reader, a synthesizer and a sender in one task group, with barge-in.

    reader ──(chunks, turn ends)──> Pipeline ──> synthesizer ──(audio, events)──> data queue ──> sender
       └──(pong, errors, ready, interrupted)──────────────────────────────> control deque ──┘

- The data queue is bounded (``limits.max_outbound_audio_ms`` of audio frames): a client that reads
  slowly makes the synthesizer wait, which keeps at most ``pool.max_inflight_per_session`` chunks in
  the pool. A send that does not complete within ``limits.send_timeout_s`` ends the connection.
- Control messages jump the queue: they are never behind audio.
- Barge-in is a new generation. ``interrupt`` bumps the session's generation, cancels the pipeline's
  jobs in the pool (the worker aborts mid-chunk), discards the encoder, replaces the synthesizer task
  and empties the data queue, all before the next await; the sender drops any data message whose
  generation is not the current one, so after ``interrupted`` nothing of an older generation leaves.
- Seq numbers are given by the sender as frames go out, so they have no gaps.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import structlog

from ..audio import PHRASE_GAP_MS, ChunkShaper, StreamingEncoder, output_sample_rate, split_frames
from ..engines.base import SynthesisRequest
from ..engines.catalog import ResolvedVoice
from ..errors import (
    InvalidMessage,
    OverloadedError,
    ProtocolError,
    SendTimeout,
    SessionClosed,
    StreamerError,
    TextTooLong,
)
from ..pool import Job
from ..protocol import (
    PROTOCOL_VERSION,
    ClientMessage,
    Config,
    End,
    Flush,
    Interrupt,
    Ping,
    RateLimiter,
    SessionConfig,
    Start,
    Text,
    decode,
    encode,
    error_event,
    parse,
)
from ..text import Chunk
from .state import Session

if TYPE_CHECKING:
    from ..runtime import Runtime

log = structlog.get_logger(__name__)

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_SERVER_ERROR = 1011
CLOSE_RESTART = 1012
CLOSE_TRY_AGAIN = 1013


class Transport(Protocol):
    """What a connection needs of a socket; the WebSocket endpoint adapts Starlette's to it."""

    async def receive(self) -> str | bytes | None:
        """The next message, or None once the client has gone."""
        ...

    async def send(self, data: str | bytes) -> None: ...

    async def close(self, code: int, reason: str = "") -> None: ...


class _Closed(Exception):
    """Ends the connection's task group once the socket is closed or gone."""


@dataclass(eq=False)
class _ChunkEntry:
    chunk: Chunk
    turn: int
    voice: ResolvedVoice
    speed: float
    audio: tuple[str, int]  # format, requested sample rate of the chunk's turn
    job: Job | None = None
    created_at: float = field(default_factory=time.perf_counter)


@dataclass(eq=False)
class _TurnEnd:
    turn: int
    kind: Literal["flush", "end"]
    id: str | int | None
    audio: tuple[str, int]


@dataclass(eq=False)
class _Pipeline:
    """The work of one generation. Replaced whole on interrupt; the old one is cancelled."""

    generation: int
    entries: deque[_ChunkEntry | _TurnEnd] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    encoder: StreamingEncoder | None = None
    rejected_turns: set[int] = field(default_factory=set)
    chunk_counter: int = 0
    turn_audio_ms: float = 0.0
    samples_reported: int = 0
    turn_started_at: float | None = None  # when the turn's first chunk was cut from the text
    turn_first_audio_ms: float | None = None
    turn_synth_ms: float = 0.0
    turn_chunks: int = 0

    def push(self, entry: _ChunkEntry | _TurnEnd) -> None:
        self.entries.append(entry)
        self.wake.set()

    def discard(self, pool_cancel: Any) -> None:
        for entry in self.entries:
            if isinstance(entry, _ChunkEntry) and entry.job is not None:
                pool_cancel(entry.job)
        self.entries.clear()
        if self.encoder is not None:
            self.encoder.close()
            self.encoder = None

    @property
    def queued_chars(self) -> int:
        return sum(len(e.chunk.text) for e in self.entries if isinstance(e, _ChunkEntry))


class Connection:
    def __init__(self, runtime: Runtime, transport: Transport, client: str = "") -> None:
        self.runtime = runtime
        self.transport = transport
        self.client = client
        limits = runtime.settings.limits
        self.limiter = RateLimiter(limits.max_messages_per_s)
        self.session: Session | None = None
        self.binary = False  # answer in the encoding of the client's most recent message
        self.ended = False
        self._turn = 0
        self._pipe = _Pipeline(generation=0)
        self._control: deque[tuple[Any, ...]] = deque()
        frames = max(4, limits.max_outbound_audio_ms // runtime.settings.audio.frame_ms)
        self._data: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue(maxsize=frames)
        self._wakeup = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._synth_task: asyncio.Task[None] | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        self._turn_open = False  # text taken since the last flush/end/interrupt
        self._superseded = False  # another connection resumed the session: ignore everything
        self._context = contextvars.copy_context()
        self.close_code: int | None = None

    # ---- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        self.runtime.connections.add(self)
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self._reader(), name="session-reader")
                tg.create_task(self._sender(), name="session-sender")
        except* _Closed:
            pass
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        self._pipe.discard(self.runtime.pool.cancel)
        self.runtime.connections.discard(self)
        session = self.session
        if session is not None and session.connection is self:
            session.connection = None
            session.touch()
            self.runtime.pool.forget_session(session.id)
            log.info("session_detached", session_id=session.id, close_code=self.close_code)

    def close_soon(self, code: int, reason: str = "", event: dict[str, Any] | None = None) -> None:
        """Send ``event`` (if any) ahead of everything else, then close: used by the REST API and shutdown."""
        if event is not None:
            self._control.append(("event", event))
        self._control.append(("close", code, reason))
        self._wakeup.set()

    def supersede(self) -> None:
        """Another connection resumed this session: stop acting on it now, then close."""
        self._superseded = True
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        self._pipe.discard(self.runtime.pool.cancel)
        if self._synth_task is not None:
            self._synth_task.cancel()
        self.close_soon(
            CLOSE_NORMAL,
            "session resumed elsewhere",
            error_event("session_closed", "this session was resumed by another connection", True),
        )

    def interrupt(self) -> None:
        """Barge-in, from the client's message or from the REST API."""
        session = self.session
        if session is None or self._superseded:
            return
        session.generation += 1
        self.runtime.counters["interrupts"] += 1
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        session.chunker.clear()
        self._turn += 1
        self._turn_open = False
        old = self._pipe
        if old.turn_chunks:
            self._log_turn(old, "interrupted")
        old.discard(self.runtime.pool.cancel)
        self._pipe = _Pipeline(generation=session.generation)
        if self._synth_task is not None:
            self._synth_task.cancel()
        self._start_synthesizer()
        while not self._data.empty():
            self._data.get_nowait()
        self._apply_pending_audio()
        self._control.append(("interrupted", session.generation))
        if self.ended:
            self._control.append(("close", CLOSE_NORMAL, "interrupted after end"))
        self._wakeup.set()
        log.debug("session_interrupted", session_id=session.id, generation=session.generation)

    @property
    def chunks_queued(self) -> int:
        return sum(1 for e in self._pipe.entries if isinstance(e, _ChunkEntry))

    @property
    def idle(self) -> bool:
        """No turn open or being spoken: a draining server may close this connection now."""
        return not self._turn_open and not self._pipe.entries and self._data.empty()

    def _start_synthesizer(self) -> None:
        assert self._tg is not None
        try:
            # In the session's own context (its ids in every log line), even when a REST interrupt
            # starts it from an HTTP request's task.
            self._synth_task = self._tg.create_task(
                self._synthesizer(self._pipe), name="session-synthesizer", context=self._context.copy()
            )
        except RuntimeError:
            # The connection is closing (its task group is shutting down): a REST interrupt or a resume
            # raced with the close. Nothing more will be spoken on it anyway.
            self._synth_task = None

    # ---- outbound ------------------------------------------------------------------------------

    def _send_control(self, event: dict[str, Any]) -> None:
        self._control.append(("event", event))
        self._wakeup.set()

    async def _emit(self, pipe: _Pipeline, event: dict[str, Any]) -> None:
        """A data-path message of ``pipe``'s generation, after that generation's earlier audio."""
        await self._data.put(("data", pipe.generation, event))
        self._wakeup.set()

    async def _next_outbound(self) -> tuple[Any, ...]:
        while True:
            if self._control:
                return self._control.popleft()
            if not self._data.empty():
                return self._data.get_nowait()
            self._wakeup.clear()
            await self._wakeup.wait()

    async def _sender(self) -> None:
        timeout = self.runtime.settings.limits.send_timeout_s
        while True:
            item = await self._next_outbound()
            kind = item[0]
            session = self.session
            if kind == "close":
                await self._close(item[1], item[2])
            if kind == "close-data":
                if session is not None and item[1] == session.generation:
                    await self._close(item[2], "end")
                continue
            if kind == "interrupted":
                assert session is not None
                event: dict[str, Any] = {
                    "type": "interrupted",
                    "generation": item[1],
                    "last_seq": session.last_seq,
                }
            elif kind == "event":
                event = item[1]
            else:
                assert session is not None
                if item[1] != session.generation:
                    continue  # a message of an older generation: never sent after `interrupted`
                event = item[2]
                if event["type"] == "audio":
                    event["seq"] = session.next_seq
                    session.last_seq = event["seq"]
                    session.audio_ms_sent += event["samples"] * 1000 / event["sample_rate"]
                    self.runtime.counters["audio_bytes"] += len(event["data"])
                elif event["type"] in ("chunk_end", "done"):
                    event["seq_last"] = session.last_seq
            binary = self.binary or event["type"] == "audio"
            try:
                await asyncio.wait_for(self.transport.send(encode(event, binary)), timeout)
            except TimeoutError:
                await self._fail_send_timeout(timeout)
            except OSError as exc:
                raise _Closed() from exc

    async def _fail_send_timeout(self, timeout: float) -> None:
        error = SendTimeout(f"the client read nothing for {timeout:g} s")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.transport.send(encode(error_event(error.code, error.message, True), self.binary)), 1.0
            )
        log.warning("session_send_timeout", session_id=self.session.id if self.session else None)
        await self._close(CLOSE_POLICY, "send timeout")

    async def _close(self, code: int, reason: str) -> None:
        self.close_code = code
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.transport.close(code, reason), 2.0)
        raise _Closed()

    # ---- inbound -------------------------------------------------------------------------------

    async def _reader(self) -> None:
        while True:
            raw = await self.transport.receive()
            limits = self.runtime.settings.limits  # read per message: live config applies at once
            self.limiter.rate = limits.max_messages_per_s
            if raw is None:
                raise _Closed()
            self.binary = isinstance(raw, bytes)
            if not self.limiter.allow():
                if self.limiter.abusive:
                    self._fatal("rate_limited", "too many messages past the rate limit", CLOSE_POLICY)
                else:
                    self._send_control(
                        error_event("rate_limited", f"over {limits.max_messages_per_s:g} messages/s", False)
                    )
                continue
            obj: dict[str, Any] | None = None
            try:
                obj = decode(raw, limits.max_message_bytes)
                message = parse(obj, limits.max_text_chars)
                await self._handle(message)
            except StreamerError as exc:
                message_id = (
                    obj.get("id") if obj is not None and isinstance(obj.get("id"), str | int) else None
                )
                extra = {k: v for k, v in exc.details.items() if isinstance(v, str | int | float | None)}
                if exc.fatal:
                    code = CLOSE_TOO_BIG if exc.code == "message_too_large" else CLOSE_POLICY
                    self._fatal(exc.code, exc.message, code, id=message_id)
                else:
                    self._send_control(error_event(exc.code, exc.message, False, id=message_id, **extra))

    def _fatal(self, code: str, message: str, close_code: int, **extra: Any) -> None:
        self.close_soon(close_code, code, error_event(code, message, True, **extra))

    async def _handle(self, message: ClientMessage) -> None:
        if self._superseded:
            return  # the session belongs to another connection now; this one is closing
        if isinstance(message, Start):
            if self.session is not None:
                raise InvalidMessage("the session has already started")
            self._start(message)
            return
        if self.session is None:
            self._start(Start())
        session = self.session
        assert session is not None
        session.touch()
        if isinstance(message, Ping):
            self._send_control({"type": "pong", "id": message.id})
        elif isinstance(message, Interrupt):
            self.interrupt()
        elif self.ended:
            raise InvalidMessage("the session is ending after `end`; only `interrupt` and `ping` are taken")
        elif isinstance(message, Text):
            self._take_text(message.text)
            if message.flush:
                self._end_turn("flush", message.id)
        elif isinstance(message, Flush):
            self._end_turn("flush", message.id)
        elif isinstance(message, End):
            self._end_turn("end", message.id)
            self.ended = True
        elif isinstance(message, Config):
            self._configure(message.config)

    def _start(self, message: Start) -> None:
        runtime = self.runtime
        if message.session_id is not None and message.resume_token is not None:
            session = runtime.sessions.verify(message.session_id, message.resume_token)
            if message.config.items():  # validated before anything changes
                runtime.resolve_voice(message.config, session)
                if message.config.format:
                    runtime.check_format(message.config.format)
            previous = session.connection
            if previous is not None and previous is not self:
                previous.supersede()
            session.generation += 1  # a resumed session continues in a new generation
            session.chunker.clear()
        else:
            session = runtime.new_session(message.config)
        session.connection = self
        session.ever_attached = True
        session.touch()
        self.session = session
        # Bound before the synthesizer starts, whose task runs in a copy of this context.
        structlog.contextvars.bind_contextvars(session_id=session.id)
        self._context = contextvars.copy_context()
        self._pipe = _Pipeline(generation=session.generation)
        self._start_synthesizer()
        if message.session_id is not None and message.config.items():
            self._configure_session(session, message.config)  # the turn is empty: applies at once
        self._apply_pending_audio()  # a format change announced before a disconnect: a new turn starts here
        self._send_control(self._ready_event(session))
        log.info(
            "session_opened",
            session_id=session.id,
            resumed=message.session_id is not None,
            engine=session.voice.engine,
            voice=session.voice.voice,
            format=session.format,
        )

    def _ready_event(self, session: Session) -> dict[str, Any]:
        return {
            "type": "ready",
            "session_id": session.id,
            "resume_token": self.runtime.sessions.token(session),
            "protocol": PROTOCOL_VERSION,
            "generation": session.generation,
            "engine": session.voice.engine,
            "voice": session.voice.voice,
            "language": session.voice.language,
            "speed": session.speed,
            "text_offset": session.chunker.offset,
            "last_seq": session.last_seq,
            "audio": self._audio_description(session.format, session.sample_rate),
        }

    @staticmethod
    def _audio_description(fmt: str, sample_rate: int) -> dict[str, Any]:
        return {"format": fmt, "sample_rate": output_sample_rate(fmt, sample_rate), "channels": 1}

    def _configure(self, config: SessionConfig) -> None:
        session = self.session
        assert session is not None
        self._configure_session(session, config)
        self._send_control(
            {
                "type": "configured",
                "engine": session.voice.engine,
                "voice": session.voice.voice,
                "language": session.voice.language,
                "speed": session.speed,
                "audio": self._audio_description(
                    *(session.pending_audio or (session.format, session.sample_rate))
                ),
            }
        )

    def _configure_session(self, session: Session, config: SessionConfig) -> None:
        # Validate everything before applying anything.
        voice = self.runtime.resolve_voice(config, session)
        fmt = self.runtime.check_format(config.format) if config.format else None
        session.voice = voice
        if config.speed is not None:
            session.speed = config.speed
        if fmt is not None or config.sample_rate is not None:
            session.pending_audio = (fmt or session.format, config.sample_rate or session.sample_rate)
            if self._turn_is_empty():
                self._apply_pending_audio()

    def _turn_is_empty(self) -> bool:
        session = self.session
        if session is not None and session.chunker.buffered_chars:
            return False
        return not any(getattr(e, "turn", None) == self._turn for e in self._pipe.entries)

    def _apply_pending_audio(self) -> None:
        session = self.session
        if session is not None and session.pending_audio is not None:
            session.format, session.sample_rate = session.pending_audio
            session.pending_audio = None

    def _take_text(self, text: str) -> None:
        session = self.session
        assert session is not None
        limit = self.runtime.settings.limits.max_buffered_chars
        held = session.chunker.buffered_chars + self._pipe.queued_chars
        if held + len(text) > limit:
            raise TextTooLong(
                f"the session already holds {held} characters not yet spoken (limit {limit}); "
                "this text was not taken"
            )
        self._turn_open = True
        self._queue_chunks(session.chunker.push(text))
        self._arm_idle_flush()

    def _end_turn(self, kind: Literal["flush", "end"], message_id: str | int | None) -> None:
        session = self.session
        assert session is not None
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        self._queue_chunks(session.chunker.flush())
        self._pipe.push(_TurnEnd(self._turn, kind, message_id, (session.format, session.sample_rate)))
        self._turn += 1
        self._turn_open = False
        self._apply_pending_audio()

    def _queue_chunks(self, chunks: list[Chunk]) -> None:
        session = self.session
        assert session is not None
        for chunk in chunks:
            self._pipe.push(
                _ChunkEntry(
                    chunk, self._turn, session.voice, session.speed, (session.format, session.sample_rate)
                )
            )
        if chunks:
            # Straight into the pool: no wait for the synthesizer task to wake, and while it is busy
            # speaking one chunk the next is already being synthesized.
            self._submit_ahead(self._pipe)

    def _arm_idle_flush(self) -> None:
        delay_ms = self.runtime.settings.chunker.idle_flush_ms
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        session = self.session
        if delay_ms <= 0 or session is None or not session.chunker.buffered_chars:
            return
        self._idle_handle = asyncio.get_running_loop().call_later(delay_ms / 1000, self._idle_flush)

    def _idle_flush(self) -> None:
        self._idle_handle = None
        if self.session is not None:
            self._queue_chunks(self.session.chunker.flush_idle())

    # ---- synthesis -----------------------------------------------------------------------------

    async def _synthesizer(self, pipe: _Pipeline) -> None:
        try:
            while True:
                pipe.wake.clear()
                self._submit_ahead(pipe)
                if not pipe.entries:
                    await pipe.wake.wait()
                    continue
                entry = pipe.entries[0]
                if isinstance(entry, _TurnEnd):
                    await self._finish_turn(pipe, entry)
                elif entry.turn not in pipe.rejected_turns and entry.job is not None:
                    await self._play(pipe, entry)
                pipe.entries.popleft()
        finally:
            if pipe is not self._pipe:
                pipe.discard(self.runtime.pool.cancel)

    def _submit_ahead(self, pipe: _Pipeline) -> None:
        """Keep up to ``max_inflight_per_session`` of the pipeline's chunks in the pool."""
        session = self.session
        assert session is not None
        pool = self.runtime.pool
        limit = self.runtime.settings.pool.max_inflight_per_session
        inflight = 0
        for entry in pipe.entries:
            if not isinstance(entry, _ChunkEntry) or entry.turn in pipe.rejected_turns:
                continue
            if entry.job is None:
                if inflight >= limit:
                    break
                if entry.chunk.first:
                    try:
                        pool.admit()
                    except OverloadedError as exc:
                        self._reject_turn(pipe, entry, exc)
                        continue
                request = SynthesisRequest(text=entry.chunk.text, voice=entry.voice.voice, speed=entry.speed)  # type: ignore[arg-type]
                try:
                    entry.job = pool.submit(
                        session.id,
                        entry.voice.engine,
                        request,
                        first=entry.chunk.first,
                        batch_key=self.runtime.batch_key(entry.voice),
                    )
                except OverloadedError as exc:  # the pool is shutting down
                    self._reject_turn(pipe, entry, exc)
                    continue
            inflight += 1

    def _reject_turn(self, pipe: _Pipeline, entry: _ChunkEntry, exc: OverloadedError) -> None:
        pipe.rejected_turns.add(entry.turn)
        event = error_event(
            exc.code,
            f"{exc.message}: the turn from offset {entry.chunk.start} up to the next flush is dropped",
            False,
            text_start=entry.chunk.start,
            retry_after=exc.details.get("retry_after", 1),
        )
        # On the control path: the client hears of it at once, and before any later `interrupted`.
        self._send_control(event)

    async def _play(self, pipe: _Pipeline, entry: _ChunkEntry) -> None:
        assert entry.job is not None
        chunk = entry.chunk
        number = pipe.chunk_counter
        pipe.chunk_counter += 1
        pipe.turn_chunks += 1
        if pipe.turn_started_at is None:
            pipe.turn_started_at = entry.created_at
        await self._emit(
            pipe,
            {
                "type": "chunk_start",
                "generation": pipe.generation,
                "chunk": number,
                "text": chunk.text,
                "text_start": chunk.start,
                "text_end": chunk.end,
            },
        )
        self._encoder_for(pipe, entry)  # while the pool synthesizes the chunk's first block
        shaper = ChunkShaper()
        rate = entry.voice.sample_rate
        shaper.start_chunk(rate, tail_ms=None if chunk.pause else PHRASE_GAP_MS)
        audio_ms = 0.0
        try:
            async for rate, block in entry.job.blocks():
                audio_ms += len(block) * 1000 / rate
                await self._emit_pcm(pipe, entry, shaper.process(block), rate)
            await self._emit_pcm(pipe, entry, shaper.end_chunk(), rate)
        except StreamerError as exc:
            log.warning("chunk_failed", code=exc.code, error=exc.message, text_start=chunk.start)
            await self._emit(
                pipe,
                error_event(
                    "engine_error",
                    f"{exc.message}; skipped text {chunk.start}..{chunk.end}",
                    False,
                    text_start=chunk.start,
                    text_end=chunk.end,
                ),
            )
        session = self.session
        if session is not None:
            session.chunks_done += 1
        timings = entry.job.timings
        pipe.turn_synth_ms += timings.get("synth_ms") or 0.0
        await self._emit(
            pipe,
            {
                "type": "chunk_end",
                "generation": pipe.generation,
                "chunk": number,
                "audio_ms": round(audio_ms, 1),
                "synth_ms": round(timings.get("synth_ms") or 0.0, 2),
                "first_block_ms": round(timings.get("first_block_ms") or 0.0, 2),
                "queue_ms": round(((entry.job.started_at or 0) - entry.job.submitted_at) * 1000, 2)
                if entry.job.started_at
                else None,
            },
        )

    async def _emit_pcm(self, pipe: _Pipeline, entry: _ChunkEntry, pcm: Any, rate: int) -> None:
        if not len(pcm):
            return
        encoder = self._encoder_for(pipe, entry)
        frame = max(1, rate * self.runtime.settings.audio.frame_ms // 1000)
        for piece in split_frames(pcm, frame):
            data = encoder.encode(piece, rate)
            pipe.turn_audio_ms += len(piece) * 1000 / rate
            if data:
                await self._emit_audio(pipe, entry.chunk, encoder, data)
                # Putting a frame in a queue with room does not suspend: without this, a burst of blocks
                # would go out in one loop step while the sender and every other session wait.
                await asyncio.sleep(0)

    @staticmethod
    def _encoder_for(pipe: _Pipeline, entry: _ChunkEntry) -> StreamingEncoder:
        """The turn's encoder, made once per turn (it takes up to a few ms: not on the first block's path)."""
        if pipe.encoder is None:
            fmt, sample_rate = entry.audio
            pipe.encoder = StreamingEncoder(fmt, sample_rate)
            pipe.turn_audio_ms = 0.0
            pipe.samples_reported = 0
        return pipe.encoder

    async def _emit_audio(
        self, pipe: _Pipeline, chunk: Chunk | None, encoder: StreamingEncoder, data: bytes
    ) -> None:
        # A codec may hold a frame or two back: `samples` counts what went in since the last frame out.
        samples = encoder.samples_out - pipe.samples_reported
        pipe.samples_reported = encoder.samples_out
        if pipe.turn_first_audio_ms is None and pipe.turn_started_at is not None:
            pipe.turn_first_audio_ms = (time.perf_counter() - pipe.turn_started_at) * 1000
        await self._emit(
            pipe,
            {
                "type": "audio",
                "generation": pipe.generation,
                "format": encoder.format,
                "sample_rate": encoder.sample_rate,
                "samples": samples,
                "text_start": chunk.start if chunk else None,
                "text_end": chunk.end if chunk else None,
                "data": data,
            },
        )

    def _log_turn(self, pipe: _Pipeline, outcome: str) -> None:
        """The one summary line per turn; resets the pipeline's per-turn figures."""
        audio_ms = pipe.turn_audio_ms
        if pipe.turn_chunks or outcome != "done":
            log.info(
                "turn_finished",
                outcome=outcome,
                generation=pipe.generation,
                chunks=pipe.turn_chunks,
                ttfa_ms=round(pipe.turn_first_audio_ms, 2) if pipe.turn_first_audio_ms is not None else None,
                audio_ms=round(audio_ms, 1),
                synth_ms=round(pipe.turn_synth_ms, 1),
                rtf=round(pipe.turn_synth_ms / audio_ms, 4) if audio_ms else None,
            )
            if pipe.turn_first_audio_ms is not None:
                self.runtime.record_ttfa(pipe.turn_first_audio_ms)
            self.runtime.metrics.observe_turn(outcome, pipe.turn_first_audio_ms, audio_ms, pipe.turn_synth_ms)
        pipe.turn_audio_ms = pipe.turn_synth_ms = 0.0
        pipe.turn_started_at = pipe.turn_first_audio_ms = None
        pipe.turn_chunks = 0

    async def _finish_turn(self, pipe: _Pipeline, end: _TurnEnd) -> None:
        encoder, pipe.encoder = pipe.encoder, None
        if encoder is not None:
            tail = encoder.flush()
            if tail:
                await self._emit_audio(pipe, None, encoder, tail)
        event: dict[str, Any] = {
            "type": "done",
            "generation": pipe.generation,
            "audio_ms": round(pipe.turn_audio_ms, 1),
        }
        if end.turn in pipe.rejected_turns:
            event["rejected"] = True
        if end.id is not None:
            event["id"] = end.id
        self._log_turn(pipe, "rejected" if end.turn in pipe.rejected_turns else "done")
        await self._emit(pipe, event)
        if end.kind == "end":
            await self._data.put(("close-data", pipe.generation, CLOSE_NORMAL))
            self._wakeup.set()


__all__ = ["Connection", "ProtocolError", "SessionClosed", "Transport"]
