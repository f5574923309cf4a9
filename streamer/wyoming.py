"""The Wyoming protocol (Home Assistant's voice pipeline): describe, synthesize, and streaming synthesis.

Flows, each on one TCP connection (events framed by the `wyoming` package):

    describe                                   -> info (our engines' voices; streaming supported)
    synthesize {text, voice?}                  -> audio-start, audio-chunk*, audio-stop
    synthesize-start {voice?}                  (a text stream begins: audio starts with its first chunk)
      synthesize-chunk {text}*                 -> audio-start, audio-chunk* as sentences complete
      synthesize {text}                        (sent by clients for compatibility: ignored mid-stream)
    synthesize-stop                            -> audio-chunk*, audio-stop, synthesize-stopped

Audio is 16-bit mono PCM at the voice's own rate, sent frame by frame as the pool makes it; the text
goes through the same chunker and worker pool as the WebSocket (so Wyoming clients and WebSocket
sessions share the pool fairly). A bad request gets an `error` event and the connection goes on.

Limits, like the WebSocket's: at most `server.max_connections` Wyoming connections (one more gets an
`overloaded` error and is closed); an event's header line, data and payload each at most
`limits.max_message_bytes`; a connection silent for `sessions.idle_timeout_s` is closed. An event that
cannot be framed (not JSON, no type, lengths too large) gets an `error` event and the connection is
closed, since the byte stream can no longer be trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import structlog
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.info import Attribution, Describe, Info, TtsProgram, TtsVoice
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped

from . import __version__
from .errors import StreamerError
from .protocol import SessionConfig
from .session.oneshot import OneShot, admit

if TYPE_CHECKING:
    from wyoming.tts import SynthesizeVoice

    from .runtime import Runtime

log = structlog.get_logger(__name__)

ATTRIBUTION = Attribution(name="streamer", url="https://pypi.org/project/streamer/")
_END = None  # marks the end of a text stream in its queue


class FramingError(Exception):
    """The byte stream is not Wyoming events: answered with an error event, then the connection ends."""

    def __init__(self, message: str, code: str = "invalid_message") -> None:
        super().__init__(message)
        self.message, self.code = message, code


async def read_event(reader: asyncio.StreamReader, limit: int) -> Event | None:
    """One event, as ``wyoming.event.async_read_event`` frames it (a JSON header line, then optional
    data and payload of the lengths it names), but bounded: no part over ``limit`` bytes is read, and a
    malformed event raises FramingError instead of ending the connection without a word. None at EOF."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise FramingError("the connection ended inside an event header") from None
    except asyncio.LimitOverrunError:
        raise FramingError(f"an event header is over {limit} bytes", "message_too_large") from None
    try:
        header = json.loads(line)
        kind = header["type"]
        data = header.get("data") or {}
        data_length = int(header.get("data_length") or 0)
        payload_length = int(header.get("payload_length") or 0)
        if not isinstance(kind, str) or not isinstance(data, dict) or data_length < 0 or payload_length < 0:
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise FramingError("an event header is not a JSON object with a string type") from None
    if data_length > limit or payload_length > limit:
        raise FramingError(f"an event's data or payload is over {limit} bytes", "message_too_large")
    try:
        if data_length:
            extra = json.loads(await reader.readexactly(data_length))
            if not isinstance(extra, dict):
                raise FramingError("an event's data is not a JSON object")
            data = {**data, **extra}
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        raise FramingError("the connection ended inside an event") from None
    except ValueError:
        raise FramingError("an event's data is not JSON") from None
    return Event(type=kind, data=data, payload=payload)


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
                except (ValueError, KeyError, TypeError) as exc:  # fields of the wrong type or missing
                    await self._error(f"bad {event.type} event: {exc}", "invalid_field")
        except FramingError as exc:
            with contextlib.suppress(ConnectionError):
                await self._error(exc.message, exc.code)
        except TimeoutError:
            log.info("wyoming_idle_closed", idle_timeout_s=settings.sessions.idle_timeout_s)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if self._stream_task is not None:
                self._stream_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._stream_task
            self.writer.close()

    async def _write(self, event: Event) -> None:
        async with self._write_lock:
            await async_write_event(event, self.writer)

    async def _handle(self, event: Event) -> None:
        if Describe.is_type(event.type):
            await self._write(info(self.runtime).event())
        elif SynthesizeStart.is_type(event.type):
            start = SynthesizeStart.from_event(event)
            if self._stream_task is not None:
                await self._error("a text stream is already open", "invalid_message")
                return
            self._stream = asyncio.Queue()
            self._stream_chars = 0
            self._stream_task = asyncio.create_task(self._speak_stream(start.voice, self._stream))
        elif SynthesizeChunk.is_type(event.type):
            if self._stream is None:
                await self._error("synthesize-chunk outside synthesize-start/stop", "invalid_message")
                return
            text = SynthesizeChunk.from_event(event).text
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
            if self._stream is not None:
                return  # the whole text again, for clients that do not stream: already being spoken
            synthesize = Synthesize.from_event(event)
            await self._speak(synthesize.text, synthesize.voice)

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
