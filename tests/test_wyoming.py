"""The Wyoming protocol against a live server, driven by the `wyoming` package's own client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from wyoming.audio import AudioChunk, AudioStart
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)

from .conftest import TIMESCALE, ServerProcess, free_port, running_server
from .helpers import rms

TEXT = "Turning on the kitchen lights. The temperature outside is twelve degrees. Anything else?"


@pytest.fixture(scope="module")
def wyoming_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, int]]:
    port = free_port()
    config = {"tts": {"engine": "espeak"}, "pool": {"workers": 2}, "wyoming": {"port": port}}
    with running_server(tmp_path_factory.mktemp("wyoming"), config) as server:
        yield server, port


async def until(client: AsyncTcpClient, kind: str, timeout: float = 20) -> list[Event]:
    events = []
    deadline = time.monotonic() + timeout * TIMESCALE
    while True:
        event = await asyncio.wait_for(client.read_event(), max(0.01, deadline - time.monotonic()))
        assert event is not None, "the server closed the connection"
        events.append(event)
        if event.type == kind:
            return events


def pcm_of(events: list[Event]) -> tuple[np.ndarray, int]:
    chunks = [AudioChunk.from_event(e) for e in events if AudioChunk.is_type(e.type)]
    assert chunks, "no audio"
    assert {(c.width, c.channels) for c in chunks} == {(2, 1)}
    data = b"".join(c.audio for c in chunks)
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768, chunks[0].rate


async def test_describe_lists_our_voices_and_streaming_support(
    wyoming_server: tuple[ServerProcess, int],
) -> None:
    _, port = wyoming_server
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Describe().event())
        info = Info.from_event((await until(client, "info"))[-1])
    program = info.tts[0]
    assert program.supports_synthesize_streaming
    names = {voice.name for voice in program.voices}
    assert "en-us" in names
    assert all(voice.languages for voice in program.voices)


async def test_synthesize_answers_with_audio_start_chunks_stop(
    wyoming_server: tuple[ServerProcess, int],
) -> None:
    _, port = wyoming_server
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Synthesize(text=TEXT, voice=SynthesizeVoice(name="en-us")).event())
        events = await until(client, "audio-stop")
    assert AudioStart.is_type(events[0].type)
    start = AudioStart.from_event(events[0])
    assert (start.rate, start.width, start.channels) == (22050, 2, 1)
    samples, rate = pcm_of(events)
    assert 3.0 < len(samples) / rate < 12.0
    assert rms(samples) > 0.02


async def test_streaming_synthesis_starts_audio_before_the_text_is_complete(
    wyoming_server: tuple[ServerProcess, int],
) -> None:
    _, port = wyoming_server
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(SynthesizeStart(voice=SynthesizeVoice(language="en")).event())
        words = TEXT.split(" ")
        first_audio_after: int | None = None
        received: list[Event] = []
        for index, word in enumerate(words):
            await client.write_event(SynthesizeChunk(text=word + " ").event())
            await asyncio.sleep(0.03)
            while True:  # collect whatever arrived without waiting
                try:
                    event = await asyncio.wait_for(client.read_event(), 0.001)
                except TimeoutError:
                    break
                assert event is not None
                received.append(event)
                if AudioChunk.is_type(event.type) and first_audio_after is None:
                    first_audio_after = index
        await client.write_event(Synthesize(text=TEXT).event())  # compatibility copy: ignored
        await client.write_event(SynthesizeStop().event())
        received += await until(client, "synthesize-stopped")
    assert first_audio_after is not None and first_audio_after < len(words) - 3, "audio waited for the end"
    types = [e.type for e in received]
    assert types.count("audio-start") == 1 and types.count("audio-stop") == 1
    assert types.index("audio-stop") < types.index("synthesize-stopped")
    samples, rate = pcm_of(received)
    assert 3.0 < len(samples) / rate < 12.0, "the ignored `synthesize` copy must not be spoken twice"


async def test_unknown_voice_is_an_error_event_and_the_connection_goes_on(
    wyoming_server: tuple[ServerProcess, int],
) -> None:
    _, port = wyoming_server
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Synthesize(text="Hi.", voice=SynthesizeVoice(name="nobody")).event())
        error = Error.from_event((await until(client, "error"))[-1])
        assert error.code == "unknown_voice"
        await client.write_event(Synthesize(text="Still here.").event())
        events: list[Any] = await until(client, "audio-stop")
        assert pcm_of(events)[0].size > 0


async def test_many_streams_at_once(wyoming_server: tuple[ServerProcess, int]) -> None:
    _, port = wyoming_server

    async def one(n: int) -> float:
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Synthesize(text=f"Stream number {n} is speaking now.").event())
            samples, rate = pcm_of(await until(client, "audio-stop"))
            return len(samples) / rate

    durations = await asyncio.gather(*(one(n) for n in range(6)))
    assert all(d > 1.0 for d in durations)


async def test_wyoming_syntheses_show_in_the_metrics(wyoming_server: tuple[ServerProcess, int]) -> None:
    server, port = wyoming_server
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Synthesize(text="Counted.").event())
        await until(client, "audio-stop")
    text = httpx.get(f"{server.http_url}/metrics", timeout=10).text
    done = [
        line for line in text.splitlines()
        if line.startswith('streamer_oneshot_requests_total{') and 'path="wyoming"' in line
        and 'outcome="done"' in line
    ]  # fmt: skip
    assert done and float(done[0].rsplit(" ", 1)[1]) >= 1
    assert 'streamer_oneshot_time_to_first_audio_seconds_count{path="wyoming"}' in text


# --- limits and bad input ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict_wyoming(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, int]]:
    port = free_port()
    config = {
        "tts": {"engine": "espeak"},
        "pool": {"workers": 1},
        "wyoming": {"port": port},
        "server": {"max_connections": 2},
        "limits": {"max_message_bytes": 4096},
        "sessions": {"idle_timeout_s": 1.5 * TIMESCALE},
    }
    with running_server(tmp_path_factory.mktemp("wyoming-strict"), config) as server:
        yield server, port


async def raw_exchange(port: int, data: bytes) -> tuple[list[dict[str, Any]], bool]:
    """Send raw bytes; the JSON headers that come back, and whether the server then closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        headers, closed = [], False
        while True:
            try:
                line = await asyncio.wait_for(reader.readline(), 5 * TIMESCALE)
            except TimeoutError:
                break
            if not line:
                closed = True
                break
            header = json.loads(line)
            if header.get("data_length"):
                header["data"] = {
                    **header.get("data", {}),
                    **json.loads(await reader.readexactly(header["data_length"])),
                }
            if header.get("payload_length"):
                await reader.readexactly(header["payload_length"])
            headers.append(header)
        return headers, closed
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"this is not json\n", "invalid_message"),
        (b'{"data": {"text": "no type"}}\n', "invalid_message"),
        (b'{"type": "synthesize", "payload_length": 100000}\n', "message_too_large"),
        (b'{"type": "synthesize", "data_length": 5000}\n', "message_too_large"),
        (b'{"type": "synthesize", "data": {"text": "' + b"a" * 5000 + b'"}}\n', "message_too_large"),
        (b"[" * 4000 + b"\n", "invalid_message"),  # RecursionError in the stdlib's parser
        (b'{"type": "synthesize", "data_length": 4000}\n' + b"[" * 2000 + b"]" * 2000, "invalid_message"),
        (b'{"type": "synthesize", "data_length": 1e400}\n', "invalid_message"),  # OverflowError in int()
        (b'{"type": "synthesize", "data_length": "5"}\n', "invalid_message"),
        (b'{"type": "synthesize", "data": [1]}\n', "invalid_message"),
        (b'{"type": "\xff\xfe"}\n', "invalid_message"),  # not UTF-8
    ],
    ids=[
        "not-json",
        "no-type",
        "payload-too-large",
        "data-too-large",
        "header-too-long",
        "header-too-deep",
        "data-too-deep",
        "length-infinite",
        "length-a-string",
        "data-a-list",
        "not-utf8",
    ],
)
async def test_an_event_that_cannot_be_framed_gets_an_error_then_the_connection_closes(
    strict_wyoming: tuple[ServerProcess, int], data: bytes, code: str
) -> None:
    _, port = strict_wyoming
    headers, closed = await raw_exchange(port, data)
    assert [h["type"] for h in headers] == ["error"] and headers[0]["data"]["code"] == code
    assert closed


