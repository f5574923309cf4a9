"""The Wyoming server: the listening socket, and one connection's flows (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import structlog
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.info import Attribution, Describe, Info, TtsProgram, TtsVoice
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped

from .. import __version__
from ..errors import StreamerError
from ..protocol import SessionConfig
from ..session.oneshot import OneShot, admit
from .framing import FramingError, read_event, text_of, voice_of

if TYPE_CHECKING:
    from wyoming.tts import SynthesizeVoice

    from ..runtime import Runtime

log = structlog.get_logger(__name__)

ATTRIBUTION = Attribution(name="streamer", url="https://pypi.org/project/streamer/")
_END = None  # marks the end of a text stream in its queue
# The codes that say the client sent something wrong (not a refusal such as `unknown_voice` or `overloaded`).
_MALFORMED = frozenset({"invalid_message", "invalid_field", "message_too_large", "text_too_long"})


def info(runtime: Runtime) -> Info:
    catalog = runtime.catalog
    voices = [
        TtsVoice(
            name=voice.name,
            description=f"{voice.description or voice.name} ({engine})",
            attribution=ATTRIBUTION,
            installed=True,
            version=__version__,
            languages=[voice.language],
        )
        for engine in sorted(catalog.engines, key=lambda name: name != catalog.default_engine)
        for voice in catalog.voices(engine)
    ]
    program = TtsProgram(
        name="streamer",
        description="Real-time text-to-speech streaming server",
        attribution=ATTRIBUTION,
        installed=True,
        version=__version__,
        voices=voices,
        supports_synthesize_streaming=True,
    )
    return Info(tts=[program])


class WyomingConnection:
    def __init__(self, runtime: Runtime, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.runtime = runtime
        self.reader = reader
        self.writer = writer
        self._stream: asyncio.Queue[str | None] | None = None
        self._stream_task: asyncio.Task[None] | None = None
        self._stream_chars = 0
        self._write_lock = asyncio.Lock()
        peer = writer.get_extra_info("peername")
        self.client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""
        self._malformed = 0  # events answered with a client-mistake error
        self._malformed_code = ""

    async def run(self) -> None:
        settings = self.runtime.settings
        try:
            while True:
                async with asyncio.timeout(settings.sessions.idle_timeout_s):
                    event = await read_event(self.reader, settings.limits.max_message_bytes)
                if event is None:
                    break
                try:
                    await self._handle(event)
                except StreamerError as exc:  # a field of the wrong type, or missing
                    await self._error(exc.message, exc.code)
        except FramingError as exc:
            with contextlib.suppress(ConnectionError):
                await self._error(exc.message, exc.code)
        except TimeoutError:
            log.info("wyoming_idle_closed", idle_timeout_s=settings.sessions.idle_timeout_s)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:  # our bug, not the client's: said once, here, and the client still hears why
            log.exception("wyoming_connection_crashed", client=self.client)
            with contextlib.suppress(ConnectionError):
                await self._error("internal error", "internal_error")
        finally:
            if self._stream_task is not None:
                self._stream_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._stream_task
            if self._malformed:  # once per connection, whatever the client sent: it cannot flood the log
                log.warning(
                    "malformed_input", path="wyoming", client=self.client, count=self._malformed,
                    last_code=self._malformed_code,
                )  # fmt: skip
            self.writer.close()

    async def _write(self, event: Event) -> None:
        async with self._write_lock:
            await async_write_event(event, self.writer)

    async def _handle(self, event: Event) -> None:
        if Describe.is_type(event.type):
            await self._write(info(self.runtime).event())
        elif SynthesizeStart.is_type(event.type):
            voice = voice_of(event)
            if self._stream_task is not None:
                await self._error("a text stream is already open", "invalid_message")
                return
            self._stream = asyncio.Queue()
            self._stream_chars = 0
            self._stream_task = asyncio.create_task(self._speak_stream(voice, self._stream))
        elif SynthesizeChunk.is_type(event.type):
            if self._stream is None:
                await self._error("synthesize-chunk outside synthesize-start/stop", "invalid_message")
                return
            text = text_of(event)
            limit = self.runtime.settings.limits.max_buffered_chars
            if self._stream_chars + len(text) > limit:
                # Bounded like a WebSocket session's buffer: the text past the limit is refused, said once.
                if self._stream_chars <= limit:
                    await self._error(f"a text stream holds at most {limit} characters", "text_too_long")
                self._stream_chars = limit + 1
                return
            self._stream_chars += len(text)
            self._stream.put_nowait(text)
        elif SynthesizeStop.is_type(event.type):
            if self._stream is None or self._stream_task is None:
                await self._error("synthesize-stop without synthesize-start", "invalid_message")
                return
            self._stream.put_nowait(_END)
            task, self._stream, self._stream_task = self._stream_task, None, None
            await task  # its audio-stop and synthesize-stopped are written before the next event is read
        elif Synthesize.is_type(event.type):
            text, voice = text_of(event), voice_of(event)
            if self._stream is not None:
                return  # the whole text again, for clients that do not stream: already being spoken
            await self._speak(text, voice)

    async def _speak_stream(self, voice: SynthesizeVoice | None, queue: asyncio.Queue[str | None]) -> None:
        async def pieces() -> AsyncIterator[str]:
            while (piece := await queue.get()) is not _END:
                assert piece is not None
                yield piece

        await self._speak(pieces(), voice)
        await self._write(SynthesizeStopped().event())

    async def _speak(self, text: str | AsyncIterator[str], voice: SynthesizeVoice | None) -> None:
        runtime = self.runtime
        try:
            resolved = runtime.resolve_voice(
                SessionConfig(voice=voice.name if voice else None, language=voice.language if voice else None)
            )
            admit(runtime)
        except StreamerError as exc:
            await self._error(exc.message, exc.code)
            if not isinstance(text, str):
                async for _ in text:  # drain the stream so its stop is still answered
                    pass
            return
        speed = runtime.settings.tts.default_speed
        oneshot = OneShot(runtime, text, resolved, speed, "pcm", resolved.sample_rate, "wyoming")
        rate = oneshot.sample_rate
        started = False
        try:
            async with contextlib.aclosing(oneshot.stream()) as stream:
                async for data in stream:
                    if not started:
                        await self._write(AudioStart(rate=rate, width=2, channels=1).event())
                        started = True
                    await self._write(AudioChunk(rate=rate, width=2, channels=1, audio=data).event())
        except StreamerError as exc:
            await self._error(exc.message, exc.code)
            if not isinstance(text, str):
                async for _ in text:  # a stream: `synthesize-stopped` still waits for the client's stop
                    pass
        if not started:
            await self._write(AudioStart(rate=rate, width=2, channels=1).event())
        await self._write(AudioStop().event())

    async def _error(self, text: str, code: str) -> None:
        if code in _MALFORMED:
            self._malformed += 1
            self._malformed_code = code
        await self._write(Error(text=text, code=code).event())


class WyomingServer:
    """The listening socket; each connection runs until its client leaves or the server stops."""

    def __init__(self, runtime: Runtime, host: str, port: int) -> None:
        self.runtime = runtime
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        # The stream reader's limit bounds an event's header line as the data and payload are bounded.
        limit = self.runtime.settings.limits.max_message_bytes
        self._server = await asyncio.start_server(self._accept, self.host, self.port, limit=limit)
        for sock in self._server.sockets:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small audio events, no 40 ms stalls
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("wyoming_listening", uri=f"tcp://{self.host}:{self.port}")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = asyncio.current_task()
        assert task is not None
        limit = self.runtime.settings.server.max_connections
        if len(self._connections) >= limit:
            log.warning("wyoming_refused", reason="max_connections", limit=limit)
            with contextlib.suppress(ConnectionError):
                error = Error(
                    text=f"the server is at its limit of {limit} Wyoming connections", code="overloaded"
                )
                await async_write_event(error.event(), writer)
            writer.close()
            return
        self._connections.add(task)
        try:
            await WyomingConnection(self.runtime, reader, writer).run()
        finally:
            self._connections.discard(task)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()
