"""One client connection: a reader, a speaker and a sender in one task group, with barge-in.

    socket ──> reader ──> SessionProtocol (sans-I/O) ──actions──> session, chunker, Speaker's pipeline
                                 └──events (pong, error, ready, interrupted)──> Outbox control ──┐
    Speaker (one per generation) ──(chunk_start, audio, chunk_end, done)──> Outbox data ──> sender ──> socket

- The reader decodes nothing itself: ``SessionProtocol.receive`` parses, rate-limits and decides; this
  module performs the actions that need the server (voices, chunker, pool) and reports their failures back.
- The outbox's data queue is bounded (``limits.max_outbound_audio_ms`` of frames): a client that reads
  slowly makes the speaker wait, which keeps at most ``pool.max_inflight_per_session`` chunks in the pool.
  A send that does not complete within ``limits.send_timeout_s`` ends the connection.
- Barge-in is a new generation. ``interrupt`` bumps the session's generation, retires the speaker (its
  jobs in the pool are cancelled, the worker aborts mid-chunk, its encoder is dropped), starts the next
  one and empties the data queue, all before the next await; the sender drops any data item whose
  generation is not the current one, so after ``interrupted`` nothing of an older generation leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars

import structlog

from ..audio import output_sample_rate
from ..errors import SendTimeout, StreamerError, TextTooLong
from ..protocol import SessionConfig, Start, encode
from ..protocol.events import (
    CLOSE_POLICY,
    Audio,
    AudioFormat,
    Configured,
    Interrupted,
    Ready,
    ServerEvent,
    error_event,
)
from ..protocol.session import (
    Action,
    BargeIn,
    Close,
    Configure,
    EndTurn,
    Limits,
    Output,
    SessionProtocol,
    StartSession,
    State,
    TakeText,
)
from ..text import Chunk
from .host import SessionHost
from .outbox import Outbox
from .pipeline import ChunkEntry, TurnEnd
from .speaker import Speaker
from .state import Session
from .transport import Closed, Transport

log = structlog.get_logger(__name__)


class Connection:
    def __init__(self, host: SessionHost, transport: Transport, client: str = "") -> None:
        self.host = host
        self.transport = transport
        self.client = client
        self.protocol = SessionProtocol()
        self.session: Session | None = None
        self.close_code: int | None = None
        settings = host.settings
        self.outbox = Outbox(max(4, settings.limits.max_outbound_audio_ms // settings.audio.frame_ms))
        self._turn = 0
        self._speaker: Speaker | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._speaker_task: asyncio.Task[None] | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        self._context = contextvars.copy_context()

    # ---- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        self.host.connections.add(self)
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self._reader(), name="session-reader")
                tg.create_task(self._sender(), name="session-sender")
        except* Closed:
            pass
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        self._cancel_idle_flush()
        if self._speaker is not None:
            self._speaker.discard()
        self.host.connections.discard(self)
        if self.protocol.malformed:  # once per connection, never per message: a client cannot flood the log
            log.warning(
                "malformed_input",
                path="websocket",
                client=self.client,
                count=self.protocol.malformed,
                last_code=self.protocol.malformed_code,
            )
        session = self.session
        if session is not None and session.connection is self:
            session.connection = None
            session.touch()
            self.host.pool.forget_session(session.id)
            log.info("session_detached", session_id=session.id, close_code=self.close_code)

    def close_soon(self, code: int, reason: str = "", event: ServerEvent | None = None) -> None:
        """Send ``event`` (if any) ahead of everything else, then close: used by the REST API and shutdown."""
        if event is not None:
            self.outbox.control(event)
        self.outbox.control(Close(code, reason))

    def supersede(self) -> None:
        """Another connection resumed this session: stop acting on it now, then close."""
        self._cancel_idle_flush()
        self._retire_speaker()
        self._perform(self.protocol.supersede())

    def interrupt(self) -> None:
        """Barge-in, from the REST API (the client's own `interrupt` comes through the protocol)."""
        self._perform(self.protocol.interrupt())

    @property
    def chunks_queued(self) -> int:
        return self._speaker.pipe.chunks_queued if self._speaker is not None else 0

    @property
    def idle(self) -> bool:
        """No turn open or being spoken: a draining server may close this connection now."""
        pipe = self._speaker.pipe if self._speaker is not None else None
        return (
            self.protocol.state is not State.TURN_OPEN
            and not (pipe and pipe.entries)
            and self.outbox.data_empty
        )

    # ---- inbound -------------------------------------------------------------------------------

    async def _reader(self) -> None:
        while True:
            data = await self.transport.receive()
            if data is None:
                raise Closed()
            limits = self.host.settings.limits  # read per message: live config applies at once
            self._perform(
                self.protocol.receive(
                    data, Limits(limits.max_message_bytes, limits.max_text_chars, limits.max_messages_per_s)
                )
            )
            if self.session is not None:
                self.session.touch()

    def _perform(self, outputs: list[Output]) -> None:
        """Carry out what the protocol decided, in order; a failed action ends the list with its error."""
        for output in outputs:
            if isinstance(output, ServerEvent | Close):
                self.outbox.control(output)
                continue
            try:
                self._act(output)
            except StreamerError as exc:
                self._perform(self.protocol.fail(output, exc))  # events only: no recursion past this
                return

    def _act(self, action: Action) -> None:
        if isinstance(action, StartSession):
            self._start(action.start)
            return
        session = self.session
        assert session is not None  # the protocol starts a session before anything else
        if isinstance(action, TakeText):
            self._take_text(session, action.text)
        elif isinstance(action, EndTurn):
            self._end_turn(session, action)
        elif isinstance(action, Configure):
            self._configure(session, action.config)
        elif isinstance(action, BargeIn):
            self._barge_in(session)

    def _start(self, message: Start) -> None:
        host = self.host
        if message.session_id is not None and message.resume_token is not None:
            session = host.sessions.verify(message.session_id, message.resume_token)
            if message.config.items():  # validated before anything changes
                host.resolve_voice(message.config, session)
                if message.config.format is not None:
                    host.check_format(message.config.format)
            previous = session.connection
            if previous is not None and previous is not self:
                previous.supersede()
            session.generation += 1  # a resumed session continues in a new generation
            session.chunker.clear()
        else:
            session = host.new_session(message.config)
        session.connection = self
        session.ever_attached = True
        session.touch()
        self.session = session
        # Bound before the speaker starts, whose task runs in a copy of this context.
        structlog.contextvars.bind_contextvars(session_id=session.id)
        self._context = contextvars.copy_context()
        self._start_speaker(session)
        if message.session_id is not None and message.config.items():
            self._apply_config(session, message.config)  # the turn is empty: applies at once
        session.apply_pending_audio()  # a format change announced before a disconnect: a new turn starts
        self.outbox.control(
            Ready(
                session_id=session.id,
                resume_token=host.sessions.token(session),
                generation=session.generation,
                engine=session.voice.engine,
                voice=session.voice.voice,
                language=session.voice.language,
                speed=session.speed,
                text_offset=session.chunker.offset,
                last_seq=session.last_seq,
                audio=_audio_format(session.format, session.sample_rate),
            )
        )
        log.info(
            "session_opened",
            session_id=session.id,
            resumed=message.session_id is not None,
            engine=session.voice.engine,
            voice=session.voice.voice,
            format=session.format,
        )

    def _barge_in(self, session: Session) -> None:
        session.generation += 1
        self.host.metrics.interrupts.inc()
        self._cancel_idle_flush()
        session.chunker.clear()
        self._turn += 1
        if self._speaker is not None and self._speaker.pipe.turn_chunks:
            self._speaker.log_turn("interrupted")
        self._retire_speaker()
        self._start_speaker(session)
        self.outbox.drop_data()
        session.apply_pending_audio()
        self.outbox.control(Interrupted(session.generation))
        log.debug("session_interrupted", session_id=session.id, generation=session.generation)

    def _configure(self, session: Session, config: SessionConfig) -> None:
        self._apply_config(session, config)
        self.outbox.control(
            Configured(
                engine=session.voice.engine,
                voice=session.voice.voice,
                language=session.voice.language,
                speed=session.speed,
                audio=_audio_format(*(session.pending_audio or (session.format, session.sample_rate))),
            )
        )

    def _apply_config(self, session: Session, config: SessionConfig) -> None:
        # Validate everything before applying anything.
        voice = self.host.resolve_voice(config, session)
        fmt = self.host.check_format(config.format) if config.format is not None else None
        session.voice = voice
        if config.speed is not None:
            session.speed = config.speed
        if fmt is not None or config.sample_rate is not None:
            session.pending_audio = (fmt or session.format, config.sample_rate or session.sample_rate)
            pipe = self._speaker.pipe if self._speaker is not None else None
            if not session.chunker.buffered_chars and not (pipe and pipe.has_turn(self._turn)):
                session.apply_pending_audio()  # the turn is empty: a new turn starts here

    def _take_text(self, session: Session, text: str) -> None:
        limit = self.host.settings.limits.max_buffered_chars
        held = session.chunker.buffered_chars + (self._speaker.pipe.queued_chars if self._speaker else 0)
        if held + len(text) > limit:
            raise TextTooLong(
                f"the session already holds {held} characters not yet spoken (limit {limit}); "
                "this text was not taken"
            )
        self._queue_chunks(session, session.chunker.push(text))
        self._arm_idle_flush(session)

    def _end_turn(self, session: Session, action: EndTurn) -> None:
        self._cancel_idle_flush()
        self._queue_chunks(session, session.chunker.flush())
        assert self._speaker is not None
        self._speaker.pipe.push(
            TurnEnd(self._turn, action.kind, action.id, (session.format, session.sample_rate))
        )
        self._turn += 1
        session.apply_pending_audio()

    def _queue_chunks(self, session: Session, chunks: list[Chunk]) -> None:
        speaker = self._speaker
        assert speaker is not None
        audio = (session.format, session.sample_rate)
        for chunk in chunks:
            speaker.pipe.push(ChunkEntry(chunk, self._turn, session.voice, session.speed, audio))
        if chunks:
            # Straight into the pool: no wait for the speaker task to wake, and while it is busy
            # speaking one chunk the next is already being synthesized.
            speaker.submit_ahead()

    def _arm_idle_flush(self, session: Session) -> None:
        self._cancel_idle_flush()
        delay_ms = self.host.settings.chunker.idle_flush_ms
        if delay_ms > 0 and session.chunker.buffered_chars:
            self._idle_handle = asyncio.get_running_loop().call_later(delay_ms / 1000, self._idle_flush)

    def _idle_flush(self) -> None:
        self._idle_handle = None
        if self.session is not None:
            self._queue_chunks(self.session, self.session.chunker.flush_idle())

    def _cancel_idle_flush(self) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None

    # ---- the speaker ---------------------------------------------------------------------------

    def _start_speaker(self, session: Session) -> None:
        assert self._tg is not None
        self._speaker = speaker = Speaker(self.host, session, self.outbox)
        try:
            # In the session's own context (its ids in every log line), even when a REST interrupt
            # starts it from an HTTP request's task.
            self._speaker_task = self._tg.create_task(
                speaker.run(), name="session-speaker", context=self._context.copy()
            )
        except RuntimeError:
            # The connection is closing (its task group is shutting down): a REST interrupt or a resume
            # raced with the close. Nothing more will be spoken on it anyway.
            self._speaker_task = None

    def _retire_speaker(self) -> None:
        if self._speaker is not None:
            self._speaker.discard()
        if self._speaker_task is not None:
            self._speaker_task.cancel()

    # ---- outbound ------------------------------------------------------------------------------

    async def _sender(self) -> None:
        timeout = self.host.settings.limits.send_timeout_s
        while True:
            event = self.outbox.ready_to_send(await self.outbox.next(), self.session)
            if event is None:
                continue
            if isinstance(event, Close):
                await self._close(event.code, event.reason)
            binary = self.protocol.binary or event.type == "audio"
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that arrives as
                # the send completes, and the task group would then wait forever for this task.
                async with asyncio.timeout(timeout):
                    await self.transport.send(encode(event, binary))
            except TimeoutError:
                await self._fail_send_timeout(timeout)
            except OSError as exc:
                raise Closed() from exc
            if isinstance(event, Audio):
                self.host.metrics.audio_bytes.inc(len(event.data))
            # A send to a socket with room completes without suspending, and so does taking the next
            # queued item: without this the sender would drain its whole queue in one loop step while
            # every other session waits (loop lag p99 with 8 espeak sessions: 5 -> 12 ms).
            await asyncio.sleep(0)

    async def _fail_send_timeout(self, timeout: float) -> None:
        error = SendTimeout(f"the client read nothing for {timeout:g} s")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.transport.send(
                    encode(error_event(error.code, error.message, True), self.protocol.binary)
                ),
                1.0,
            )
        log.warning("session_send_timeout", session_id=self.session.id if self.session else None)
        await self._close(CLOSE_POLICY, "send timeout")

    async def _close(self, code: int, reason: str) -> None:
        self.close_code = code
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await self.transport.close(code, reason)
        raise Closed()


def _audio_format(fmt: str, sample_rate: int) -> AudioFormat:
    return AudioFormat(fmt, output_sample_rate(fmt, sample_rate))


__all__ = ["Connection", "Transport"]