async def test_a_bad_field_is_an_error_and_the_connection_goes_on(
    strict_wyoming: tuple[ServerProcess, int],
) -> None:
    _, port = strict_wyoming
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Event(type="synthesize", data={"voice": "not a mapping"}))  # and no text
        error = Error.from_event((await until(client, "error"))[-1])
        assert error.code == "invalid_field"
        await client.write_event(Describe().event())
        assert Info.from_event((await until(client, "info"))[-1]).tts


@pytest.mark.parametrize(
    "data",
    [
        {"text": "Hi.", "voice": {"name": 5}},  # AttributeError deep in the voice catalog
        {"text": "Hi.", "voice": [1]},  # once ignored: spoken in the default voice
        {"text": "Hi.", "voice": "en-us"},
        {"text": "Hi.", "voice": {"language": ["en"]}},
        {"text": 5},
        {"text": ["Hi."]},
        {"voice": {"name": "en-us"}},
    ],
    ids=["voice-name-int", "voice-list", "voice-string", "language-list", "text-int", "text-list", "no-text"],
)
async def test_a_synthesize_with_a_wrong_field_gets_invalid_field_and_the_connection_goes_on(
    strict_wyoming: tuple[ServerProcess, int], data: dict[str, Any]
) -> None:
    _, port = strict_wyoming
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Event(type="synthesize", data=data))
        events = await until(client, "error")
        assert [e.type for e in events] == ["error"]
        assert Error.from_event(events[0]).code == "invalid_field"
        await client.write_event(Describe().event())
        assert Info.from_event((await until(client, "info"))[-1]).tts


