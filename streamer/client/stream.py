"""The streaming WebSocket client: one session, its reader task, turns, barge-in and generations.

One reader task per connection receives everything the server sends. Replies to this client's own
requests (`ready`, `interrupted`, `configured`, `pong`, an `error` naming a request id) wake the call
waiting for them; every message but `ready` then goes into a bounded inbox that `events()`, `say()`
and `stream()` read, one reader at a time. A full inbox stops the reader, so a consumer that falls
behind slows the server down (backpressure) instead of growing memory: consume what you asked for.

Generations: the client follows the session's generation from `ready` and `interrupted`. From the
moment `interrupt()` is called, data messages (`audio`, `chunk_start`, `chunk_end`, `done`) of older
generations are dropped, those already waiting in the inbox included, and counted in ``stats.dropped``.
One that arrived after the server acknowledged the interrupt would break the protocol's promise and is
counted in ``stats.stale_after_ack`` too (always 0 against a correct server).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any, Literal, overload

import msgpack
import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from ..protocol.fields import CONFIG_KEYS
from ._connect import Connector, open_socket, stream_url_problem
from ._generations import DATA_TYPES, Generations
from ._inbox import Inbox, SenderFailed, StreamClosed
from ._replies import Replies, Waiter
from ._turns import collect
from .errors import ClientError, ConnectionClosed, InvalidURL
from .messages import AudioFrame, ClientStats, Event, Message, Turn


class StreamerClient:
    """One session over the streaming WebSocket. Make one with ``StreamerClient.connect(url, ...)``."""

    def __init__(self, ws: ClientConnection, *, binary: bool = False, max_queue: int = 256) -> None:
        self._ws = ws
        self.binary = binary  # control messages as msgpack binary frames (the server answers in kind)
        self.ready: Event | None = None
        self.last_seq: int | None = None  # seq of the last audio frame received
        self.stats = ClientStats()
        self._inbox = Inbox(max_queue)
        self._generations = Generations(self.stats, self._inbox)
        self._audio: dict[str, Any] = {}
        self._replies = Replies()
        self._counter = 0
        self._reading = False
        self._stream_task: asyncio.Task[None] | None = None
        self._reader = asyncio.create_task(self._read(), name="streamer-client-reader")

    # ---- opening and closing --------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        api_key: str | None = None,
        api_key_in: Literal["header", "query"] = "header",
        binary: bool = False,
        session_id: str | None = None,
        resume_token: str | None = None,
        verify: bool | str | ssl_module.SSLContext = True,
        open_timeout: float = 10.0,
        max_queue: int = 256,
        headers: dict[str, str] | None = None,
        **config: Any,
    ) -> Connector[StreamerClient]:
        """Open a session: a new one with ``config`` (engine, voice, voice_id, language, speed, format,
        sample_rate), or an existing one with ``session_id`` and ``resume_token``.

        ``api_key`` goes in an ``Authorization: Bearer`` header, or with ``api_key_in="query"`` as
        ``?api_key=`` (what browsers must do). ``verify`` is for wss:// URLs: False skips certificate
        checks, a path names a CA file. ``max_queue``: messages received but not yet consumed.
        """
        if problem := stream_url_problem(url):
            raise InvalidURL(problem)
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise TypeError(f"unknown session setting(s): {', '.join(unknown)}; known: {sorted(CONFIG_KEYS)}")
        if (session_id is None) != (resume_token is None):
            raise TypeError("session_id and resume_token go together")

        async def open_client() -> StreamerClient:
            ws = await open_socket(url, api_key, api_key_in, verify, open_timeout, headers)
            client = cls(ws, binary=binary, max_queue=max_queue)
            try:
                await client._start(session_id, resume_token, config, open_timeout)
            except BaseException:
                await client.close()
                raise
            return client

        return Connector(open_client)

    async def _start(
        self, session_id: str | None, resume_token: str | None, config: dict[str, Any], timeout: float
    ) -> None:
        message: dict[str, Any] = {"type": "start", "id": self._next_id("s")}
        if session_id is not None:
            message.update(session_id=session_id, resume_token=resume_token)
        if config:
            message["config"] = config
        waiter = self._expect("ready", message["id"])
        await self._send(message)
        self.ready = await self._replies.wait(waiter, timeout)

    async def close(self) -> None:
        """Close the socket (code 1000) and stop the reader. Safe to call more than once."""
        await self._stop_stream()
        with contextlib.suppress(Exception):
            await self._ws.close()
        if not self._reader.done():
            self._reader.cancel()
        await asyncio.wait([self._reader])

    async def __aenter__(self) -> StreamerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- session facts --------------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        return self._ready["session_id"]  # type: ignore[no-any-return]

    @property
    def resume_token(self) -> str:
        """With ``session_id``, resumes this session from another connection (within the resume window)."""
        return self._ready["resume_token"]  # type: ignore[no-any-return]

    @property
    def audio_format(self) -> dict[str, Any]:
        """``{"format", "sample_rate", "channels"}`` of the session, from `ready` or the last `configured`."""
        return self._audio

    @property
    def generation(self) -> int:
        """The session's current generation, as far as this client knows."""
        return self._generations.current

    @property
    def closed(self) -> bool:
        return self._inbox.closed is not None

    @property
    def close_code(self) -> int | None:
        return self._inbox.closed.code if self._inbox.closed else None

    @property
    def _ready(self) -> Event:
        if self.ready is None:
            raise RuntimeError("the session has not started")
        return self.ready

    # ---- speaking -------------------------------------------------------------------------------

    async def say(self, text: str, *, timeout: float | None = None) -> Turn:
        """Speak ``text`` as one turn and collect it until `done` (or `interrupted`)."""
        turn = self._new_turn(text)
        await self._send({"type": "text", "text": text, "flush": True, "id": turn.id})
        return await self._collect(turn, timeout)

    @overload
    async def stream(
        self,
        pieces: Iterable[str] | AsyncIterable[str],
        *,
        flush: Literal[True] = True,
        timeout: float | None = None,
    ) -> Turn: ...

    @overload
    async def stream(
        self,
        pieces: Iterable[str] | AsyncIterable[str],
        *,
        flush: Literal[False],
        timeout: float | None = None,
    ) -> bool: ...

    async def stream(
        self, pieces: Iterable[str] | AsyncIterable[str], *, flush: bool = True, timeout: float | None = None
    ) -> Turn | bool:
        """Send text as it is produced (tokens of a language model) and speak it as one turn.

        The server starts speaking as soon as it has a phrase. With ``flush`` (the default) the turn
        ends when ``pieces`` does, and the call collects it while sending, until `done` or
        `interrupted`. With ``flush=False`` the text is only sent, and the call returns whether all of
        it was: read the audio with ``events()``; the server speaks complete phrases as they come, the
        rest after ``chunker.idle_flush_ms`` of silence or at the next ``flush()``.

        ``interrupt()`` stops the sending at once: text not yet sent would start a new turn. A blocking
        source must be wrapped in an async iterator; a synchronous one is read on the event loop.
        """
        if self._stream_task is not None and not self._stream_task.done():
            raise RuntimeError("stream() is already running on this client")
        turn = self._new_turn("")
        feeder = asyncio.create_task(
            self._send_pieces(pieces, turn, flush), name=f"streamer-client-stream-{turn.id}"
        )
        self._stream_task = feeder
        try:
            if not flush:
                await asyncio.wait([feeder])
                if feeder.cancelled():
                    return False
                feeder.result()  # the source's exception, if it raised
                return True
            feeder.add_done_callback(self._feeder_done)
            return await self._collect(turn, timeout)
        finally:
            await self._stop_stream()

    def _feeder_done(self, feeder: asyncio.Task[None]) -> None:
        # The collector raises it, in the task that waits for the turn.
        if not feeder.cancelled() and feeder.exception() is not None:
            self._inbox.append(SenderFailed(feeder.exception()))  # type: ignore[arg-type]

    async def _send_pieces(self, pieces: Iterable[str] | AsyncIterable[str], turn: Turn, flush: bool) -> None:
        async def each() -> AsyncIterator[str]:
            if isinstance(pieces, AsyncIterable):
                async for piece in pieces:
                    yield piece
            else:
                for piece in pieces:
                    yield piece

        parts: list[str] = []
        async for piece in each():
            if piece:
                parts.append(piece)
                if len(parts) == 1:
                    turn.sent_at = time.perf_counter()
                await self._send({"type": "text", "text": piece, "id": turn.id})
        turn.text = "".join(parts)
        if flush:
            await self._send({"type": "flush", "id": turn.id})

    async def _stop_stream(self) -> None:
        task, self._stream_task = self._stream_task, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait([task])

    async def send_text(self, text: str, *, flush: bool = False) -> str:
        """Low level: append text to the session (read the audio with ``events()``); returns its id."""
        message_id = self._next_id("t")
        await self._send({"type": "text", "text": text, "flush": flush, "id": message_id})
        return message_id

    async def flush(self) -> str:
        """Low level: speak what is buffered now; its `done` carries the returned id."""
        message_id = self._next_id("f")
        await self._send({"type": "flush", "id": message_id})
        return message_id

    async def end(self, *, timeout: float | None = None) -> Turn:
        """Speak what is buffered, collect it until `done`, and wait for the server to close."""
        turn = self._new_turn("")
        await self._send({"type": "end", "id": turn.id})
        turn = await self._collect(turn, timeout)
        await asyncio.wait([self._reader], timeout=5.0)  # the server closes after the last `done`
        return turn

    # ---- control --------------------------------------------------------------------------------

    async def interrupt(self, *, timeout: float = 10.0) -> Event:
        """Barge in: stop the speech now. Returns the `interrupted` event (``latency_ms``: the ack's).

        A running ``stream()`` stops sending first (its later text would start a new turn). Audio of the
        interrupted generation still waiting to be consumed, or still in flight, is dropped.
        """
        await self._stop_stream()
        self._generations.interrupting()
        waiter = self._expect("interrupted")
        await self._send({"type": "interrupt"})
        return await self._replies.wait(waiter, timeout)

    async def config(self, *, timeout: float = 10.0, **changes: Any) -> Event:
        """Change voice, speed or format mid-session; returns `configured`. A new format or rate applies
        from the next turn; voice and speed from the next chunk."""
        unknown = sorted(set(changes) - set(CONFIG_KEYS))
        if unknown:
            raise TypeError(f"unknown session setting(s): {', '.join(unknown)}")
        message_id = self._next_id("c")
        waiter = self._expect("configured", message_id)
        await self._send({"type": "config", "config": changes, "id": message_id})
        event = await self._replies.wait(waiter, timeout)
        self._audio = event.get("audio", self._audio)
        return event

    async def ping(self, *, timeout: float = 10.0) -> Event:
        """Round trip through the server's control path; the `pong` carries ``latency_ms``."""
        message_id = self._next_id("p")
        waiter = self._expect("pong", message_id)
        await self._send({"type": "ping", "id": message_id})
        return await self._replies.wait(waiter, timeout)

    # ---- reading --------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[Message]:
        """Everything the server sends (audio frames and events) until the connection closes."""
        while not isinstance(item := await self._next(), StreamClosed):
            if isinstance(item, SenderFailed):  # a stream() that ended while someone iterated events
                raise ClientError("the text source of stream() failed") from item.error
            yield item

    async def _next(self, timeout: float | None = None) -> Message | SenderFailed | StreamClosed:
        if self._reading:
            raise RuntimeError("another task is already reading this client's messages")
        self._reading = True
        try:
            return await asyncio.wait_for(self._inbox.get(), timeout)
        finally:
            self._reading = False

    async def _collect(self, turn: Turn, timeout: float | None) -> Turn:
        return await collect(turn, self._next, timeout)

    async def _read(self) -> None:
        failure = ""
        try:
            async for raw in self._ws:
                await self._dispatch(raw)
        except websockets.ConnectionClosed:
            pass
        except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
            # A message this client cannot read: the conversation cannot go on reliably.
            failure = f"unreadable message from the server: {exc!r}"
            await self._ws.close(1002, "unreadable message")
        finally:
            code, reason = self._ws.close_code, failure or self._ws.close_reason or ""
            marker = StreamClosed(code, reason)
            self._inbox.close(marker)
            self._replies.close(code, reason)

    async def _dispatch(self, raw: str | bytes) -> None:
        message = orjson.loads(raw) if isinstance(raw, str) else msgpack.unpackb(raw, raw=False)
        now = time.perf_counter()
        kind = message.get("type")
        generation = message.get("generation")
        if self._generations.stale(kind, generation):
            return
        if kind == "audio":
            item: Message = AudioFrame.from_wire(message, now, self.generation)
            self.last_seq = item.seq
        else:
            item = self._replies.answer(Event(kind, message, now), started=self.ready is not None)
            if kind == "ready":
                self._generations.started(item.generation or 0)
                self._audio = message.get("audio", {})
                return  # taken by connect(), never queued
            if kind == "interrupted" and item.generation is not None:
                self._generations.acknowledged(item.generation)
        if kind in DATA_TYPES:
            await self._inbox.wait_for_room()
            # While it waited, an interrupt may have made this message stale.
            if self._generations.stale(kind, generation):
                return
            if kind == "audio":
                self.stats.frames += 1
        self._inbox.append(item)

    # ---- requests and replies -------------------------------------------------------------------

    def _next_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    def _new_turn(self, text: str) -> Turn:
        return Turn(id=self._next_id("t"), generation=self.generation, sent_at=time.perf_counter(), text=text)

    def _expect(self, kind: str, message_id: str | None = None) -> Waiter:
        if self._inbox.closed is not None:
            raise ConnectionClosed(self._inbox.closed.code, self._inbox.closed.reason)
        return self._replies.expect(kind, message_id)

    async def _send(self, message: dict[str, Any]) -> None:
        if self._inbox.closed is not None:
            raise ConnectionClosed(self._inbox.closed.code, self._inbox.closed.reason)
        data: str | bytes = (
            msgpack.packb(message, use_bin_type=True) if self.binary else orjson.dumps(message).decode()
        )
        try:
            await self._ws.send(data)
        except websockets.ConnectionClosed as exc:
            raise ConnectionClosed(
                exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else ""
            ) from exc
