"""A connection in memory: the real runtime, catalog, chunker and encoders, a socket made of two lists, and
a pool whose "engine" is a tone, so every flow runs in milliseconds and its timing is the test's to choose.

What a real server, real engines and real sockets add is tested in test_stream.py and test_bargein.py;
this file checks the connection's own wiring (protocol actions performed, outbox order, generations,
seq numbers, resume) without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import orjson
import pytest
from structlog.testing import capture_logs

from streamer.config import Settings
from streamer.errors import OverloadedError
from streamer.runtime import Runtime
from streamer.session.connection import Connection

RATE = 22050


@dataclass(eq=False)
class ToneJob:
    """A chunk "synthesized" as 20 ms of tone per character, in blocks of 100 ms, a block per ``pace_s``."""

    text: str
    pace_s: float
    submitted_at: float = field(default_factory=time.perf_counter)
    started_at: float | None = None
    cancelled: bool = False
    timings: dict[str, Any] = field(default_factory=dict)

    async def blocks(self) -> AsyncIterator[tuple[int, np.ndarray]]:
        self.started_at = time.perf_counter()
        total = len(self.text) * RATE // 50
        t = np.arange(total, dtype=np.float32) / RATE
        tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        for start in range(0, total, RATE // 10):
            if self.cancelled:
                return
            await asyncio.sleep(self.pace_s)
            yield RATE, tone[start : start + RATE // 10]
        self.timings = {"synth_ms": 1.0, "first_block_ms": self.pace_s * 1000}


class TonePool:
    """What a session uses of the worker pool, without processes."""

    max_batch = 1

    def __init__(self, pace_s: float = 0.0) -> None:
        self.pace_s = pace_s
        self.jobs: list[ToneJob] = []
        self.full = False

    def admit(self) -> None:
        if self.full:
            raise OverloadedError("the synthesis queue is full", retry_after=1)

    def submit(
        self, session: str, engine: str, request: Any, first: bool, batch_key: str | None = None
    ) -> ToneJob:
        job = ToneJob(request.text, self.pace_s)
        self.jobs.append(job)
        return job

    def cancel(self, job: ToneJob) -> None:
        job.cancelled = True

    def forget_session(self, session: str) -> None:
        pass


class MemorySocket:
    """A client's side of the transport: ``send`` puts a message in, ``received`` holds what came out."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.received: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.arrived = asyncio.Event()
        self.gone = asyncio.Event()  # the server closed the connection

    def send_json(self, message: dict[str, Any]) -> None:
        self.inbox.put_nowait(orjson.dumps(message).decode())

    async def receive(self) -> str | bytes | None:
        return await self.inbox.get()

    async def send(self, data: str | bytes) -> None:
        self.received.append(msgpack.unpackb(data) if isinstance(data, bytes) else orjson.loads(data))
        self.arrived.set()

    async def close(self, code: int, reason: str = "") -> None:
        self.closed = (code, reason)
        self.gone.set()
        self.inbox.put_nowait(None)

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(found := [m for m in self.received if m["type"] == kind]) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return found


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    settings = Settings.model_validate({"tts": {"engine": "espeak"}, "chunker": {"idle_flush_ms": 0}})
    runtime = Runtime(settings)
    runtime.pool = TonePool()  # type: ignore[assignment]
    yield runtime


@contextlib.asynccontextmanager
async def connected(runtime: Runtime) -> AsyncIterator[MemorySocket]:
    socket = MemorySocket()
    task = asyncio.create_task(Connection(runtime, socket).run())
    try:
        yield socket
    finally:
        socket.inbox.put_nowait(None)
        await asyncio.wait_for(task, 5)


async def test_a_turn_in_memory_goes_out_in_protocol_order_with_gapless_seq(runtime: Runtime) -> None:
    async with connected(runtime) as socket:
        socket.send_json({"type": "start", "config": {"format": "wav"}})
        socket.send_json(
            {"type": "text", "text": "Hello there. This is a test of the session.", "flush": True}
        )
        await socket.wait_for("done")
    kinds = [m["type"] for m in socket.received]
    assert kinds[0] == "ready" and kinds[-1] == "done"
    assert kinds.count("chunk_start") == kinds.count("chunk_end") >= 2
    audio = [m for m in socket.received if m["type"] == "audio"]
    assert [m["seq"] for m in audio] == list(range(len(audio)))
    assert socket.received[-1]["seq_last"] == audio[-1]["seq"]
    data = b"".join(m["data"] for m in audio)
    assert data[:4] == b"RIFF"  # the turn's frames make one WAV file