async def test_a_stream_with_a_wrong_field_gets_invalid_field_and_nothing_is_opened(
    strict_wyoming: tuple[ServerProcess, int],
) -> None:
    _, port = strict_wyoming
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Event(type="synthesize-start", data={"voice": {"name": 5}}))
        assert Error.from_event((await until(client, "error"))[-1]).code == "invalid_field"
        await client.write_event(SynthesizeChunk(text="Hi. ").event())  # no stream was opened
        assert Error.from_event((await until(client, "error"))[-1]).code == "invalid_message"
        await client.write_event(SynthesizeStart().event())
        await client.write_event(Event(type="synthesize-chunk", data={"text": {"a": 1}}))
        assert Error.from_event((await until(client, "error"))[-1]).code == "invalid_field"
        await client.write_event(SynthesizeChunk(text="Still streaming.").event())
        await client.write_event(SynthesizeStop().event())
        events = await until(client, "synthesize-stopped")
        assert pcm_of(events)[0].size > 0


async def test_malformed_input_is_logged_once_per_connection_with_a_count_and_no_traceback(
    strict_wyoming: tuple[ServerProcess, int],
) -> None:
    server, port = strict_wyoming
    async with AsyncTcpClient("127.0.0.1", port) as client:
        for _ in range(5):
            await client.write_event(Event(type="synthesize", data={"text": 5}))
            await until(client, "error")
    headers, closed = await raw_exchange(port, b"[" * 4000 + b"\n")
    assert headers[0]["data"]["code"] == "invalid_message" and closed

    def malformed() -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("event") == "malformed_input"]

    deadline = time.monotonic() + 5 * TIMESCALE
    while len(malformed()) < 2 and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    counts = sorted((line["count"], line["last_code"]) for line in malformed())
    assert (1, "invalid_message") in counts and (5, "invalid_field") in counts
    assert all(line["level"] == "warning" for line in malformed())
    assert "Traceback" not in server.log() and "RecursionError" not in server.log()


async def test_connections_past_the_limit_are_refused_with_overloaded(
    strict_wyoming: tuple[ServerProcess, int],
) -> None:
    server, port = strict_wyoming
    async with AsyncTcpClient("127.0.0.1", port) as one, AsyncTcpClient("127.0.0.1", port) as two:
        for client in (one, two):  # both are served
            await client.write_event(Describe().event())
            await until(client, "info")
        headers, closed = await raw_exchange(port, b"")
        assert [h["data"]["code"] for h in headers] == ["overloaded"] and closed
    # the slots are free again once those two have left
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Synthesize(text="Room again.").event())
        assert pcm_of(await until(client, "audio-stop"))[0].size > 0
    assert "wyoming_refused" in server.log()


async def test_a_silent_connection_is_closed_after_the_idle_timeout(
    strict_wyoming: tuple[ServerProcess, int],
) -> None:
    _, port = strict_wyoming
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 10 * TIMESCALE) == b""  # closed by the server
        assert time.monotonic() - started >= 1.0 * TIMESCALE
    finally:
        writer.close()
