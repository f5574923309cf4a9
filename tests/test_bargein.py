"""Barge-in: after `interrupted`, not one message of an older generation, ever, across many runs."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from .conftest import HAS_PIPER, ServerProcess
from .helpers import Client

PARAGRAPH = (
    "Once upon a time, in a kingdom by the sea, there lived a princess who loved to read. "
    "Every morning she walked to the library, picked a book at random, and read it aloud to the birds. "
    "The birds, for their part, preferred songs, but they listened politely all the same. "
    "One day a stranger arrived with a book that had no words in it at all."
)

STALE_TYPES = {"audio", "chunk_start", "chunk_end", "done", "error"}


class Tracker:
    """Receives everything and fails on any message of a generation older than the newest `interrupted`."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.generation = 0
        self.last_audio_seq: int | None = None

    async def next(self, timeout: float = 20) -> dict[str, Any]:
        message = await self.client.recv(timeout)
        kind = message["type"]
        if kind in STALE_TYPES and "generation" in message:
            assert message["generation"] >= self.generation, f"stale {kind} after interrupted: {message}"
        if kind == "audio":
            assert message["seq"] == (0 if self.last_audio_seq is None else self.last_audio_seq + 1)
            self.last_audio_seq = message["seq"]
        if kind == "interrupted":
            assert message["generation"] > self.generation
            assert message["last_seq"] == self.last_audio_seq, "last_seq must name the last audio frame sent"
            self.generation = message["generation"]
        return message

    async def until(self, kind: str, timeout: float = 20) -> dict[str, Any]:
        while True:
            message = await self.next(timeout)
            if message["type"] == kind:
                return message


async def interrupt_rounds(url: str, rounds: int, seed: int, engine: str | None = None) -> int:
    rng = random.Random(seed)
    async with await Client.connect(url) as client:
        await client.start(**({"engine": engine} if engine else {}))
        tracker = Tracker(client)
        for _ in range(rounds):
            await client.send({"type": "text", "text": PARAGRAPH, "flush": True})
            # Interrupt at a random point: before any audio, after the first frame, or well into the turn.
            for _ in range(rng.choice([0, 1, 1, 3, 10])):
                await tracker.until("audio")
            if rng.random() < 0.3:
                await asyncio.sleep(rng.random() * 0.05)
            await client.send({"type": "interrupt"})
            await tracker.until("interrupted")
        # After the last interrupt the new generation speaks normally, and only it.
        await client.send({"type": "text", "text": "All clear now.", "flush": True})
        done = await tracker.until("done")
        assert done["generation"] == tracker.generation
        # Anything still in flight would arrive within a moment: nothing stale may.
        await client.send({"type": "ping", "id": "end"})
        await tracker.until("pong")
        return tracker.generation


async def test_barge_in_under_load_never_leaks_a_stale_message(espeak_server: ServerProcess) -> None:
    generations = await asyncio.gather(
        *(interrupt_rounds(espeak_server.ws_url, 25, seed) for seed in range(6))
    )
    assert generations == [25] * 6


@pytest.mark.piper
@pytest.mark.skipif(not HAS_PIPER, reason="the [piper] extra is not installed")
async def test_barge_in_discards_in_flight_neural_synthesis(piper_server: ServerProcess) -> None:
    generations = await asyncio.gather(*(interrupt_rounds(piper_server.ws_url, 8, seed) for seed in range(3)))
    assert generations == [8] * 3


async def test_text_after_interrupt_belongs_to_the_new_generation(espeak_server: ServerProcess) -> None:
    async with await Client.connect(espeak_server.ws_url) as client:
        await client.start()
        tracker = Tracker(client)
        await client.send({"type": "text", "text": "This buffered text is never spoken because"})
        await client.send({"type": "interrupt"})
        await client.send({"type": "text", "text": "Fresh start.", "flush": True})
        interrupted = await tracker.until("interrupted")
        events = []
        while True:
            message = await tracker.next()
            events.append(message)
            if message["type"] == "done":
                break
        spoken = [e["text"] for e in events if e["type"] == "chunk_start"]
        assert spoken == ["Fresh start."]
        assert all(e["generation"] == interrupted["generation"] for e in events if "generation" in e)


async def test_interrupt_after_end_acknowledges_and_closes(espeak_server: ServerProcess) -> None:
    async with await Client.connect(espeak_server.ws_url) as client:
        await client.start()
        await client.send({"type": "text", "text": PARAGRAPH})
        await client.send({"type": "end"})
        await client.send({"type": "interrupt"})
        tracker = Tracker(client)
        await tracker.until("interrupted")
        with pytest.raises(Exception):  # noqa: B017 - the server closes; no more messages
            while True:
                await tracker.next(timeout=5)
        assert client.ws.close_code == 1000