async def test_an_interrupt_in_memory_leaves_no_stale_frame(runtime: Runtime) -> None:
    runtime.pool.pace_s = 0.01  # type: ignore[attr-defined]
    async with connected(runtime) as socket:
        socket.send_json({"type": "text", "text": "A long answer that goes on and on. " * 4, "flush": True})
        await socket.wait_for("audio", 3)
        socket.send_json({"type": "interrupt"})
        (interrupted,) = await socket.wait_for("interrupted")
        socket.send_json({"type": "text", "text": "Short.", "flush": True})
        await socket.wait_for("done")
    after = socket.received[socket.received.index(interrupted) + 1 :]
    assert all(m.get("generation", interrupted["generation"]) == interrupted["generation"] for m in after)
    assert after[0]["type"] in ("chunk_start", "audio") and after[-1]["type"] == "done"
    before = socket.received[: socket.received.index(interrupted)]
    assert interrupted["last_seq"] == max(m["seq"] for m in before if m["type"] == "audio")
    assert all(job.cancelled for job in runtime.pool.jobs[:-1])  # type: ignore[attr-defined]


async def test_end_in_memory_speaks_the_rest_then_closes_1000(runtime: Runtime) -> None:
    async with connected(runtime) as socket:
        socket.send_json({"type": "text", "text": "Goodbye."})
        socket.send_json({"type": "end", "id": "bye"})
        (done,) = await socket.wait_for("done")
        async with asyncio.timeout(5):
            await socket.gone.wait()
    assert done["id"] == "bye" and socket.closed == (1000, "end")


async def test_resume_in_memory_supersedes_the_first_connection(runtime: Runtime) -> None:
    async with connected(runtime) as first:
        first.send_json({"type": "start"})
        (ready,) = await first.wait_for("ready")
        async with connected(runtime) as second:
            second.send_json(
                {"type": "start", "session_id": ready["session_id"], "resume_token": ready["resume_token"]}
            )
            (resumed,) = await second.wait_for("ready")
            (closed,) = await first.wait_for("error")
            assert closed["code"] == "session_closed" and closed["fatal"]
            assert (
                resumed["session_id"] == ready["session_id"]
                and resumed["generation"] == ready["generation"] + 1
            )
            first.send_json(
                {"type": "text", "text": "ignored", "flush": True}
            )  # the old client changes nothing
            second.send_json({"type": "ping", "id": 1})
            await second.wait_for("pong")
    assert first.closed == (1000, "session resumed elsewhere")
    assert not [m for m in first.received if m["type"] == "done"]


async def test_a_full_pool_rejects_the_turn_in_memory(runtime: Runtime) -> None:
    runtime.pool.full = True  # type: ignore[attr-defined]
    async with connected(runtime) as socket:
        socket.send_json({"type": "text", "text": "Nobody hears this.", "flush": True, "id": 4})
        (done,) = await socket.wait_for("done")
    (error,) = [m for m in socket.received if m["type"] == "error"]
    assert error["code"] == "overloaded" and error["text_start"] == 0 and not error["fatal"]
    assert done["rejected"] is True and done["id"] == 4
    assert not [m for m in socket.received if m["type"] == "audio"]


async def test_a_refused_action_answers_with_its_error_and_the_session_goes_on(runtime: Runtime) -> None:
    async with connected(runtime) as socket:
        socket.send_json({"type": "start"})
        socket.send_json({"type": "config", "id": "c", "config": {"voice": "no-such-voice"}})
        (error,) = await socket.wait_for("error")
        socket.send_json({"type": "config", "config": {"speed": 1.5, "format": "mp3"}})
        (configured,) = await socket.wait_for("configured")
    assert error["code"] == "unknown_voice" and error["id"] == "c" and not error["fatal"]
    assert configured["speed"] == 1.5 and configured["audio"]["format"] == "mp3"


async def test_a_connection_whose_reader_fails_ends_at_once_instead_of_hanging(runtime: Runtime) -> None:
    # The reader fails in the same loop step as the sender finishes sending `ready`: with wait_for around
    # the send (Python 3.11), the sender swallowed its cancellation and the task group waited forever.
    def broken_submit(*args: Any, **kwargs: Any) -> ToneJob:
        raise RuntimeError("a bug in the pool")

    runtime.pool.submit = broken_submit  # type: ignore[method-assign]
    socket = MemorySocket()
    socket.send_json({"type": "text", "text": "Hello there.", "flush": True})
    with pytest.raises(ExceptionGroup) as info:
        await asyncio.wait_for(Connection(runtime, socket).run(), 5)
    assert info.group_contains(RuntimeError, match="a bug in the pool")
    assert not runtime.connections


async def test_malformed_input_is_logged_once_per_connection_with_a_count(runtime: Runtime) -> None:
    with capture_logs() as logs:
        async with connected(runtime) as socket:
            socket.send_json({"type": "start"})
            for _ in range(5):
                socket.inbox.put_nowait("{not json")
            socket.send_json({"type": "dance"})
            socket.send_json({"type": "ping", "id": 1})
            await socket.wait_for("pong")
    assert len([m for m in socket.received if m["type"] == "error"]) == 6  # each one answered
    (line,) = [e for e in logs if e["event"] == "malformed_input"]
    assert line["log_level"] == "warning" and line["count"] == 6 and line["last_code"] == "unknown_type"
