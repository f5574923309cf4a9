"""The Wyoming protocol against a live server, driven by the `wyoming` package's own client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

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
